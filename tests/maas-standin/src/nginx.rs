//! MAAS's reverse proxy: Debian's nginx, as MAAS runs it since 3.2 (the snap ships its own
//! build; the deb depends on Ubuntu's). nginx owns port 5240 (and the TLS port while
//! `maas config-tls enable` is on) and proxies to regiond's worker sockets and, from 3.5, to the
//! apiserver's; from 3.6 its stream server owns 5242 and passes it to the internal API socket.
//!
//! Where MAAS does it (canonical/maas 3.6, facts only):
//! - `RegionHTTPService._configure` (src/maasserver/regiondservices/http.py) renders
//!   src/maasserver/templates/http/regiond.nginx.conf.template (`http_port` 5240, `tls_port` from
//!   the `tls_port` config, the certificate from the `tls` secret written to
//!   `certs/regiond-proxy.pem` 0644 and `certs/regiond-proxy-key.pem` 0600) and
//!   regiond.nginx.stream.conf.template (`http_port` 5242) into `MAAS_HTTP_CONFIG_DIR`, then
//!   `_reload_service` reloads `reverse_proxy` (service_monitor.py `HTTPService`: snap service
//!   `http`, deb unit `maas-http`). It runs when regiond's services start, after `start_up`
//!   (eventloop.py `MAASServices.startService`), and again on every `sys_reverse_proxy` notify
//!   (`_consume_event`), which `maas config-tls` sends.
//! - The snap's pebble service `http` runs snap/local/tree/bin/run-nginx: copy
//!   usr/share/maas/nginx/nginx.conf to `$SNAP_DATA/http/` and exec nginx on it (`daemon off`).
//!   The deb's maas-http.service runs `/usr/sbin/nginx -c /var/lib/maas/http/nginx.conf`
//!   (debian/maas-common.maas-http.service, debian/extras/nginx.conf). Both are separate
//!   processes from regiond: a dead regiond leaves nginx listening, and nginx answers
//!   `502 Bad Gateway` for what it proxies to regiond's sockets.
//!
//! - From 3.5 the template also has `upstream temporal-metrics { server localhost:9000; }` and,
//!   in its first server block only (5240, or the TLS port with TLS on), `location
//!   /metrics/temporal { proxy_pass http://temporal-metrics/metrics; }` (Temporal's Prometheus
//!   listener, [`crate::temporal`]); 3.4's template has neither, and no location of its matches
//!   `/metrics/temporal`, so nginx answers it 404 from its (empty) document root.
//!
//! The stand-in keeps MAAS's listeners and routing rules; it leaves out the static assets
//! (`/MAAS/r/`, docs, machine-resources, boot-resources: no files to serve) and access logs.

use crate::paths::Flavor;
use crate::snapinfo::Features;
use crate::util;
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// Debian's nginx (package `nginx`; the stream module from `libnginx-mod-stream`).
pub const NGINX: &str = "/usr/sbin/nginx";
/// The stream module MAAS's nginx.conf loads (`load_module`).
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The TLS settings `maas config-tls enable` stores in the database: the `tls` secret (key,
/// certificate, CA chain) and the `tls_port` config (`_update_tls_config` in
/// src/maasserver/management/commands/config_tls.py). Every region renders the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tls {
    /// Private key, PEM.
    pub key: String,
    /// Certificate, PEM.
    pub cert: String,
    /// CA certificates, PEM (may be empty).
    pub cacert: String,
    /// The HTTPS port (`-p`, default 5443).
    pub port: u16,
}

/// The HTTP port nginx serves (5240; test override: the first of `MAAS_STANDIN_PORTS`).
pub fn http_port() -> u16 {
    crate::regiond::ports()[0]
}

/// The port of nginx's stream server for the internal API (5242).
pub fn internal_port() -> u16 {
    crate::regiond::ports()[1]
}

/// `listen` lines for `port` (with `extra` such as ` ssl http2`): MAAS's `[::]:P` and `P`, or
/// only `MAAS_STANDIN_BIND:P` when a test pins the address. Without IPv6 in the kernel nginx
/// could not bind `[::]`, so that line is left out there.
fn listen(port: u16, extra: &str) -> String {
    match std::env::var("MAAS_STANDIN_BIND") {
        Ok(addr) if !addr.is_empty() => format!("    listen {addr}:{port}{extra};\n"),
        _ => {
            let mut s = String::new();
            if std::path::Path::new("/proc/net/if_inet6").exists() {
                s.push_str(&format!("    listen [::]:{port}{extra};\n"));
            }
            s.push_str(&format!("    listen {port}{extra};\n"));
            s
        }
    }
}

/// nginx's pid file (the snap's nginx.conf: `$SNAP_DATA/http/nginx.pid`; the deb's is
/// `/run/maas-http.pid`, kept beside the configuration here so tests can relocate it).
pub fn pid_file(flavor: Flavor) -> PathBuf {
    flavor.http_dir().join("nginx.pid")
}

/// The main nginx.conf: the snap's usr/share/maas/nginx/nginx.conf and the deb's
/// debian/extras/nginx.conf, with the stand-in's paths; `user root` (the deb's `nobody maas`
/// needs regiond's sockets group-writable by maas; the stand-in's daemons run as root).
pub fn main_conf(flavor: Flavor, f: Features) -> String {
    let http = flavor.http_dir();
    let h = http.display();
    let mut s = String::from("# MAAS stand-in: MAAS's nginx.conf (snap usr/share/maas/nginx/nginx.conf, deb debian/extras/nginx.conf)\n");
    if f.internal_api {
        s.push_str(&format!("load_module {STREAM_MODULE};\n\n"));
    }
    s.push_str(&format!(
        "daemon off;\nuser root;\n\npid {};\nworker_processes auto;\n\nerror_log stderr;\n\nevents {{\n    worker_connections 768;\n}}\n\n",
        pid_file(flavor).display()
    ));
    s.push_str("http {\n    sendfile on;\n    tcp_nopush on;\n    tcp_nodelay on;\n    keepalive_timeout 65;\n    types_hash_max_size 2048;\n    client_max_body_size 10M;\n\n");
    if std::path::Path::new("/etc/nginx/mime.types").exists() {
        s.push_str("    include /etc/nginx/mime.types;\n");
    }
    s.push_str("    default_type application/octet-stream;\n\n    access_log off;\n\n");
    for t in ["client_body", "fastcgi", "proxy", "scgi", "uwsgi"] {
        let dir = if t == "client_body" { "body" } else { t };
        s.push_str(&format!("    {t}_temp_path {h}/{dir};\n"));
    }
    s.push_str(&format!(
        "\n    gzip on;\n\n    include {h}/*.nginx.conf;\n}}\n"
    ));
    if f.internal_api {
        s.push_str(&format!(
            "\n# Passthrough the connection to the internalapiserver that is protected by mtls.\nstream {{\n  include {h}/*.nginx.stream.conf;\n}}\n"
        ));
    }
    s
}

/// regiond.nginx.conf as `RegionHTTPService._configure` renders regiond.nginx.conf.template
/// for `workers` worker sockets.
pub fn region_conf(flavor: Flavor, tls: Option<&Tls>, workers: usize, f: Features) -> String {
    let base = flavor.worker_socket_base();
    let mut s = String::from("# -*- mode: nginx -*-\n# MAAS stand-in: src/maasserver/templates/http/regiond.nginx.conf.template, rendered as\n# RegionHTTPService._configure does (static assets left out)\n\nupstream regiond-webapp {\n");
    for w in 1..=workers.max(1) {
        s.push_str(&format!("    server unix:{}.{w};\n", base.display()));
    }
    s.push_str("}\n\n");
    if f.apiserver_and_temporal {
        s.push_str(&format!(
            "upstream apiserver {{\n    server unix:{};\n}}\n\n",
            flavor.apiserver_socket().display()
        ));
        // Temporal's Prometheus listener (production.yaml.template `listenAddress:
        // "127.0.0.1:9000"`), as the template names it.
        s.push_str(&format!(
            "upstream temporal-metrics {{\n    server localhost:{};\n}}\n\n",
            crate::temporal::metrics_port()
        ));
    }
    s.push_str(
        "proxy_http_version 1.1;\nproxy_buffering off;\nproxy_read_timeout 900s; # to match the Twisted one\n\
         proxy_set_header Host $host;\nproxy_set_header X-Real-IP $remote_addr;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         proxy_set_header X-Forwarded-Proto $scheme;\nproxy_set_header X-Forwarded-Host $http_host;\n\nserver {\n",
    );
    let http = http_port();
    match tls {
        Some(t) => {
            let certs = flavor.http_dir().join("certs");
            s.push_str(&listen(t.port, " ssl http2"));
            s.push_str(&format!(
                "    ssl_certificate {};\n    ssl_certificate_key {};\n",
                certs.join("regiond-proxy.pem").display(),
                certs.join("regiond-proxy-key.pem").display()
            ));
            s.push_str("    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_ciphers \"AES256+EECDH AES256+EDH !aNULL\";\n    ssl_prefer_server_ciphers on;\n    ssl_session_cache shared:SSL:10m;\n\n    add_header Strict-Transport-Security 'max-age=15552000; includeSubdomains' always;\n");
        }
        None => s.push_str(&listen(http, "")),
    }
    s.push_str(
        "\n    absolute_redirect off;\n\n    location = / {\n        return 301 /MAAS/r/;\n    }\n\n\
         \x20   location ~ ^/MAAS/?$ {\n        return 301 /MAAS/r/;\n    }\n\n\
         \x20   location /MAAS {\n        proxy_pass http://regiond-webapp;\n    }\n\n\
         \x20   location /MAAS/ws {\n        proxy_pass http://regiond-webapp;\n        proxy_set_header Connection \"Upgrade\";\n        proxy_set_header Upgrade $http_upgrade;\n    }\n",
    );
    if f.apiserver_and_temporal {
        s.push_str(
            "\n    location = /MAAS/a/v2/machines {\n        return 404;\n    }\n\n\
             \x20   location /MAAS/a/ {\n        proxy_pass http://apiserver;\n    }\n",
        );
        // In the first server only: the TLS port's with TLS on (the http server then has no
        // such location, so nginx answers 404 there), 5240's without; 3.4 has neither.
        s.push_str(
            "\n    location /metrics/temporal {\n        proxy_pass http://temporal-metrics/metrics;\n    }\n",
        );
    }
    s.push_str("}\n");
    if let Some(t) = tls {
        s.push_str("\n# when TLS is enabled, HTTP access still need to be allowed for some resources\nserver {\n");
        s.push_str(&listen(http, ""));
        for loc in [
            "location /MAAS/rpc/",
            "location /MAAS/metadata/",
            "location /MAAS/api/2.0/machines",
            "location = /MAAS/maas-run-scripts",
            "location /MAAS/images-stream",
        ] {
            s.push_str(&format!(
                "\n    {loc} {{\n        proxy_pass http://regiond-webapp;\n    }}\n"
            ));
        }
        s.push_str(&format!(
            "\n    location /MAAS {{\n        return 301 https://$host:{}$request_uri;\n    }}\n}}\n",
            t.port
        ));
    }
    s
}

/// regiond.nginx.stream.conf (3.6+): 5242 passed through to the internal API's socket.
pub fn stream_conf(flavor: Flavor) -> String {
    format!(
        "# -*- mode: nginx -*-\n# MAAS stand-in: src/maasserver/templates/http/regiond.nginx.stream.conf.template\n\nserver {{\n{}    proxy_pass unix:{};\n}}\n",
        listen(internal_port(), ""),
        flavor.internal_apiserver_socket().display()
    )
}

/// Renders what `RegionHTTPService._configure` writes; whether any file changed.
pub fn render(flavor: Flavor, tls: Option<&Tls>, workers: usize, f: Features) -> Result<bool> {
    let dir = flavor.http_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files: Vec<(PathBuf, String, u32)> = vec![];
    if let Some(t) = tls {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs)?;
        // `fullchain_pem`: the certificate, then the CA chain.
        let mut chain = t.cert.trim_end().to_string();
        chain.push('\n');
        if !t.cacert.trim().is_empty() {
            chain.push_str(t.cacert.trim_end());
            chain.push('\n');
        }
        files.push((certs.join("regiond-proxy.pem"), chain, 0o644));
        files.push((certs.join("regiond-proxy-key.pem"), t.key.clone(), 0o600));
    }
    files.push((
        dir.join("regiond.nginx.conf"),
        region_conf(flavor, tls, workers, f),
        0o644,
    ));
    let stream = dir.join("regiond.nginx.stream.conf");
    if f.internal_api {
        files.push((stream, stream_conf(flavor), 0o644));
    } else {
        let _ = std::fs::remove_file(stream);
    }
    let mut changed = false;
    for (path, text, mode) in files {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            util::write_file(&path, text.as_bytes(), mode, None)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// The rack's HTTP port (5248, `listen 5248` in rackd.nginx.conf.template; test override:
/// `MAAS_STANDIN_RACK_HTTP_PORT`).
pub fn rack_port() -> u16 {
    std::env::var("MAAS_STANDIN_RACK_HTTP_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(5248)
}

/// rackd.nginx.conf as `RackHTTPService._configure` (src/provisioningserver/rackdservices/
/// http.py) renders src/provisioningserver/templates/http/rackd.nginx.conf.template for the
/// regions rackd is connected to (`upstream_http`: one address per region, sorted; none
/// leaves out the upstream and `/MAAS/`), by release: 3.4 serves `/images/` from the TFTP
/// root (`resource_root`); 3.5 serves them from image-storage and falls back to maas-agent's
/// caching proxy (`upstream maas-agent-httpproxy`, `httpproxy.sock`); 3.6 adds `upstream
/// maas-agent-http` (`agent-http.sock`) with `/metrics/agent` and `/profiling/agent/`. In
/// every release `= /log` goes to rackd's `localhost:5249/log` and `/` to its `/boot/`.
pub fn rack_conf(flavor: Flavor, upstream_http: &[String], f: Features) -> String {
    let mut ups: Vec<&String> = upstream_http.iter().collect();
    ups.sort();
    ups.dedup();
    let rackd = crate::metrics::ports().1;
    let mut s = String::from("# MAAS stand-in: src/provisioningserver/templates/http/rackd.nginx.conf.template, rendered as
# RackHTTPService._configure does
");
    if !ups.is_empty() {
        s.push_str(
            "upstream maas-regions {
",
        );
        for u in &ups {
            s.push_str(&format!(
                "    server {u}:{};
",
                http_port()
            ));
        }
        s.push_str(
            "}

",
        );
    }
    if f.apiserver_and_temporal {
        s.push_str(&format!(
            "upstream maas-agent-httpproxy {{
    server unix:{};
}}

",
            crate::agent::httpproxy_socket(flavor).display()
        ));
    }
    if f.internal_api {
        s.push_str(&format!(
            "upstream maas-agent-http {{
  server unix:{};
}}

",
            crate::agent::http_socket(flavor).display()
        ));
    }
    s.push_str(
        "server {
",
    );
    s.push_str(&listen(rack_port(), ""));
    if !ups.is_empty() {
        s.push_str(
            "
    location /MAAS/ {
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Server $host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;

        proxy_buffering off;
        proxy_pass http://maas-regions/MAAS/;
    }
",
        );
    }
    s.push_str(&format!(
        "
    location /machine-resources/ {{
        root {};
        autoindex on;
        gzip on;
    }}
",
        crate::paths::p("/usr/share/maas").display()
    ));
    if f.apiserver_and_temporal {
        s.push_str(&format!(
            "
    location ~ ^/images/([^/]+) {{
        auth_request /log;
        root {};
        try_files /$1 @agent;
    }}

    location @agent {{
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Remote-IP $remote_addr;
        proxy_pass http://maas-agent-httpproxy;
    }}
",
            flavor.image_storage().display()
        ));
    } else {
        s.push_str(&format!(
            "
    location /images/ {{
        auth_request /log;

        alias {}/;
        autoindex on;
    }}
",
            flavor.boot_resources().display()
        ));
    }
    if f.internal_api {
        s.push_str(
            "
    location /metrics/agent {
        proxy_pass http://maas-agent-http/metrics;
    }

    location ~ ^/profiling/agent/(.*) {
        proxy_pass http://maas-agent-http/$1;
    }
",
        );
    }
    s.push_str(&format!(
        "
    location = /log {{
        internal;
        proxy_pass http://localhost:{rackd}/log;
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Remote-IP $remote_addr;
    }}

    location / {{
        proxy_pass http://localhost:{rackd}/boot/;
        proxy_buffering off;
        proxy_set_header X-Server-Addr $server_addr;
        proxy_set_header X-Server-Port $server_port;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Port $remote_port;
    }}
}}
"
    ));
    s
}

/// Writes rackd.nginx.conf (0644, `atomic_write`) into the http directory MAAS's one nginx
/// includes `*.nginx.conf` from, beside regiond.nginx.conf on a region+rack host; whether it
/// changed.
pub fn render_rack(flavor: Flavor, upstream_http: &[String], f: Features) -> Result<bool> {
    let dir = flavor.http_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("rackd.nginx.conf");
    let text = rack_conf(flavor, upstream_http, f);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    util::write_file(&path, text.as_bytes(), 0o644, None)?;
    Ok(true)
}

/// The running nginx master, from its pid file.
pub fn running_pid(flavor: Flavor) -> Option<i32> {
    let pid: i32 = util::read_trimmed(&pid_file(flavor))?.parse().ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// `nginx -s reload`: SIGHUP to the master (nginx re-reads its configuration and replaces its
/// workers; listeners that stay are kept open). Whether an nginx was there to reload.
pub fn reload(flavor: Flavor) -> bool {
    match running_pid(flavor) {
        // SAFETY: sending a signal has no memory-safety preconditions.
        Some(pid) => unsafe { libc::kill(pid, libc::SIGHUP) == 0 },
        None => false,
    }
}

/// The `http` service (snap: run-nginx under pebble; deb: maas-http.service): writes the main
/// nginx.conf and its temporary directories, then execs nginx in the foreground, so the
/// supervisor watches nginx itself. Returns only on failure.
pub fn run(flavor: Flavor) -> Result<()> {
    let f = crate::snapinfo::features(flavor);
    let dir = flavor.http_dir();
    for sub in ["body", "fastcgi", "proxy", "scgi", "uwsgi"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let conf = dir.join("nginx.conf");
    util::write_file(&conf, main_conf(flavor, f).as_bytes(), 0o644, None)?;
    if !std::path::Path::new(NGINX).exists() {
        anyhow::bail!(
            "{NGINX} is missing: MAAS's http service is Debian's nginx (make deps installs it)"
        );
    }
    let err = std::process::Command::new(NGINX)
        .args(["-e", "stderr", "-c"])
        .arg(&conf)
        .exec();
    Err(err).context("exec nginx")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapinfo::features_of;

    fn tls() -> Tls {
        Tls {
            key: "K".into(),
            cert: "C".into(),
            cacert: String::new(),
            port: 5443,
        }
    }

    /// The server blocks of a rendered regiond.nginx.conf, in order.
    fn servers(conf: &str) -> Vec<String> {
        conf.split("\nserver {")
            .skip(1)
            .map(|b| b.split("\n}\n").next().unwrap().to_string())
            .collect()
    }

    /// canonical/maas 3.5-3.8 regiond.nginx.conf.template: the `temporal-metrics` upstream on
    /// localhost:9000 and `/metrics/temporal` in the first server block only, whichever port it
    /// listens on; 3.4's template has neither.
    #[test]
    fn temporal_metrics_are_proxied_in_the_first_server_block_from_3_5() {
        let up = "upstream temporal-metrics {\n    server localhost:9000;\n}";
        let loc =
            "location /metrics/temporal {\n        proxy_pass http://temporal-metrics/metrics;\n    }";
        for ch in ["3.5/stable", "3.6/stable", "3.8/edge"] {
            let f = features_of(Some(ch));
            let plain = region_conf(Flavor::Snap, None, 2, f);
            assert!(plain.contains(up), "{ch}: {plain}");
            let s = servers(&plain);
            assert_eq!(s.len(), 1, "{ch}");
            assert!(s[0].contains(loc), "{ch}: {plain}");
            let with_tls = region_conf(Flavor::Snap, Some(&tls()), 2, f);
            let s = servers(&with_tls);
            assert_eq!(s.len(), 2, "{ch}");
            assert!(
                s[0].contains("5443 ssl") && s[0].contains(loc),
                "{ch}: {with_tls}"
            );
            assert!(!s[1].contains("/metrics/temporal"), "{ch}: {with_tls}");
        }
        let f = features_of(Some("3.4/stable"));
        for conf in [
            region_conf(Flavor::Snap, None, 2, f),
            region_conf(Flavor::Snap, Some(&tls()), 2, f),
        ] {
            assert!(!conf.contains("temporal"), "{conf}");
        }
    }

    /// canonical/maas rackd.nginx.conf.template by release: 3.4 `/images/` from the TFTP
    /// root and no agent; 3.5 the agent's caching proxy as the images' fallback; 3.6+ also
    /// `/metrics/agent` to the agent's HTTP socket. `/MAAS/` only with a region to send it to;
    /// `/log` and `/` to rackd on 5249 in every release.
    #[test]
    fn the_racks_nginx_follows_rackd_nginx_conf_template_by_release() {
        let regions = vec!["10.0.0.2".to_string(), "10.0.0.1".to_string()];
        let metrics =
            "location /metrics/agent {\n        proxy_pass http://maas-agent-http/metrics;\n    }";
        for ch in ["3.4/stable", "3.5/stable", "3.6/stable", "3.8/edge"] {
            let f = features_of(Some(ch));
            let conf = rack_conf(Flavor::Snap, &regions, f);
            assert!(
                conf.contains("upstream maas-regions {\n    server 10.0.0.1:5240;\n    server 10.0.0.2:5240;\n}"),
                "{ch}: {conf}"
            );
            assert!(
                conf.contains("proxy_pass http://maas-regions/MAAS/;"),
                "{ch}"
            );
            assert!(conf.contains("listen 5248;"), "{ch}: {conf}");
            assert!(
                conf.contains("proxy_pass http://localhost:5249/log;")
                    && conf.contains("proxy_pass http://localhost:5249/boot/;"),
                "{ch}: {conf}"
            );
            let agent = ch != "3.4/stable";
            assert_eq!(conf.contains("try_files /$1 @agent;"), agent, "{ch}");
            assert_eq!(conf.contains("location /images/ {"), !agent, "{ch}: {conf}");
            let http = ch == "3.6/stable" || ch == "3.8/edge";
            assert_eq!(conf.contains(metrics), http, "{ch}: {conf}");
            assert_eq!(
                conf.contains("/run/snap.maas/agent-http.sock;"),
                http,
                "{ch}"
            );
            let none = rack_conf(Flavor::Deb, &[], f);
            assert!(
                !none.contains("maas-regions") && !none.contains("location /MAAS/"),
                "{ch}: {none}"
            );
            assert_eq!(
                none.contains("/run/maas/agent-http.sock;"),
                http,
                "{ch}: {none}"
            );
        }
    }
}
