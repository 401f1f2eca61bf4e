//! Test fixtures: a sandboxed file tree for the stand-in, a throwaway PostgreSQL on loopback,
//! child daemons that are always killed, and polling with a deadline.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_maas-standin");
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("maas-standin-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relocated MAAS file tree: every stand-in command run through it sees `root` as `/`.
pub struct Sandbox {
    pub dir: TempDir,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new(tag: &str) -> Sandbox {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.0.join("home")).unwrap();
        let env = vec![
            (
                "MAAS_STANDIN_ROOT".to_string(),
                dir.0.join("root").display().to_string(),
            ),
            ("MAAS_STANDIN_NO_SERVICES".to_string(), "1".to_string()),
            ("HOME".to_string(), dir.0.join("home").display().to_string()),
        ];
        Sandbox { dir, env }
    }

    pub fn with(mut self, k: &str, v: &str) -> Sandbox {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// The sandboxed location of an absolute MAAS path.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.0.join("root").join(abs.trim_start_matches('/'))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `maas-standin ARGS` with stdin closed.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs a command line split at white space (for arguments without spaces), stdin closed:
    /// `sb.run_line("maas config --show")`.
    pub fn run_line(&self, line: &str) -> Output {
        self.run(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Runs with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that refuses before reading stdin (as MAAS's do on a bad argument) closes
        // it first: a broken pipe here is that, not a failure of the test.
        match child.stdin.take().unwrap().write_all(input.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        child.wait_with_output().unwrap()
    }

    /// Starts a daemon that is killed when the guard drops.
    pub fn spawn(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Daemon {
        let mut c = self.command(args);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let log = self.dir.0.join(format!(
            "{}-{}.log",
            args[0],
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&log).unwrap();
        c.stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        // Daemons must not outlive a test process that is killed outright.
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(
                &mut c,
                maas_standin::util::die_with_parent,
            );
        }
        Daemon {
            child: c.spawn().unwrap(),
            log,
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command exited 0, showing its stderr otherwise.
#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

/// Asserts the command's stderr contains `needle`, showing the stderr otherwise.
#[track_caller]
pub fn assert_stderr_has(o: &Output, needle: &str) {
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

/// Asserts the command exited with `code` and said `needle` on stderr.
#[track_caller]
pub fn assert_fails_with(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
    assert_stderr_has(o, needle);
}

/// A file's text; panics naming the path.
#[track_caller]
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A file's text without surrounding white space.
#[track_caller]
pub fn read_trimmed(p: &Path) -> String {
    read(p).trim().to_string()
}

/// A child process killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}
impl Daemon {
    /// SIGTERM, then SIGKILL after 3 s: nginx's master takes its workers down on SIGTERM, where
    /// a SIGKILL would leave them holding its ports.
    pub fn stop(&mut self) {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// SIGKILL, as a drill kills a daemon.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it gives `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A throwaway PostgreSQL 15 on 127.0.0.1, private socket directory, high port; stopped and
/// deleted on drop.
pub struct Postgres {
    pub dir: TempDir,
    pub port: u16,
    pub password: String,
}

fn as_postgres(program: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = TempDir::new("pg");
        let chown = |p: &Path| {
            assert!(Command::new("chown")
                .args(["-R", "postgres:postgres", &p.display().to_string()])
                .status()
                .unwrap()
                .success());
        };
        let data = dir.0.join("data");
        let sock = dir.0.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        std::fs::write(dir.0.join("pwfile"), "superpass\n").unwrap();
        chown(&dir.0);
        let o = as_postgres(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", dir.0.join("pwfile").display()),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(o.status.success(), "initdb: {}", stderr(&o));
        let port = free_port();
        let pg = Postgres {
            dir,
            port,
            password: "maas pass:@/1".into(),
        };
        pg.pg_ctl_start();
        for sql in [
            format!("CREATE ROLE maas LOGIN PASSWORD '{}'", pg.password),
            "CREATE DATABASE maasdb OWNER maas".to_string(),
        ] {
            let o = pg.psql(&sql);
            assert!(o.status.success(), "psql: {}", stderr(&o));
        }
        pg
    }

    fn data(&self) -> String {
        self.dir.0.join("data").display().to_string()
    }

    pub fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.0.join("sock").display()
        );
        let log = self.dir.0.join("pg.log").display().to_string();
        let o = as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {} {}",
            stdout(&o),
            stderr(&o)
        );
    }

    pub fn stop(&self) {
        let _ = as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// The postmaster and its children (the backends).
    pub fn pids(&self) -> Vec<u32> {
        let pidfile =
            std::fs::read_to_string(self.dir.0.join("data/postmaster.pid")).unwrap_or_default();
        let Some(main) = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        else {
            return vec![];
        };
        let mut out = vec![main];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            if status
                .lines()
                .any(|l| l.strip_prefix("PPid:").map(str::trim) == Some(&main.to_string()))
            {
                out.push(pid);
            }
        }
        out
    }

    /// SIGSTOP (`true`) or SIGCONT every process of this server: a frozen database host.
    pub fn freeze(&self, frozen: bool) {
        let sig = if frozen { "-STOP" } else { "-CONT" };
        for pid in self.pids() {
            let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
        }
    }

    pub fn psql(&self, sql: &str) -> Output {
        Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "env",
                "PGOPTIONS=-c default_transaction_read_only=off",
                "psql",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
            ])
            .arg(self.dir.0.join("sock"))
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .unwrap()
    }

    /// `postgres://` URI for the maas role.
    pub fn uri(&self) -> String {
        let enc: String = self
            .password
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("postgres://maas:{enc}@127.0.0.1:{}/maasdb", self.port)
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("maas")
            .password(&self.password)
            .dbname("maasdb")
            .connect_timeout(Duration::from_secs(2))
            .connect(postgres::NoTls)
            .unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A test that failed while the server was frozen must not leave it stopped.
        self.freeze(false);
        self.stop();
    }
}

/// GET through the stand-in's own HTTP client.
pub fn get(url: &str) -> Option<(u16, String)> {
    maas_standin::http::request("GET", url, &[], None, Duration::from_secs(3))
        .ok()
        .map(|r| (r.status, r.body))
}

pub fn post_form(url: &str, form: &str) -> Option<(u16, String)> {
    maas_standin::http::request(
        "POST",
        url,
        &[],
        Some((
            "application/x-www-form-urlencoded",
            form.as_bytes().to_vec(),
        )),
        Duration::from_secs(3),
    )
    .ok()
    .map(|r| (r.status, r.body))
}

pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A region host's MAAS processes without the snap's pebble or systemd: regiond and the
/// apiserver, then, once regiond has rendered their configuration (after its start-up against
/// the database), nginx (`maas-http`) and Temporal, as regiond's service monitor has its
/// supervisor start them. Stopped together on drop (nginx last).
pub struct RegionProcs {
    pub regiond: Daemon,
    pub apiserver: Daemon,
    pub nginx: Daemon,
    pub temporal: Daemon,
}

impl RegionProcs {
    pub fn spawn(sb: &Sandbox, flavor: &str) -> RegionProcs {
        let base = if flavor == "snap" {
            "/var/snap/maas/current"
        } else {
            "/var/lib/maas"
        };
        let regiond = sb.spawn(&["regiond", "--flavor", flavor], &[]);
        let apiserver = sb.spawn(&["apiserver", "--flavor", flavor], &[]);
        let conf = sb.path(&format!("{base}/http/regiond.nginx.conf"));
        let temporal_conf = sb.path(&format!("{base}/temporal/production.yaml"));
        wait_for(
            "regiond renders nginx's and Temporal's configuration",
            Duration::from_secs(20),
            || (conf.exists() && temporal_conf.exists()).then_some(()),
        );
        let nginx = sb.spawn(&["maas-http", "--flavor", flavor], &[]);
        let temporal = sb.spawn(&["temporal", "--flavor", flavor], &[]);
        RegionProcs {
            regiond,
            apiserver,
            nginx,
            temporal,
        }
    }
    pub fn stop(&mut self) {
        self.regiond.stop();
        self.apiserver.stop();
        self.temporal.stop();
        self.nginx.stop();
    }
}
impl Drop for RegionProcs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` ports nobody listens on, comma-separated, for `MAAS_STANDIN_RPC_PORTS` (the stand-in's
/// 5250-5259: parallel tests on one host cannot all have those).
pub fn free_ports(n: usize) -> String {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect::<Vec<_>>()
        .join(",")
}
