//! `kill -9` in the middle of a send: no acknowledged instance is lost, nothing dangles in the
//! index, at most the instance in flight leaves a blob or a spool file, and the restarted server
//! takes the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::common::dcmtk;
use crate::common::dicomgen::Instance;
use crate::site::Site;
use crate::support::{assert_same_dataset, cloud_site, eventually, local_site};

/// Rows that must not exist after a crash, whatever it interrupted.
const DANGLING: [(&str, &str); 4] = [
    (
        "series without instances",
        "SELECT COUNT(*) FROM series s WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.series = s.id)",
    ),
    (
        "studies without series",
        "SELECT COUNT(*) FROM studies st WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.study = st.id)",
    ),
    (
        "patients without studies",
        "SELECT COUNT(*) FROM patients p WHERE NOT EXISTS (SELECT 1 FROM studies st WHERE st.patient = p.id)",
    ),
    (
        "instances without series",
        "SELECT COUNT(*) FROM instances i WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.id = i.series)",
    ),
];

/// storescu -v sending a folder in the background. Its log (stderr) is drained as it comes so
/// it never blocks on a full pipe; it is killed if the test fails before it ends.
struct Sending {
    child: Child,
    log: Option<JoinHandle<String>>,
}

impl Sending {
    fn start(port: u16, dir: &Path) -> Sending {
        let mut child = Command::new("storescu")
            .args(["-v", "-aet", dcmtk::CALLING_AET, "-aec", "ORTHWEB"])
            .args(["-to", "10", "-ta", "30", "-td", "60"])
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg("+sd")
            .arg(dir)
            .env("TCP_NODELAY", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("storescu starts");
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).unwrap();
            text
        });
        Sending {
            child,
            log: Some(log),
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for storescu to end; returns its exit status and log.
    async fn finish(&mut self) -> (ExitStatus, String) {
        let status = eventually("storescu to end once the server is gone", || {
            let status = self.child.try_wait().unwrap();
            async move { status }
        })
        .await;
        let log = self.log.take().expect("finished once").join().unwrap();
        (status, log)
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files storescu -v reports as acknowledged with Success, in order.
fn acknowledged(storescu_log: &str) -> Vec<PathBuf> {
    let mut current: Option<PathBuf> = None;
    let mut acked = Vec::new();
    for line in storescu_log.lines() {
        if let Some(path) = line.strip_prefix("I: Sending file: ") {
            current = Some(PathBuf::from(path.trim()));
        } else if line.contains("Received Store Response (Success)") {
            acked.push(
                current
                    .take()
                    .expect("a response follows a Sending file line"),
            );
        }
    }
    acked
}

/// Kills the server with SIGKILL once `half` instances are indexed; returns how many were.
async fn kill9_once_indexed(site: &mut Site, sending: &mut Sending, half: i64) -> i64 {
    let pool = site.pool().await;
    let start = Instant::now();
    let at_kill = loop {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        if n >= half {
            site.server.kill9();
            break n;
        }
        assert!(
            sending.is_running(),
            "storescu ended before half of the instances were indexed ({n})"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "sending is stuck at {n}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    pool.close().await;
    at_kill
}

/// Sends a fresh study of 300 instances with storescu, kills the server with SIGKILL once about
/// half are indexed, restarts it and checks that every acknowledged instance survived whole and
/// that the index has no dangling rows.
async fn kill9_during_send(site: &mut Site) {
    let instances = site.generate(300, 32);
    let dir = instances[0].path.parent().unwrap().to_path_buf();
    let total = instances.len() as i64;
    let by_uid: BTreeMap<&str, &Instance> = instances
        .iter()
        .map(|i| (i.sop_instance_uid.as_str(), i))
        .collect();
    let by_path: BTreeMap<&Path, &Instance> =
        instances.iter().map(|i| (i.path.as_path(), i)).collect();

    let mut sending = Sending::start(site.port(), &dir);
    let at_kill = kill9_once_indexed(site, &mut sending, total / 2).await;
    assert!(
        at_kill < total,
        "the kill came too late to interrupt the send"
    );
    let (status, log) = sending.finish().await;
    assert!(!status.success(), "storescu cannot have succeeded: {log}");
    let acked = acknowledged(&log);
    eprintln!(
        "kill -9 with {at_kill} indexed; storescu saw {} acknowledged",
        acked.len()
    );
    assert!(
        acked.len() as i64 >= at_kill - 1,
        "acknowledgements are prompt"
    );

    tokio::task::block_in_place(|| site.server.restart());

    // Every acknowledged instance is indexed, its blob readable and equal to what was sent.
    let rows = site.rows().await;
    let acked_uids: BTreeSet<&str> = acked
        .iter()
        .map(|p| {
            by_path
                .get(p.as_path())
                .unwrap_or_else(|| panic!("storescu sent an unknown file {}", p.display()))
                .sop_instance_uid
                .as_str()
        })
        .collect();
    for uid in &acked_uids {
        assert!(
            rows.contains_key(*uid),
            "acknowledged {uid} lost by the crash"
        );
    }
    // Every row (acknowledged or not) points to a whole blob of the instance sent.
    for (uid, key) in &rows {
        let sent = by_uid
            .get(uid.as_str())
            .expect("only sent instances are indexed");
        assert_same_dataset(&site.blob_path(key), &sent.path);
    }
    // At most the one in flight was committed without its acknowledgement reaching storescu.
    let unacked_rows = rows
        .keys()
        .filter(|u| !acked_uids.contains(u.as_str()))
        .count();
    assert!(
        unacked_rows <= 1,
        "{unacked_rows} rows were never acknowledged"
    );
    // No dangling rows at any level.
    for (what, sql) in DANGLING {
        assert_eq!(site.count(sql).await, 0, "{what}");
    }
    // A crash may leave the blob and the spool file of the one instance in flight, no more.
    let referenced: BTreeSet<String> = rows.values().cloned().collect();
    let orphans = site.blob_keys().difference(&referenced).count();
    assert!(orphans <= 1, "{orphans} unreferenced blobs after the crash");
    let spooled = site.spool_files().len();
    assert!(spooled <= 1, "{spooled} spool files left by the crash");
    eprintln!(
        "after restart: {} rows, {orphans} orphan blobs, {spooled} spool files",
        rows.len()
    );

    // The restarted server takes the whole study again: the rest is stored, the rest
    // acknowledged as duplicates.
    let out = site.storescu(&[&dir], &[]).await;
    assert!(out.status.success(), "{}", dcmtk::text(&out));
    let rows = site.rows().await;
    assert_eq!(rows.len() as i64, total);
    for (uid, key) in &rows {
        assert_same_dataset(&site.blob_path(key), &by_uid[uid.as_str()].path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_a_send_loses_no_acknowledged_instance_sqlite_folder() {
    let Some(mut site) = local_site() else { return };
    kill9_during_send(&mut site).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_a_send_loses_no_acknowledged_instance_postgres_s3() {
    let Some((_pg, _s3, mut site)) = cloud_site("killed") else {
        return;
    };
    kill9_during_send(&mut site).await;
}
