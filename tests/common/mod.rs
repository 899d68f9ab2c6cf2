//! Shared integration-test kit: real PostgreSQL, real S3 (s3s-fs), the moto AWS emulator, DICOM test data and dcmtk wrappers.
//!
//! Use from an integration test with `mod common;`. Every test binary only uses part of the kit,
//! hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod dcmtk;
pub mod dicomgen;
pub mod moto;
pub mod pg;
pub mod s3;
pub mod scu;
pub mod server;

/// Orthanc's resource ID: SHA-1 of the `|`-joined identifiers, lowercase hex in five groups of
/// eight (core `DicomInstanceHasher`), written again here independently of the server's code.
pub fn orthanc_id(parts: &[&str]) -> String {
    use sha1::Digest;
    let hex = hex::encode(sha1::Sha1::digest(parts.join("|").as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..16],
        &hex[16..24],
        &hex[24..32],
        &hex[32..40]
    )
}

/// True when running under CI, where a missing external tool must fail the test instead of skipping it.
pub fn is_ci() -> bool {
    std::env::var("CI")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        .unwrap_or(false)
}

/// Look an executable up in `PATH` (we avoid a `which` dependency).
pub fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A missing external prerequisite: panics under CI (tests must fail there), otherwise prints a skip line.
/// Returns `false` so callers can `return` early.
pub fn missing(what: &str) -> bool {
    if is_ci() {
        panic!("CI=true but {what}; install it (the test kit never skips under CI)");
    }
    eprintln!("skipping: {what}");
    false
}

/// Long enough for a loaded 2-core machine; polls end as soon as the condition holds.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `probe` every 20 ms until it yields a value, or panics after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
