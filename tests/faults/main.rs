//! Faults: malformed and unexpected DIMSE traffic, refused associations, garbage on the port,
//! aborted associations, the database or the bucket going away, and `kill -9` in the middle of a
//! send. Each test checks the DICOM answer, that nothing was half-stored (no index row, no blob,
//! no spool file), that the log says why, and that the server keeps serving.
//!
//! - [`datasets`]: C-STOREs whose data set is truncated, inconsistent or hostile;
//! - [`protocol`]: unknown and malformed commands, garbage, silence and aborts on the wire;
//! - [`access`]: the AE title policy and unknown SOP classes;
//! - [`clients`]: silent, slow and too many clients, on the DICOM and HTTP ports;
//! - [`duplicates`]: the same instance sent again;
//! - [`outages`]: the database, the bucket or the blob folder going away;
//! - [`lost_commit`]: a COMMIT whose answer never comes back;
//! - [`crash`]: `kill -9` in the middle of a send;
//! - [`verify`]: `orthweb verify` finding and repairing what crashes and damaged disks leave.
//!
//! [`site`] is the server under test and what it stored; [`support`] the helpers the tests share.

#[path = "../common/mod.rs"]
mod common;

mod site;
mod support;

mod access;
mod clients;
mod crash;
mod datasets;
mod duplicates;
mod lost_commit;
mod outages;
mod protocol;
mod verify;
