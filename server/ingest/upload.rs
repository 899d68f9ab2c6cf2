//! Ingesting whole part-10 files that arrive as a byte stream (an HTTP upload, a file on disk)
//! or inside a ZIP. The file is kept exactly as given, meta group included.

use std::io::{Read, Seek};
use std::path::Path;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::{Ingest, IngestError, InspectError, Received, Spool};

/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

/// What the first bytes of an upload say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A part-10 file (`DICM` after the 128-byte preamble).
    Part10,
    /// A ZIP archive.
    Zip,
    Unknown,
}

/// Recognises a part-10 file or a ZIP from its first 132 bytes (or fewer, for short input).
pub fn sniff(head: &[u8]) -> Kind {
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        Kind::Part10
    } else if head.starts_with(b"PK\x03\x04") {
        Kind::Zip
    } else {
        Kind::Unknown
    }
}

/// One file of a ZIP and what became of it.
#[derive(Debug)]
pub struct EntryOutcome {
    pub name: String,
    pub result: Result<Received, IngestError>,
}

/// What the ZIP reader thread hands to the ingest side.
pub(crate) enum ZipEvent {
    Start(String),
    Data(Bytes),
    End,
    /// The entry or the archive is unreadable; the message says why.
    Broken(String),
}

impl Ingest {
    /// Ingests one part-10 file: `head` (bytes already read) followed by the rest of
    /// `reader`. Refuses files over `max_size` bytes before anything is stored.
    pub async fn ingest_part10<R: AsyncRead + Unpin>(
        &self,
        head: &[u8],
        reader: R,
        max_size: u64,
    ) -> Result<Received, IngestError> {
        self.ingest_part10_in_study(head, reader, max_size, None)
            .await
    }

    /// Like `ingest_part10`, refusing an instance of another study than `study`.
    pub async fn ingest_part10_in_study<R: AsyncRead + Unpin>(
        &self,
        head: &[u8],
        mut reader: R,
        max_size: u64,
        study: Option<&str>,
    ) -> Result<Received, IngestError> {
        let mut spool = Spool::create_raw(&self.spool_dir, head)
            .await
            .map_err(IngestError::Spool)?;
        let mut total = head.len() as u64;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .map_err(IngestError::Upload)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > max_size {
                return Err(IngestError::TooLarge(max_size));
            }
            spool
                .write(&buffer[..n])
                .await
                .map_err(IngestError::Spool)?;
        }
        self.finish_in_study(spool, None, "", study).await
    }

    /// Ingests every file of the ZIP at `path`, in order. Entries over `max_size` bytes
    /// (uncompressed) are refused. Folders are skipped.
    pub async fn ingest_zip(&self, path: &Path, max_size: u64) -> Vec<EntryOutcome> {
        let (events, mut queue) = mpsc::channel(4);
        let path = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || read_zip(&path, max_size, &events));
        let mut outcomes = Vec::new();
        let mut current: Option<(String, Spool)> = None;
        while let Some(event) = queue.recv().await {
            match event {
                ZipEvent::Start(name) => match Spool::create_raw(&self.spool_dir, &[]).await {
                    Ok(spool) => current = Some((name, spool)),
                    Err(e) => outcomes.push(EntryOutcome {
                        name,
                        result: Err(IngestError::Spool(e)),
                    }),
                },
                ZipEvent::Data(bytes) => {
                    if let Some((name, spool)) = current.as_mut()
                        && let Err(e) = spool.write(&bytes).await
                    {
                        let name = std::mem::take(name);
                        current = None;
                        outcomes.push(EntryOutcome {
                            name,
                            result: Err(IngestError::Spool(e)),
                        });
                    }
                }
                ZipEvent::End => {
                    if let Some((name, spool)) = current.take() {
                        let result = self.finish(spool, None, "").await;
                        outcomes.push(EntryOutcome { name, result });
                    }
                }
                ZipEvent::Broken(message) => {
                    let name = current.take().map(|(name, _)| name).unwrap_or_default();
                    outcomes.push(EntryOutcome {
                        name,
                        result: Err(IngestError::Invalid(InspectError::Malformed(message))),
                    });
                }
            }
        }
        if let Err(e) = reader.await {
            tracing::error!(error = %e, "the ZIP reader failed");
        }
        outcomes
    }
}

/// Reads the ZIP at `path` entry by entry into `events` (on a blocking thread).
fn read_zip(path: &Path, max_size: u64, events: &mpsc::Sender<ZipEvent>) {
    let send = |event| events.blocking_send(event).is_ok();
    match std::fs::File::open(path) {
        Ok(file) => walk_zip(file, max_size, send),
        Err(e) => {
            send(ZipEvent::Broken(format!("not a readable ZIP: {e}")));
        }
    }
}

/// Reads a ZIP entry by entry, handing each event to `send`, which says whether to go on.
/// Apart from the file it reads, this is `read_zip`; the fuzz target calls it on bytes.
pub(crate) fn walk_zip<R: Read + Seek>(
    reader: R,
    max_size: u64,
    mut send: impl FnMut(ZipEvent) -> bool,
) {
    let mut archive = match zip::ZipArchive::new(reader) {
        Ok(archive) => archive,
        Err(e) => {
            send(ZipEvent::Broken(format!("not a readable ZIP: {e}")));
            return;
        }
    };
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(entry) => entry,
            Err(e) => {
                if !send(ZipEvent::Broken(format!("entry {i} is unreadable: {e}"))) {
                    return;
                }
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| format!("entry {i}"));
        if !send(ZipEvent::Start(name)) {
            return;
        }
        let mut total = 0u64;
        let mut buffer = vec![0u8; CHUNK];
        let ended = loop {
            match entry.read(&mut buffer) {
                Ok(0) => break send(ZipEvent::End),
                Ok(n) => {
                    total += n as u64;
                    if total > max_size {
                        break send(ZipEvent::Broken(format!(
                            "the entry is larger than the {max_size}-byte limit"
                        )));
                    }
                    if !send(ZipEvent::Data(Bytes::copy_from_slice(&buffer[..n]))) {
                        return;
                    }
                }
                Err(e) => break send(ZipEvent::Broken(format!("the entry is unreadable: {e}"))),
            }
        };
        if !ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_recognised_by_their_magic() {
        let mut part10 = vec![0u8; 128];
        part10.extend_from_slice(b"DICM");
        assert_eq!(sniff(&part10), Kind::Part10);
        assert_eq!(sniff(b"PK\x03\x04rest"), Kind::Zip);
        assert_eq!(sniff(b"hello"), Kind::Unknown);
        assert_eq!(sniff(&[]), Kind::Unknown);
    }
}
