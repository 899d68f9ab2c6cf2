//! `orthweb import PATH…`: bulk import of part-10 files, folders (recursively) and ZIPs through
//! the ingest pipeline, several files at once, with a progress bar and a summary. This is how
//! a site migrates an Orthanc storage folder (whose non-DICOM attachments are reported as
//! rejected and otherwise ignored).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncReadExt;

use crate::index::StoreOutcome;
use crate::ingest::upload::{Kind, sniff};
use crate::ingest::{Ingest, IngestError};

/// What happened to one file (or one entry of a ZIP).
#[derive(Debug)]
enum Outcome {
    Stored,
    AlreadyStored,
    /// The file is not an acceptable DICOM file: its own fault, with the reason.
    Rejected(String),
    /// Our side failed (blob store, index, disk): worth retrying.
    Failed(String),
}

/// Counts of each outcome, with examples of rejections and failures.
#[derive(Debug, Default)]
pub struct Summary {
    pub stored: u64,
    pub already_stored: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Reason → (count, a few of the files).
    problems: BTreeMap<String, (u64, Vec<String>)>,
}

/// Files listed per reason in the summary.
const EXAMPLES: usize = 5;

impl Summary {
    fn add(&mut self, name: &str, outcome: Outcome) {
        let (reason, counter) = match outcome {
            Outcome::Stored => return self.stored += 1,
            Outcome::AlreadyStored => return self.already_stored += 1,
            Outcome::Rejected(reason) => (format!("rejected: {reason}"), &mut self.rejected),
            Outcome::Failed(reason) => (format!("failed: {reason}"), &mut self.failed),
        };
        *counter += 1;
        let (count, examples) = self.problems.entry(reason).or_default();
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(name.to_string());
        }
    }

    /// The summary as printed at the end.
    pub fn report(&self) -> String {
        let mut out = format!(
            "stored {}, already stored {}, rejected {}, failed {}\n",
            self.stored, self.already_stored, self.rejected, self.failed
        );
        for (reason, (count, examples)) in &self.problems {
            let _ = writeln!(out, "  {count} {reason}");
            for example in examples {
                let _ = writeln!(out, "      {example}");
            }
        }
        out
    }
}

/// Imports everything under `paths`, `jobs` files at a time.
pub async fn run(ingest: &Ingest, paths: &[PathBuf], jobs: usize, max_size: u64) -> Summary {
    let files = collect(paths);
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files, {per_sec}, eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut summary = Summary::default();
    let mut results = futures::stream::iter(files.into_iter().map(|file| async move {
        let outcomes = import_file(ingest, &file, max_size).await;
        (file, outcomes)
    }))
    .buffer_unordered(jobs.max(1));
    while let Some((file, outcomes)) = results.next().await {
        for (name, outcome) in outcomes {
            if let Outcome::Failed(reason) = &outcome {
                tracing::warn!(file = %name, reason, "import failed");
            }
            summary.add(&name, outcome);
        }
        bar.set_message(format!("{} stored", summary.stored));
        bar.inc(1);
        drop(file);
    }
    bar.finish_and_clear();
    summary
}

/// Every regular file under `paths`, in a stable order. Unreadable folders are reported.
fn collect(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        for entry in walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
        {
            match entry {
                Ok(entry) if entry.file_type().is_file() => files.push(entry.into_path()),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read"),
            }
        }
    }
    files
}

/// Imports one file: a part-10 file, or every file of a ZIP.
async fn import_file(ingest: &Ingest, path: &Path, max_size: u64) -> Vec<(String, Outcome)> {
    let name = path.display().to_string();
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) => return vec![(name, Outcome::Failed(format!("cannot open: {e}")))],
    };
    let mut head = Vec::with_capacity(132);
    if let Err(e) = (&mut file).take(132).read_to_end(&mut head).await {
        return vec![(name, Outcome::Failed(format!("cannot read: {e}")))];
    }
    match sniff(&head) {
        Kind::Part10 => {
            let result = ingest.ingest_part10(&head, file, max_size).await;
            vec![(name, outcome(result.map(|r| r.outcome)))]
        }
        Kind::Zip => ingest
            .ingest_zip(path, max_size)
            .await
            .into_iter()
            .map(|entry| {
                (
                    format!("{name}:{}", entry.name),
                    outcome(entry.result.map(|r| r.outcome)),
                )
            })
            .collect(),
        Kind::Unknown => vec![(
            name,
            Outcome::Rejected("not a DICOM part-10 file (no DICM prefix) nor a ZIP".into()),
        )],
    }
}

fn outcome(result: Result<StoreOutcome, IngestError>) -> Outcome {
    match result {
        Ok(StoreOutcome::AlreadyStored) => Outcome::AlreadyStored,
        Ok(_) => Outcome::Stored,
        Err(IngestError::Invalid(e)) => Outcome::Rejected(reason(&e.to_string())),
        Err(IngestError::TooLarge(limit)) => {
            Outcome::Rejected(format!("larger than the {limit}-byte limit"))
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// A reason without the details that differ from file to file (byte offsets, UIDs), so that
/// the summary groups alike rejections.
fn reason(message: &str) -> String {
    let generic: String = message
        .split_whitespace()
        .map(|word| {
            if word.chars().any(|c| c.is_ascii_digit()) {
                "…"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    generic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_group_reasons_and_keep_a_few_examples() {
        let mut summary = Summary::default();
        summary.add("a", Outcome::Stored);
        summary.add("b", Outcome::AlreadyStored);
        for i in 0..7 {
            summary.add(
                &format!("bad{i}"),
                Outcome::Rejected(reason("truncated at byte 12")),
            );
        }
        summary.add("c", Outcome::Failed("index unavailable".into()));
        let report = summary.report();
        assert!(report.starts_with("stored 1, already stored 1, rejected 7, failed 1\n"));
        assert!(report.contains("  7 rejected: truncated at byte …\n"));
        assert_eq!(report.matches("      bad").count(), EXAMPLES);
        assert!(report.contains("  1 failed: index unavailable\n"));
    }
}
