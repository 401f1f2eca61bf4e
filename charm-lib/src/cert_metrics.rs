//! When the certificates a charm made or received end, as Prometheus metrics: a small service
//! (`dispatch cert-metrics <port> <file>...`, the charm's own binary) serving, on 127.0.0.1
//! only, for the cos-agent collector on the same machine, the dates of every certificate in the
//! PEM files the charm names, read afresh on each scrape.
//!
//! Names and labels are x509-certificate-exporter's (enix/x509-certificate-exporter,
//! internal/collector.go: `x509_cert_not_after`, `x509_cert_not_before`, `x509_cert_expired`
//! with `filename`, `filepath`, `serial_number`, `issuer_*`/`subject_*` name parts; the
//! per-file `x509_cert_error` and the total `x509_read_errors`), so its Grafana dashboard and
//! the rules written for it read ours unchanged. That exporter itself is not packaged in Debian
//! or Ubuntu. Debian's prometheus-blackbox-exporter only sees what a port serves: not a CA file
//! nobody serves, not PostgreSQL's certificate (PostgreSQL starts TLS after its binary
//! SSLRequest, which no blackbox prober speaks), and a probe target per port.
//!
//! Certificates are read with `x509-parser` (already what [`crate::tls`] inspects with): no
//! command per scrape, and a file holding a chain gives one series per certificate, as
//! x509-certificate-exporter does. Only certificates are parsed; the charm names no key file.

use crate::cos_agent::{ScrapeJob, StaticConfig};
use crate::{Context, FileOptions, Machine, MachineExt};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// The metric names the service exposes (for a charm's check that its rules and dashboards
/// query only what its jobs expose).
pub const NAMES: &[&str] = &[
    "x509_cert_not_after",
    "x509_cert_not_before",
    "x509_cert_expired",
    "x509_cert_error",
    "x509_read_errors",
];

/// The subcommand of the charm binary that runs the service.
pub const SUBCOMMAND: &str = "cert-metrics";

/// One charm's service: its systemd name and loopback port (one per charm, as two charms may
/// share a machine: maas-region is placed with postgresql-ha).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The systemd unit name without `.service`, e.g. `postgresql-ha-cert-metrics`.
    pub name: &'static str,
    /// The port on 127.0.0.1.
    pub port: u16,
}

/// One certificate's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Decimal, as Go's `big.Int.String()` writes it (x509-certificate-exporter's value).
    pub serial: String,
    /// `subject_CN`, `issuer_O`, ...: the name parts x509-certificate-exporter labels with.
    pub names: BTreeMap<String, String>,
}

/// The certificates in a PEM file's text, in file order; blocks other than `CERTIFICATE`
/// are skipped. An error when none is there or one does not parse.
pub fn parse(pem_text: &[u8]) -> Result<Vec<CertFacts>, String> {
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_text) {
        let pem = pem.map_err(|e| format!("not PEM: {e}"))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut names = BTreeMap::new();
        name_labels(cert.issuer(), "issuer", &mut names);
        name_labels(cert.subject(), "subject", &mut names);
        out.push(CertFacts {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial: cert.serial.to_string(),
            names,
        });
    }
    if out.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(out)
}

// The first of each part, as fillLabelsFromName (ST there is the street address field).
fn name_labels(
    name: &x509_parser::x509::X509Name,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) {
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let parts = [
        ("C", first(&mut name.iter_country())),
        (
            "ST",
            first(&mut name.iter_by_oid(&x509_parser::oid_registry::OID_X509_STREET_ADDRESS)),
        ),
        ("L", first(&mut name.iter_locality())),
        ("O", first(&mut name.iter_organization())),
        ("OU", first(&mut name.iter_organizational_unit())),
        ("CN", first(&mut name.iter_common_name())),
    ];
    for (part, v) in parts {
        if let Some(v) = v {
            out.insert(format!("{prefix}_{part}"), v);
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &BTreeMap<String, String>) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn file_labels(path: &str) -> BTreeMap<String, String> {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    [
        ("filename".to_string(), name),
        ("filepath".to_string(), path.to_string()),
    ]
    .into()
}

/// The exposition for `files` (path, what reading it gave) at `now` (Unix seconds).
pub fn exposition(files: &[(String, Result<Vec<CertFacts>, String>)], now: i64) -> String {
    let mut by_metric: [(&str, &str, String); 4] = [
        (
            "x509_cert_not_after",
            "Indicates the certificate's not after timestamp",
            String::new(),
        ),
        (
            "x509_cert_not_before",
            "Indicates the certificate's not before timestamp",
            String::new(),
        ),
        (
            "x509_cert_expired",
            "Indicates if the certificate is expired",
            String::new(),
        ),
        (
            "x509_cert_error",
            "Indicates wether the corresponding secret has read failure(s)",
            String::new(),
        ),
    ];
    let mut errors = 0;
    for (path, read) in files {
        let base = file_labels(path);
        let Ok(certs) = read else {
            errors += 1;
            let _ = writeln!(by_metric[3].2, "x509_cert_error{{{}}} 1", labels(&base));
            continue;
        };
        let _ = writeln!(by_metric[3].2, "x509_cert_error{{{}}} 0", labels(&base));
        for c in certs {
            let mut l = base.clone();
            l.insert("serial_number".into(), c.serial.clone());
            l.extend(c.names.clone());
            let l = labels(&l);
            let _ = writeln!(by_metric[0].2, "x509_cert_not_after{{{l}}} {}", c.not_after);
            let _ = writeln!(
                by_metric[1].2,
                "x509_cert_not_before{{{l}}} {}",
                c.not_before
            );
            let _ = writeln!(
                by_metric[2].2,
                "x509_cert_expired{{{l}}} {}",
                u8::from(now > c.not_after)
            );
        }
    }
    let mut out = String::new();
    for (name, help, series) in &by_metric {
        if !series.is_empty() {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{series}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP x509_read_errors Indicates the number of read failure(s)\n# TYPE x509_read_errors gauge\nx509_read_errors {errors}"
    );
    out
}

/// Reads each file now (a missing one is a read error: the charm names only files it made).
pub fn read_all(files: &[String]) -> Vec<(String, Result<Vec<CertFacts>, String>)> {
    files
        .iter()
        .map(|f| {
            let r = std::fs::read(f)
                .map_err(|e| format!("{f}: {e}"))
                .and_then(|b| parse(&b).map_err(|e| format!("{f}: {e}")));
            (f.clone(), r)
        })
        .collect()
}

/// The unit file path of `svc`.
pub fn unit_path(svc: &Service) -> String {
    format!("/etc/systemd/system/{}.service", svc.name)
}

/// The service's unit: root, as the charms' certificates sit in root-only directories; it
/// only reads the named files. `binary_line` (`Context::charm_binary_line`) makes a refresh
/// that brings another charm binary restart it.
pub fn unit(svc: &Service, charm_dir: &str, binary_line: &str, files: &[&str]) -> String {
    format!(
        "{binary_line}[Unit]\nDescription={name}: certificate dates for Prometheus on 127.0.0.1:{port}\nAfter=network-online.target\n\n\
[Service]\nType=simple\nExecStart={charm_dir}/dispatch {SUBCOMMAND} {port} {files}\nRestart=always\nRestartSec=5\n\n\
[Install]\nWantedBy=multi-user.target\n",
        name = svc.name,
        port = svc.port,
        files = files.join(" ")
    )
}

/// Runs the service over `files` (idempotent: a hook with the same files and binary changes
/// nothing), or, with no file, retires it.
pub fn apply(ctx: &Context, svc: &Service, files: &[&str]) -> anyhow::Result<()> {
    if files.is_empty() {
        return retire(ctx.machine, svc);
    }
    let m = ctx.machine;
    let changed = m.write_file(
        Path::new(&unit_path(svc)),
        unit(
            svc,
            &ctx.event.charm_dir(),
            &ctx.charm_binary_line()?,
            files,
        )
        .as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if changed {
        m.daemon_reload()?;
    }
    m.ensure_service(svc.name, changed)?;
    Ok(())
}

/// Stops the service and removes its unit (nothing to do when it is not there).
pub fn retire(m: &dyn Machine, svc: &Service) -> anyhow::Result<()> {
    let path = unit_path(svc);
    if m.file_info(Path::new(&path))?.is_some() {
        m.retire_service(svc.name)?;
        m.remove_file(Path::new(&path))?;
        m.daemon_reload()?;
    }
    Ok(())
}

/// The cos-agent scrape job for `svc` (plain http: loopback, the collector on this machine).
pub fn scrape_job(svc: &Service) -> ScrapeJob {
    ScrapeJob {
        job_name: Some("certificates".into()),
        metrics_path: "/metrics".into(),
        static_configs: vec![StaticConfig {
            targets: vec![format!("127.0.0.1:{}", svc.port)],
            labels: BTreeMap::new(),
        }],
        ..ScrapeJob::default()
    }
}

/// Binds 127.0.0.1:`port` (only loopback: the collector is on this machine) and serves
/// `body()` there ([`serve_on`]); exits 1 when the port is taken.
pub fn serve(port: u16, body: impl FnMut() -> String) -> ! {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => serve_on(&l, body),
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    }
}

/// Serves `body()` at `/metrics` forever, one request at a time (one collector scrapes it);
/// other paths get 404.
pub fn serve_on(listener: &TcpListener, mut body: impl FnMut() -> String) -> ! {
    for stream in listener.incoming().flatten() {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&stream);
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            continue;
        }
        // The rest of the request head, so the client is not reset mid-write.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let path = request.split_whitespace().nth(1).unwrap_or("");
        let (status, text) = if path == "/metrics" || path.starts_with("/metrics?") {
            ("200 OK", body())
        } else {
            ("404 Not Found", "only /metrics\n".to_string())
        };
        let _ = write!(
            &stream,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
    }
    std::process::exit(1)
}

/// `dispatch cert-metrics <port> <file>...`: serves forever.
pub fn run(args: &[String]) -> ! {
    let port = args.first().and_then(|p| p.parse::<u16>().ok());
    let (Some(port), files) = (port, args.get(1..).unwrap_or_default().to_vec()) else {
        eprintln!("usage: dispatch {SUBCOMMAND} <port> <certificate file>...");
        std::process::exit(2);
    };
    if files.is_empty() {
        eprintln!("usage: dispatch {SUBCOMMAND} <port> <certificate file>...");
        std::process::exit(2);
    }
    serve(port, || {
        exposition(&read_all(&files), crate::tls::now().unix_timestamp())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;
    use std::io::Read;
    use time::OffsetDateTime;

    fn at(epoch: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(epoch).unwrap()
    }

    #[test]
    fn every_certificate_of_a_chain_with_its_dates_and_names() {
        let now = 1_796_627_275;
        let ca = tls::new_ca("pg CA", at(now)).unwrap();
        let leaf = tls::issue(&ca, "pg-0", &["10.0.0.2".to_string()].into(), at(now)).unwrap();
        let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        let certs = parse(chain.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(
            certs[0].names.get("subject_CN").map(String::as_str),
            Some("pg-0")
        );
        assert_eq!(
            certs[0].names.get("issuer_CN").map(String::as_str),
            Some("pg CA")
        );
        assert_eq!(
            certs[1].names.get("subject_CN").map(String::as_str),
            Some("pg CA")
        );
        // tls backdates by an hour and issues for LEAF_DAYS / CA_DAYS.
        assert_eq!(certs[0].not_after, now + tls::LEAF_DAYS * 86_400);
        assert_eq!(certs[1].not_after, now + tls::CA_DAYS * 86_400);
        assert!(certs[0].not_before <= now);
        assert!(
            certs[0].serial.chars().all(|c| c.is_ascii_digit()),
            "{}",
            certs[0].serial
        );

        let text = exposition(&[("/etc/x/unit.pem".into(), Ok(certs.clone()))], now);
        let leaf_line = format!(
            "x509_cert_not_after{{filename=\"unit.pem\",filepath=\"/etc/x/unit.pem\",issuer_CN=\"pg CA\",serial_number=\"{}\",subject_CN=\"pg-0\"}} {}",
            certs[0].serial, certs[0].not_after
        );
        assert!(
            text.lines().any(|l| l == leaf_line),
            "{leaf_line} missing in\n{text}"
        );
        assert!(text.contains("# TYPE x509_cert_not_after gauge\n"));
        assert!(text
            .contains("x509_cert_error{filename=\"unit.pem\",filepath=\"/etc/x/unit.pem\"} 0\n"));
        assert!(text.ends_with("x509_read_errors 0\n"), "{text}");
        assert_eq!(text.matches("x509_cert_expired{").count(), 2);
        assert!(!text.contains("} 1\n"), "nothing expired yet: {text}");
        // A day after the leaf's end it is expired, the CA is not.
        let later = exposition(
            &[("/u.pem".into(), Ok(certs.clone()))],
            certs[0].not_after + 86_400,
        );
        assert_eq!(later.matches("x509_cert_expired{").count(), 2);
        assert!(later.contains("subject_CN=\"pg-0\"} 1\n"), "{later}");
        assert!(later.contains("subject_CN=\"pg CA\"} 0\n"), "{later}");
    }

    #[test]
    fn unreadable_files_count_as_read_errors_and_keys_are_skipped() {
        assert!(parse(b"").is_err());
        let key = tls::new_key().unwrap();
        assert_eq!(
            parse(key.as_bytes()).unwrap_err(),
            "no certificate in the file"
        );
        let ca = tls::new_ca("x", tls::now()).unwrap();
        let with_key = format!("{key}{}", ca.cert_pem);
        assert_eq!(parse(with_key.as_bytes()).unwrap().len(), 1);

        let dir = std::env::temp_dir().join(format!("cert-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, &ca.cert_pem).unwrap();
        let files = vec![
            good.to_string_lossy().into_owned(),
            dir.join("missing.pem").to_string_lossy().into_owned(),
        ];
        let read = read_all(&files);
        assert!(read[0].1.is_ok() && read[1].1.is_err());
        let text = exposition(&read, 0);
        assert!(text.contains("filename=\"missing.pem\""));
        assert!(
            text.contains("x509_cert_error{filename=\"missing.pem\""),
            "{text}"
        );
        assert!(text.lines().any(
            |l| l.starts_with("x509_cert_error{filename=\"missing.pem\"") && l.ends_with("} 1")
        ));
        assert!(text.ends_with("x509_read_errors 1\n"), "{text}");
        assert_eq!(text.matches("x509_cert_not_after{").count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn label_values_are_escaped() {
        let mut names = BTreeMap::new();
        names.insert("subject_CN".to_string(), "a\"b\\c\nd".to_string());
        let c = CertFacts {
            not_before: 0,
            not_after: 1,
            serial: "1".into(),
            names,
        };
        let text = exposition(&[("/p".into(), Ok(vec![c]))], 0);
        assert!(text.contains("subject_CN=\"a\\\"b\\\\c\\nd\""), "{text}");
    }

    #[test]
    fn the_unit_runs_the_charm_binary_over_the_files_and_the_job_scrapes_loopback() {
        let svc = Service {
            name: "pg-cert-metrics",
            port: 9957,
        };
        let u = unit(
            &svc,
            "/var/lib/juju/agents/unit-pg-0/charm",
            "# charm binary 0a\n",
            &["/a.pem", "/b.pem"],
        );
        assert!(u.starts_with("# charm binary 0a\n[Unit]\n"), "{u}");
        assert!(u.contains("ExecStart=/var/lib/juju/agents/unit-pg-0/charm/dispatch cert-metrics 9957 /a.pem /b.pem\n"), "{u}");
        assert_eq!(
            unit_path(&svc),
            "/etc/systemd/system/pg-cert-metrics.service"
        );
        let job = scrape_job(&svc);
        assert_eq!(job.static_configs[0].targets, ["127.0.0.1:9957"]);
        assert_eq!(job.scheme, None);
        assert_eq!(job.job_name.as_deref(), Some("certificates"));
    }

    fn get(port: u16, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_scrape_over_loopback_reads_the_file_afresh() {
        let dir = std::env::temp_dir().join(format!("cert-metrics-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cert.pem");
        let first = tls::new_ca("first", tls::now()).unwrap();
        std::fs::write(&file, &first.cert_pem).unwrap();
        // Bound before the thread starts: the first request waits in the backlog.
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let files = vec![file.to_string_lossy().into_owned()];
        std::thread::spawn(move || serve_on(&listener, || exposition(&read_all(&files), 0)));
        let one = get(port, "/metrics");
        assert!(one.starts_with("HTTP/1.0 200 OK\r\n"), "{one}");
        assert!(one.contains("subject_CN=\"first\""), "{one}");
        let second = tls::new_ca("second", tls::now()).unwrap();
        std::fs::write(&file, &second.cert_pem).unwrap();
        let two = get(port, "/metrics");
        assert!(
            two.contains("subject_CN=\"second\"") && !two.contains("\"first\""),
            "{two}"
        );
        assert!(get(port, "/").starts_with("HTTP/1.0 404"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
