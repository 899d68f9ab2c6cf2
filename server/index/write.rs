//! The write path of the index, with group commit: callers hand their instance to one task,
//! which writes everything waiting in a single transaction. With many associations storing at
//! once, one commit (one fsync) then serves many instances; with one, it costs nothing extra.
//! An instance may come before its file is durable: its rows are written while the file's
//! fsync or upload runs, and the transaction commits only once every file of the batch is
//! stored.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::batch;
use super::login::{Pool, SecretLogin};
use super::{Backend, IndexError, NewInstance, StoreOutcome};
use crate::config::OverwritePolicy;

/// Most instances committed together.
const MAX_BATCH: usize = 64;

struct Job {
    new: NewInstance,
    policy: OverwritePolicy,
    stored: Stored,
    reply: oneshot::Sender<Result<StoreOutcome, IndexError>>,
}

/// Whether a job's file is durable.
enum Stored {
    Yes,
    No,
    /// Not known yet: the sender says `true` once it is.
    Pending(oneshot::Receiver<bool>),
}

impl Stored {
    /// Waits for the answer (once; it is kept for a retry).
    async fn wait(&mut self) -> bool {
        if let Stored::Pending(answer) = self {
            *self = match answer.await {
                Ok(true) => Stored::Yes,
                _ => Stored::No,
            };
        }
        matches!(self, Stored::Yes)
    }
}

/// What the commit task writes through.
pub(super) enum Writer {
    /// The pool of SQLite's one writer connection.
    Sqlite(AnyPool),
    /// Where to connect to PostgreSQL, and the secret its login follows, if any.
    Postgres(AnyConnectOptions, Option<Arc<SecretLogin>>),
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the commit task on a thread of its own with its own runtime, where each of its
    /// statements' answers is picked up at once rather than after whatever the busy main
    /// runtime's workers have queued (under load that waiting, not the database, was most of a
    /// batch's time). SQLite's writer connection is a thread of its own already, reached by
    /// channels, so `Writer::Sqlite` is the pool; PostgreSQL's connections are sockets, which
    /// belong to the runtime that opens them, so that pool is opened on the commit thread.
    pub(super) fn start(writer: Writer) -> Committer {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name("index-commit".into())
            .spawn(move || {
                let mut runtime = tokio::runtime::Builder::new_current_thread();
                // SQLite's writer answers through channels, not a socket: with no I/O driver
                // the thread parks on a futex, woken sooner than through epoll.
                runtime.enable_time();
                if matches!(writer, Writer::Postgres(..)) {
                    runtime.enable_io();
                }
                runtime
                    .build()
                    .expect("a current-thread runtime builds")
                    .block_on(async move {
                        let (pool, backend) = match writer {
                            Writer::Sqlite(pool) => (Pool::new(pool, None), Backend::Sqlite),
                            Writer::Postgres(options, login) => (
                                Pool::new(
                                    Backend::Postgres
                                        .writer_pool(AnyPoolOptions::new())
                                        .max_connections(1)
                                        .acquire_timeout(Duration::from_secs(10))
                                        .connect_lazy_with(options),
                                    login,
                                ),
                                Backend::Postgres,
                            ),
                        };
                        commit_loop(pool, backend, queue).await
                    })
            })
            .expect("the index commit thread starts");
        Committer { jobs }
    }

    /// Writes `new`; with `stored`, commits it only once that says its file is durable.
    pub(super) async fn store(
        &self,
        new: NewInstance,
        policy: OverwritePolicy,
        stored: Option<oneshot::Receiver<bool>>,
    ) -> Result<StoreOutcome, IndexError> {
        let (reply, answer) = oneshot::channel();
        let stored = stored.map_or(Stored::Yes, Stored::Pending);
        self.jobs
            .send(Job {
                new,
                policy,
                stored,
                reply,
            })
            .await
            .map_err(|_| IndexError::WriterStopped)?;
        answer.await.map_err(|_| IndexError::WriterStopped)?
    }
}

async fn commit_loop(writer: Pool, backend: Backend, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // One order for every batch of every server, so that two batches on PostgreSQL never
        // wait on each other's rows in opposite orders (a deadlock).
        jobs.sort_by(|a, b| {
            let (a, b) = (&a.new.ids, &b.new.ids);
            (&a.patient, &a.study, &a.series, &a.instance).cmp(&(
                &b.patient,
                &b.study,
                &b.series,
                &b.instance,
            ))
        });
        let started = std::time::Instant::now();
        let result = write_batch(&writer, backend, &mut jobs).await;
        tracing::debug!(
            batch = jobs.len(),
            commit_us = started.elapsed().as_micros() as u64,
            "index commit"
        );
        match result {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) if jobs.len() > 1 || e.may_have_committed() => {
                // Something in the batch failed: retry one by one, so that each caller gets
                // its own answer and one bad row cannot fail the others. After a commit whose
                // answer was lost, the retry finds the rows that did commit as its own
                // (`batch::write`); if it cannot tell, the outcome stays unknown.
                let unknown = e.may_have_committed();
                if unknown {
                    let batch = jobs.len();
                    tracing::warn!(batch, error = %e, "commit outcome unknown: writing again");
                }
                for mut job in jobs {
                    if matches!(job.stored, Stored::No) {
                        let _ = job.reply.send(Err(IndexError::BlobNotStored));
                        continue;
                    }
                    let result = write_batch(&writer, backend, std::slice::from_mut(&mut job))
                        .await
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(|retry| match retry {
                            IndexError::CommitUnknown(_) => retry,
                            other if unknown => IndexError::CommitUnknown(Box::new(other)),
                            other => other,
                        });
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                if let Some(job) = jobs.pop() {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
    }
}

/// Writes `jobs` in one transaction, committed once all their files are durable. If one is
/// not, nothing is committed (the transaction rolls back when dropped).
async fn write_batch(
    writer: &Pool,
    backend: Backend,
    jobs: &mut [Job],
) -> Result<Vec<StoreOutcome>, IndexError> {
    // The rows are read while the answers about the files are awaited: borrowed apart.
    let (batch, stored): (Vec<_>, Vec<_>) = jobs
        .iter_mut()
        .map(|job| ((&job.new, job.policy), &mut job.stored))
        .unzip();
    let mut tx = writer.begin_with(backend.begin_write()).await?;
    let all_stored = async {
        for answer in stored {
            if !answer.wait().await {
                return Err(IndexError::BlobNotStored);
            }
        }
        Ok(())
    };
    let outcomes = batch::write(&mut tx, backend, &batch, all_stored).await?;
    tx.commit().await.map_err(|e| match e {
        // The database answered: the transaction did not commit.
        sqlx::Error::Database(_) => IndexError::Database(e),
        // The connection broke with the COMMIT sent (a server restart, a failover): it may
        // have committed.
        other => IndexError::CommitUnknown(Box::new(IndexError::Database(other))),
    })?;
    Ok(outcomes)
}

/// Queues a blob for removal from the blob store (see the `blob_deletions` table).
pub(super) async fn schedule_blob_deletion(
    tx: &mut Transaction<'static, Any>,
    blob_key: &str,
    at: &str,
) -> Result<(), IndexError> {
    sqlx::query(
        "INSERT INTO blob_deletions (blob_key, requested_at) VALUES ($1, $2)
         ON CONFLICT (blob_key) DO NOTHING",
    )
    .bind(blob_key)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Case folding for case-insensitive matching of person names, done here rather than in SQL
/// because SQLite's `UPPER` only knows ASCII.
pub fn fold_case(value: &str) -> String {
    value.to_uppercase()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::index::Index;
    use crate::index::batch::tests::instance;

    async fn open() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        (dir, index)
    }

    /// Rows of an instance whose file is not durable yet are not committed until it is, and
    /// never if it fails; a failure in a batch leaves the others of the batch stored.
    #[tokio::test]
    async fn rows_commit_only_once_their_file_is_stored() {
        let (_dir, index) = open().await;
        let never = OverwritePolicy::Never;
        let store = |sop: &str| {
            let (stored, answer) = oneshot::channel();
            let index = index.clone();
            let new = instance("P1", "1.1", "1.1.1", sop, "20260101T000000");
            let task =
                tokio::spawn(
                    async move { index.store_instance_once_stored(new, never, answer).await },
                );
            (stored, task)
        };

        let (first_stored, first) = store("1.1.1.1");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(index.statistics().await.unwrap().instances, 0);
        // Queued behind the first, so likely one batch: one file fails, the other is stored.
        let (failed_stored, failed) = store("1.1.1.2");
        let (second_stored, second) = store("1.1.1.3");
        tokio::time::sleep(Duration::from_millis(50)).await;
        failed_stored.send(false).unwrap();
        second_stored.send(true).unwrap();
        first_stored.send(true).unwrap();

        assert_eq!(first.await.unwrap().unwrap(), StoreOutcome::Stored);
        assert!(matches!(
            failed.await.unwrap(),
            Err(IndexError::BlobNotStored)
        ));
        assert_eq!(second.await.unwrap().unwrap(), StoreOutcome::Stored);
        let stats = index.statistics().await.unwrap();
        assert_eq!((stats.patients, stats.instances), (1, 2));

        // A sender that goes away without an answer counts as a failure.
        let (dropped, lost) = store("1.1.1.4");
        drop(dropped);
        assert!(matches!(
            lost.await.unwrap(),
            Err(IndexError::BlobNotStored)
        ));
        assert_eq!(index.statistics().await.unwrap().instances, 2);
    }

    /// A batch that SQLite rolls back on its own leaves the writer usable: once the cause is
    /// gone, the next batches commit without a restart.
    ///
    /// A full disk at COMMIT (the WAL cannot grow) makes SQLite end the transaction itself. A
    /// full disk in the batch's statements does not show it (they run with a statement journal,
    /// so SQLite undoes only the statement), but a trigger's `RAISE(ROLLBACK)` ends the
    /// transaction just as a failed COMMIT does.
    #[tokio::test]
    async fn batches_commit_again_after_sqlite_rolled_one_back() {
        let (_dir, index) = open().await;
        let never = OverwritePolicy::Never;
        let at = "20260101T000000";
        let first = instance("P1", "1.1", "1.1.1", "1.1.1.1", at);
        assert_eq!(
            index.store_instance(first, never).await.unwrap(),
            StoreOutcome::Stored
        );

        sqlx::query(
            "CREATE TRIGGER disk_full BEFORE INSERT ON changes
             BEGIN SELECT RAISE(ROLLBACK, 'database or disk is full'); END",
        )
        .execute(&index.pool.inner)
        .await
        .unwrap();
        let second = instance("P1", "1.1", "1.1.1", "1.1.1.2", at);
        let full = index
            .store_instance(second.clone(), never)
            .await
            .unwrap_err();
        assert!(full.to_string().contains("full"), "{full}");

        sqlx::query("DROP TRIGGER disk_full")
            .execute(&index.pool.inner)
            .await
            .unwrap();
        for new in [second, instance("P1", "1.1", "1.1.1", "1.1.1.3", at)] {
            let stored = index.store_instance(new, never).await;
            assert!(
                matches!(stored, Ok(StoreOutcome::Stored)),
                "a batch after SQLite rolled one back: {stored:?}"
            );
        }
        assert_eq!(index.statistics().await.unwrap().instances, 3);
    }
}
