//! Patroni's `/metrics` relayed to plain http on loopback (`dispatch patroni-metrics <port>`), so
//! that a collector that cannot read this unit's key still scrapes Patroni.
//!
//! Patroni's REST API wants a client certificate from the application's CA
//! (`restapi.verify_client: required`), and it stays so: with `optional`, Patroni's
//! `check_access` still guards the unsafe methods, but GET /cluster, /config and /patroni would
//! answer any TLS client. The strictly confined opentelemetry-collector snap cannot read
//! /etc/postgresql-ha/tls, and a key cannot be sent inline in a cos-agent job, so the scrape
//! job cannot present the certificate itself. This service, run by the charm's binary as
//! root, answers `GET /metrics` on 127.0.0.1 only by fetching `https://127.0.0.1:8008/metrics`
//! with the unit's certificate and key, verifying Patroni against the CA, as the charm's own
//! calls do (`curl` with [`paths::curl_tls_args`]: paths, never the key, in argv). Nothing but
//! `GET /metrics` is relayed (anything else is 404): the loopback port gives any local user
//! Patroni's metrics (gauges, no credentials) and no other endpoint of its API, as etcd's
//! loopback metrics listener gives etcd's.
//!
//! When Patroni does not answer, or answers with something else than 200, the relay answers
//! 503 or 502 with the reason: Prometheus counts any status but 200 as a failed scrape
//! (scrape/scrape.go `targetScraper.readResponse`: "server returned HTTP status"), so
//! `up{job="patroni"}` is 0 and Patroni's series go stale exactly as when Prometheus scraped
//! Patroni itself and it did not answer: cosl's HostDown (`up < 1` for 5m) still says
//! "Patroni down", and the rules that count Patroni's members see the member vanish.
//!
//! The relay waits for Patroni a little less than the scraper's own timeout (Prometheus sends
//! it as `X-Prometheus-Scrape-Timeout-Seconds`, scrape.go `targetScraper.scrape`), so the
//! scraper gets the reason rather than a timeout of its own.

use crate::{paths, patroni};
use charm_lib::{Cmd, CmdOutput, Context, FileOptions, Machine, MachineExt};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// The relay's port on 127.0.0.1: the first past keepalived-vip's exporters (9700 + router
/// id, up to 9955), which share the machine; this charm's other exporters (9957, 9959) and
/// maas-region's (9958), placed with it in the bundle, follow it for the same reason.
pub const PORT: u16 = 9956;
/// The service.
pub const SERVICE: &str = "postgresql-ha-patroni-metrics";
/// Its unit file.
pub const UNIT_FILE: &str = "/etc/systemd/system/postgresql-ha-patroni-metrics.service";
/// The dispatch subcommand.
pub const SUBCOMMAND: &str = "patroni-metrics";
/// How long the relay waits for Patroni when the scraper does not say its timeout: just under
/// Prometheus's default scrape_timeout (10 s).
pub const DEFAULT_WAIT: f64 = 9.5;
/// The shortest wait (a scraper's timeout below it gets a timeout of its own).
pub const MIN_WAIT: f64 = 1.0;

/// The scrape target.
pub fn target() -> String {
    format!("127.0.0.1:{PORT}")
}

/// The service's unit: root, as the unit's key is root:postgres 0640; `binary_line`
/// (`Context::charm_binary_line`) makes a refresh that brings another charm binary restart it.
pub fn unit(charm_dir: &str, binary_line: &str) -> String {
    format!(
        "{binary_line}[Unit]\nDescription=postgresql-ha: Patroni's /metrics relayed to 127.0.0.1:{PORT}\nAfter=network-online.target\n\n\
[Service]\nType=simple\nExecStart={charm_dir}/dispatch {SUBCOMMAND} {PORT}\nRestart=always\nRestartSec=5\n\n\
[Install]\nWantedBy=multi-user.target\n"
    )
}

/// Runs the relay (idempotent: a hook with the same binary rewrites and restarts nothing).
pub fn apply(ctx: &Context) -> anyhow::Result<()> {
    let m = ctx.machine;
    let changed = m.write_file(
        Path::new(UNIT_FILE),
        unit(&ctx.event.charm_dir(), &ctx.charm_binary_line()?).as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if changed {
        m.daemon_reload()?;
    }
    m.ensure_service(SERVICE, changed)?;
    Ok(())
}

/// Stops the relay and removes its unit (nothing to do when it is not there).
pub fn retire(m: &dyn Machine) -> anyhow::Result<()> {
    if m.file_info(Path::new(UNIT_FILE))?.is_some() {
        m.retire_service(SERVICE)?;
        m.remove_file(Path::new(UNIT_FILE))?;
        m.daemon_reload()?;
    }
    Ok(())
}

/// How long to wait for Patroni given the scraper's `X-Prometheus-Scrape-Timeout-Seconds`:
/// half a second less, between [`MIN_WAIT`] and [`DEFAULT_WAIT`].
pub fn wait_for(scrape_timeout: Option<&str>) -> f64 {
    scrape_timeout
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .map_or(DEFAULT_WAIT, |t| (t - 0.5).clamp(MIN_WAIT, DEFAULT_WAIT))
}

/// `GET https://127.0.0.1:8008/metrics` with the unit's certificate, waiting `seconds`.
pub fn fetch(seconds: f64) -> Cmd {
    let mut args = vec![
        format!("{}/metrics", paths::PATRONI_API),
        "-sS".into(),
        "-m".into(),
        format!("{seconds:.1}"),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    args.extend(paths::curl_tls_args());
    Cmd::new("curl", args).allow_failure()
}

/// The relay's answer: status line and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `200 OK`, `502 Bad Gateway`, `503 Service Unavailable`, `404 Not Found`.
    pub status: &'static str,
    /// Patroni's body, or the reason.
    pub body: String,
}

/// What to answer for what curl gave.
pub fn reply(out: &CmdOutput) -> Reply {
    if !out.success() {
        let why = out
            .stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        return Reply {
            status: "503 Service Unavailable",
            body: format!("Patroni did not answer (curl exit {}): {why}\n", out.code),
        };
    }
    match patroni::parse_curl(&out.stdout) {
        Some(r) if r.status == 200 => Reply {
            status: "200 OK",
            body: r.body,
        },
        Some(r) => Reply {
            status: "502 Bad Gateway",
            body: format!("Patroni answered HTTP {}\n", r.status),
        },
        None => Reply {
            status: "502 Bad Gateway",
            body: "Patroni's answer had no HTTP status\n".into(),
        },
    }
}

/// Serves forever, one request at a time (one collector scrapes it): `GET /metrics` is
/// `relay(wait)`, anything else 404.
pub fn serve_on(listener: &TcpListener, mut relay: impl FnMut(f64) -> Reply) -> ! {
    for stream in listener.incoming().flatten() {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&stream);
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            continue;
        }
        // The rest of the request head (so the client is not reset mid-write), keeping the
        // scraper's timeout.
        let mut timeout = None;
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            if let Some((name, value)) = line.split_once(':') {
                if name
                    .trim()
                    .eq_ignore_ascii_case("X-Prometheus-Scrape-Timeout-Seconds")
                {
                    timeout = Some(value.trim().to_string());
                }
            }
            line.clear();
        }
        let mut words = request.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let r = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            relay(wait_for(timeout.as_deref()))
        } else {
            Reply {
                status: "404 Not Found",
                body: "only GET /metrics\n".into(),
            }
        };
        let kind = if r.status.starts_with("200") {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let _ = write!(
            &stream,
            "HTTP/1.0 {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{}",
            r.status,
            r.body.len(),
            r.body
        );
    }
    std::process::exit(1)
}

/// `dispatch patroni-metrics <port>`: serves forever on 127.0.0.1:`port`.
pub fn run(args: &[String]) -> ! {
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: dispatch {SUBCOMMAND} <port>");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let machine = charm_lib::machine::System;
    serve_on(&listener, |wait| match machine.run(&fetch(wait)) {
        Ok(out) => {
            let r = reply(&out);
            if !r.status.starts_with("200") {
                eprint!("{}", r.body);
            }
            r
        }
        Err(e) => Reply {
            status: "503 Service Unavailable",
            body: format!("cannot run curl: {e}\n"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn out(code: i32, stdout: &str, stderr: &str) -> CmdOutput {
        CmdOutput {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn patronis_body_or_the_reason_it_is_missing() {
        let body = "# HELP patroni_version Patroni semver without periods.\n# TYPE patroni_version gauge\npatroni_version{scope=\"pg\",name=\"pg-0\"} 040105\n";
        assert_eq!(
            reply(&out(0, &format!("{body}\n200"), "")),
            Reply {
                status: "200 OK",
                body: body.into()
            }
        );
        let refused = reply(&out(
            7,
            "\n000",
            "curl: (7) Failed to connect to 127.0.0.1 port 8008 after 0 ms: Connection refused\n",
        ));
        assert_eq!(refused.status, "503 Service Unavailable");
        assert!(
            refused.body.contains("curl exit 7") && refused.body.contains("Connection refused"),
            "{refused:?}"
        );
        let timeout = reply(&out(
            28,
            "",
            "curl: (28) Operation timed out after 4501 milliseconds with 0 bytes received\n",
        ));
        assert_eq!(timeout.status, "503 Service Unavailable");
        assert!(timeout.body.contains("timed out"), "{timeout:?}");
        let refused_cert = reply(&out(0, "no client certificate\n403", ""));
        assert_eq!(
            refused_cert,
            Reply {
                status: "502 Bad Gateway",
                body: "Patroni answered HTTP 403\n".into()
            }
        );
        assert_eq!(reply(&out(0, "garbage", "")).status, "502 Bad Gateway");
    }

    #[test]
    fn the_fetch_presents_the_units_certificate_by_path_and_waits_less_than_the_scraper() {
        let c = fetch(4.5);
        let argv = c.args.join(" ");
        assert_eq!(c.program, "curl");
        assert!(
            argv.starts_with("https://127.0.0.1:8008/metrics -sS -m 4.5 "),
            "{argv}"
        );
        assert!(
            argv.ends_with("--cacert /etc/postgresql-ha/tls/ca.pem --cert /etc/postgresql-ha/tls/unit.pem --key /etc/postgresql-ha/tls/unit.key"),
            "{argv}"
        );
        assert_eq!(wait_for(Some("5")), 4.5);
        assert_eq!(wait_for(Some("10")), 9.5);
        assert_eq!(wait_for(Some("60")), DEFAULT_WAIT);
        assert_eq!(wait_for(Some("0.5")), MIN_WAIT);
        assert_eq!(wait_for(Some("NaN")), DEFAULT_WAIT);
        assert_eq!(wait_for(Some("soon")), DEFAULT_WAIT);
        assert_eq!(wait_for(None), DEFAULT_WAIT);
    }

    #[test]
    fn the_unit_runs_the_charm_binary_on_the_relays_port() {
        let u = unit(
            "/var/lib/juju/agents/unit-pg-0/charm",
            "# charm binary 0a\n",
        );
        assert!(u.starts_with("# charm binary 0a\n[Unit]\n"), "{u}");
        assert!(
            u.contains(
                "ExecStart=/var/lib/juju/agents/unit-pg-0/charm/dispatch patroni-metrics 9956\n"
            ),
            "{u}"
        );
        assert!(!u.contains("User="), "root reads the unit's key: {u}");
        assert_eq!(target(), "127.0.0.1:9956");
    }

    #[test]
    fn the_new_listeners_take_ports_nothing_else_on_the_machine_uses() {
        // What listens on a postgresql-ha machine: PostgreSQL, Patroni, etcd (client, peer,
        // metrics), the exporters; keepalived-vip's exporter (9700 + router id, 0-255) on the
        // same machine.
        let ours = [
            paths::PG_PORT,
            paths::PATRONI_PORT,
            2379,
            2380,
            paths::ETCD_METRICS_PORT,
            paths::EXPORTER_PORT,
            paths::CERT_METRICS.port,
            crate::backup_metrics::PORT,
            PORT,
        ];
        let distinct: std::collections::BTreeSet<u16> = ours.into_iter().collect();
        assert_eq!(distinct.len(), ours.len(), "{ours:?}");
        // Every loopback listener, and maas-region's certificate exporter (the bundle places
        // regions with the database units), clear of keepalived-vip's exporters: with router
        // id 93, 94 or 154 the old 9793, 9794 and 9854 were taken.
        let keepalived_vip = 9700..=9955;
        for p in [
            PORT,
            paths::ETCD_METRICS_PORT,
            paths::CERT_METRICS.port,
            crate::backup_metrics::PORT,
            9958,
        ] {
            assert!(!keepalived_vip.contains(&p), "{p}");
        }
        assert!(!ours.contains(&9958), "maas-region's certificate exporter");
        assert_eq!(
            paths::ETCD_METRICS,
            format!("http://127.0.0.1:{}", paths::ETCD_METRICS_PORT)
        );
    }

    fn get(port: u16, head: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "{head}\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn only_get_metrics_is_relayed_with_the_scrapers_timeout() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut answers = vec![
            Reply {
                status: "503 Service Unavailable",
                body: "Patroni did not answer (curl exit 7): refused\n".into(),
            },
            Reply {
                status: "200 OK",
                body: "patroni_primary 1\n".into(),
            },
        ];
        std::thread::spawn(move || {
            serve_on(&listener, move |wait| {
                tx.send(wait).unwrap();
                answers.pop().unwrap()
            })
        });
        let ok = get(
            port,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: 5",
        );
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("version=0.0.4") && ok.ends_with("\r\n\r\npatroni_primary 1\n"));
        assert_eq!(rx.recv().unwrap(), 4.5);
        for other in [
            "GET /cluster HTTP/1.1\r\nHost: x",
            "GET /metricsx HTTP/1.1\r\nHost: x",
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0",
        ] {
            let r = get(port, other);
            assert!(r.starts_with("HTTP/1.0 404 Not Found\r\n"), "{other}: {r}");
        }
        let down = get(port, "GET /metrics HTTP/1.1\r\nHost: x");
        assert!(
            down.starts_with("HTTP/1.0 503 Service Unavailable\r\n"),
            "{down}"
        );
        assert!(down.ends_with("refused\n"), "{down}");
        assert_eq!(rx.recv().unwrap(), DEFAULT_WAIT);
        // Nothing else reached Patroni: two relays for two GET /metrics.
        assert!(rx.try_recv().is_err());
    }
}
