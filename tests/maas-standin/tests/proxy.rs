//! A region host's listeners as MAAS 3.5+/3.6 has them: Debian's nginx on 5240 in front of
//! regiond's worker sockets (and of the apiserver's), nginx's stream server on 5242 in front of
//! the internal API, Temporal on 5271; which of them a dead regiond takes down (none: nginx
//! answers 502 for regiond's paths until regiond is back); and TLS with `maas config-tls`.
//!
//! Sources (canonical/maas 3.6): src/maasserver/templates/http/regiond.nginx.conf.template,
//! regiond.nginx.stream.conf.template, src/maasserver/regiondservices/http.py
//! (`RegionHTTPService`), temporal.py (`RegionTemporalService`), src/maasserver/service_monitor.py
//! (`HTTPService`, `TemporalService`), src/maasserver/eventloop.py (`MAASServices.startService`),
//! snap/local/tree/usr/share/maas/pebble/layers/002-maas-region-layer.yaml, debian/*.service,
//! src/maasserver/management/commands/config_tls.py, src/provisioningserver/certificates.py.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

struct Host {
    sb: Sandbox,
    addr: &'static str,
    api: u16,
    internal: u16,
    temporal: u16,
    /// Temporal's Prometheus port on 127.0.0.1 (9000 in MAAS).
    temporal_metrics: u16,
}

impl Host {
    fn new(tag: &str, name: &str, addr: &'static str) -> Host {
        let (api, internal, temporal) = (free_port(), free_port(), free_port());
        let temporal_metrics = free_port();
        let sb = Sandbox::new(tag)
            .with(
                "MAAS_STANDIN_TEMPORAL_METRICS_PORT",
                &temporal_metrics.to_string(),
            )
            .with(
                "MAAS_STANDIN_PORTS",
                &format!("{api},{internal},{temporal}"),
            )
            .with("MAAS_STANDIN_BIND", addr)
            .with("MAAS_STANDIN_RPC_PORTS", &free_ports(4))
            .with("MAAS_STANDIN_HOSTNAME", name);
        Host {
            sb,
            addr,
            api,
            internal,
            temporal,
            temporal_metrics,
        }
    }
    fn url(&self) -> String {
        format!("http://{}:{}/MAAS", self.addr, self.api)
    }
    fn init(&self, pg: &Postgres) {
        assert_ok(&self.sb.run_line(&format!(
            "maas init region --maas-url {} --database-uri {} --force",
            self.url(),
            pg.uri()
        )));
    }
    fn version(&self) -> Option<(u16, String)> {
        get(&format!("{}/api/2.0/version/", self.url()))
    }
    fn wait_version(&self, status: u16, what: &str) -> String {
        wait_for(what, T, || {
            self.version().filter(|(s, _)| *s == status).map(|(_, b)| b)
        })
    }
}

/// Status and `Location` of a plain HTTP GET.
fn http_get(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = vec![];
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let location = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((status, location))
}

/// An HTTPS GET without verification: the certificate the server presented (DER) and the status.
fn https_get(host: &str, port: u16, path: &str) -> Option<(Vec<u8>, u16, String)> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::tls()).ok()?;
    b.set_verify(SslVerifyMode::NONE);
    let c = b.build();
    let tcp = TcpStream::connect((host, port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut s = c
        .configure()
        .ok()?
        .verify_hostname(false)
        .connect(host, tcp)
        .ok()?;
    let der = s.ssl().peer_certificate()?.to_der().ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = vec![];
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((der, status, body))
}

/// A self-signed key and certificate (PEM).
fn self_signed(cn: &str) -> (String, String) {
    self_signed_for(cn, &[])
}

/// A self-signed certificate naming `ips` as IP subject alternative names.
fn self_signed_for(cn: &str, ips: &[&str]) -> (String, String) {
    use openssl::{
        asn1::Asn1Time, bn::BigNum, hash::MessageDigest, pkey::PKey, rsa::Rsa,
        x509::X509NameBuilder, x509::X509,
    };
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    if !ips.is_empty() {
        let mut san = openssl::x509::extension::SubjectAlternativeName::new();
        for ip in ips {
            san.ip(ip);
        }
        let ext = san.build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ext).unwrap();
    }
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        String::from_utf8(b.build().to_pem().unwrap()).unwrap(),
    )
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn children_named(ppid: u32, name: &str) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        if field("PPid:").and_then(|p| p.parse::<u32>().ok()) == Some(ppid)
            && field("Name:").as_deref() == Some(name)
            && field("State:").is_some_and(|s| !s.starts_with('Z'))
        {
            out.push(pid);
        }
    }
    out
}

/// regiond renders nginx's configuration after its start-up and never listens on 5240 itself:
/// nginx does, with one upstream server per worker socket; nginx's stream server holds 5242
/// for the apiserver; Temporal holds 5271. A killed regiond leaves all three listening: nginx
/// answers 502 for regiond's paths (and still serves the apiserver's) until regiond is back.
#[test]
fn nginx_fronts_regiond_and_outlives_it() {
    let pg = Postgres::start();
    let h = Host::new("nginx", "region-n", "127.0.0.1");
    h.init(&pg);
    let mut procs = RegionProcs::spawn(&h.sb, "snap");
    let v = h.wait_version(200, "the version through nginx");
    assert!(v.contains("region-n"), "{v}");
    assert_eq!(comm(procs.nginx.child.id()), "nginx");
    assert_eq!(comm(procs.temporal.child.id()), "temporal-server");
    assert_eq!(comm(procs.apiserver.child.id()), "maas-apiserver");

    let conf = read(&h.sb.path("/var/snap/maas/current/http/regiond.nginx.conf"));
    let workers = (1..=4)
        .map(|w| {
            format!(
                "server unix:{}.{w};",
                h.sb.path("/var/snap/maas/current/maas-regiond-webapp.sock")
                    .display()
            )
        })
        .collect::<Vec<_>>();
    for w in &workers {
        assert!(conf.contains(w), "{w} missing from\n{conf}");
    }
    assert!(
        conf.contains(&format!("listen 127.0.0.1:{};", h.api)),
        "{conf}"
    );
    assert!(!conf.contains("ssl"), "{conf}");
    let stream = read(
        &h.sb
            .path("/var/snap/maas/current/http/regiond.nginx.stream.conf"),
    );
    assert!(
        stream.contains(&format!("listen 127.0.0.1:{};", h.internal)),
        "{stream}"
    );
    assert!(stream.contains("internalapiserver-http.sock"), "{stream}");
    let temporal_yaml = h.sb.path("/var/snap/maas/current/temporal/production.yaml");
    assert!(read(&temporal_yaml).contains(&format!("grpcPort: {}", h.temporal)));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&temporal_yaml)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // nginx's own answers: `/` and `/MAAS` redirect to the UI; `/MAAS/a/` is the apiserver's.
    assert_eq!(
        http_get("127.0.0.1", h.api, "/MAAS").unwrap(),
        (301, "/MAAS/r/".into())
    );
    assert_eq!(
        http_get("127.0.0.1", h.api, "/").unwrap(),
        (301, "/MAAS/r/".into())
    );
    let (s, b) = get(&format!("{}/a/v3/users/me", h.url())).unwrap();
    assert_eq!(s, 404, "{b}");
    assert!(b.contains("\"kind\""), "the apiserver's answer: {b}");

    // Temporal's Prometheus listener on 127.0.0.1 (production.yaml.template `listenAddress`),
    // `/metrics` only, and nginx's `/metrics/temporal` in front of it (3.5+
    // regiond.nginx.conf.template `upstream temporal-metrics`).
    assert!(read(&temporal_yaml).contains(&format!(
        "listenAddress: \"127.0.0.1:{}\"",
        h.temporal_metrics
    )));
    let direct = format!("http://127.0.0.1:{}", h.temporal_metrics);
    let (s, b) = wait_for("Temporal's metrics", T, || {
        get(&format!("{direct}/metrics"))
    });
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("# TYPE persistence_requests counter"), "{b}");
    assert_eq!(
        get(&format!("{direct}/metrics/temporal")).unwrap(),
        (404, "404 page not found\n".to_string())
    );
    // A worker's connection to the frontend is one request.
    drop(TcpStream::connect(("127.0.0.1", h.temporal)).unwrap());
    let through_nginx = format!("http://127.0.0.1:{}/metrics/temporal", h.api);
    let b = wait_for("a frontend request counted, through nginx", T, || {
        get(&through_nginx)
            .filter(|(s, b)| *s == 200 && b.contains("service_requests{"))
            .map(|(_, b)| b)
    });
    assert!(
        b.lines().any(|l| l.starts_with("service_requests{")
            && l.contains(r#"service_name="frontend""#)),
        "{b}"
    );
    assert!(b.contains("# TYPE service_latency histogram"), "{b}");

    procs.regiond.kill9();
    let (s, b) = get(&through_nginx).unwrap();
    assert_eq!(s, 200, "Temporal's metrics do not go through regiond: {b}");
    let (s, b) = h.version().unwrap();
    assert_eq!(s, 502, "nginx answers for a dead regiond: {b}");
    assert!(b.contains("502 Bad Gateway"), "{b}");
    let (s, b) = get(&format!("{}/a/v3/users/me", h.url())).unwrap();
    assert_eq!(s, 404, "the apiserver is not regiond: {b}");
    let (s, b) = get(&format!(
        "http://127.0.0.1:{}/MAAS/a/v3internal/",
        h.internal
    ))
    .unwrap();
    assert_eq!(s, 404, "5242 is nginx's and the apiserver's: {b}");
    assert!(
        TcpStream::connect(("127.0.0.1", h.temporal)).is_ok(),
        "5271 is Temporal's"
    );

    procs.regiond = h.sb.spawn(&["regiond", "--flavor", "snap"], &[]);
    h.wait_version(200, "the version through nginx once regiond is back");
}

/// Under the snap's pebble: regiond's service monitor has pebble start nginx (`http`) and
/// Temporal after regiond's start-up; pebble restarts a killed regiond and leaves the others
/// running; stopping pebble stops them all.
#[test]
fn pebble_runs_nginx_and_temporal_for_regiond_and_keeps_them_when_regiond_dies() {
    let pg = Postgres::start();
    let h = Host::new("pebble-nginx", "region-p", "127.0.0.1");
    h.init(&pg);
    let mut pebble = h.sb.spawn(&["pebble"], &[]);
    let pid = pebble.child.id();
    h.wait_version(200, "the version through nginx under pebble");
    let started = read(&h.sb.path("/var/snap/maas/common/pebble/standin-started"));
    assert_eq!(started, "http\ntemporal\n");
    let nginx = wait_for("nginx under pebble", T, || {
        children_named(pid, "nginx").first().copied()
    });
    let temporal = children_named(pid, "temporal-server");
    let regiond = children_named(pid, "regiond");
    assert_eq!((temporal.len(), regiond.len()), (1, 1));
    assert_eq!(children_named(pid, "maas-apiserver").len(), 1);

    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(regiond[0] as i32, libc::SIGKILL);
    }
    let again = wait_for("pebble restarts regiond", T, || {
        children_named(pid, "regiond")
            .into_iter()
            .find(|p| *p != regiond[0])
    });
    assert_ne!(again, regiond[0]);
    h.wait_version(200, "the version through nginx after regiond's restart");
    assert_eq!(
        children_named(pid, "nginx"),
        vec![nginx],
        "nginx outlives regiond"
    );
    assert_eq!(
        children_named(pid, "temporal-server"),
        temporal,
        "so does Temporal"
    );

    pebble.stop();
    wait_for("5240 and 5271 close with pebble", T, || {
        (TcpStream::connect(("127.0.0.1", h.api)).is_err()
            && TcpStream::connect(("127.0.0.1", h.temporal)).is_err())
        .then_some(())
    });
}

/// `maas config-tls enable KEY CERT [--cacert F] [-p PORT] [--yes]` on one region turns TLS on
/// for every region with the same certificate (it is in the database); nginx serves it on the
/// TLS port; on 5240 everything under `/MAAS` is a 301 to https except rpc, metadata, the
/// machines API (enlistment), maas-run-scripts and images-stream. `disable` turns it off.
#[test]
fn config_tls_serves_one_certificate_on_every_region() {
    let pg = Postgres::start();
    let a = Host::new("tls-a", "region-ta", "127.0.0.1");
    let b = Host::new("tls-b", "region-tb", "127.0.0.2");
    a.init(&pg);
    b.init(&pg);
    let _pa = RegionProcs::spawn(&a.sb, "snap");
    let _pb = RegionProcs::spawn(&b.sb, "snap");
    a.wait_version(200, "region a");
    b.wait_version(200, "region b");
    let port = free_port();
    assert!(https_get("127.0.0.1", port, "/").is_none());

    let dir = &a.sb.dir.0;
    let (key, cert) = self_signed_for("maas.example", &["127.0.0.1", "127.0.0.2"]);
    let (other_key, _) = self_signed("other");
    let (_, ca) = self_signed("a CA");
    for (n, t) in [
        ("key", &key),
        ("cert", &cert),
        ("other", &other_key),
        ("ca", &ca),
    ] {
        std::fs::write(dir.join(format!("{n}.pem")), t).unwrap();
    }
    let f = |n: &str| dir.join(format!("{n}.pem")).display().to_string();

    // Refusals as MAAS's: argparse's FileType, CertificateError through maascli's main.
    let o = a.sb.run(&[
        "maas",
        "config-tls",
        "enable",
        "/nonexistent",
        &f("cert"),
        "--yes",
    ]);
    assert_fails_with(
        &o,
        2,
        "error: argument key: can't open '/nonexistent': [Errno 2] No such file or directory: '/nonexistent'",
    );
    let o = a.sb.run(&[
        "maas",
        "config-tls",
        "enable",
        &f("other"),
        &f("cert"),
        "--yes",
    ]);
    assert_fails_with(&o, 2, "maas: error: Private and public keys don't match");
    // Without --yes MAAS asks; anything but `y` changes nothing.
    let o =
        a.sb.run(&["maas", "config-tls", "enable", &f("key"), &f("cert")]);
    assert_ok(&o);
    assert!(stdout(&o).contains("won't be accessible over HTTP anymore, proceed? (y/n)"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.version().map(|v| v.0), Some(200));

    let o = a.sb.run(&[
        "maas",
        "config-tls",
        "enable",
        &f("key"),
        &f("cert"),
        "--cacert",
        &f("ca"),
        "-p",
        &port.to_string(),
        "--yes",
    ]);
    assert_ok(&o);
    let want = openssl::x509::X509::from_pem(cert.as_bytes())
        .unwrap()
        .to_der()
        .unwrap();
    for h in [&a, &b] {
        let (der, status, body) = wait_for("TLS on the region", T, || {
            https_get(h.addr, port, "/MAAS/api/2.0/version/")
        });
        assert_eq!(der, want, "{}: the certificate given to config-tls", h.addr);
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!(
                "region-t{}",
                if h.addr == "127.0.0.1" { "a" } else { "b" }
            )),
            "{body}"
        );
        let certs = h.sb.path("/var/snap/maas/current/http/certs");
        let chain = read(&certs.join("regiond-proxy.pem"));
        assert_eq!(
            chain,
            format!("{}{}", cert, ca),
            "fullchain: certificate, then CA"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("regiond-proxy-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // On 5240: a 301 to https for the API and the UI...
        let https = |p: &str| (301, format!("https://{}:{port}{p}", h.addr));
        // nginx's old workers finish what they accepted before the reload.
        wait_for("5240 redirects", T, || {
            (http_get(h.addr, h.api, "/MAAS/api/2.0/version/")?.0 == 301).then_some(())
        });
        for p in [
            "/MAAS/api/2.0/version/",
            "/MAAS",
            "/MAAS/r/",
            "/MAAS/api/2.0/users/",
        ] {
            assert_eq!(http_get(h.addr, h.api, p).unwrap(), https(p), "{p}");
        }
        // Temporal's metrics are in the TLS server block only: nothing on http matches them.
        let (s, b, _) = wait_for("Temporal's metrics on https", T, || {
            https_get(h.addr, port, "/metrics/temporal")
                .map(|(_, s, b)| (s, b, ()))
                .filter(|(s, _, _)| *s == 200)
        });
        assert!(b.contains("persistence_requests{"), "{s}: {b}");
        assert_eq!(http_get(h.addr, h.api, "/metrics/temporal").unwrap().0, 404);
        // ...and only these stay on http (proxied to regiond, whatever it answers).
        for p in [
            "/MAAS/rpc/",
            "/MAAS/metadata/",
            "/MAAS/api/2.0/machines/",
            "/MAAS/maas-run-scripts",
            "/MAAS/images-stream/streams/v1/index.json",
        ] {
            let (s, loc) = http_get(h.addr, h.api, p).unwrap();
            assert!(s != 301 && loc.is_empty(), "{p}: {s} {loc}");
        }
    }
    // The CLI on https: the server must chain to `--cacerts` and name the host
    // (src/maascli/cli.py cmd_login); the profile keeps verifying with that CA.
    assert_ok(&a.sb.run(&[
        "maas",
        "createadmin",
        "--username",
        "admin",
        "--password",
        "pw",
        "--email",
        "",
    ]));
    let key = stdout(&a.sb.run(&["maas", "apikey", "--username", "admin"]))
        .trim()
        .to_string();
    let https_api = format!("https://127.0.0.1:{port}/MAAS/api/2.0/");
    let o = a.sb.run(&["maas", "login", "tls", &https_api, &key]);
    assert!(
        !o.status.success(),
        "no CA given: the self-signed certificate is refused"
    );
    assert!(
        stderr(&o).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        stderr(&o)
    );
    let o = a.sb.run(&[
        "maas",
        "login",
        "tls",
        &https_api,
        &key,
        "--cacerts",
        "/nonexistent",
    ]);
    assert_fails_with(
        &o,
        2,
        "error: argument --cacerts: can't open '/nonexistent': [Errno 2] No such file or directory: '/nonexistent'",
    );
    assert_ok(&a.sb.run(&[
        "maas",
        "login",
        "tls",
        &https_api,
        &key,
        "--cacerts",
        &f("cert"),
    ]));
    let o = a.sb.run(&["maas", "tls", "users", "whoami"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("admin"), "{}", stdout(&o));

    // Racks still learn the RPC endpoints over http.
    let (s, _) = http_get(a.addr, a.api, "/MAAS/rpc/").unwrap();
    assert_eq!(s, 200);

    assert_ok(&b.sb.run(&["maas", "config-tls", "disable"]));
    for h in [&a, &b] {
        wait_for("TLS off", T, || {
            (https_get(h.addr, port, "/").is_none() && h.version().map(|v| v.0) == Some(200))
                .then_some(())
        });
    }
}

/// The debs: the same processes under systemd's names (maas-http, maas-temporal,
/// maas-apiserver), files under /var/lib/maas.
#[test]
fn deb_region_behind_nginx() {
    let pg = Postgres::start();
    let h = Host::new("deb-nginx", "region-dn", "127.0.0.1");
    assert_ok(&h.sb.run(&[
        "maas-region",
        "local_config_set",
        "--maas-url",
        &h.url(),
        "--database-host",
        "127.0.0.1",
        "--database-port",
        &pg.port.to_string(),
        "--database-name",
        "maasdb",
        "--database-user",
        "maas",
        "--database-pass",
        &pg.password,
    ]));
    assert_ok(&h.sb.run_line("maas-region dbupgrade"));
    let _p = RegionProcs::spawn(&h.sb, "deb");
    let v = h.wait_version(200, "the deb region through nginx");
    assert!(v.contains("region-dn"), "{v}");
    assert!(h.sb.path("/var/lib/maas/http/nginx.conf").exists());
    assert!(h
        .sb
        .path("/var/lib/maas/maas-regiond-webapp.sock.1")
        .exists());
    assert!(h.sb.path("/var/lib/maas/temporal/production.yaml").exists());
    assert!(TcpStream::connect(("127.0.0.1", h.temporal)).is_ok());
}
