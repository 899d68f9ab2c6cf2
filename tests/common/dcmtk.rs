//! dcmtk's command-line tools (echoscu, storescu, findscu, movescu, getscu, storescp) as the
//! independent DICOM peers of network tests.

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

/// Which C-FIND information model findscu queries.
#[derive(Clone, Copy, Debug)]
pub enum Model {
    PatientRoot,
    StudyRoot,
}

/// What a findscu run got back: the matches (pending responses' identifiers, in order) and the
/// final status as findscu names it (`Success`, `Error: DataSetDoesNotMatchSOPClass`, …).
pub struct FindResult {
    pub matches: Vec<dicom_object::InMemDicomObject>,
    pub status: String,
    pub output: String,
}

/// C-FIND with `keys` (`Keyword=value`, or `Keyword` for a return key) to `127.0.0.1:port` as
/// `calling_aet` (with `extra_args`, e.g. `-xd`), the responses extracted to files in `out_dir` (which must be empty) and read
/// back.
pub async fn findscu(
    port: u16,
    calling_aet: &str,
    called_aet: &str,
    model: Model,
    keys: &[&str],
    extra_args: &[&str],
    out_dir: &Path,
) -> FindResult {
    let mut cmd = Command::new("findscu");
    cmd.args(["-v", "-aet", calling_aet, "-aec", called_aet]);
    cmd.arg(match model {
        Model::PatientRoot => "-P",
        Model::StudyRoot => "-S",
    });
    cmd.args(TIMEOUTS);
    cmd.arg("-X").arg("-od").arg(out_dir).args(extra_args);
    for key in keys {
        cmd.arg("-k").arg(key);
    }
    cmd.arg("127.0.0.1").arg(port.to_string());
    let out = run(cmd).await;
    let output = text(&out);
    assert!(out.status.success(), "findscu: {output}");
    let status = output
        .lines()
        .find_map(|line| line.split("Received Final Find Response (").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("findscu printed no final status: {output}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("rsp"))
        .collect();
    files.sort();
    let matches = files
        .iter()
        .map(|p| {
            dicom_object::open_file(p)
                .unwrap_or_else(|e| panic!("response {}: {e}", p.display()))
                .into_inner()
        })
        .collect();
    FindResult {
        matches,
        status,
        output,
    }
}

/// What a movescu or getscu run got back: the final status as dcmtk names it (`Success`,
/// `Refused: MoveDestinationUnknown`, …) and the final response's sub-operation counts.
#[derive(Debug)]
pub struct RetrieveResult {
    pub status: String,
    pub completed: u32,
    pub failed: u32,
    pub warning: u32,
    pub output: String,
}

/// C-MOVE of `keys` (`Keyword=value`) to `destination`, from `127.0.0.1:port` as `calling_aet`.
pub async fn movescu(
    port: u16,
    calling_aet: &str,
    model: Model,
    destination: &str,
    keys: &[&str],
) -> RetrieveResult {
    let mut cmd = Command::new("movescu");
    cmd.args([
        "-d",
        "-aet",
        calling_aet,
        "-aec",
        "ORTHWEB",
        "-aem",
        destination,
    ]);
    cmd.arg(match model {
        Model::PatientRoot => "-P",
        Model::StudyRoot => "-S",
    });
    cmd.args(TIMEOUTS);
    for key in keys {
        cmd.arg("-k").arg(key);
    }
    cmd.arg("127.0.0.1").arg(port.to_string());
    retrieve_result("Move", run(cmd).await)
}

/// C-GET of `keys` from `127.0.0.1:port` as `calling_aet`, the instances written to `out_dir`.
/// `extra_args` e.g. `-xs` to take a syntax other than the uncompressed ones.
pub async fn getscu(
    port: u16,
    calling_aet: &str,
    model: Model,
    keys: &[&str],
    extra_args: &[&str],
    out_dir: &Path,
) -> RetrieveResult {
    let mut cmd = Command::new("getscu");
    cmd.args(["-d", "-aet", calling_aet, "-aec", "ORTHWEB"]);
    cmd.arg(match model {
        Model::PatientRoot => "-P",
        Model::StudyRoot => "-S",
    });
    cmd.args(TIMEOUTS).arg("-od").arg(out_dir).args(extra_args);
    for key in keys {
        cmd.arg("-k").arg(key);
    }
    cmd.arg("127.0.0.1").arg(port.to_string());
    retrieve_result("Get", run(cmd).await)
}

/// Reads the final response out of movescu's or getscu's debug output.
fn retrieve_result(operation: &str, out: Output) -> RetrieveResult {
    let output = text(&out);
    // movescu marks its last response; getscu prints each alike, the last being the final.
    let at = match operation {
        "Move" => output.find("Received Final Move Response"),
        _ => output.rfind("Received C-GET Response"),
    };
    let Some(at) = at else {
        panic!("{operation}: no final response: {output}");
    };
    let after = &output[at..];
    let count = |name: &str| -> u32 {
        after
            .lines()
            .find_map(|l| l.split_once(&format!("{name} Suboperations")))
            .and_then(|(_, v)| v.trim_start_matches([' ', ':']).trim().parse().ok())
            .unwrap_or(0)
    };
    let status = after
        .lines()
        .find_map(|l| l.split_once("DIMSE Status"))
        .map(|(_, v)| v.trim_start_matches([' ', ':']).trim().to_string())
        .unwrap_or_else(|| panic!("{operation}: no DIMSE status: {output}"));
    RetrieveResult {
        status,
        completed: count("Completed"),
        failed: count("Failed"),
        warning: count("Warning"),
        output,
    }
}

/// A dcmtk `storescp` on a free loopback port, writing what it receives to `dir`; killed when
/// dropped.
pub struct Storescp {
    pub port: u16,
    pub aet: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Storescp {
    /// Starts one as `aet`; `extra_args` e.g. `--sleep-during 1`, `--abort-during`, `+xa`.
    pub fn start(aet: &str, dir: &Path, extra_args: &[&str]) -> Storescp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = dir.with_extension("storescp.log");
        let child = Command::new("storescp")
            .args(["-v", "-aet", aet, "-od"])
            .arg(dir)
            .args(extra_args)
            .arg(port.to_string())
            .env("TCP_NODELAY", "1")
            .stdout(std::fs::File::create(&log).expect("storescp log"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn storescp");
        // Listening once a connection is accepted.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Storescp {
            port,
            aet: aet.into(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Storescp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
