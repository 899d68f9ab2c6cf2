//! Spooling an incoming instance to a local part-10 file while it arrives.
//!
//! The file is preamble + `DICM` + a meta group built from what the sender told us + the
//! data-set bytes exactly as received. Memory use is at most one write batch (about a MiB),
//! whatever the size.

use std::path::Path;
use std::sync::Arc;

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

/// Bytes gathered before they are written to the file (and writeback is kicked). Writes leave
/// the runtime's worker (`block_in_place`, which hands its queue to another thread), so they
/// are few: a 512 KB instance is one write, not one per PDU.
const CHUNK: usize = 1024 * 1024;
/// Pieces at least this large are kept as they are rather than copied into a scratch buffer.
const DIRECT: usize = 32 * 1024;

/// First capacity of a scratch buffer (it grows as needed).
const SCRATCH: usize = 128 * 1024;

/// A part-10 file being written. Dropping it removes the file.
pub struct Spool {
    dir: std::path::PathBuf,
    /// Created with the first write to disk, on the thread that writes: an instance smaller
    /// than a write batch costs one hand-off to a blocking thread, not two.
    file: Option<(std::fs::File, TempPath)>,
    /// Pieces not yet written, in order; `pending_len` bytes in all.
    pending: Vec<Vec<u8>>,
    pending_len: usize,
    /// Whether the last pending piece is a scratch buffer that small pieces may extend.
    last_is_scratch: bool,
    hasher: Sha256,
    size: u64,
}

/// A spooled instance, complete.
pub struct SpooledFile {
    pub body: Body,
    pub size: u64,
    pub sha256: String,
}

/// Where a spooled instance's bytes are.
pub enum Body {
    /// On disk, at a temporary path.
    File(TempPath),
    /// Still in memory, in pieces: an instance smaller than one write batch is never written
    /// to the spool; the blob store writes it where it belongs, and it is inspected from here.
    Memory(Arc<Vec<Vec<u8>>>),
}

impl Spool {
    /// Starts the file in `dir` with its header (created on disk with the first write).
    pub async fn create(dir: &Path, header: &Part10Header) -> std::io::Result<Spool> {
        Self::create_raw(dir, &header.head()?).await
    }

    /// Starts a file in `dir`, starting with `head` as is.
    pub async fn create_raw(dir: &Path, head: &[u8]) -> std::io::Result<Spool> {
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            file: None,
            pending: Vec::new(),
            pending_len: 0,
            last_is_scratch: false,
            hasher: Sha256::new(),
            size: 0,
        };
        spool.write(head).await?;
        Ok(spool)
    }

    /// Appends `bytes` (copied).
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.push(bytes)
    }

    /// Appends `bytes`, taking the buffer as it is (a PDV's data): no copy.
    pub async fn write_owned(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        if bytes.len() < DIRECT {
            return self.push(&bytes);
        }
        self.take(bytes)
    }

    /// Keeps a large piece as its own buffer.
    fn take(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.hasher.update(&bytes);
        let length = bytes.len();
        self.pending.push(bytes);
        self.last_is_scratch = false;
        self.added(length)
    }

    /// Copies a piece, small ones into the scratch buffer.
    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.len() >= DIRECT {
            return self.take(bytes.to_vec());
        }
        self.hasher.update(bytes);
        match self.pending.last_mut() {
            Some(scratch) if self.last_is_scratch => scratch.extend_from_slice(bytes),
            _ => {
                let mut scratch = Vec::with_capacity(SCRATCH);
                scratch.extend_from_slice(bytes);
                self.pending.push(scratch);
                self.last_is_scratch = true;
            }
        }
        self.added(bytes.len())
    }

    fn added(&mut self, length: usize) -> std::io::Result<()> {
        self.pending_len += length;
        self.size += length as u64;
        if self.pending_len >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending_len == 0 {
            return Ok(());
        }
        let start = self.size - self.pending_len as u64;
        let (dir, file) = (&self.dir, &mut self.file);
        write_out(dir, file, &self.pending, start, self.pending_len)?;
        self.pending.clear();
        self.pending_len = 0;
        self.last_is_scratch = false;
        Ok(())
    }

    /// Writes what is left and closes the file (without fsync: the blob store decides about
    /// durability); an instance that never filled a write batch stays in memory.
    pub async fn finish(mut self) -> std::io::Result<SpooledFile> {
        let body = if self.file.is_none() {
            Body::Memory(Arc::new(std::mem::take(&mut self.pending)))
        } else {
            self.flush()?;
            let (_, path) = self.file.take().expect("checked above");
            Body::File(path)
        };
        Ok(SpooledFile {
            body,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

/// Writes `pieces` (`length` bytes, which start at offset `start` of the file) in as few
/// system calls as the kernel takes, and asks the kernel to start writing them back to disk
/// now, while the rest of the instance arrives: the fsync before the acknowledgement then has
/// little left to do. Writes to the page cache are short, but may stall under writeback
/// pressure, so they run with `block_in_place` rather than on a worker the runtime counts on.
/// The file is created first if it does not exist yet.
fn write_out(
    dir: &Path,
    file: &mut Option<(std::fs::File, TempPath)>,
    pieces: &[Vec<u8>],
    start: u64,
    length: usize,
) -> std::io::Result<()> {
    tokio::task::block_in_place(|| {
        let (file, _) = match file {
            Some(open) => open,
            None => file.insert(
                tempfile::Builder::new()
                    .prefix("in-")
                    .suffix(".dcm")
                    .tempfile_in(dir)?
                    .into_parts(),
            ),
        };
        crate::storage::write_all_vectored(file, pieces)?;
        start_writeback(file, start, length as u64);
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
