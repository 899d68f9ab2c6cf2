//! The audit trail's writer: each audited request becomes an event, logged at once (target
//! `audit`; reads at debug level) and handed to one task that writes events to the index in
//! batches, so that a GET waits for no database write. A batch goes out 100 ms after its first
//! event (written 200 events at a time), or at once when a flush is asked for.
//!
//! On shutdown the server flushes what is queued; events still queued when the process is
//! killed are in the log but not in the index (reads only with `audit=debug` logging).

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::index::{AuditEvent, Index, Level};

const QUEUE: usize = 10_000;
const BATCH: usize = 200;
const LINGER: Duration = Duration::from_millis(100);

/// What the writer task receives.
enum Message {
    Event(AuditEvent),
    /// Write what is waiting now, then answer.
    Flush(oneshot::Sender<()>),
}

/// Where events go; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Message>,
    /// Ends the writer's wait for more events at once (a flush is waiting).
    hurry: Arc<Notify>,
}

impl AuditLog {
    /// Starts the writer task on `index`.
    pub fn start(index: Index) -> AuditLog {
        let (queue, events) = mpsc::channel(QUEUE);
        let hurry = Arc::new(Notify::new());
        tokio::spawn(write_batches(index, events, hurry.clone()));
        AuditLog { queue, hurry }
    }

    pub fn record(&self, event: AuditEvent) {
        log(&event);
        if self.queue.try_send(Message::Event(event)).is_err() {
            tracing::error!("the audit queue is full or closed; an event is only in the log");
        }
    }

    /// Returns once every event recorded before the call is in the index (or given up on).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            self.hurry.notify_one();
            let _ = wait.await;
        }
    }
}

/// Writes the event to the log: at info what changes something or is refused, at debug what
/// only reads (`view`, `find`, `download`; `RUST_LOG=info,audit=debug` shows them). Reads are
/// most of the trail (one line per file a viewer or script fetches) and are in the index all
/// the same; a log line costs a kept-alive download ~3 % of its time.
fn log(event: &AuditEvent) {
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "audit",
                $level,
                user = event.user.as_deref().unwrap_or("-"),
                client = %event.client,
                action = %event.action,
                level = %event.level,
                resource = %event.resource_id,
                status = event.http_status,
                detail = %event.detail,
                "audit"
            )
        };
    }
    let read = matches!(event.action.as_str(), "view" | "find" | "download");
    if read && event.http_status < 400 {
        line!(tracing::Level::DEBUG);
    } else {
        line!(tracing::Level::INFO);
    }
}

async fn write_batches(index: Index, mut messages: mpsc::Receiver<Message>, hurry: Arc<Notify>) {
    while let Some(first) = messages.recv().await {
        // The window is waited out on a timer, not on the queue: events recorded meanwhile
        // wake nothing (one wake per batch, not one per request), unless a flush hurries it.
        if matches!(first, Message::Event(_)) {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = hurry.notified() => {}
            }
        }
        let mut batch = Vec::new();
        let mut flushed = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Event(event) => batch.push(event),
                Message::Flush(done) => flushed.push(done),
            }
            if batch.len() == BATCH {
                write(&index, &batch).await;
                batch.clear();
            }
            next = messages.try_recv().ok();
        }
        write(&index, &batch).await;
        for done in flushed {
            let _ = done.send(());
        }
    }
}

async fn write(index: &Index, batch: &[AuditEvent]) {
    if batch.is_empty() {
        return;
    }
    let mut attempt = 0;
    while let Err(e) = index.record_audit(batch).await {
        attempt += 1;
        if attempt == 3 {
            tracing::error!(error = %e, events = batch.len(), "cannot write audit events to the index; they are only in the log");
            break;
        }
        tracing::warn!(error = %e, "cannot write audit events to the index; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a request to a route did, for the trail; `None` for routes not audited (health,
/// metrics, the OpenAPI document).
pub fn classify(method: &Method, route: &str, status: u16) -> Option<&'static str> {
    if matches!(
        route,
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "unmatched"
    ) {
        return None;
    }
    let action = match (method.as_str(), route) {
        ("POST", "/auth/login") if status < 300 => "sign-in",
        ("POST", "/auth/login") => "sign-in-failed",
        ("POST", "/auth/logout") => "sign-out",
        ("POST", "/instances") => "upload",
        ("POST", "/tools/find" | "/tools/lookup") => "find",
        (_, r) if r == "/users" || r.starts_with("/users/") => {
            if *method == Method::GET {
                "view"
            } else {
                "user-change"
            }
        }
        (_, r) if r.starts_with("/modalities/{name}") && *method != Method::GET => match r {
            "/modalities/{name}/store" => "send",
            "/modalities/{name}/query" => "remote-find",
            "/modalities/{name}/echo" => "echo",
            _ => "peer-change",
        },
        ("POST", r) if r.starts_with("/queries/") && r.ends_with("/retrieve") => "retrieve",
        (_, r) if r.starts_with("/dicom-web/") => match (method.as_str(), r) {
            ("POST", _) => "upload",
            (_, r) if r.ends_with("/metadata") => "view",
            (_, r) if r.ends_with("/rendered") || r.ends_with("/thumbnail") => "view",
            (_, r) if r.ends_with("/studies") || r.ends_with("/series") => "find",
            (_, r) if r.ends_with("/instances") => "find",
            _ => "download",
        },
        ("DELETE", _) => "delete",
        ("GET" | "HEAD", r) if r.ends_with("/file") || r.ends_with("/archive") => "download",
        ("GET" | "HEAD", "/wado") => "download",
        _ => "view",
    };
    Some(action)
}

/// The level and resource ID a request's path names: `/studies/ID/...` → (`Study`, `ID`),
/// `/users/NAME` → (`User`, `NAME`).
pub fn resource_of(path: &str) -> (String, String) {
    let mut segments = path.trim_start_matches('/').split('/');
    let (Some(first), Some(id)) = (segments.next(), segments.next()) else {
        return (String::new(), String::new());
    };
    match first {
        // DICOMweb names resources by UID: the deepest one the path names.
        "dicom-web" => {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let named = [
                ("instances", "Instance"),
                ("series", "Series"),
                ("studies", "Study"),
            ]
            .into_iter()
            .find_map(|(plural, name)| {
                let at = parts.iter().position(|p| *p == plural)?;
                Some((name.to_string(), parts.get(at + 1)?.to_string()))
            });
            return named.unwrap_or_default();
        }
        "users" => return ("User".into(), id.to_string()),
        "modalities" => return ("Modality".into(), id.to_string()),
        "queries" => return ("Query".into(), id.to_string()),
        "jobs" => return ("Job".into(), id.to_string()),
        _ => {}
    }
    match Level::ALL.into_iter().find(|l| l.plural() == first) {
        Some(level) => (level.name().to_string(), id.to_string()),
        None => (String::new(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_actions() {
        let get = Method::GET;
        assert_eq!(classify(&get, "/studies/{id}", 200), Some("view"));
        assert_eq!(
            classify(&get, "/instances/{id}/file", 200),
            Some("download")
        );
        assert_eq!(
            classify(&get, "/series/{id}/archive", 200),
            Some("download")
        );
        assert_eq!(classify(&Method::POST, "/instances", 200), Some("upload"));
        assert_eq!(
            classify(&Method::DELETE, "/patients/{id}", 200),
            Some("delete")
        );
        assert_eq!(classify(&Method::POST, "/tools/find", 200), Some("find"));
        assert_eq!(classify(&get, "/dicom-web/studies", 200), Some("find"));
        assert_eq!(
            classify(
                &get,
                "/dicom-web/studies/{study}/series/{series}/instances",
                200
            ),
            Some("find")
        );
        assert_eq!(
            classify(&get, "/dicom-web/studies/{study}/metadata", 200),
            Some("view")
        );
        assert_eq!(
            classify(&get, "/dicom-web/studies/{study}", 200),
            Some("download")
        );
        assert_eq!(
            resource_of("/dicom-web/studies/1.2/series/1.2.3/metadata"),
            ("Series".to_string(), "1.2.3".to_string())
        );
        assert_eq!(
            resource_of("/dicom-web/studies"),
            (String::new(), String::new())
        );
        let post = Method::POST;
        assert_eq!(
            classify(&post, "/modalities/{name}/store", 200),
            Some("send")
        );
        assert_eq!(
            classify(&Method::PUT, "/modalities/{name}", 200),
            Some("peer-change")
        );
        assert_eq!(
            classify(&post, "/queries/{id}/retrieve", 200),
            Some("retrieve")
        );
        assert_eq!(
            classify(&Method::POST, "/auth/login", 401),
            Some("sign-in-failed")
        );
        assert_eq!(
            classify(&Method::DELETE, "/users/{name}", 200),
            Some("user-change")
        );
        assert_eq!(classify(&get, "/metrics", 200), None);
        assert_eq!(
            resource_of("/studies/abc/series"),
            ("Study".to_string(), "abc".to_string())
        );
        assert_eq!(resource_of("/tools/find"), (String::new(), String::new()));
    }

    /// At the default level the log has every change and every refusal, and no successful
    /// read; `audit=debug` adds the reads.
    #[test]
    fn reads_are_logged_at_debug() {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let event = |action: &str, status: u16| AuditEvent {
            action: action.to_string(),
            resource_id: format!("{action}-{status}"),
            http_status: status,
            ..AuditEvent::default()
        };
        let logged = |filter: &str| {
            let lines = Lines::default();
            let writer = lines.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                for (action, status) in [("download", 200), ("view", 200), ("view", 403)] {
                    log(&event(action, status));
                }
                log(&event("delete", 200));
                log(&event("find", 200));
            });
            String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
        };
        let info = logged("info");
        for (resource, wanted) in [
            ("download-200", false),
            ("view-200", false),
            ("find-200", false),
            ("view-403", true),
            ("delete-200", true),
        ] {
            assert_eq!(info.contains(resource), wanted, "{resource} in {info}");
        }
        let debug = logged("info,audit=debug");
        assert!(debug.contains("download-200") && debug.contains("delete-200"));
    }
}
