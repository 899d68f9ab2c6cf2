//! Orthweb: a DICOM archive. Receives instances over DICOM, keeps them as part-10 files in a
//! blob store with an SQL index, and serves them over HTTP.
//!
//! See `docs/ARCHITECTURE.md` for how the modules fit together.

pub mod app;
pub mod auth;
pub mod aws;
pub mod config;
pub mod dicom;
pub mod dicomweb;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ids;
pub mod import;
pub mod index;
pub mod ingest;
pub mod janitor;
pub mod jobs;
pub mod main_tags;
pub mod metrics;
pub mod render;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod transcode;
pub mod verify;
