//! Terraform, offline: the machine's provider mirror through a CLI configuration of our own, and
//! a private copy of `infra/` per test, so that nothing (`.terraform/`, state, overrides) is
//! ever written into the source tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{find_in_path, missing};

/// The provider version `infra/versions.tf` pins, which the mirror must hold.
const AWS_PROVIDER: &str = "registry.terraform.io/hashicorp/aws/5.100.0";

/// `infra/` in the source tree.
pub(crate) fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra")
}

/// The `terraform` binary, or `None` after a skip line (a panic under `CI=true`).
pub(crate) fn terraform_bin() -> Option<PathBuf> {
    let found = find_in_path("terraform");
    if found.is_none() {
        missing("terraform not installed (the 1.11 release infra/versions.tf pins)");
    }
    found
}

/// A provider mirror holding the pinned aws provider: `ORTHWEB_TF_MIRROR`, else the first of a
/// few usual places that has it. `None` means terraform downloads it from the registry.
fn provider_mirror() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORTHWEB_TF_MIRROR") {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut roots = vec![
        PathBuf::from("/opt"),
        PathBuf::from("/usr/local/share"),
        PathBuf::from("/usr/share"),
    ];
    if let Some(home) = home {
        roots.push(home.join(".terraform.d"));
        roots.push(home.join(".local/share/terraform"));
    }
    roots.iter().find_map(|root| search(root, 3))
}

fn search(dir: &Path, depth: u32) -> Option<PathBuf> {
    if dir.join(AWS_PROVIDER).is_dir() {
        return Some(dir.to_path_buf());
    }
    if depth == 0 {
        return None;
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    children.sort();
    children.iter().find_map(|child| search(child, depth - 1))
}

/// A private copy of `infra/` with its own terraform CLI configuration.
pub(crate) struct Workdir {
    terraform: PathBuf,
    dir: tempfile::TempDir,
    cli_config: PathBuf,
    env: Vec<(String, String)>,
}

impl Workdir {
    /// Copies `infra/` (without local state, caches, overrides or variable files). `None`
    /// when terraform is missing (see [`terraform_bin`]).
    pub(crate) fn new() -> Option<Workdir> {
        let terraform = terraform_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("orthweb-infra-")
            .tempdir()
            .expect("create a temp dir for infra/");
        copy_config(&infra_dir(), &dir.path().join("infra"));
        let cli_config = dir.path().join("terraform.rc");
        let installation = match provider_mirror() {
            Some(mirror) => format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
                mirror.display()
            ),
            None => {
                eprintln!("no provider mirror found: terraform will use the registry");
                String::new()
            }
        };
        std::fs::write(&cli_config, installation).unwrap();
        Some(Workdir {
            terraform,
            dir,
            cli_config,
            env: Vec::new(),
        })
    }

    /// The copy of `infra/` (the root module).
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("infra")
    }

    /// Environment for every later terraform command.
    pub(crate) fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Writes a file next to the configuration (an override, a variable file).
    pub(crate) fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).unwrap();
    }

    /// Runs terraform in the copy; returns its output and how long it took.
    pub(crate) fn run(&self, args: &[&str]) -> (Output, Duration) {
        let start = Instant::now();
        let mut cmd = Command::new(&self.terraform);
        cmd.args(args)
            .current_dir(self.path())
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_DATA_DIR")
            .env_remove("TF_WORKSPACE");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run terraform {args:?}: {e}"));
        (out, start.elapsed())
    }

    /// Runs terraform and panics with its output unless it succeeds; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let (out, _) = self.run(args);
        check(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `terraform init` from the mirror (the state stays local, in the copy).
    pub(crate) fn init(&self) {
        self.ok(&["init", "-input=false", "-no-color"]);
    }
}

/// Panics with terraform's output unless it succeeded.
pub(crate) fn check(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "terraform {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies the configuration files of `from` into `to`, recursively, leaving out what a local
/// run leaves behind (`.terraform/`, state, lock file, overrides, variable files).
fn copy_config(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let local_only = name.starts_with(".terraform")
            || name.contains(".tfstate")
            || name.ends_with("_override.tf")
            || name.ends_with(".tfvars")
            || name.ends_with(".tfplan");
        if local_only {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_config(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}
