//! Blob store in a local folder: `<root>/<k0k1k2>/<key>`, moved there by rename from the
//! spool folder, then made durable.
//!
//! The 4096 fan-out folders (keys start with a hex digit triple) are created once, when the
//! store opens: creating them on demand would cost a `mkdir` and two more fsyncs on the path
//! of most acknowledgements while the archive is young. 4096 folders keep each one small (a few
//! thousand files at ten million instances).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{
    BlobPages, BlobReader, BlobStore, BlobStream, ListedBlob, QUARANTINE, STREAM_CHUNK,
    StorageError,
};

pub struct FolderStore {
    root: PathBuf,
    /// Cleared the first time a `RWF_NOWAIT` read is refused as unsupported (tmpfs, for one):
    /// downloads then go straight to the blocking pool.
    nowait: std::sync::atomic::AtomicBool,
}

impl FolderStore {
    pub async fn open(root: &Path) -> Result<Self, StorageError> {
        let root = root.to_path_buf();
        let store_root = root.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&root)?;
            let mut created = false;
            for n in 0..4096 {
                let dir = root.join(format!("{n:03x}"));
                if !dir.is_dir() {
                    std::fs::create_dir(&dir)?;
                    created = true;
                }
            }
            if created {
                sync_dir(&root)?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(FolderStore {
            root: store_root,
            nowait: std::sync::atomic::AtomicBool::new(true),
        })
    }

    pub(super) fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        if !valid_key(key) {
            return Err(StorageError::NotFound(key.into()));
        }
        Ok(self.root.join(&key[0..3]).join(key))
    }
}

/// A folder blob being streamed: the open file, the bytes still to send, the chunk just read.
struct Chunks {
    file: std::fs::File,
    remaining: u64,
    chunk: Option<Bytes>,
}

impl Chunks {
    /// Reads the next chunk (blocking).
    fn next(mut self) -> std::io::Result<Self> {
        use std::io::Read;
        let want = self.remaining.min(STREAM_CHUNK as u64);
        let mut buffer = Vec::with_capacity(want as usize);
        (&mut self.file).take(want).read_to_end(&mut buffer)?;
        if buffer.is_empty() {
            // Shorter than its size said: the client sees a cut body, not a padded one.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob shorter than its size",
            ));
        }
        self.remaining -= buffer.len() as u64;
        self.chunk = Some(Bytes::from(buffer));
        Ok(self)
    }
}

/// An open blob and the part of it to send: `range` (the whole file without one) within its
/// size.
struct Opened {
    file: std::fs::File,
    range: Range<u64>,
}

impl Opened {
    fn open(path: &Path, range: Option<Range<u64>>) -> std::io::Result<Opened> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let range = match range {
            None => 0..size,
            Some(range) => range.start.min(size)..range.end.min(size),
        };
        Ok(Opened { file, range })
    }

    fn length(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// The whole part read from the page cache with `RWF_NOWAIT`, when it is at most one chunk:
    /// `None` when it is larger or when any of it would wait for the disk, `EOPNOTSUPP` where
    /// the file system has no such reads. A cached CT slice is then served on the caller's
    /// thread, with no hand-off between threads, which cost more than the read itself (eight
    /// context switches per download before).
    fn read_cached(&self) -> std::io::Result<Option<Bytes>> {
        let length = self.length();
        if length == 0 || length > STREAM_CHUNK as u64 {
            return Ok(None);
        }
        let mut buffer = vec![0u8; length as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            let read = rustix::io::preadv2(
                &self.file,
                &mut [std::io::IoSliceMut::new(&mut buffer[filled..])],
                self.range.start + filled as u64,
                rustix::io::ReadWriteFlags::NOWAIT,
            );
            match read {
                Ok(0) => return Ok(None),
                Ok(n) => filled += n,
                Err(e) if e == rustix::io::Errno::OPNOTSUPP => return Err(e.into()),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(Bytes::from(buffer)))
    }

    /// Positions the file at the part's start and reads the first chunk (blocking).
    fn into_chunks(mut self) -> std::io::Result<Chunks> {
        use std::io::{Seek, SeekFrom};
        let remaining = self.length();
        self.file.seek(SeekFrom::Start(self.range.start))?;
        let reading = Chunks {
            file: self.file,
            remaining,
            chunk: None,
        };
        if remaining > 0 {
            reading.next()
        } else {
            Ok(reading)
        }
    }
}

/// Keys are file names: no separators, no leading dot, long enough for the fan-out folder.
fn valid_key(key: &str) -> bool {
    key.len() >= 4
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !key.starts_with('.')
}

/// The fan-out folders under `root` (every sub-folder but the quarantine), sorted.
fn fan_out_folders(root: &Path) -> std::io::Result<Vec<String>> {
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && name != QUARANTINE {
            folders.push(name);
        }
    }
    folders.sort();
    Ok(folders)
}

/// The blobs of one fan-out folder: files whose name is a key that belongs there. Anything
/// else is no blob of ours, and is left alone.
fn list_folder(root: &Path, folder: &str) -> std::io::Result<Vec<ListedBlob>> {
    let mut blobs = Vec::new();
    let entries = match std::fs::read_dir(root.join(folder)) {
        Ok(entries) => entries,
        // Removed since the root was read: nothing in it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(blobs),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let key = entry.file_name().to_string_lossy().into_owned();
        if !valid_key(&key) || &key[0..3] != folder {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Deleted between the listing and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            blobs.push(ListedBlob {
                key,
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
    }
    Ok(blobs)
}

/// Runs file-system calls on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)??)
}

/// Renames a spooled file to `target`, making its folder first if need be.
fn move_into_place(local: &Path, target: &Path) -> std::io::Result<()> {
    make_folder(target)?;
    // The spool folder is on the same file system (both live in the data folder), so this is
    // an atomic rename, not a copy.
    std::fs::rename(local, target)
}

/// Makes the folder of `target` if it does not exist yet: only keys that do not start with
/// hex digits need one made here.
fn make_folder(target: &Path) -> std::io::Result<()> {
    let dir = target.parent().expect("blob paths have a parent");
    if !dir.exists() {
        std::fs::create_dir(dir)?;
        sync_dir(dir.parent().expect("fan-out has a parent"))?;
    }
    Ok(())
}

/// fsync of a directory, so that a rename into it survives a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FolderStore {
    async fn place(&self, key: &str, local: &Path) -> Result<Option<PathBuf>, StorageError> {
        let target = self.path_of(key)?;
        let local = local.to_path_buf();
        let placed = target.clone();
        tokio::task::spawn_blocking(move || move_into_place(&local, &target))
            .await
            .map_err(std::io::Error::other)??;
        Ok(Some(placed))
    }

    async fn put_file(&self, key: &str, local: &Path, _size: u64) -> Result<(), StorageError> {
        let target = self.path_of(key)?;
        let local = (local != target).then(|| local.to_path_buf());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(local) = local {
                move_into_place(&local, &target)?;
            }
            // Renamed before the fsync, not after: on ext4 and XFS one journal commit then
            // covers the data, the inode and the new name, and the folder's fsync has
            // nothing left to write. Until the index commits, a file here that a crash left
            // incomplete is only an orphan: nothing points at it.
            std::fs::File::open(&target)?.sync_all()?;
            sync_dir(target.parent().expect("blob paths have a parent"))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(())
    }

    async fn put_pieces(&self, key: &str, pieces: Arc<Vec<Vec<u8>>>) -> Result<(), StorageError> {
        let target = self.path_of(key)?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // Written where it belongs, under a key nothing points at yet: a crash before the
            // index commits leaves an orphan, as a crash after a rename does.
            make_folder(&target)?;
            let mut file = std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&target)?;
            super::write_all_vectored(&mut file, &pieces)?;
            file.sync_all()?;
            sync_dir(target.parent().expect("blob paths have a parent"))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(())
    }

    async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobReader, u64), StorageError> {
        let path = self.path_of(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(key.into()));
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        match range {
            None => Ok((Box::pin(file), size)),
            Some(range) => {
                let mut file = file;
                file.seek(std::io::SeekFrom::Start(range.start)).await?;
                let length = range.end.min(size).saturating_sub(range.start);
                Ok((Box::pin(file.take(length)), length))
            }
        }
    }

    async fn stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobStream, u64), StorageError> {
        use std::sync::atomic::Ordering::Relaxed;
        let path = self.path_of(key)?;
        let not_found = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound(key.into()),
            _ => e.into(),
        };
        // Where reads that do not wait exist, the open and `fstat` run on the caller's thread
        // too: they answer from the kernel's caches for the files served from the page cache,
        // and wait for the disk only on a cold lookup. A blob that is not all cached keeps its
        // open file for the blocking pool.
        let opened = if self.nowait.load(Relaxed) {
            let opened = Opened::open(&path, range.clone()).map_err(not_found)?;
            match opened.read_cached() {
                Ok(Some(bytes)) => {
                    let length = opened.length();
                    return Ok((Box::pin(futures::stream::iter([Ok(bytes)])), length));
                }
                Ok(None) => {}
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    self.nowait.store(false, Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
            Some(opened)
        } else {
            None
        };
        // Opening (unless done), sizing and the first chunk in one blocking-pool hop, then one
        // hop per chunk: tokio's `File` would spend a hop on each of those steps. The file is
        // never read ahead of the client, so a slow one holds no blocking thread while it waits.
        let (first, length) = tokio::task::spawn_blocking(move || {
            let opened = match opened {
                Some(opened) => opened,
                None => Opened::open(&path, range)?,
            };
            let length = opened.length();
            Ok((opened.into_chunks()?, length))
        })
        .await
        .map_err(std::io::Error::other)?
        .map_err(not_found)?;
        let chunks = futures::stream::try_unfold(first, |mut reading| async move {
            if reading.chunk.is_none() {
                if reading.remaining == 0 {
                    return Ok(None);
                }
                reading = tokio::task::spawn_blocking(move || reading.next())
                    .await
                    .map_err(std::io::Error::other)??;
            }
            let chunk = reading.chunk.take().expect("a read chunk");
            Ok(Some((chunk, reading)))
        });
        Ok((Box::pin(chunks), length))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self) -> BlobPages<'_> {
        let root = self.root.clone();
        // The folder names are read once (4096 of them, and any made for keys that do not
        // start with hex digits); each page is then one folder's files.
        futures::stream::unfold(None, move |folders: Option<std::vec::IntoIter<String>>| {
            let root = root.clone();
            async move {
                let mut folders = match folders {
                    Some(folders) => folders,
                    None => {
                        let root = root.clone();
                        match blocking(move || fan_out_folders(&root)).await {
                            Ok(folders) => folders.into_iter(),
                            Err(e) => return Some((Err(e), Some(Vec::new().into_iter()))),
                        }
                    }
                };
                let folder = folders.next()?;
                let page = blocking(move || list_folder(&root, &folder)).await;
                Some((page, Some(folders)))
            }
        })
        .boxed()
    }

    async fn quarantine(&self, key: &str) -> Result<(), StorageError> {
        let from = self.path_of(key)?;
        let dir = self.root.join(QUARANTINE);
        let to = dir.join(key);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            // A rename within the store's file system: the bytes are never copied, and the
            // blob is in one place or the other whatever happens.
            std::fs::rename(&from, &to)?;
            sync_dir(&dir)?;
            sync_dir(from.parent().expect("blob paths have a parent"))
        })
        .await
        .map_err(std::io::Error::other)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound(key.into()),
            _ => e.into(),
        })
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let meta = tokio::fs::metadata(&self.root).await?;
        if !meta.is_dir() {
            return Err(
                std::io::Error::other(format!("{} is not a folder", self.root.display())).into(),
            );
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listings hold the blobs, not what else lies in the folder: quarantined blobs, files in
    /// the wrong fan-out folder, names that are no keys.
    #[tokio::test]
    async fn listings_leave_out_quarantined_and_stray_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let store = FolderStore::open(&root).await.unwrap();
        for key in ["abc1.dcm", "abc2.dcm", "def3.dcm"] {
            let file = dir.path().join("f");
            std::fs::write(&file, key).unwrap();
            store.put_file(key, &file, 8).await.unwrap();
        }
        store.quarantine("abc2.dcm").await.unwrap();
        assert_eq!(
            std::fs::read(root.join(QUARANTINE).join("abc2.dcm")).unwrap(),
            b"abc2.dcm"
        );
        assert!(matches!(
            store.quarantine("abc2.dcm").await,
            Err(StorageError::NotFound(_))
        ));
        std::fs::write(root.join("abc").join("fff9.dcm"), b"misplaced").unwrap();
        std::fs::write(root.join("abc").join(".hidden"), b"no key").unwrap();

        let mut listed = Vec::new();
        let mut pages = store.list();
        while let Some(page) = pages.next().await {
            listed.extend(page.unwrap().into_iter().map(|b| (b.key, b.size)));
        }
        listed.sort();
        assert_eq!(
            listed,
            [("abc1.dcm".to_string(), 8), ("def3.dcm".to_string(), 8)]
        );
    }

    /// Whole blobs and ranges stream the file's bytes, from the page cache on the caller's
    /// thread (a blob of one chunk, just written) or through the blocking pool (larger).
    #[tokio::test]
    async fn streams_match_the_file_on_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::open(&dir.path().join("blobs")).await.unwrap();
        let small: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let large: Vec<u8> = (0..(STREAM_CHUNK as u32 * 5 / 2))
            .map(|i| (i % 241) as u8)
            .collect();
        for (key, bytes) in [("abc1.dcm", &small), ("abc2.dcm", &large)] {
            let file = dir.path().join("f");
            std::fs::write(&file, bytes).unwrap();
            store
                .put_file(key, &file, bytes.len() as u64)
                .await
                .unwrap();
            let opened = Opened::open(&store.path_of(key).unwrap(), None).unwrap();
            // Only the one-chunk blob is served from the page cache, where the file system
            // has reads that do not wait (tmpfs has none: every blob takes the other path).
            match opened.read_cached() {
                Ok(cached) => assert_eq!(cached.is_some(), bytes.len() <= STREAM_CHUNK, "{key}"),
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{key}"),
            }
            let n = bytes.len() as u64;
            for range in [
                None,
                Some(0..1),
                Some(5..n - 3),
                Some(n - 1..n),
                Some(3..n + 9),
            ] {
                let (chunks, length) = store.stream(key, range.clone()).await.unwrap();
                let got: Vec<Bytes> = chunks.map(|c| c.unwrap()).collect().await;
                let got = got.concat();
                let want = match &range {
                    None => &bytes[..],
                    Some(r) => &bytes[r.start as usize..(r.end.min(n)) as usize],
                };
                assert_eq!(length, want.len() as u64, "{key} {range:?}");
                assert!(got == want, "{key} {range:?}");
            }
        }
        assert!(matches!(
            store.stream("abc3.dcm", None).await,
            Err(StorageError::NotFound(_))
        ));
    }
}
