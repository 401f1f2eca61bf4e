//! Runs inside a local-model host (the test process has no route into the lab): continuous
//! database writes or HTTP requests, each attempt one JSON line in `--out`, until `--stop`
//! exists or `--seconds` pass. Bounded in count and time; it stops by itself.

use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// JSON-lines record of every attempt.
    #[arg(long, global = true, default_value = "/tmp/e2e-probe.jsonl")]
    out: PathBuf,
    /// Stop when this file exists.
    #[arg(long, global = true, default_value = "/tmp/e2e-probe.stop")]
    stop: PathBuf,
    /// Milliseconds between attempts.
    #[arg(long, global = true, default_value_t = 100)]
    interval_ms: u64,
    /// Hard limit on the run.
    #[arg(long, global = true, default_value_t = 600)]
    seconds: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// INSERT increasing integers into e2e_writes(n) through `dsn`; a line per attempt says
    /// whether the commit was acknowledged.
    Writer {
        /// libpq connection string, e.g. "host=10.77.0.201 user=... password=... dbname=..."
        #[arg(long)]
        dsn: String,
        /// Table to write into (a plain identifier).
        #[arg(long, default_value = "e2e_writes")]
        table: String,
    },
    /// GET `url` (http only); a line per attempt with the status and the first 200 bytes.
    Http {
        #[arg(long)]
        url: String,
    },
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn record(out: &mut std::fs::File, v: serde_json::Value) {
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// A PostgreSQL error with its cause: the client's Display says only "db error" or "error
/// connecting to server"; the record should say which.
fn pg_error(e: &postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("db error {}: {}", db.code().code(), db.message()),
        (None, Some(src)) => format!("{e}: {src}"),
        (None, None) => e.to_string(),
    }
}

fn http_get(url: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s =
        TcpStream::connect_timeout(&sock, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.chars().take(200).collect()))
}

/// TLS as a client of the DB VIP uses it (the DSN's sslmode decides; its default, prefer,
/// takes TLS, which every remote pg_hba line of postgresql-ha requires).
fn tls() -> Result<postgres_openssl::MakeTlsConnector, String> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
        .map_err(|e| e.to_string())?;
    b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    Ok(postgres_openssl::MakeTlsConnector::new(b.build()))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)?;
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let stop = |p: &Path| p.exists() || Instant::now() > deadline;
    match a.cmd {
        Cmd::Writer { dsn, table } => {
            if table.is_empty()
                || !table
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                anyhow::bail!("--table {table:?}: lowercase letters, digits and _ only");
            }
            let create = format!("CREATE TABLE IF NOT EXISTS {table} (n bigint PRIMARY KEY, at timestamptz DEFAULT now())");
            let insert = format!("INSERT INTO {table} (n) VALUES ($1) ON CONFLICT (n) DO NOTHING");
            let mut client: Option<postgres::Client> = None;
            let mut n: i64 = 0;
            while !stop(&a.stop) {
                n += 1;
                let started = now_ms();
                let result = (|| -> Result<(), String> {
                    if client.as_ref().is_none_or(|c| c.is_closed()) {
                        let mut c =
                            postgres::Client::connect(&dsn, tls()?).map_err(|e| pg_error(&e))?;
                        c.batch_execute(&create).map_err(|e| pg_error(&e))?;
                        client = Some(c);
                    }
                    let c = client.as_mut().expect("connected above");
                    c.execute(insert.as_str(), &[&n])
                        .map(drop)
                        .map_err(|e| pg_error(&e))
                })();
                if result.is_err() {
                    client = None;
                }
                record(
                    &mut out,
                    serde_json::json!({"n": n, "ok": result.is_ok(), "t_ms": started, "ms": now_ms() - started, "error": result.err()}),
                );
                std::thread::sleep(Duration::from_millis(a.interval_ms));
            }
        }
        Cmd::Http { url } => {
            while !stop(&a.stop) {
                let started = now_ms();
                let r = http_get(&url);
                let ok = matches!(r, Ok((200..=299, _)));
                let (status, body, error) = match r {
                    Ok((s, b)) => (Some(s), b, None),
                    Err(e) => (None, String::new(), Some(e)),
                };
                record(
                    &mut out,
                    serde_json::json!({"ok": ok, "t_ms": started, "ms": now_ms() - started, "status": status, "body": body, "error": error}),
                );
                std::thread::sleep(Duration::from_millis(a.interval_ms));
            }
        }
    }
    Ok(())
}
