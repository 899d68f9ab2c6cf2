//! `PgCluster`: a private, throw-away PostgreSQL cluster (initdb + pg_ctl) on 127.0.0.1 for one test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::unistd::{Gid, Uid, User, chown, geteuid};

use super::{find_in_path, missing};

/// Bootstrap superuser created by initdb; password auth (SCRAM) is required over TCP.
pub const USER: &str = "orthweb";
pub const PASSWORD: &str = "orthweb-test-pw";

/// A running PostgreSQL cluster in a temp dir. Dropping it stops the server and deletes the data.
pub struct PgCluster {
    bin: PathBuf,
    // Field order matters only for readability: Drop stops the server before `dir` is removed.
    dir: tempfile::TempDir,
    port: u16,
    /// The unprivileged account the server runs as when the tests run as root (initdb refuses root).
    run_as: Option<(Uid, Gid)>,
    running: bool,
}

impl PgCluster {
    /// initdb + start a cluster. `None` (after printing a skip line) when PostgreSQL is not
    /// installed; panics instead when `CI=true`. Any other failure panics with the server log.
    ///
    /// This blocks for a second or two (initdb); from async tests that is acceptable before the
    /// system under test is started, or wrap it in `tokio::task::spawn_blocking`.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = find_bin_dir() else {
            missing(
                "PostgreSQL not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or in PATH)",
            );
            return None;
        };
        let run_as = if geteuid().is_root() {
            match User::from_name("postgres") {
                Ok(Some(u)) if find_in_path("runuser").is_some() => Some((u.uid, u.gid)),
                _ => {
                    missing(
                        "running as root but no `postgres` system user / `runuser` to run initdb as",
                    );
                    return None;
                }
            }
        } else {
            None
        };

        let dir = tempfile::Builder::new()
            .prefix("orthweb-pg-")
            .tempdir()
            .expect("create temp dir for PostgreSQL");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("write pwfile");
        if let Some((uid, gid)) = run_as {
            // The server account must own its data dir; the temp parent (e.g. /tmp) must be traversable.
            for p in [dir.path(), pwfile.as_path()] {
                chown(p, Some(uid), Some(gid)).expect("chown PostgreSQL temp dir to postgres");
            }
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        }

        let mut pg = PgCluster {
            bin,
            dir,
            port: 0,
            run_as,
            running: false,
        };
        let data = pg.data_dir();
        let pwarg = format!("--pwfile={}", pwfile.display());
        let out = pg.run_as_owner(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                pwarg.as_ref(),
                "--auth-local=trust".as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                // No fsync of the fresh cluster: it is disposable, and initdb is most of the start-up time.
                "--no-sync".as_ref(),
            ],
        );
        check(&out, "initdb", "");

        // The port is picked by binding :0 and releasing it, so another process may grab it
        // before postgres does; retry a few times on "address in use".
        for attempt in 0..5 {
            pg.port = free_port();
            match pg.pg_ctl_start() {
                Ok(()) => return Some(pg),
                Err(log) if attempt < 4 && log.contains("ddress already in use") => continue,
                Err(log) => panic!("pg_ctl start failed on port {}:\n{log}", pg.port),
            }
        }
        unreachable!()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://orthweb:…@127.0.0.1:port/db` (TCP + password, like the server will use).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a database (via `createdb` over TCP with the password) and return its URL.
    pub fn create_database(&self, name: &str) -> String {
        let out = self.client_tool("createdb", &[name]);
        check(&out, "createdb", "");
        self.url(name)
    }

    /// Run SQL through `psql -At` and return its stdout (panics on error). Handy for asserting on
    /// the index without going through sqlx.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.client_tool(
            "psql",
            &["-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
        );
        check(&out, "psql", sql);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stop the server (immediate shutdown, like a crash), keeping the data: simulates "the database
    /// goes away". `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let out = self.run_as_owner(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
            if !out.status.success() {
                eprintln!(
                    "pg_ctl stop failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            self.running = false;
        }
    }

    /// Serves TLS with `cert` and `key` (PEM) and refuses TCP clients that do not use it
    /// (`hostssl` only), then restarts.
    pub fn require_tls(&mut self, cert: &Path, key: &Path) {
        let data = self.data_dir();
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = data.join(name);
            std::fs::copy(from, &to).expect("copy the TLS files into the cluster");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some((uid, gid)) = self.run_as {
                chown(&to, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
        )
        .unwrap();
        self.stop();
        self.restart();
    }

    /// Start again after `stop`, on the same port and data.
    pub fn restart(&mut self) {
        if !self.running {
            self.pg_ctl_start()
                .unwrap_or_else(|log| panic!("pg_ctl restart failed:\n{log}"));
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        // Listen on loopback TCP only; the unix socket goes in our private dir so nothing collides
        // with a system cluster. fsync off: the cluster is throw-away and the machine is small.
        // synchronous_commit stays on: `stop()` is a crash, and committed rows must survive it.
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off \
             -c full_page_writes=off -c shared_buffers=32MB -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = self.run_as_owner(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        );
        if out.status.success() {
            self.running = true;
            Ok(())
        } else {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            Err(format!(
                "{}\n{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Run a server-side binary (initdb, pg_ctl) as the data dir owner.
    fn run_as_owner(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // The postgres account may not be able to enter the test's cwd (e.g. under /root).
        cmd.args(args).current_dir(self.dir.path());
        cmd.output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()))
    }

    /// Run a client tool (createdb, psql) over TCP with password auth, as whoever we are.
    fn client_tool(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        Command::new(&exe)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(args)
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        // `dir` (a TempDir) is removed after this; root can delete postgres-owned files.
    }
}

fn check(out: &Output, what: &str, ctx: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}) {ctx}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Newest `/usr/lib/postgresql/<version>/bin` (Debian layout), else the dir of `initdb` in PATH.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |d: &Path| {
        ["initdb", "pg_ctl", "createdb", "psql"]
            .iter()
            .all(|t| d.join(t).is_file())
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ver: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            Some((ver?, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let initdb = find_in_path("initdb")?;
    let dir = initdb.parent()?.to_path_buf();
    has_tools(&dir).then_some(dir)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
