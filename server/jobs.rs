//! Long operations run in the background — sending to a peer, retrieving from one — with their
//! progress for `GET /jobs/{id}` in Orthanc's shape. They live in this process's memory: a
//! restart forgets them, and each replica knows only its own (as in Orthanc).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::watch;

/// Finished jobs kept for `GET /jobs`; older ones are forgotten.
const HISTORY: usize = 100;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Running,
    Success,
    Failure,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Running => "Running",
            State::Success => "Success",
            State::Failure => "Failure",
        }
    }

    fn finished(self) -> bool {
        matches!(self, State::Success | State::Failure)
    }
}

struct Progress {
    state: State,
    /// 0 to 100.
    percent: u8,
    content: Value,
    error: Option<String>,
    started: Option<std::time::Instant>,
    runtime_secs: f64,
    completed_at: Option<String>,
}

/// One job.
pub struct Job {
    pub id: String,
    kind: &'static str,
    created_at: String,
    progress: Mutex<Progress>,
    cancel: AtomicBool,
    done: watch::Sender<bool>,
}

/// What a job's work reports at its end: its content, and an error if it failed.
pub type Outcome = (Value, Option<String>);

impl Job {
    /// Records progress: `done` of `total` steps, and the content so far.
    pub fn advance(&self, done: usize, total: usize, content: Value) {
        let mut p = self.lock();
        p.percent = match total {
            0 => 100,
            _ => ((done * 100) / total).min(100) as u8,
        };
        p.content = content;
    }

    /// Whether someone asked for the job to stop (it stops at its next step).
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Waits for the end; returns the final state.
    pub async fn finished(&self) -> State {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
        self.state()
    }

    /// Orthanc's job JSON.
    pub fn to_json(&self) -> Value {
        let p = self.lock();
        let runtime = match p.started {
            Some(started) if !p.state.finished() => started.elapsed().as_secs_f64(),
            _ => p.runtime_secs,
        };
        json!({
            "ID": self.id,
            "Type": self.kind,
            "State": p.state.name(),
            "Progress": p.percent,
            "Content": p.content,
            "CreationTime": self.created_at,
            "CompletionTime": p.completed_at,
            "EffectiveRuntime": runtime,
            "ErrorCode": if p.state == State::Failure { 1 } else { 0 },
            "ErrorDescription": p.error.clone().unwrap_or_else(|| "Success".into()),
            "ErrorDetails": p.error.clone().unwrap_or_default(),
            "Priority": 0,
            "Timestamp": crate::ingest::now_orthanc(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every job of this process.
#[derive(Clone, Default)]
pub struct Jobs {
    all: Arc<Mutex<VecDeque<Arc<Job>>>>,
}

impl Jobs {
    /// Starts `work` as a job of type `kind` (Orthanc's names: `DicomModalityStore`,
    /// `DicomMoveScu`); `content` is what it shows until the work reports.
    pub fn start<F, Fut>(&self, kind: &'static str, content: Value, work: F) -> Arc<Job>
    where
        F: FnOnce(Arc<Job>) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let (done, _) = watch::channel(false);
        let job = Arc::new(Job {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            created_at: crate::ingest::now_orthanc(),
            progress: Mutex::new(Progress {
                state: State::Pending,
                percent: 0,
                content,
                error: None,
                started: None,
                runtime_secs: 0.0,
                completed_at: None,
            }),
            cancel: AtomicBool::new(false),
            done,
        });
        self.remember(job.clone());
        let running = work(job.clone());
        let handle = job.clone();
        tokio::spawn(async move {
            {
                let mut p = handle.lock();
                p.state = State::Running;
                p.started = Some(std::time::Instant::now());
            }
            let (content, error) = running.await;
            {
                let mut p = handle.lock();
                p.runtime_secs = p.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                p.content = content;
                p.state = match error {
                    None => State::Success,
                    Some(_) => State::Failure,
                };
                if p.state == State::Success {
                    p.percent = 100;
                }
                p.error = error;
                p.completed_at = Some(crate::ingest::now_orthanc());
            }
            handle.done.send_replace(true);
        });
        job
    }

    fn remember(&self, job: Arc<Job>) {
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.push_back(job);
        // Forget the oldest finished jobs past the history size; running ones stay.
        while all.len() > HISTORY {
            match all.iter().position(|j| j.state().finished()) {
                Some(oldest) => {
                    all.remove(oldest);
                }
                None => break,
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().find(|j| j.id == id).cloned()
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().cloned().collect()
    }

    /// Asks a job to stop; whether it was still running.
    pub fn cancel(&self, id: &str) -> Option<bool> {
        let job = self.get(id)?;
        job.cancel.store(true, Ordering::Relaxed);
        Some(!job.state().finished())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_reports_progress_then_its_outcome() {
        let jobs = Jobs::default();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let job = jobs.start("Test", json!({}), |job| async move {
            job.advance(1, 4, json!({"Done": 1}));
            let _ = wait.await;
            (json!({"Done": 4}), None)
        });
        tokio::task::yield_now().await;
        assert_eq!(jobs.get(&job.id).unwrap().id, job.id);
        let _ = go.send(());
        assert_eq!(job.finished().await, State::Success);
        let shown = job.to_json();
        assert_eq!(shown["State"], "Success");
        assert_eq!(shown["Progress"], 100);
        assert_eq!(shown["Content"]["Done"], 4);

        let failed = jobs.start("Test", json!({}), |_| async {
            (json!({}), Some("no".into()))
        });
        assert_eq!(failed.finished().await, State::Failure);
        assert_eq!(failed.to_json()["ErrorDetails"], "no");
        assert_eq!(jobs.list().len(), 2);
    }
}
