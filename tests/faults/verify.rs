//! `orthweb verify` on both backend pairs, while the server runs: what crashes and damaged
//! disks leave — an orphan blob, a missing blob, a corrupt blob (same size, bytes flipped), a
//! spool leftover — is found, exactly those; `--repair` removes the orphan and the leftover,
//! quarantines the corrupt blob and removes the two rows, after which the archive checks
//! consistent, the server still serves what was intact and takes the two instances again.
//! Blobs and spool files younger than the grace period are neither reported nor removed.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use crate::common::dcmtk;
use crate::common::s3::{self, S3Server};
use crate::site::Site;
use crate::support::{cloud_site, local_site};

/// The first words of the report's problem lines.
const KINDS: [&str; 6] = [
    "missing",
    "size",
    "corrupt",
    "unreadable",
    "orphan",
    "spool",
];
/// Exit status of a run that leaves problems.
const INCONSISTENT: i32 = 3;

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_and_repairs_on_sqlite_and_a_folder() {
    let Some(site) = local_site() else {
        return;
    };
    find_and_repair(&site, &Store::Folder).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_and_repairs_on_postgres_and_s3() {
    let Some((_pg, s3, site)) = cloud_site("verify") else {
        return;
    };
    find_and_repair(&site, &Store::S3(&s3, "verify")).await;
}

/// With the default grace period (10 minutes), a 5-minute-old unreferenced blob and spool file
/// may still be an instance being stored: `--repair` leaves them. With a grace period of 4
/// minutes they are leftovers, and go.
#[tokio::test(flavor = "multi_thread")]
async fn verify_leaves_blobs_and_spool_files_younger_than_the_grace_period() {
    let Some(site) = local_site() else {
        return;
    };
    site.assert_stores(&site.one()).await;
    let key = fresh_key();
    Store::Folder
        .put(&site, &key, b"being stored", Duration::from_secs(300))
        .await;
    let spooled = spool_file(&site, "in-young.dcm", Duration::from_secs(300));

    let out = verify(&site, &["--repair"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", dcmtk::text(&out));
    assert_eq!(problems(&out), Vec::<String>::new());
    let report = stdout(&out);
    assert!(
        report.contains("1 unreferenced but younger than the grace period")
            && report.contains("1 files younger than the grace period"),
        "{report}"
    );
    assert!(site.blob_path(&key).exists() && spooled.exists());

    let out = verify(&site, &["--repair", "--grace", "4m"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", dcmtk::text(&out));
    let found = problems(&out);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(!site.blob_path(&key).exists() && !spooled.exists());
    site.assert_blobs_match_rows().await;
}

/// Where the test plants and removes blobs behind the server's back.
enum Store<'a> {
    Folder,
    /// The S3 server and the site's prefix.
    S3(&'a S3Server, &'static str),
}

impl Store<'_> {
    /// Writes blob `key` as if `age` ago.
    async fn put(&self, site: &Site, key: &str, bytes: &[u8], age: Duration) {
        let path = site.blob_path(key);
        match self {
            Store::Folder => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
            Store::S3(s3, prefix) => {
                s3.client()
                    .put_object()
                    .bucket(s3::BUCKET)
                    .key(format!("{prefix}/{key}"))
                    .body(bytes.to_vec().into())
                    .send()
                    .await
                    .expect("PutObject");
            }
        }
        // s3s-fs answers LastModified from the file's modification time.
        set_age(&path, age);
    }

    /// Removes blob `key`.
    async fn remove(&self, site: &Site, key: &str) {
        match self {
            Store::Folder => std::fs::remove_file(site.blob_path(key)).unwrap(),
            Store::S3(s3, prefix) => {
                s3.client()
                    .delete_object()
                    .bucket(s3::BUCKET)
                    .key(format!("{prefix}/{key}"))
                    .send()
                    .await
                    .expect("DeleteObject");
            }
        }
    }
}

async fn find_and_repair(site: &Site, store: &Store<'_>) {
    // Four instances stored; the first loses its blob, the second gets a corrupt one.
    let sent = site.generate(4, 16);
    let out = site
        .storescu(&sent.iter().map(|i| &i.path).collect::<Vec<_>>(), &[])
        .await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
    let rows = site.rows().await;
    assert_eq!(rows.len(), 4, "every instance indexed");
    let key = |n: usize| rows[&sent[n].sop_instance_uid].clone();
    let ids = site.instance_ids().await;
    let id = |n: usize| ids[&sent[n].sop_instance_uid].clone();
    let (missing, corrupt) = (key(0), key(1));

    store.remove(site, &missing).await;
    let corrupt_path = site.blob_path(&corrupt);
    let intact = std::fs::read(&corrupt_path).unwrap();
    let mut damaged = intact.clone();
    let middle = damaged.len() / 2;
    for byte in &mut damaged[middle..middle + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(&corrupt_path, &damaged).unwrap();
    // A crash between a blob's fsync and its index commit leaves a whole, never-indexed file.
    let unsent = site.one();
    let unsent_bytes = std::fs::read(&unsent.path).unwrap();
    let (orphan, young) = (fresh_key(), fresh_key());
    let hour = Duration::from_secs(3600);
    store.put(site, &orphan, &unsent_bytes, hour).await;
    store.put(site, &young, &unsent_bytes, Duration::ZERO).await;
    let leftover = spool_file(site, "in-leftover.dcm", hour);
    let young_spool = spool_file(site, "in-young.dcm", Duration::ZERO);

    // Found: exactly what was planted, nothing changed.
    let out = verify(site, &[]).await;
    assert_eq!(
        out.status.code(),
        Some(INCONSISTENT),
        "{}",
        dcmtk::text(&out)
    );
    let found = problems(&out);
    assert_eq!(found.len(), 4, "{found:#?}");
    for (kind, needle) in [
        ("missing", missing.clone()),
        ("corrupt", corrupt.clone()),
        ("orphan", orphan.clone()),
        ("spool", leftover.display().to_string()),
    ] {
        assert!(
            found
                .iter()
                .any(|line| line.starts_with(kind) && line.contains(&needle)),
            "a {kind} line naming {needle}: {found:#?}"
        );
    }
    let report = stdout(&out);
    assert!(
        report.contains(
            "rows: 4 checked, 2 ok, 1 missing, 0 of the wrong size, 1 corrupt, 0 unreadable"
        ) && report.contains("blobs: 5 listed, 1 orphans, 1 unreferenced but younger")
            && report.contains("spool: 1 leftovers, 1 files younger"),
        "{report}"
    );
    assert!(site.blob_path(&orphan).exists() && leftover.exists());
    assert_eq!(
        site.rows().await.len(),
        4,
        "no row removed without --repair"
    );

    // Repaired: the orphan and the leftover gone, the corrupt blob quarantined, both rows gone.
    let out = verify(site, &["--repair"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", dcmtk::text(&out));
    let report = stdout(&out);
    assert!(
        report.contains("repaired 4 of 4 problems") && report.ends_with("consistent\n"),
        "{report}"
    );
    assert!(!site.blob_path(&orphan).exists(), "orphan removed");
    assert!(!leftover.exists(), "spool leftover removed");
    assert!(!corrupt_path.exists(), "corrupt blob out of the archive");
    assert_eq!(
        std::fs::read(site.quarantine_path(&corrupt)).expect("corrupt blob quarantined"),
        damaged
    );
    assert!(site.blob_path(&young).exists() && young_spool.exists());
    let left = site.rows().await;
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        {
            let mut intact: Vec<_> = sent[2..].iter().map(|i| &i.sop_instance_uid).collect();
            intact.sort();
            intact
        },
        "the rows of the missing and the corrupt blob removed"
    );
    assert_eq!(
        site.count("SELECT COUNT(*) FROM audit_events WHERE action = 'repair'")
            .await,
        3,
        "two rows and an orphan in the audit trail"
    );

    // Consistent, and the server serves the intact instances, no longer the others.
    let out = verify(site, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", dcmtk::text(&out));
    assert_eq!(problems(&out), Vec::<String>::new());
    for n in 2..4 {
        let file = download(site, &id(n)).await;
        assert_eq!(Some(file), std::fs::read(site.blob_path(&key(n))).ok());
    }
    for n in 0..2 {
        assert_eq!(
            site.http_status(&format!("/instances/{}", id(n))).await,
            404
        );
    }
    // Sent again, the two are stored again (not taken for copies of what was removed).
    for instance in &sent[..2] {
        site.assert_stores(instance).await;
    }

    // What was spared for its age is found without a grace period, and goes.
    let out = verify(site, &["--grace", "0"]).await;
    assert_eq!(
        out.status.code(),
        Some(INCONSISTENT),
        "{}",
        dcmtk::text(&out)
    );
    let found = problems(&out);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("orphan") && l.contains(&young))
    );
    let out = verify(site, &["--grace", "0", "--repair"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", dcmtk::text(&out));
    assert!(!site.blob_path(&young).exists() && !young_spool.exists());
    site.assert_blobs_match_rows().await;
}

async fn verify(site: &Site, args: &[&str]) -> Output {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let out = site.orthweb(&all).await;
    // Captured by the test harness; shown when the test fails.
    eprintln!("--- orthweb {} ---\n{}", all.join(" "), dcmtk::text(&out));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report's problem lines.
fn problems(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|word| KINDS.contains(&word))
        })
        .map(str::to_string)
        .collect()
}

/// A key of the kind the server makes.
fn fresh_key() -> String {
    format!("{}.dcm", uuid::Uuid::new_v4())
}

/// Sets the modification time of `path` to `age` ago.
fn set_age(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

/// A file in the server's spool folder, written `age` ago.
fn spool_file(site: &Site, name: &str, age: Duration) -> PathBuf {
    let path = site.data.join("tmp").join(name);
    std::fs::write(&path, b"half an instance").unwrap();
    set_age(&path, age);
    path
}

async fn download(site: &Site, id: &str) -> Vec<u8> {
    let response = reqwest::get(site.server.url(&format!("/instances/{id}/file")))
        .await
        .expect("HTTP request");
    assert_eq!(response.status().as_u16(), 200, "GET the file of {id}");
    response.bytes().await.unwrap().to_vec()
}
