//! What the fault tests share: DIMSE status codes, polling, starting a site, data sets and the
//! C-STOREs that carry them, and associations run on the blocking pool.

use std::io;
use std::path::Path;

use dicom_object::InMemDicomObject;

use crate::common::dcmtk;
use crate::common::dicomgen::{self, Instance};
use crate::common::pg::PgCluster;
use crate::common::s3::S3Server;
use crate::common::scu::{self, Scu, blocking};
use crate::common::server::ServerConfig;
use crate::site::Site;

pub const SUCCESS: u16 = 0x0000;
pub const DATA_SET_MISMATCH: u16 = 0xA900;
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;

/// Presentation contexts an association proposes: (abstract syntax, transfer syntaxes).
pub type Contexts = &'static [(&'static str, &'static [&'static str])];

pub use crate::common::eventually;

// ---------------------------------------------------------------------------------------------
// Sites

/// A SQLite + folder site with the default configuration, or `None` (skip the test) when
/// storescu is not installed.
pub fn local_site() -> Option<Site> {
    local_site_with(ServerConfig::default())
}

/// A SQLite + folder site started with `config`, or `None` when storescu is not installed.
pub fn local_site_with(config: ServerConfig) -> Option<Site> {
    dcmtk::require_tool("storescu").then(|| Site::local(config))
}

/// A PostgreSQL + S3 site whose index is the database `db`, or `None` when storescu or
/// PostgreSQL is not installed. Bind the three in this order: the site is dropped first.
pub fn cloud_site(db: &str) -> Option<(PgCluster, S3Server, Site)> {
    if !dcmtk::require_tool("storescu") {
        return None;
    }
    // Started without blocking the runtime's other tasks (the in-process S3 server runs on them).
    let pg = tokio::task::block_in_place(PgCluster::start)?;
    let s3 = S3Server::start();
    let site = tokio::task::block_in_place(|| Site::cloud(&pg, &s3, db, ServerConfig::default()));
    Some((pg, s3, site))
}

// ---------------------------------------------------------------------------------------------
// Data sets

/// The stored blob holds the data set of the file `sent`.
pub fn assert_same_dataset(stored: &Path, sent: &Path) {
    let kept = dicomgen::dataset_bytes(stored)
        .unwrap_or_else(|e| panic!("blob {} unreadable: {e}", stored.display()));
    let sent_bytes = dicomgen::dataset_bytes(sent).unwrap();
    assert!(
        kept == sent_bytes,
        "stored data set {} differs from the sent {}",
        stored.display(),
        sent.display()
    );
}

/// The data set of `instance` (Explicit VR LE), as a file sends it.
pub fn dataset(instance: &Instance) -> Vec<u8> {
    dicomgen::dataset_bytes(&instance.path).unwrap()
}

/// The data set of `instance` after `edit`, re-encoded in Explicit VR LE.
pub fn edited_dataset(instance: &Instance, edit: impl FnOnce(&mut InMemDicomObject)) -> Vec<u8> {
    let file = dicom_object::open_file(&instance.path).expect("open generated file");
    let mut object: InMemDicomObject = file.into_inner();
    edit(&mut object);
    scu::encode_explicit_le(&object)
}

/// One C-STORE: the SOP Class and Instance UIDs its command announces, and the data set.
#[derive(Clone)]
pub struct Store {
    pub class: String,
    /// The Affected SOP Instance UID of the command.
    pub uid: String,
    pub data: Vec<u8>,
}

impl Store {
    /// `instance` as its file holds it.
    pub fn of(instance: &Instance) -> Store {
        Store::with_data(instance, dataset(instance))
    }

    /// The class and UID of `instance` with `data` as the data set.
    pub fn with_data(instance: &Instance, data: Vec<u8>) -> Store {
        Store {
            class: instance.sop_class_uid.clone(),
            uid: instance.sop_instance_uid.clone(),
            data,
        }
    }

    /// Sends it on the first accepted context for its class; returns the response.
    pub fn send(&self, scu: &mut Scu) -> io::Result<scu::Response> {
        scu.store(&self.class, &self.uid, &self.data)
    }

    /// The C-STORE-RQ (Message ID `id`) and the first half of the data set, not marked last:
    /// the server is left in the middle of receiving it.
    pub fn send_half(&self, scu: &mut Scu, context: u8, id: u16) {
        scu.send_command(context, &scu::store_rq(id, &self.class, &self.uid))
            .unwrap();
        scu.send_data(context, &self.data[..self.data.len() / 2], false)
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Associations

/// Runs `f` on the blocking pool on a fresh association (`TESTSCU` → `ORTHWEB`) proposing
/// `contexts`, then releases it.
pub async fn on_association<T: Send + 'static>(
    port: u16,
    contexts: Contexts,
    f: impl FnOnce(&mut Scu) -> T + Send + 'static,
) -> T {
    blocking(move || {
        let mut scu =
            Scu::connect(port, "TESTSCU", "ORTHWEB", contexts).expect("association accepted");
        let value = f(&mut scu);
        scu.release().expect("release");
        value
    })
    .await
}

/// Verification + CT Image Storage (Explicit VR LE), as [`Scu::connect_default`] proposes.
pub const DEFAULT_CONTEXTS: Contexts = &[
    (scu::VERIFICATION, &[scu::IMPLICIT_LE]),
    (scu::CT_IMAGE_STORAGE, &[scu::EXPLICIT_LE]),
];

/// [`on_association`] with [`DEFAULT_CONTEXTS`].
pub async fn on_default_association<T: Send + 'static>(
    port: u16,
    f: impl FnOnce(&mut Scu) -> T + Send + 'static,
) -> T {
    on_association(port, DEFAULT_CONTEXTS, f).await
}

/// The association still works after whatever went wrong on it: C-ECHO is answered with 0000.
pub fn assert_usable(scu: &mut Scu) {
    assert_eq!(
        scu.echo().unwrap().status,
        SUCCESS,
        "association still usable"
    );
}
