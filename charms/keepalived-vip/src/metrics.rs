//! This unit's VIP state as Prometheus metrics (issue 21): `dispatch metrics <app> <port>
//! <vip>...`, a small service per application serving `keepalived_vip_held{vip="..."}` (1 when
//! this host carries the VIP, else 0) on 127.0.0.1 only, for the cos-agent collector on the same
//! machine. Written here rather than taken from a keepalived exporter: none is packaged in
//! Debian or Ubuntu, keepalived itself exports no Prometheus metrics, and what an alert needs
//! is whether the address is on this host's interfaces, which is what clients see (the VRRP
//! state can say MASTER while the address is not there, e.g. during a reload).
//!
//! Each scrape reads the interfaces afresh (`ip -j addr`); nothing is cached.

use crate::net;
use crate::paths::Paths;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::process::Command;

/// The port of an application's exporter: 9700 + its virtual router id, unique per host
/// because two applications on one interface may not share a router id (see `claims`).
pub fn port(vrid: u8) -> u16 {
    9700 + u16::from(vrid)
}

/// The exposition text for `held` (VIP, whether this host carries it).
pub fn exposition(held: &[(IpAddr, bool)]) -> String {
    let mut out = String::from(
        "# HELP keepalived_vip_held Whether this unit's host carries the VIP now (1) or not (0).\n# TYPE keepalived_vip_held gauge\n",
    );
    for (vip, h) in held {
        out.push_str(&format!(
            "keepalived_vip_held{{vip=\"{vip}\"}} {}\n",
            u8::from(*h)
        ));
    }
    out
}

/// The systemd unit of the exporter; `binary_line` is `Context::charm_binary_line` (the
/// exporter is the charm's binary: a refresh that changes it restarts the exporter).
pub fn unit(l: &Paths, charm_dir: &str, binary_line: &str, port: u16, vips: &[IpAddr]) -> String {
    let vips: Vec<String> = vips.iter().map(ToString::to_string).collect();
    format!(
        "{binary_line}[Unit]\nDescription=keepalived-vip {app}: VIP state for Prometheus on 127.0.0.1:{port}\nAfter=network-online.target\n\n\
[Service]\nType=simple\nExecStart={charm_dir}/dispatch metrics {app} {port} {vips}\nRestart=always\nRestartSec=2\n\n\
[Install]\nWantedBy=multi-user.target\n",
        app = l.app,
        vips = vips.join(" ")
    )
}

fn held_now(vips: &[IpAddr]) -> Result<Vec<(IpAddr, bool)>, String> {
    let out = Command::new("ip")
        .args(["-j", "addr", "show"])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let ifaces =
        net::parse_ip_addr(&String::from_utf8_lossy(&out.stdout)).map_err(|e| e.to_string())?;
    Ok(vips
        .iter()
        .map(|v| (*v, net::is_local(&ifaces, *v)))
        .collect())
}

/// Serves forever: `args` are the application, the port and the VIPs.
pub fn run(args: &[String]) -> ! {
    let parsed = (|| -> Option<(u16, Vec<IpAddr>)> {
        let port = args.get(1)?.parse().ok()?;
        let vips = args[2..]
            .iter()
            .map(|v| v.parse().ok())
            .collect::<Option<Vec<IpAddr>>>()?;
        Some((port, vips))
    })();
    let Some((port, vips)) = parsed else {
        eprintln!("usage: dispatch metrics <app> <port> <vip>...");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    for stream in listener.incoming().flatten() {
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
        let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
            match held_now(&vips) {
                Ok(h) => ("200 OK", exposition(&h)),
                Err(e) => ("500 Internal Server Error", format!("{e}\n")),
            }
        } else {
            ("404 Not Found", "only /metrics\n".to_string())
        };
        let _ = write!(
            &stream,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_gauge_per_vip_and_a_port_per_router_id() {
        let a: IpAddr = "10.0.0.100".parse().unwrap();
        let b: IpAddr = "fd00::100".parse().unwrap();
        let text = exposition(&[(a, true), (b, false)]);
        assert!(text.contains("# TYPE keepalived_vip_held gauge\n"));
        assert!(text.contains("keepalived_vip_held{vip=\"10.0.0.100\"} 1\n"));
        assert!(text.contains("keepalived_vip_held{vip=\"fd00::100\"} 0\n"));
        assert_eq!((port(1), port(255)), (9701, 9955));
    }

    #[test]
    fn the_unit_runs_the_charm_binary_with_the_vips() {
        let u = unit(
            &Paths::new("db-vip"),
            "/var/lib/juju/agents/unit-db-vip-0/charm",
            "# charm binary 00ff\n",
            9751,
            &["10.0.0.201".parse().unwrap()],
        );
        assert!(u.contains("ExecStart=/var/lib/juju/agents/unit-db-vip-0/charm/dispatch metrics db-vip 9751 10.0.0.201\n"), "{u}");
        assert!(u.starts_with("# charm binary 00ff\n[Unit]\n"), "{u}");
    }
}
