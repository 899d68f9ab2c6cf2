//! Point reads on SQLite answered on the caller's thread: an instance's file row for every
//! download. sqlx runs each SQLite connection on a thread of its own, so a query through it is
//! a hand-off there and back, and a ping on the connection's return to the pool another: about
//! 70 µs of a 330 µs keep-alive download here, where the read itself takes a few. rusqlite
//! over the same SQLite library reads the row in place. Only lookups by primary key come this
//! way (a few pages of a B-tree, in the page cache on a serving machine); anything that scans
//! stays on sqlx. A reader that meets a lock (WAL recovery, a checkpoint) gives up at once and
//! the caller asks sqlx instead, which waits on its own thread.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::StoredFile;
use super::read::STORED_FILE;

/// How many idle connections are kept; more are opened while more requests read at once.
const KEEP: usize = 8;

pub(super) struct QuickReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl QuickReads {
    /// Reads the SQLite database at `path` (already created and migrated by sqlx).
    pub(super) fn new(path: PathBuf) -> Self {
        QuickReads {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Never writes; never waits for a lock (the caller falls back to sqlx); shares the
        // page cache through a memory map as sqlx's connections do.
        connection.execute_batch(
            "PRAGMA query_only = ON; PRAGMA busy_timeout = 0; PRAGMA mmap_size = 268435456;",
        )?;
        Ok(connection)
    }

    /// Runs `read` on an idle connection (or a new one), and keeps it for the next caller.
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match taken {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < KEEP {
            idle.push(connection);
        }
        result
    }

    /// The file row of instance `id`.
    pub(super) fn stored_file(&self, id: &str) -> rusqlite::Result<Option<StoredFile>> {
        self.with(|connection| {
            connection
                .prepare_cached(STORED_FILE)?
                .query_row([id], |row| {
                    Ok(StoredFile {
                        blob_key: row.get(0)?,
                        size: row.get::<_, i64>(1)?.max(0) as u64,
                        sha256: row.get(2)?,
                        transfer_syntax_uid: row.get(3)?,
                        has_pixel_data: row.get::<_, i64>(4)? != 0,
                    })
                })
                .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::OverwritePolicy;
    use crate::index::Index;
    use crate::index::batch::tests::instance;

    /// The row read in place is the one sqlx reads, a committed write is seen by the next
    /// read, and an unknown ID is `None`.
    #[tokio::test]
    async fn reads_in_place_what_sqlx_reads() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let through_sqlx = Index {
            quick: None,
            ..index.clone()
        };
        let quick = index.quick.clone().expect("SQLite reads in place");
        for n in 0..3 {
            let new = instance(
                "P",
                "1.2",
                "1.2.3",
                &format!("1.2.3.{n}"),
                "20260101T000000",
            );
            let (id, key) = (new.ids.instance.clone(), new.blob_key.clone());
            assert!(quick.stored_file(&id).unwrap().is_none());
            index
                .store_instance(new, OverwritePolicy::Never)
                .await
                .unwrap();
            let read = quick.stored_file(&id).unwrap().expect("committed row");
            let expected = through_sqlx.stored_file(&id).await.unwrap().unwrap();
            assert_eq!(format!("{read:?}"), format!("{expected:?}"));
            assert_eq!(read.blob_key, key);
        }
        assert!(index.stored_file("no-such-id").await.unwrap().is_none());
    }
}
