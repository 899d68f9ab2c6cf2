//! The `orthweb` command: parses the command line and runs the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use orthweb::app::{Application, Storage};
use orthweb::config::{Settings, redact_url};

#[derive(Parser)]
#[command(
    name = "orthweb",
    version,
    about = "A DICOM archive: DICOM SCP, blob store, SQL index, REST API"
)]
struct Cli {
    /// TOML settings file (see orthweb.sample.toml).
    #[arg(long, global = true, env = "ORTHWEB_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the DICOM and HTTP listeners.
    Serve(Flags),
    /// Apply the index migrations, then exit.
    Migrate(Flags),
    /// Import DICOM files, folders (recursively) and ZIPs into the archive, as if received.
    Import(ImportArgs),
    /// Manage the users of the REST API and the UI (kept in the index).
    #[command(subcommand)]
    User(UserCommand),
    /// Check every index row against its blob (there, size, SHA-256), and look for blobs no
    /// row points at and spool leftovers; exits 0 when consistent, 3 when problems are left.
    Verify(VerifyArgs),
}

/// `orthweb user …`. Passwords come from `--password-file` (its first line) or, without it,
/// from one line of standard input; they have at least 12 characters.
#[derive(Subcommand)]
enum UserCommand {
    /// Add a user.
    Add {
        /// The user's name (no spaces, no ':').
        name: String,
        /// admin (everything) or viewer (read only).
        #[arg(long)]
        role: String,
        /// Read the password from this file's first line instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        flags: Flags,
    },
    /// Change a user's password (and end their sessions).
    Passwd {
        name: String,
        /// Read the password from this file's first line instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        flags: Flags,
    },
    /// Remove a user with their API tokens and sessions (never the last admin).
    Remove {
        name: String,
        #[command(flatten)]
        flags: Flags,
    },
    /// List users: name, role, creation time.
    List {
        #[command(flatten)]
        flags: Flags,
    },
    /// Print a new API token for a user (`Authorization: Bearer TOKEN`); shown only once.
    Token {
        name: String,
        /// What the token is for, kept beside it.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        flags: Flags,
    },
    /// Revoke every API token of a user.
    RevokeTokens {
        name: String,
        #[command(flatten)]
        flags: Flags,
    },
}

impl UserCommand {
    fn into_parts(self) -> (Flags, Task) {
        let (flags, action) = match self {
            UserCommand::Add {
                name,
                role,
                password_file,
                flags,
            } => (
                flags,
                UserTask::Add {
                    name,
                    role,
                    password_file,
                },
            ),
            UserCommand::Passwd {
                name,
                password_file,
                flags,
            } => (
                flags,
                UserTask::Passwd {
                    name,
                    password_file,
                },
            ),
            UserCommand::Remove { name, flags } => (flags, UserTask::Remove { name }),
            UserCommand::List { flags } => (flags, UserTask::List),
            UserCommand::Token { name, label, flags } => (flags, UserTask::Token { name, label }),
            UserCommand::RevokeTokens { name, flags } => (flags, UserTask::RevokeTokens { name }),
        };
        (flags, Task::User(action))
    }
}

enum UserTask {
    Add {
        name: String,
        role: String,
        password_file: Option<PathBuf>,
    },
    Passwd {
        name: String,
        password_file: Option<PathBuf>,
    },
    Remove {
        name: String,
    },
    List,
    Token {
        name: String,
        label: String,
    },
    RevokeTokens {
        name: String,
    },
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    flags: Flags,
    /// Files, folders or ZIPs to import.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Files imported at once.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    flags: Flags,
    /// Remove orphan blobs and spool leftovers, and the index rows of instances whose blob is
    /// missing or corrupt (quarantining corrupt blobs), so that they can be sent again.
    #[arg(long)]
    repair: bool,
    /// Orphan blobs and spool files younger than this are left alone, since a live server may
    /// be storing them: seconds, or with a unit (90s, 10m, 2h).
    #[arg(long, default_value = "10m", value_parser = orthweb::verify::parse_grace)]
    grace: Duration,
    /// Repair even when so much would go that a setting looks wrong (another bucket or
    /// database, an unmounted volume).
    #[arg(long, requires = "repair")]
    force: bool,
    /// Blobs read at once.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
}

enum Task {
    Serve,
    Migrate,
    Import { paths: Vec<PathBuf>, jobs: usize },
    User(UserTask),
    Verify(orthweb::verify::Options),
}

/// Flags that override the settings file and the environment. Absent flags are left out, so
/// they do not mask the lower layers.
#[derive(Args, Serialize, Default)]
struct Flags {
    /// Folder for the default SQLite index, blob folder and temporary files.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// DICOM listener address (host:port).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    dicom_listen: Option<SocketAddr>,
    /// HTTP listener address (host:port).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_listen: Option<SocketAddr>,
    /// Our AE title.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    aet: Option<String>,
    /// Index URL: sqlite://PATH or postgres://USER:PASS@HOST/DB.
    #[arg(long = "index")]
    #[serde(rename = "index_url", skip_serializing_if = "Option::is_none")]
    index_url: Option<String>,
    /// Storage URL: file:///DIR or s3://BUCKET/PREFIX.
    #[arg(long = "storage")]
    #[serde(rename = "storage_url", skip_serializing_if = "Option::is_none")]
    storage_url: Option<String>,
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let (flags, task) = match cli.command {
        Command::Serve(flags) => (flags, Task::Serve),
        Command::Migrate(flags) => (flags, Task::Migrate),
        Command::User(command) => command.into_parts(),
        Command::Import(args) => (
            args.flags,
            Task::Import {
                paths: args.paths,
                jobs: args.jobs,
            },
        ),
        Command::Verify(args) => (
            args.flags,
            Task::Verify(orthweb::verify::Options {
                grace: args.grace,
                repair: args.repair,
                force: args.force,
                jobs: args.jobs,
            }),
        ),
    };
    let settings = match Settings::load(cli.config.as_deref(), flags) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("orthweb: {e}");
            return ExitCode::from(2);
        }
    };
    orthweb::telemetry::init(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("orthweb: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let done = match task {
            Task::Serve => run_server(settings).await,
            Task::Migrate => migrate(settings).await,
            Task::Import { paths, jobs } => import(settings, &paths, jobs).await,
            Task::User(task) => user(settings, task).await,
            Task::Verify(options) => return verify(settings, options).await,
        };
        done.map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("orthweb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    // One line on stdout once both listeners are bound: people read it, and tests started
    // with port 0 read the real ports from it.
    println!("orthweb ready: {}", app.listening());
    app.run_until_stopped().await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let index = orthweb::app::open_index(&settings).await?;
    println!(
        "orthweb: index at {} is up to date",
        redact_url(&settings.index_url())
    );
    // Instances stored before DICOMweb metadata was kept get it from their files.
    let blobs = orthweb::app::open_blobs(&settings).await?;
    let spool = settings.spool_dir();
    std::fs::create_dir_all(&spool)
        .with_context(|| format!("cannot create {}", spool.display()))?;
    let (filled, failed) = orthweb::dicomweb::metadata::fill_all(&index, &*blobs, &spool).await?;
    if filled + failed > 0 {
        println!("orthweb: DICOMweb metadata read from {filled} files ({failed} could not be)");
    }
    Ok(())
}

async fn user(settings: Settings, task: UserTask) -> anyhow::Result<()> {
    use orthweb::auth::cli;
    let index = orthweb::app::open_index(&settings).await?;
    match task {
        UserTask::Add {
            name,
            role,
            password_file,
        } => {
            let password = cli::read_password(password_file.as_deref())?;
            cli::add(&index, &name, &role, password).await
        }
        UserTask::Passwd {
            name,
            password_file,
        } => {
            let password = cli::read_password(password_file.as_deref())?;
            cli::passwd(&index, &name, password).await
        }
        UserTask::Remove { name } => cli::remove(&index, &name).await,
        UserTask::List => cli::list(&index).await,
        UserTask::Token { name, label } => cli::token(&index, &name, &label).await,
        UserTask::RevokeTokens { name } => cli::revoke_tokens(&index, &name).await,
    }
}

async fn import(settings: Settings, paths: &[PathBuf], jobs: usize) -> anyhow::Result<()> {
    let storage = Storage::open(&settings).await?;
    let max_size = settings.max_upload_mib * 1024 * 1024;
    let summary = orthweb::import::run(&storage.ingest, paths, jobs, max_size).await;
    print!("{}", summary.report());
    if summary.stored > 0
        && let Err(e) = storage.index.analyze().await
    {
        eprintln!("orthweb: the index's statistics were not refreshed ({e}); autovacuum will");
    }
    if summary.failed > 0 {
        anyhow::bail!(
            "{} files could not be stored; run the import again to retry them",
            summary.failed
        );
    }
    Ok(())
}

/// Exit status of `orthweb verify` when problems are left (1 is for a check that could not run).
const INCONSISTENT: u8 = 3;

async fn verify(settings: Settings, options: orthweb::verify::Options) -> anyhow::Result<ExitCode> {
    let index = orthweb::app::open_index(&settings).await?;
    let blobs = orthweb::app::open_blobs(&settings).await?;
    let report = orthweb::verify::run(&index, &blobs, &settings.spool_dir(), &options).await?;
    print!("{}", report.render());
    Ok(match report.consistent() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(INCONSISTENT),
    })
}

/// glibc hands memory back to the kernel as soon as 128 KiB lie free at the top of a heap, and
/// moves its threshold for blocks of their own mapping as blocks come and go: each received
/// instance's buffers were faulted in anew, ~70 page faults per 512 KB instance. Up to 16 MiB
/// free now stay for reuse, and blocks up to 4 MiB come from the heaps. (mimalloc, tried,
/// removed the faults too but tripled the peak memory.)
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}
