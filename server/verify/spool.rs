//! The third pass: files left in the spool folder. A live server writes its incoming
//! instances there and moves or uploads them within seconds; a file older than the grace
//! period was left by a crash and was never acknowledged (the server itself removes such files
//! after an hour when it starts).

use std::path::Path;
use std::time::SystemTime;

use super::{Problem, Report};

pub(super) fn find(spool_dir: &Path, cutoff: SystemTime, report: &mut Report) {
    let entries = match std::fs::read_dir(spool_dir) {
        Ok(entries) => entries,
        // No spool folder: no server ever ran with this data folder here.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            let error = format!("cannot read the spool folder {}: {e}", spool_dir.display());
            report.incomplete.push(error);
            return;
        }
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            // Gone since the folder was read: moved into the store, or removed.
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
        if modified <= cutoff {
            report.add(Problem::Spool {
                path: entry.path(),
                size: meta.len(),
                modified,
            });
        } else {
            report.young_spool += 1;
        }
    }
}
