//! `infra/bootstrap/orthweb-bootstrap.sh`, run outside EC2: in a temporary root (`ROOT`), with
//! stand-ins first on `PATH` for everything that reaches outside it (the AWS CLI over a folder
//! that plays the bucket, curl answering for the RDS trust store, systemctl, dnf, useradd,
//! chown, runuser, the CloudWatch agent), each recording how it was called. The real
//! `orthweb` binary of this build is what gets installed.
//!
//! [`bootstrap`] is for tests that go on to start the server with the configuration written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{find_in_path, missing};
use crate::terraform::infra_dir;

/// The inputs Terraform would hand a server (see `bootstrap_inputs` in `infra/compute.tf`).
#[derive(Clone, Debug)]
pub(crate) struct Inputs {
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub kms_key_arn: String,
    pub db_host: String,
    pub db_port: u16,
    pub db_name: String,
    pub db_user: String,
    pub secret_arn: String,
    pub site_name: String,
    /// A provided certificate chain and key (PEM files); `None`: the shared self-signed one.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// What the RDS trust store serves (PEM); `None`: a throwaway CA made here.
    pub rds_ca: Option<PathBuf>,
    /// The SHA-256 the binary must have; `None`: the real one.
    pub binary_sha256: Option<String>,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            region: "eu-west-3".into(),
            bucket: "orthweb-data-123456789012-eu-west-3".into(),
            prefix: "dicom".into(),
            kms_key_arn:
                "arn:aws:kms:eu-west-3:123456789012:key/0a1b2c3d-0000-4000-8000-000000000001".into(),
            db_host: "orthweb.abcdefghijkl.eu-west-3.rds.amazonaws.com".into(),
            db_port: 5432,
            db_name: "orthweb".into(),
            db_user: "orthweb".into(),
            secret_arn:
                "arn:aws:secretsmanager:eu-west-3:123456789012:secret:rds!db-0c8d2e4f-AbCdEf".into(),
            site_name: "pacs.example.test".into(),
            tls: None,
            rds_ca: None,
            binary_sha256: None,
        }
    }
}

/// The stand-ins, and the folder that plays the bucket: shared by every server booted in it,
/// as the servers of one deployment share their bucket.
pub(crate) struct World {
    dir: tempfile::TempDir,
}

/// One bootstrap run, in its own root.
pub(crate) struct Booted {
    pub root: tempfile::TempDir,
    pub out: Output,
    /// The stand-ins' record of how they were called, one line each.
    pub calls: String,
}

/// A server's root after a successful bootstrap, with the world it was booted in.
pub(crate) struct Bootstrapped {
    pub world: World,
    pub booted: Booted,
    /// The configuration written (`ROOT/etc/orthweb/orthweb.toml`); its paths point into ROOT.
    pub config: PathBuf,
}

/// Runs the bootstrap once with `inputs` and returns where it wrote the configuration; panics
/// if it fails. `None` (after a skip line; a panic under CI) when bash or openssl is missing.
pub(crate) fn bootstrap(inputs: &Inputs) -> Option<Bootstrapped> {
    let world = World::new()?;
    let booted = world.boot(inputs);
    booted.assert_success();
    let config = booted.path("etc/orthweb/orthweb.toml");
    Some(Bootstrapped {
        world,
        booted,
        config,
    })
}

const RECORDER: &str = r#"#!/bin/bash
printf '%s %s\n' "$(basename "$0")" "$*" >>"$STANDIN_LOG"
"#;

const RUNUSER: &str = r#"#!/bin/bash
# The orthweb commands the bootstrap runs as the service user: an index without users.
printf 'runuser %s\n' "$*" >>"$STANDIN_LOG"
case " $* " in *" user list "*) echo 'NAME                             ROLE     CREATED' ;; esac
case " $* " in *" --password-file "*) cat >/dev/null ;; esac
"#;

const CURL: &str = r#"#!/bin/bash
# Only the RDS trust store answers.
printf 'curl %s\n' "$*" >>"$STANDIN_LOG"
out= url=
while [ $# -gt 0 ]; do
  case $1 in
  -o) out=$2; shift 2 ;;
  *) url=$1; shift ;;
  esac
done
case $url in
https://truststore.pki.rds.amazonaws.com/*) cp "$STANDIN_RDS_CA" "$out" ;;
*) echo "curl stand-in: nothing at $url" >&2; exit 22 ;;
esac
"#;

const AWS: &str = r#"#!/bin/bash
# The AWS CLI's S3 commands the bootstrap uses, over a folder ($STANDIN_S3/BUCKET/KEY).
printf 'aws %s\n' "$*" >>"$STANDIN_LOG"
set -euo pipefail
args=()
for a in "$@"; do [ "$a" = --only-show-errors ] || args+=("$a"); done
set -- "${args[@]}"
case "$1 $2" in
"s3 cp")
  if [[ $3 == s3://* ]]; then
    src=$STANDIN_S3/${3#s3://}
    [ -f "$src" ] || { echo "fatal error: An error occurred (404) when calling the HeadObject operation: Key \"${3#s3://}\" does not exist" >&2; exit 1; }
    cp "$src" "$4"
  else
    dst=$STANDIN_S3/${4#s3://}
    mkdir -p "$(dirname "$dst")"
    cp "$3" "$dst"
  fi
  ;;
"s3api put-object" | "s3api head-object")
  op=$2
  shift 2
  bucket= key= body= unless=
  while [ $# -gt 0 ]; do
    case $1 in
    --bucket) bucket=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --body) body=$2; shift 2 ;;
    --if-none-match) unless=$2; shift 2 ;;
    *) shift ;;
    esac
  done
  object=$STANDIN_S3/$bucket/$key
  if [ "$op" = head-object ]; then
    [ -f "$object" ] || { echo "An error occurred (404) when calling the HeadObject operation: Not Found" >&2; exit 254; }
    echo '{}'
  elif [ -n "$unless" ] && [ -e "$object" ]; then
    echo "An error occurred (PreconditionFailed) when calling the PutObject operation: At least one of the pre-conditions you specified did not hold" >&2
    exit 254
  else
    mkdir -p "$(dirname "$object")"
    cp "$body" "$object"
    echo '{"ETag": "\"stand-in\""}'
  fi
  ;;
*) echo "aws stand-in: not supported: $*" >&2; exit 2 ;;
esac
"#;

/// The binary this build made, and its SHA-256 (hashed once per test process).
fn binary() -> (&'static Path, &'static str) {
    static SHA: OnceLock<String> = OnceLock::new();
    let path = Path::new(env!("CARGO_BIN_EXE_orthweb"));
    let sha = SHA.get_or_init(|| {
        use sha2::Digest;
        let bytes = std::fs::read(path).expect("read the orthweb binary");
        hex::encode(sha2::Sha256::digest(&bytes))
    });
    (path, sha)
}

impl World {
    /// Writes the stand-ins, a throwaway RDS CA, and the binary into the "bucket".
    pub(crate) fn new() -> Option<World> {
        for tool in ["bash", "openssl", "sha256sum", "getent"] {
            if find_in_path(tool).is_none() {
                missing(&format!("{tool} not installed (the bootstrap needs it)"));
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("orthweb-boot-")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let recorders = [
            "dnf",
            "systemctl",
            "useradd",
            "chown",
            "amazon-cloudwatch-agent-ctl",
        ];
        let scripts = recorders.iter().map(|name| (*name, RECORDER)).chain([
            ("runuser", RUNUSER),
            ("curl", CURL),
            ("aws", AWS),
        ]);
        for (name, text) in scripts {
            let path = bin.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=Stand-in RDS CA",
                "-keyout",
            ])
            .arg(dir.path().join("rds-ca.key"))
            .arg("-out")
            .arg(dir.path().join("rds-ca.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(World { dir })
    }

    /// The folder that plays the bucket `bucket`.
    pub(crate) fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.path().join("s3").join(bucket)
    }

    /// Runs the bootstrap for one server in a fresh root.
    pub(crate) fn boot(&self, inputs: &Inputs) -> Booted {
        let (binary, sha) = binary();
        let bucket = self.bucket_dir(&inputs.bucket);
        let key = format!("release/orthweb-{sha}");
        std::fs::create_dir_all(bucket.join("release")).unwrap();
        let _ = std::os::unix::fs::symlink(binary, bucket.join(&key));
        if let Some((cert, private_key)) = &inputs.tls {
            std::fs::create_dir_all(bucket.join("tls/provided")).unwrap();
            std::fs::copy(cert, bucket.join("tls/provided/site.crt")).unwrap();
            std::fs::copy(private_key, bucket.join("tls/provided/site.key")).unwrap();
        }

        let root = tempfile::Builder::new()
            .prefix("orthweb-root-")
            .tempdir()
            .unwrap();
        let inputs_file = root.path().join("bootstrap.env");
        let values = [
            ("ORTHWEB_REGION", inputs.region.clone()),
            ("ORTHWEB_BUCKET", inputs.bucket.clone()),
            ("ORTHWEB_PREFIX", inputs.prefix.clone()),
            ("ORTHWEB_KMS_KEY_ARN", inputs.kms_key_arn.clone()),
            ("ORTHWEB_DB_HOST", inputs.db_host.clone()),
            ("ORTHWEB_DB_PORT", inputs.db_port.to_string()),
            ("ORTHWEB_DB_NAME", inputs.db_name.clone()),
            ("ORTHWEB_DB_USER", inputs.db_user.clone()),
            ("ORTHWEB_DB_SECRET_ARN", inputs.secret_arn.clone()),
            ("ORTHWEB_SITE_NAME", inputs.site_name.clone()),
            ("ORTHWEB_BINARY_S3_KEY", key),
            ("ORTHWEB_BINARY_URL", String::new()),
            (
                "ORTHWEB_BINARY_SHA256",
                inputs
                    .binary_sha256
                    .clone()
                    .unwrap_or_else(|| sha.to_string()),
            ),
            (
                "ORTHWEB_TLS_SOURCE",
                if inputs.tls.is_some() {
                    "provided"
                } else {
                    "shared-self-signed"
                }
                .into(),
            ),
            (
                "ORTHWEB_TLS_CERT_SHA256",
                match &inputs.tls {
                    Some((cert, _)) => {
                        use sha2::Digest;
                        hex::encode(sha2::Sha256::digest(std::fs::read(cert).unwrap()))
                    }
                    None => String::new(),
                },
            ),
            ("ORTHWEB_LOG_GROUP", "/orthweb/server".into()),
            ("ORTHWEB_READY_TIMEOUT", "0".into()),
        ];
        // The same KEY='value' lines the user data template writes.
        let text: String = values.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
        std::fs::write(&inputs_file, text).unwrap();

        let log = self.dir.path().join(format!(
            "calls-{}.log",
            root.path().file_name().unwrap().to_string_lossy()
        ));
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let rds_ca = inputs
            .rds_ca
            .clone()
            .unwrap_or_else(|| self.dir.path().join("rds-ca.pem"));
        let out = Command::new("bash")
            .arg(infra_dir().join("bootstrap/orthweb-bootstrap.sh"))
            .arg(&inputs_file)
            .env("ROOT", root.path())
            .env("PATH", path)
            .env("STANDIN_LOG", &log)
            .env("STANDIN_S3", self.dir.path().join("s3"))
            .env("STANDIN_RDS_CA", rds_ca)
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .expect("run the bootstrap");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        Booted { root, out, calls }
    }
}

impl Booted {
    /// A path under this server's root (`rel` without a leading slash).
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_else(|e| panic!("{rel} was not written: {e}\n{}", self.report()))
    }

    fn report(&self) -> String {
        format!(
            "status {}\nstdout:\n{}\nstderr:\n{}\ncalls:\n{}",
            self.out.status,
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr),
            self.calls
        )
    }

    pub(crate) fn assert_success(&self) {
        assert!(
            self.out.status.success(),
            "the bootstrap failed: {}",
            self.report()
        );
    }
}

/// `key = value` lines of a flat TOML file, values without their quotes.
fn toml_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains(" = "))
        .map(|l| {
            let (key, value) = l.split_once(" = ").unwrap();
            (key.to_string(), value.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn the_bootstrap_installs_the_server_with_a_hardened_unit_and_no_password() {
    let inputs = Inputs::default();
    let Some(done) = bootstrap(&inputs) else {
        return;
    };
    let boot = &done.booted;
    let root = boot.root.path().display().to_string();

    // The configuration: every key one the server knows, the values of issue 12's layout.
    let config = std::fs::read_to_string(&done.config).unwrap();
    let keys = toml_keys(&config);
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("orthweb.sample.toml"))
            .unwrap();
    let known: Vec<String> = toml_keys(&sample).into_iter().map(|(k, _)| k).collect();
    for (key, _) in &keys {
        assert!(
            known.contains(key),
            "{key} is not a setting of orthweb.sample.toml"
        );
    }
    let get = |key: &str| -> String {
        keys.iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} missing from\n{config}"))
            .1
            .clone()
    };
    assert_eq!(
        get("index_url"),
        format!(
            "postgres://{}@{}:{}/{}?sslmode=verify-full&sslrootcert={root}/etc/orthweb/rds-ca.pem",
            inputs.db_user, inputs.db_host, inputs.db_port, inputs.db_name
        )
    );
    assert_eq!(get("index_secret"), inputs.secret_arn);
    assert_eq!(
        get("storage_url"),
        format!("s3://{}/{}", inputs.bucket, inputs.prefix)
    );
    assert_eq!(get("s3_sse"), "aws:kms");
    assert_eq!(get("s3_kms_key_id"), inputs.kms_key_arn);
    assert_eq!(get("data_dir"), format!("{root}/var/lib/orthweb"));
    assert_eq!(get("https"), "true");
    assert_eq!(get("http_listen"), "0.0.0.0:443");
    assert_eq!(get("site_name"), inputs.site_name);
    assert_eq!(get("dicom_plain"), "false");
    assert_eq!(get("dicom_tls"), "true");
    assert_eq!(get("dicom_tls_listen"), "0.0.0.0:11112");
    assert_eq!(get("log_format"), "json");
    for key in ["tls_cert_file", "tls_key_file"] {
        assert!(Path::new(&get(key)).is_file(), "{key} names no file");
    }
    let ca = boot.read("etc/orthweb/rds-ca.pem");
    assert!(ca.contains("BEGIN CERTIFICATE"));

    // Nothing under /etc holds a password.
    for entry in walk(&boot.path("etc")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.to_ascii_lowercase().contains("password"),
            "{} mentions a password:\n{text}",
            entry.display()
        );
    }

    // The unit: a dedicated user, no privilege but binding 443, a read-only system.
    let unit = boot.read("etc/systemd/system/orthweb.service");
    for line in [
        "User=orthweb",
        "Group=orthweb",
        "ExecStart=/usr/local/bin/orthweb serve --config /etc/orthweb/orthweb.toml",
        "Environment=AWS_REGION=eu-west-3",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/orthweb",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "Restart=on-failure",
        "StandardError=append:/var/log/orthweb/orthweb.log",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "the unit lacks {line}:\n{unit}"
        );
    }
    if find_in_path("systemd-analyze").is_some() {
        // In a bare root systemd misses its own targets and /bin/kill; what matters here is
        // that it understands every directive of the unit.
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={root}"))
            .arg("/etc/systemd/system/orthweb.service")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        let complaints: Vec<&str> = said
            .lines()
            .filter(|l| {
                [
                    "Unknown",
                    "Invalid",
                    "Failed to parse",
                    "ignoring",
                    "deprecated",
                ]
                .iter()
                .any(|w| l.contains(w))
            })
            .collect();
        assert!(complaints.is_empty(), "systemd-analyze verify: {said}");
    }

    // The binary of this build, installed and runnable.
    let installed = boot.path("usr/local/bin/orthweb");
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&boot.out.stderr).contains("installed orthweb"));
    let published = done.world.bucket_dir(&inputs.bucket).join("release");
    assert!(
        published.read_dir().unwrap().count() == 1,
        "the binary came from the bucket"
    );

    // What it asked of the system.
    let calls = &boot.calls;
    for expected in [
        "useradd --system --user-group --home-dir /var/lib/orthweb --no-create-home --shell /sbin/nologin orthweb",
        "dnf install -y -q amazon-cloudwatch-agent logrotate",
        "amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:/opt/aws/amazon-cloudwatch-agent/etc/orthweb.json",
        "runuser -u orthweb -- env AWS_REGION=eu-west-3 /usr/local/bin/orthweb --config /etc/orthweb/orthweb.toml user add admin --role admin --password-file /dev/stdin",
        "systemctl enable orthweb.service",
        "systemctl restart orthweb.service",
        "curl -fsSL --proto =https --retry 5 --retry-connrefused -o",
    ] {
        assert!(calls.contains(expected), "no call `{expected}` in\n{calls}");
    }
    let agent = boot.read("opt/aws/amazon-cloudwatch-agent/etc/orthweb.json");
    let agent: serde_json::Value = serde_json::from_str(&agent).expect("the agent's JSON");
    let files = &agent["logs"]["logs_collected"]["files"]["collect_list"];
    assert_eq!(files[0]["file_path"], "/var/log/orthweb/orthweb.log");
    assert_eq!(files[0]["log_group_name"], "/orthweb/server");
}

#[test]
fn two_servers_share_one_self_signed_certificate() {
    let Some(world) = World::new() else {
        return;
    };
    let inputs = Inputs::default();
    let first = world.boot(&inputs);
    first.assert_success();
    let second = world.boot(&inputs);
    second.assert_success();
    let cert = first.read("etc/orthweb/tls/site.crt");
    assert_eq!(
        cert,
        second.read("etc/orthweb/tls/site.crt"),
        "two certificates"
    );
    assert_eq!(
        first.read("etc/orthweb/tls/site.key"),
        second.read("etc/orthweb/tls/site.key")
    );
    assert!(
        world
            .bucket_dir(&inputs.bucket)
            .join(format!("tls/self-signed/{}.pem", inputs.site_name))
            .is_file(),
        "the certificate was not published in the bucket"
    );
    assert!(first.calls.contains("--if-none-match *"), "{}", first.calls);
    assert!(
        !second.calls.contains("s3api put-object"),
        "{}",
        second.calls
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(first.path("etc/orthweb/tls/site.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("DNS:{}", inputs.site_name)),
        "{text}"
    );
    assert!(
        text.contains("rsaEncryption"),
        "RSA, as DICOM TLS 1.2 peers need: {text}"
    );
}

#[test]
fn a_provided_certificate_is_installed_as_given() {
    let Some(world) = World::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=pacs.example.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    let inputs = Inputs {
        tls: Some((cert.clone(), key.clone())),
        ..Inputs::default()
    };
    let boot = world.boot(&inputs);
    boot.assert_success();
    assert_eq!(
        std::fs::read_to_string(&cert).unwrap(),
        boot.read("etc/orthweb/tls/site.crt")
    );
    // The same key, whatever PEM flavour openssl wrote it in.
    let modulus = |path: &Path| {
        let out = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        modulus(&key),
        modulus(&boot.path("etc/orthweb/tls/site.key"))
    );
    assert!(!boot.calls.contains("tls/self-signed"), "{}", boot.calls);
}

#[test]
fn a_binary_that_does_not_match_its_checksum_is_refused() {
    let Some(world) = World::new() else {
        return;
    };
    let inputs = Inputs {
        binary_sha256: Some("0".repeat(64)),
        ..Inputs::default()
    };
    let boot = world.boot(&inputs);
    assert!(!boot.out.status.success(), "a wrong binary was accepted");
    assert!(String::from_utf8_lossy(&boot.out.stderr).contains("SHA-256"));
    assert!(!boot.path("usr/local/bin/orthweb").exists());
    assert!(!boot.path("etc/systemd/system/orthweb.service").exists());
    assert!(!boot.calls.contains("systemctl"), "{}", boot.calls);
}

#[test]
fn the_bootstrap_is_shellcheck_clean() {
    let Some(shellcheck) = find_in_path("shellcheck") else {
        missing("shellcheck not installed (apt-get install shellcheck)");
        return;
    };
    let out = Command::new(shellcheck)
        .args(["--shell=bash", "--severity=style"])
        .arg(infra_dir().join("bootstrap/orthweb-bootstrap.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
