//! The `orthweb` command: parses the command line and runs the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use orthweb::app::{Application, Storage};
use orthweb::config::Settings;
use orthweb::index::Index;

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

enum Task {
    Serve,
    Migrate,
    Import { paths: Vec<PathBuf>, jobs: usize },
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
    let cli = Cli::parse();
    let (flags, task) = match cli.command {
        Command::Serve(flags) => (flags, Task::Serve),
        Command::Migrate(flags) => (flags, Task::Migrate),
        Command::Import(args) => (
            args.flags,
            Task::Import {
                paths: args.paths,
                jobs: args.jobs,
            },
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
        match task {
            Task::Serve => run_server(settings).await,
            Task::Migrate => migrate(settings).await,
            Task::Import { paths, jobs } => import(settings, &paths, jobs).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
    println!(
        "orthweb ready: dicom={} http={}",
        app.dicom_addr(),
        app.http_addr()
    );
    app.run_until_stopped().await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let url = settings.index_url();
    Index::open(&url).await?;
    println!(
        "orthweb: index at {} is up to date",
        orthweb::config::redact_url(&url)
    );
    Ok(())
}

async fn import(settings: Settings, paths: &[PathBuf], jobs: usize) -> anyhow::Result<()> {
    let storage = Storage::open(&settings).await?;
    let max_size = settings.max_upload_mib * 1024 * 1024;
    let summary = orthweb::import::run(&storage.ingest, paths, jobs, max_size).await;
    print!("{}", summary.report());
    if summary.failed > 0 {
        anyhow::bail!(
            "{} files could not be stored; run the import again to retry them",
            summary.failed
        );
    }
    Ok(())
}
