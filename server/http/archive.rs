//! `GET /{patients,studies,series}/{id}/archive`: a ZIP written while it is sent. A blocking
//! task reads each blob in turn and writes it (stored, not compressed: images barely shrink)
//! into a ZIP writer whose output goes to the response through a small bounded channel, so
//! memory holds a few chunks whatever the study's size.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use super::{ApiError, AppState};
use crate::index::{ArchiveInstance, ArchiveSeries, Level};
use crate::storage::BlobStore;

/// Bytes gathered before a chunk goes to the response.
const CHUNK: usize = 256 * 1024;
/// Blobs opened ahead of the one being written.
const PREFETCH: usize = 4;

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    path: String,
    blob_key: String,
    size: u64,
}

pub async fn archive(state: AppState, level: Level, id: String) -> Result<Response, ApiError> {
    state.resource(level, &id).await?;
    let (series, instances) = state
        .index
        .archive_contents(level, &id)
        .await
        .map_err(ApiError::index)?;
    let entries = plan(&series, instances);
    tracing::info!(level = level.name(), id, files = entries.len(), "archive");

    let (chunks, mut queue) = mpsc::channel::<io::Result<Bytes>>(4);
    let blobs = state.blobs.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let errors = chunks.clone();
        if let Err(e) = write_zip(&runtime, blobs, &entries, chunks) {
            // The status line is long gone: all we can do is cut the stream, which the
            // client sees as a failed download rather than a short, valid-looking ZIP.
            tracing::warn!(error = %e, "archive stopped");
            let _ = errors.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| queue.poll_recv(cx)));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.zip\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn write_zip(
    runtime: &tokio::runtime::Handle,
    blobs: Arc<dyn BlobStore>,
    entries: &[Entry],
    chunks: mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(ChannelWriter {
        chunks,
        buffer: Vec::with_capacity(CHUNK),
    });
    // The next few blobs are opened while the current one is copied: on S3 each GetObject is a
    // round trip that would otherwise leave the response idle between files.
    let mut opening = VecDeque::new();
    let mut upcoming = entries.iter();
    loop {
        while opening.len() < PREFETCH
            && let Some(entry) = upcoming.next()
        {
            let blobs = blobs.clone();
            let key = entry.blob_key.clone();
            opening.push_back((
                entry,
                runtime.spawn(async move { blobs.get(&key, None).await }),
            ));
        }
        let Some((entry, opened)) = opening.pop_front() else {
            break;
        };
        let (reader, _) = runtime
            .block_on(opened)
            .map_err(io::Error::other)?
            .map_err(|e| io::Error::other(format!("blob {}: {e}", entry.blob_key)))?;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(entry.size >= u64::from(u32::MAX));
        zip.start_file(entry.path.as_str(), options)
            .map_err(io::Error::other)?;
        // In CHUNK reads: `io::copy`'s own 8 KiB would each be a blocking-pool hop on a folder
        // blob (`io::copy` reads through a `BufReader`'s buffer).
        let reader = SyncIoBridge::new_with_handle(reader, runtime.clone());
        io::copy(&mut io::BufReader::with_capacity(CHUNK, reader), &mut zip)?;
    }
    let mut sink = zip.finish().map_err(io::Error::other)?.into_inner();
    sink.flush()
}

/// A `Write` that hands its output to the response in chunks, waiting when the client is slow.
struct ChannelWriter {
    chunks: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.chunks
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// Orthanc's layout: `PatientID - PatientName/Accession - StudyDescription/
/// SeriesNumber - Modality - SeriesDescription/MO000001.dcm`, the file prefix being the
/// modality's first two letters. Sibling folders with the same name get a numbered suffix.
fn plan(series: &[ArchiveSeries], instances: Vec<ArchiveInstance>) -> Vec<Entry> {
    let mut by_series: HashMap<String, Vec<ArchiveInstance>> = HashMap::new();
    for instance in instances {
        by_series
            .entry(instance.series_id.clone())
            .or_default()
            .push(instance);
    }
    let mut folders = Folders::default();
    let mut entries = Vec::new();
    for s in series {
        let patient = folders.name(
            "",
            &s.patient_id,
            &[
                tag(&s.patient_tags, "PatientID"),
                tag(&s.patient_tags, "PatientName"),
            ],
            "Unknown Patient",
        );
        let study = folders.name(
            &patient,
            &s.study_id,
            &[
                tag(&s.study_tags, "AccessionNumber"),
                tag(&s.study_tags, "StudyDescription"),
            ],
            "Unknown Study",
        );
        let modality = tag(&s.series_tags, "Modality");
        let series_folder = folders.name(
            &format!("{patient}/{study}"),
            &s.series_id,
            &[
                tag(&s.series_tags, "SeriesNumber"),
                modality,
                tag(&s.series_tags, "SeriesDescription"),
            ],
            "Unknown Series",
        );
        let prefix: String = modality
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(2)
            .collect::<String>()
            .to_ascii_uppercase();
        let digits = 8 - prefix.len();
        let mut members = by_series.remove(&s.series_id).unwrap_or_default();
        let number = |i: &ArchiveInstance| i.instance_number.trim().parse::<u32>().ok();
        members.sort_by_key(|i| (number(i).unwrap_or(u32::MAX), i.blob_key.clone()));
        let numbers: Vec<Option<u32>> = members.iter().map(number).collect();
        let distinct: HashSet<_> = numbers.iter().flatten().collect();
        let use_numbers = numbers.iter().all(Option::is_some) && distinct.len() == numbers.len();
        for (i, instance) in members.into_iter().enumerate() {
            let index = if use_numbers {
                numbers[i].unwrap_or_default() as usize
            } else {
                i + 1
            };
            entries.push(Entry {
                path: format!("{patient}/{study}/{series_folder}/{prefix}{index:0digits$}.dcm"),
                blob_key: instance.blob_key,
                size: instance.size,
            });
        }
    }
    entries
}

fn tag<'a>(tags: &'a Map<String, Value>, keyword: &str) -> &'a str {
    tags.get(keyword).and_then(Value::as_str).unwrap_or("")
}

/// Folder names already given, per parent folder, so that siblings never collide.
#[derive(Default)]
struct Folders {
    /// (parent, resource ID) → name
    given: BTreeMap<(String, String), String>,
    used: HashSet<(String, String)>,
}

impl Folders {
    fn name(&mut self, parent: &str, resource: &str, parts: &[&str], unknown: &str) -> String {
        let key = (parent.to_string(), resource.to_string());
        if let Some(name) = self.given.get(&key) {
            return name.clone();
        }
        let joined = parts
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" - ");
        let mut base = sanitize(&joined);
        if base.chars().all(|c| c == '^' || c == '_' || c == ' ') {
            base = unknown.to_string();
        }
        let mut name = base.clone();
        let mut n = 2;
        while !self.used.insert((parent.to_string(), name.clone())) {
            name = format!("{base} ({n})");
            n += 1;
        }
        self.given.insert(key, name.clone());
        name
    }
}

/// A folder name safe on every file system, and never `.` or `..`.
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .take(64)
        .collect();
    cleaned.trim().trim_end_matches('.').trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn series(id: &str, study: &str, description: &str) -> ArchiveSeries {
        ArchiveSeries {
            patient_id: "p".into(),
            patient_tags: tags(json!({"PatientID": "PID1", "PatientName": "DOE^JOHN"})),
            study_id: study.into(),
            study_tags: tags(json!({"AccessionNumber": "A1", "StudyDescription": "CHEST/ABD"})),
            series_id: id.into(),
            series_tags: tags(
                json!({"SeriesNumber": "2", "Modality": "CT", "SeriesDescription": description}),
            ),
        }
    }

    fn instance(series: &str, number: &str, key: &str) -> ArchiveInstance {
        ArchiveInstance {
            series_id: series.into(),
            instance_number: number.into(),
            blob_key: key.into(),
            size: 1,
        }
    }

    #[test]
    fn layout_follows_orthanc() {
        let entries = plan(
            &[series("s1", "st1", "AXIAL")],
            vec![instance("s1", "2", "b"), instance("s1", "1", "a")],
        );
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "PID1 - DOE^JOHN/A1 - CHEST_ABD/2 - CT - AXIAL/CT000001.dcm",
                "PID1 - DOE^JOHN/A1 - CHEST_ABD/2 - CT - AXIAL/CT000002.dcm",
            ]
        );
        assert_eq!(entries[0].blob_key, "a");
    }

    #[test]
    fn duplicate_numbers_fall_back_to_a_counter_and_names_never_collide() {
        let entries = plan(
            &[series("s1", "st1", "X"), series("s2", "st1", "X")],
            vec![
                instance("s1", "1", "a"),
                instance("s1", "1", "b"),
                instance("s2", "", "c"),
            ],
        );
        let paths: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths.len(), 3);
        assert!(paths.contains("PID1 - DOE^JOHN/A1 - CHEST_ABD/2 - CT - X/CT000002.dcm"));
        assert!(paths.contains("PID1 - DOE^JOHN/A1 - CHEST_ABD/2 - CT - X (2)/CT000001.dcm"));
    }

    #[test]
    fn folder_names_cannot_escape() {
        assert_eq!(sanitize("../.."), ".._");
        assert_eq!(sanitize(".."), "");
        assert_eq!(sanitize("a\\b\n"), "a_b_");
    }
}
