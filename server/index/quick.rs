//! Reads on SQLite through rusqlite, on the caller's thread: an instance's file row for every
//! download, resources by ID, and short listings. sqlx runs each SQLite connection on a thread
//! of its own, so a query through it is a hand-off there and back, and a ping on the
//! connection's return to the pool another: about 70 µs of a 330 µs keep-alive download here,
//! where the read itself takes a few. rusqlite over the same SQLite library reads the row in
//! place. Only short reads run on the caller's thread: lookups by primary key (a few pages of a
//! B-tree, in the page cache on a serving machine) and listings that end within a few dozen
//! rows; a longer one goes to the blocking pool, one hop there and back instead of one per
//! row. A reader that meets a lock (WAL recovery, a checkpoint) gives up at once and the
//! caller asks sqlx instead, which waits on its own thread.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::read::{Columns, STORED_FILE, decode_resource, decode_stored_file};
use super::{Level, Resource, StoredFile};

impl Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, column: &str) -> rusqlite::Result<Option<String>> {
        self.get(column)
    }
    fn int(&self, column: &str) -> rusqlite::Result<i64> {
        self.get(column)
    }
}

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
                .query_row([id], |row| decode_stored_file(row))
                .optional()
        })
    }

    /// The resources of `level` that `sql` selects (`read.rs`'s resource columns), with `$1`
    /// bound to `id` when given; `None` once more than `budget` rows come (the caller reads
    /// them elsewhere).
    pub(super) fn resources(
        &self,
        level: Level,
        sql: &str,
        id: Option<&str>,
        budget: usize,
    ) -> rusqlite::Result<Option<Vec<Resource>>> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(sql)?;
            let mut rows = match id {
                Some(id) => statement.query([id])?,
                None => statement.query(())?,
            };
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                if found.len() == budget {
                    return Ok(None);
                }
                found.push(decode_resource(level, row)?);
            }
            Ok(Some(found))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::OverwritePolicy;
    use crate::index::batch::tests::instance;
    use crate::index::{Index, Level};

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

        // Resources: by ID, every level listed, below and above an instance, all as sqlx
        // reads them (the in-place path is taken: `quick` answers the same SQL).
        let same = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        };
        for level in [Level::Patient, Level::Study, Level::Series, Level::Instance] {
            let listed = index.list_resources(level, 0, None).await.unwrap();
            assert!(!listed.is_empty(), "{level:?}");
            same(
                &listed,
                &through_sqlx.list_resources(level, 0, None).await.unwrap(),
            );
            let sql = format!(
                "{} ORDER BY r.id",
                crate::index::read::select_resource(level)
            );
            same(
                &listed,
                &quick.resources(level, &sql, None, 9).unwrap().unwrap(),
            );
            // Over the budget: no answer here, the whole list elsewhere.
            assert!(quick.resources(level, &sql, None, 0).unwrap().is_none());
            let one = index.resource(level, &listed[0].id).await.unwrap();
            assert!(one.is_some());
            same(
                &one,
                &through_sqlx.resource(level, &listed[0].id).await.unwrap(),
            );
        }
        assert!(
            index
                .resource(Level::Study, "nope")
                .await
                .unwrap()
                .is_none()
        );
        let study = &index.list_resources(Level::Study, 0, None).await.unwrap()[0];
        let below = index
            .descendants(Level::Study, &study.id, Level::Instance)
            .await
            .unwrap();
        assert_eq!(below.len(), 3);
        same(
            &below,
            &through_sqlx
                .descendants(Level::Study, &study.id, Level::Instance)
                .await
                .unwrap(),
        );
        let above = index
            .ancestor(Level::Instance, &below[0].id, Level::Study)
            .await
            .unwrap();
        assert_eq!(above.as_ref().map(|s| &s.id), Some(&study.id));
    }
}
