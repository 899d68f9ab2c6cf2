//! Spooling an incoming instance to a local part-10 file while it arrives.
//!
//! The file is preamble + `DICM` + a meta group built from what the sender told us + the
//! data-set bytes exactly as received. Memory use is one write buffer, whatever the size.

use std::path::Path;

use dicom_object::meta::FileMetaTableBuilder;
use sha2::{Digest, Sha256};
use tempfile::TempPath;

/// Our implementation class UID (a 2.25 UUID-derived root) and version name, written in the
/// meta group of every file we create.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.226488917438066215131463410127935117322";
pub const IMPLEMENTATION_VERSION_NAME: &str = "ORTHWEB_0_1";

/// What the file meta group records about an incoming instance.
#[derive(Debug, Clone)]
pub struct Part10Header {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// Calling AE title of the sender, if it came over DICOM.
    pub source_aet: Option<String>,
}

impl Part10Header {
    /// The start of the file: preamble, `DICM` and the file meta group.
    pub fn head(&self) -> std::io::Result<Vec<u8>> {
        let meta = build_meta(self)?;
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM");
        meta.write(&mut head).map_err(std::io::Error::other)?;
        Ok(head)
    }
}

/// Bytes gathered before a write to the file (and a writeback kick); larger pieces are
/// written at once.
const CHUNK: usize = 256 * 1024;
/// Pieces at least this large skip the buffer.
const DIRECT: usize = 32 * 1024;

/// A part-10 file being written. Dropping it removes the file.
pub struct Spool {
    file: std::fs::File,
    buffer: Vec<u8>,
    path: TempPath,
    hasher: Sha256,
    size: u64,
}

/// A spooled file, complete on disk.
pub struct SpooledFile {
    pub path: TempPath,
    pub size: u64,
    pub sha256: String,
}

impl Spool {
    /// Creates the file in `dir` and writes its header.
    pub async fn create(dir: &Path, header: &Part10Header) -> std::io::Result<Spool> {
        Self::create_raw(dir, &header.head()?).await
    }

    /// Creates the file in `dir`, starting with `head` as is.
    pub async fn create_raw(dir: &Path, head: &[u8]) -> std::io::Result<Spool> {
        let dir = dir.to_path_buf();
        let named = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("in-")
                .suffix(".dcm")
                .tempfile_in(dir)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (file, path) = named.into_parts();
        let mut spool = Spool {
            file,
            buffer: Vec::with_capacity(CHUNK),
            path,
            hasher: Sha256::new(),
            size: 0,
        };
        spool.write(head).await?;
        Ok(spool)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        if bytes.len() < DIRECT && self.buffer.len() + bytes.len() < CHUNK {
            self.buffer.extend_from_slice(bytes);
            self.size += bytes.len() as u64;
            return Ok(());
        }
        // A large piece (a PDV of a big PDU) is written as it is, not copied into the buffer.
        self.flush_buffer()?;
        write_out(&mut self.file, bytes, self.size)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn flush_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let start = self.size - self.buffer.len() as u64;
        write_out(&mut self.file, &self.buffer, start)?;
        self.buffer.clear();
        Ok(())
    }

    /// Writes what is left and closes the file (without fsync: the blob store decides about
    /// durability).
    pub async fn finish(mut self) -> std::io::Result<SpooledFile> {
        self.flush_buffer()?;
        Ok(SpooledFile {
            path: self.path,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

/// Writes `bytes` (which start at offset `start` of the file) and asks the kernel to start
/// writing them back to disk now, while the rest of the instance arrives: the fsync before the
/// acknowledgement then has little left to do. Writes to the page cache are short, but may stall
/// under writeback pressure, so they run with `block_in_place` rather than on a worker the
/// runtime counts on.
fn write_out(file: &mut std::fs::File, bytes: &[u8], start: u64) -> std::io::Result<()> {
    use std::io::Write;
    tokio::task::block_in_place(|| {
        file.write_all(bytes)?;
        start_writeback(file, start, bytes.len() as u64);
        Ok(())
    })
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writeback of a range without waiting.
/// A hint only: if it fails, the fsync later does all the work. (Written against libc: no
/// maintained crate wraps it.)
fn start_writeback(file: &std::fs::File, start: u64, length: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; the call touches no memory
    // of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            start as libc::off64_t,
            length as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

fn build_meta(header: &Part10Header) -> std::io::Result<dicom_object::FileMetaTable> {
    let mut builder = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(header.sop_class_uid.trim_end_matches(['\0', ' ']))
        .media_storage_sop_instance_uid(header.sop_instance_uid.trim_end_matches(['\0', ' ']))
        .transfer_syntax(header.transfer_syntax_uid.trim_end_matches(['\0', ' ']))
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
    if let Some(aet) = header
        .source_aet
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        builder = builder.source_application_entity_title(aet);
    }
    builder.build().map_err(std::io::Error::other)
}
