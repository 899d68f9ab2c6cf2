//! Process-wide metrics, served at `GET /metrics` in Prometheus' text format. One registry for
//! the process: the DICOM listener, the ingest pipeline and the HTTP layer record into it.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `dicom` or `rest`.
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `invalid` (the sender's data), `storage`, `index` or `spool`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/studies/{id}`), never the raw path, to bound the label values.
    pub route: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub instances_received: Family<SourceLabels, Counter>,
    pub bytes_received: Family<SourceLabels, Counter>,
    pub ingest_errors: Family<ErrorLabels, Counter>,
    pub cstore_seconds: Histogram,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_seconds: Histogram,
    pub render_seconds: Histogram,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("orthweb");
        let instances_received = Family::<SourceLabels, Counter>::default();
        registry.register(
            "instances_received",
            "Instances stored (new or replacing a copy), by how they arrived",
            instances_received.clone(),
        );
        let bytes_received = Family::<SourceLabels, Counter>::default();
        registry.register(
            "received_bytes",
            "Bytes of the instances stored, by how they arrived",
            bytes_received.clone(),
        );
        let ingest_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "ingest_errors",
            "Instances not stored, by cause",
            ingest_errors.clone(),
        );
        // 1 ms to about 16 s.
        let cstore_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "cstore_duration_seconds",
            "Time from a C-STORE request to its response",
            cstore_seconds.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        let http_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head of an HTTP request",
            http_seconds.clone(),
        );
        // 1 ms to about 16 s.
        let render_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "render_duration_seconds",
            "Time to fetch, decode and encode one rendered frame (cache misses)",
            render_seconds.clone(),
        );
        Metrics {
            registry,
            instances_received,
            bytes_received,
            ingest_errors,
            cstore_seconds,
            http_requests,
            http_seconds,
            render_seconds,
        }
    }

    pub fn received(&self, source: &'static str, bytes: u64) {
        let labels = SourceLabels { source };
        self.instances_received.get_or_create(&labels).inc();
        self.bytes_received.get_or_create(&labels).inc_by(bytes);
    }

    pub fn ingest_failed(&self, kind: &'static str) {
        self.ingest_errors
            .get_or_create(&ErrorLabels { kind })
            .inc();
    }

    pub fn cstore(&self, elapsed: Duration) {
        self.cstore_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn rendered(&self, elapsed: Duration) {
        self.render_seconds.observe(elapsed.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_in_the_exposition() {
        METRICS.received("rest", 10);
        METRICS.ingest_failed("invalid");
        let text = METRICS.render();
        assert!(text.contains("orthweb_instances_received_total{source=\"rest\"}"));
        assert!(text.contains("orthweb_ingest_errors_total{kind=\"invalid\"}"));
        assert!(text.contains("# TYPE orthweb_cstore_duration_seconds histogram"));
    }
}
