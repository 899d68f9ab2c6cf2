//! The write path of the index, with group commit: callers hand their instance to one task,
//! which writes everything waiting in a single transaction. With many associations storing at
//! once, one commit (one fsync) then serves many instances; with one, it costs nothing extra.

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::batch;
use super::{Backend, IndexError, NewInstance, StoreOutcome};
use crate::config::OverwritePolicy;

/// Most instances committed together.
const MAX_BATCH: usize = 64;

struct Job {
    new: NewInstance,
    policy: OverwritePolicy,
    reply: oneshot::Sender<Result<StoreOutcome, IndexError>>,
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the commit task on the current runtime.
    pub(super) fn start(writer: AnyPool, backend: Backend) -> Committer {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        match backend {
            // SQLite's connection is a thread of its own, reached by channels: the loop can
            // run on a thread of its own too, where each of its statements' answers is picked
            // up at once rather than after whatever the busy runtime's workers have queued
            // (under load that waiting, not SQLite, was most of a batch's time).
            Backend::Sqlite => {
                std::thread::Builder::new()
                    .name("index-commit".into())
                    .spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_time()
                            .build()
                            .expect("a current-thread runtime builds")
                            .block_on(commit_loop(writer, backend, queue))
                    })
                    .expect("the index commit thread starts");
            }
            // PostgreSQL's connections are sockets of the main runtime.
            Backend::Postgres => {
                tokio::spawn(commit_loop(writer, backend, queue));
            }
        }
        Committer { jobs }
    }

    pub(super) async fn store(
        &self,
        new: NewInstance,
        policy: OverwritePolicy,
    ) -> Result<StoreOutcome, IndexError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { new, policy, reply })
            .await
            .map_err(|_| IndexError::WriterStopped)?;
        answer.await.map_err(|_| IndexError::WriterStopped)?
    }
}

async fn commit_loop(writer: AnyPool, backend: Backend, mut queue: mpsc::Receiver<Job>) {
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
        let result = write_batch(&writer, backend, &jobs).await;
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
            Err(_) if jobs.len() > 1 => {
                // Something in the batch failed: retry one by one, so that each caller gets
                // its own answer and one bad row cannot fail the others.
                for job in jobs {
                    let result = write_batch(&writer, backend, std::slice::from_ref(&job))
                        .await
                        .map(|mut outcomes| outcomes.remove(0));
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

async fn write_batch(
    writer: &AnyPool,
    backend: Backend,
    jobs: &[Job],
) -> Result<Vec<StoreOutcome>, IndexError> {
    let mut tx = writer.begin_with(backend.begin_write()).await?;
    let batch: Vec<_> = jobs.iter().map(|job| (&job.new, job.policy)).collect();
    let outcomes = batch::write(&mut tx, backend, &batch).await?;
    tx.commit().await?;
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
