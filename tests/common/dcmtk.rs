//! dcmtk command-line SCUs (echoscu, storescu) as the independent DICOM peer for network tests.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{find_in_path, missing};

/// Calling AE title used by every wrapper.
pub const CALLING_AET: &str = "TESTSCU";

/// True if `name` is on PATH. Otherwise panics under `CI=true`, or prints a skip line and returns
/// false so the test can `return` early.
pub fn require_tool(name: &str) -> bool {
    find_in_path(name).is_some() || missing(&format!("{name} not installed (dcmtk)"))
}

/// C-ECHO to `host:port` as `TESTSCU` → `called_aet`.
pub async fn echoscu(host: &str, port: u16, called_aet: &str) -> Output {
    let mut cmd = Command::new("echoscu");
    cmd.args(["-aet", CALLING_AET, "-aec", called_aet]);
    cmd.args(TIMEOUTS);
    cmd.arg(host).arg(port.to_string());
    run(cmd).await
}

/// C-STORE the given files (directories are scanned recursively) to `host:port`.
/// `extra_args` go before the peer, e.g. `["-xs"]` (see `Syntax::storescu_flag`) or the output of
/// [`storescu_config`].
pub async fn storescu<P: AsRef<Path>>(
    host: &str,
    port: u16,
    called_aet: &str,
    files_or_dirs: &[P],
    extra_args: &[&str],
) -> Output {
    let mut cmd = Command::new("storescu");
    cmd.args(["-aet", CALLING_AET, "-aec", called_aet]);
    cmd.args(TIMEOUTS);
    if files_or_dirs.iter().any(|p| p.as_ref().is_dir()) {
        cmd.args(["+sd", "+r"]);
    }
    cmd.args(extra_args).arg(host).arg(port.to_string());
    cmd.args(files_or_dirs.iter().map(|p| p.as_ref()));
    run(cmd).await
}

/// Write a storescu association profile proposing exactly the given (SOP class UID,
/// transfer syntax UIDs) presentation contexts, one context per pair, and return the
/// `-xf <file> Default` arguments. Needed for syntaxes storescu has no `-x` flag for (JPEG
/// lossless .57) or to test what happens when only one syntax is offered.
pub fn storescu_config(dir: &Path, contexts: &[(&str, &[&str])]) -> io::Result<Vec<String>> {
    let mut ts = String::from("[[TransferSyntaxes]]\n");
    let mut pcs = String::from("[[PresentationContexts]]\n[Default]\n");
    for (i, (class, syntaxes)) in contexts.iter().enumerate() {
        ts += &format!("[TS{i}]\n");
        for (j, uid) in syntaxes.iter().enumerate() {
            ts += &format!("TransferSyntax{} = {uid}\n", j + 1);
        }
        pcs += &format!("PresentationContext{} = {class}\\TS{i}\n", i + 1);
    }
    let text = format!("{ts}{pcs}[[Profiles]]\n[Default]\nPresentationContexts = Default\n");
    let path: PathBuf = dir.join("storescu-profile.cfg");
    std::fs::write(&path, text)?;
    Ok(vec![
        "-xf".into(),
        path.display().to_string(),
        "Default".into(),
    ])
}

/// stdout + stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// Bounded waits so a wedged server fails the test instead of hanging it: connect (-to),
// association (-ta) and DIMSE responses (-td, generous for 100 MB instances on a slow box).
const TIMEOUTS: [&str; 6] = ["-to", "10", "-ta", "30", "-td", "300"];

/// Run on the blocking pool so the (possibly in-process) server keeps its runtime threads.
async fn run(mut cmd: Command) -> Output {
    cmd.env("TCP_NODELAY", "1");
    let desc = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join dcmtk task")
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"))
}
