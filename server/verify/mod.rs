//! `orthweb verify`: the archive's consistency — every index row against its blob (there, its
//! size, its SHA-256), blobs no row points at (orphans) and files left in the spool folder —
//! reported with a summary, and with `--repair` made consistent again. Safe while servers
//! serve: only orphans and spool files older than a grace period count, and every problem is
//! confirmed against the index before it is reported or repaired.
//!
//! Memory holds a page of rows or blobs at a time, the blobs being checked, and the problems
//! found (the first [`MAX_HELD`] of them; the rest are counted).

mod orphans;
pub(crate) mod progress;
mod repair;
mod rows;
mod spool;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::index::{Index, IndexError, IndexedFile};
use crate::storage::{BlobStore, ListedBlob};

/// Problems kept for the report and the repair; beyond them, problems are only counted.
pub const MAX_HELD: usize = 100_000;

/// What to check and whether to repair.
#[derive(Debug, Clone)]
pub struct Options {
    /// Blobs and spool files younger than this may belong to an instance being stored right
    /// now: they are left alone.
    pub grace: Duration,
    /// Remove orphans, spool leftovers, and the rows of instances whose file is missing or
    /// corrupt (quarantining the corrupt file).
    pub repair: bool,
    /// Repair even what looks like a wrong setting rather than damage (see `repair`).
    pub force: bool,
    /// Blobs read at once.
    pub jobs: usize,
}

/// One thing wrong with the archive.
#[derive(Debug)]
pub enum Problem {
    /// A row whose blob is not there.
    Missing { file: IndexedFile },
    /// A row whose blob has another size than the row says.
    Size { file: IndexedFile, actual: u64 },
    /// A row whose blob has the right size but another SHA-256.
    Corrupt { file: IndexedFile, actual: String },
    /// A row whose blob could not be read (twice): a store that fails, or a lasting fault.
    Unreadable { file: IndexedFile, error: String },
    /// A blob no row points at, older than the grace period.
    Orphan { blob: ListedBlob },
    /// A spool file older than the grace period.
    Spool {
        path: PathBuf,
        size: u64,
        modified: SystemTime,
    },
}

impl Problem {
    /// The first word of its line in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Missing { .. } => "missing",
            Problem::Size { .. } => "size",
            Problem::Corrupt { .. } => "corrupt",
            Problem::Unreadable { .. } => "unreadable",
            Problem::Orphan { .. } => "orphan",
            Problem::Spool { .. } => "spool",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |file: &IndexedFile| {
            format!(
                "instance {} (SOP Instance UID {}) blob {}",
                file.id, file.sop_instance_uid, file.blob_key
            )
        };
        let kind = self.kind();
        match self {
            Problem::Missing { file } => write!(f, "{kind:<10} {}: no such blob", row(file)),
            Problem::Size { file, actual } => write!(
                f,
                "{kind:<10} {}: {actual} bytes, the index says {}",
                row(file),
                file.size
            ),
            Problem::Corrupt { file, actual } => write!(
                f,
                "{kind:<10} {}: SHA-256 {actual}, the index says {}",
                row(file),
                file.sha256
            ),
            Problem::Unreadable { file, error } => write!(f, "{kind:<10} {}: {error}", row(file)),
            Problem::Orphan { blob } => write!(
                f,
                "{kind:<10} blob {}: {} bytes, written {}",
                blob.key,
                blob.size,
                rfc3339(blob.modified)
            ),
            Problem::Spool {
                path,
                size,
                modified,
            } => write!(
                f,
                "{kind:<10} {}: {size} bytes, written {}",
                path.display(),
                rfc3339(*modified)
            ),
        }
    }
}

/// What the repair did about a problem, or why it did nothing.
#[derive(Debug)]
pub enum Repair {
    Done(String),
    Left(String),
}

/// A problem kept for the report, with what its repair did.
#[derive(Debug)]
pub struct Held {
    pub problem: Problem,
    pub repair: Option<Repair>,
}

/// What a run found and did.
#[derive(Debug, Default)]
pub struct Report {
    pub rows_checked: u64,
    pub rows_ok: u64,
    /// Rows deleted or replaced by a live server while they were checked.
    pub rows_changed: u64,
    pub blobs_listed: u64,
    /// Unreferenced blobs younger than the grace period.
    pub young_blobs: u64,
    /// Spool files younger than the grace period.
    pub young_spool: u64,
    /// Problems by kind.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    pub held: Vec<Held>,
    /// Problems found beyond [`MAX_HELD`]: counted, neither listed nor repaired.
    pub not_held: u64,
    /// Checks that could not be completed, and why.
    pub incomplete: Vec<String>,
    pub repaired: u64,
}

impl Report {
    fn add(&mut self, problem: Problem) {
        *self.counts.entry(problem.kind()).or_default() += 1;
        if self.held.len() < MAX_HELD {
            self.held.push(Held {
                problem,
                repair: None,
            });
        } else {
            self.not_held += 1;
        }
    }

    fn count(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    pub fn problems(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Nothing is wrong, or everything that was has been repaired, and every check ran.
    pub fn consistent(&self) -> bool {
        self.problems() == self.repaired && self.incomplete.is_empty()
    }

    /// The report as printed: one line per problem (and what its repair did), then the counts.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for held in &self.held {
            let _ = writeln!(out, "{}", held.problem);
            match &held.repair {
                Some(Repair::Done(what)) => {
                    let _ = writeln!(out, "           repaired: {what}");
                }
                Some(Repair::Left(why)) => {
                    let _ = writeln!(out, "           not repaired: {why}");
                }
                None => {}
            }
        }
        if self.not_held > 0 {
            let _ = writeln!(
                out,
                "… and {} more problems, counted but not listed nor repaired: run again",
                self.not_held
            );
        }
        let _ = writeln!(
            out,
            "rows: {} checked, {} ok, {} missing, {} of the wrong size, {} corrupt, {} unreadable, \
             {} changed while checked",
            self.rows_checked,
            self.rows_ok,
            self.count("missing"),
            self.count("size"),
            self.count("corrupt"),
            self.count("unreadable"),
            self.rows_changed
        );
        let _ = writeln!(
            out,
            "blobs: {} listed, {} orphans, {} unreferenced but younger than the grace period",
            self.blobs_listed,
            self.count("orphan"),
            self.young_blobs
        );
        let _ = writeln!(
            out,
            "spool: {} leftovers, {} files younger than the grace period",
            self.count("spool"),
            self.young_spool
        );
        for why in &self.incomplete {
            let _ = writeln!(out, "incomplete: {why}");
        }
        let problems = self.problems();
        if problems > 0 {
            let _ = writeln!(out, "repaired {} of {problems} problems", self.repaired);
        }
        if self.consistent() {
            let _ = writeln!(out, "consistent");
        } else {
            let _ = writeln!(
                out,
                "inconsistent: {} problems left{}",
                problems - self.repaired,
                if self.held.iter().any(|h| h.repair.is_none()) {
                    " (--repair repairs what can be)"
                } else {
                    ""
                }
            );
        }
        out
    }
}

/// Checks the archive, and repairs it if asked.
pub async fn run(
    index: &Index,
    blobs: &Arc<dyn BlobStore>,
    spool_dir: &Path,
    options: &Options,
) -> Result<Report, IndexError> {
    // Measured from the start: a blob written since cannot be older than the grace period.
    let cutoff = SystemTime::now()
        .checked_sub(options.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = Report::default();
    rows::check(index, blobs, options.jobs, &mut report).await?;
    orphans::find(index, blobs.as_ref(), cutoff, &mut report).await?;
    spool::find(spool_dir, cutoff, &mut report);
    if options.repair {
        repair::run(index, blobs.as_ref(), options.force, &mut report).await;
    }
    Ok(report)
}

/// A duration given as seconds, or with a unit: `600`, `90s`, `10m`, `2h`.
pub fn parse_grace(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: a number of seconds, or with s, m or h"))?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        _ => None,
    };
    seconds
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?}: a number of seconds, or with s, m or h"))
}

fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_take_units() {
        assert_eq!(parse_grace("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_grace("0"), Ok(Duration::ZERO));
        assert_eq!(parse_grace("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_grace("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_grace("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "m", "10d", "-1", "1.5m"] {
            assert!(parse_grace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_report_is_consistent_once_every_problem_is_repaired() {
        let mut report = Report::default();
        assert!(report.consistent());
        assert!(report.render().ends_with("consistent\n"));
        report.add(Problem::Spool {
            path: "/tmp/in-x.dcm".into(),
            size: 3,
            modified: SystemTime::UNIX_EPOCH,
        });
        assert!(!report.consistent());
        let text = report.render();
        assert!(
            text.starts_with("spool      /tmp/in-x.dcm: 3 bytes, written 1970-01-01T00:00:00Z\n")
        );
        assert!(text.ends_with("inconsistent: 1 problems left (--repair repairs what can be)\n"));
        report.held[0].repair = Some(Repair::Done("removed".into()));
        report.repaired = 1;
        assert!(report.consistent());
        report.incomplete.push("listing failed".into());
        assert!(!report.consistent());
    }
}
