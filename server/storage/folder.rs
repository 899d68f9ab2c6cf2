//! Blob store in a local folder: `<root>/<k0k1k2>/<key>`, moved there by rename from the
//! spool folder, then made durable.
//!
//! The 4096 fan-out folders (keys start with a hex digit triple) are created once, when the
//! store opens: creating them on demand would cost a `mkdir` and two more fsyncs on the path
//! of most acknowledgements while the archive is young. 4096 folders keep each one small (a few
//! thousand files at ten million instances).

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{BlobReader, BlobStore, StorageError};

pub struct FolderStore {
    root: PathBuf,
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
        Ok(FolderStore { root: store_root })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        let valid = key.len() >= 4
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && !key.starts_with('.');
        if !valid {
            return Err(StorageError::NotFound(key.into()));
        }
        Ok(self.root.join(&key[0..3]).join(key))
    }
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
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = target.parent().expect("blob paths have a parent");
            // Only keys that do not start with hex digits need a folder made here.
            if !dir.exists() {
                std::fs::create_dir(dir)?;
                sync_dir(dir.parent().expect("fan-out has a parent"))?;
            }
            // The spool folder is on the same file system (both live in the data folder),
            // so this is an atomic rename, not a copy.
            std::fs::rename(&local, &target)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Some(placed))
    }

    async fn put_file(&self, key: &str, local: &Path, _size: u64) -> Result<(), StorageError> {
        let target = self.path_of(key)?;
        if local != target {
            self.place(key, local).await?;
        }
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
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

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
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
