//! A throwaway PostgreSQL server for tests (feature `testing`): Debian's `postgresql`
//! package (installed through `scripts/ensure_postgres.sh` when missing), a fresh data
//! directory in a temporary folder, a free loopback port and a socket directory of its own.
//! As root, `initdb` and `pg_ctl` run as the `postgres` user (`runuser`), which owns the
//! folder. The server is stopped by its pid when the value drops; [`TestPostgres::kill9`]
//! and [`TestPostgres::start`] play a crash and a restart on the same data.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a stopped server is given to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A PostgreSQL server of a test's own.
pub struct TestPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    pid: Option<u32>,
}

fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Returns whether a process is alive (a zombie is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).output();
}

fn wait_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl TestPostgres {
    /// Installs PostgreSQL if needed, creates a fresh cluster and starts it.
    pub fn start_new() -> Result<Self, String> {
        let bin = match find_bin() {
            Some(bin) => bin,
            None => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure_postgres.sh");
                run(
                    Command::new("bash").arg(&script),
                    "scripts/ensure_postgres.sh",
                )?;
                find_bin().ok_or("postgresql is not installed under /usr/lib/postgresql")?
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("centralino-pg-")
            .tempdir()
            .map_err(|e| format!("temporary folder: {e}"))?;
        std::fs::create_dir(dir.path().join("sock")).map_err(|e| format!("socket folder: {e}"))?;
        let as_postgres = is_root();
        if as_postgres {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "chown",
            )?;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let mut pg = Self {
            bin,
            dir,
            port,
            as_postgres,
            pid: None,
        };
        let data = pg.data();
        pg.run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        pg.start()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args).current_dir(self.dir.path());
        run(&mut cmd, tool)
    }

    /// Starts (or restarts, after [`TestPostgres::kill9`]) the server on its port and data.
    pub fn start(&mut self) -> Result<(), String> {
        let data = self.data();
        let sock = self.dir.path().join("sock").display().to_string();
        let log = self.dir.path().join("postgres.log").display().to_string();
        let options = format!(
            "-p {} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=100",
            self.port
        );
        self.run_pg(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
            ],
        )
        .map_err(|e| format!("{e}\n{}", self.log()))?;
        let pidfile = std::fs::read_to_string(Path::new(&data).join("postmaster.pid"))
            .map_err(|e| format!("postmaster.pid: {e}"))?;
        let pid = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("postmaster.pid has no pid")?;
        self.pid = Some(pid);
        Ok(())
    }

    /// Returns the server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Returns the DSN of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Returns the DSN of another database, created when missing (one per test suite).
    pub fn database(&self, name: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let sock = self.dir.path().join("sock").display().to_string();
        let exists = self.run_pg(
            "psql",
            &[
                "-h",
                &sock,
                "-p",
                &port,
                "-U",
                "postgres",
                "-tAc",
                &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
            ],
        )?;
        if exists.trim() != "1" {
            self.run_pg(
                "createdb",
                &["-h", &sock, "-p", &port, "-U", "postgres", name],
            )?;
        }
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// Returns the postmaster's pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Kills the server with SIGKILL, the postmaster and every backend, as a crash would,
    /// and waits until they are gone. The data stays for [`TestPostgres::start`].
    pub fn kill9(&mut self) -> Result<(), String> {
        let Some(pid) = self.pid.take() else {
            return Ok(());
        };
        let mut all = children(pid);
        all.push(pid);
        for p in &all {
            signal(*p, "-KILL");
        }
        if !wait_gone(&all, STOP_GRACE) {
            return Err(format!("postgres processes {all:?} survived SIGKILL"));
        }
        // A dead postmaster whose zombie nobody reaped would look alive to the next start.
        let _ = std::fs::remove_file(Path::new(&self.data()).join("postmaster.pid"));
        Ok(())
    }

    /// Stops the server (fast shutdown by its pid, then SIGKILL after a grace period).
    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        let mut all = children(pid);
        all.push(pid);
        signal(pid, "-INT");
        if !wait_gone(&[pid], STOP_GRACE) {
            for p in &all {
                signal(*p, "-KILL");
            }
            wait_gone(&all, STOP_GRACE);
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
