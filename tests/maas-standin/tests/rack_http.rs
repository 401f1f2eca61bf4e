//! A rack host's nginx on 5248 as MAAS 3.6 has it: rackd's service monitor has the snap's
//! pebble start nginx (`http`) and maas-agent (`agent`) once rackd reaches a region; rackd
//! renders rackd.nginx.conf with the regions it is connected to; nginx proxies `/MAAS/` to
//! them, `/metrics/agent` to maas-agent's HTTP socket and `/` to rackd's `/boot/` on 5249;
//! maas-agent is a process of its own, so a stopped rackd leaves its metrics answering.
//!
//! Sources (canonical/maas 3.6): src/provisioningserver/templates/http/
//! rackd.nginx.conf.template, src/provisioningserver/rackdservices/http.py
//! (`RackHTTPService`), rackdservices/service_monitor_service.py (`ServiceMonitorService`),
//! src/provisioningserver/service_monitor.py (`HTTPService`, `AgentServiceOnRack`),
//! snap/local/tree/usr/share/maas/pebble/layers/003-maas-rack-layer.yaml,
//! src/maasagent/cmd/maas-agent/main.go (`setupHTTP`, `setupMetrics`, `getRunDir`).

mod common;
use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

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

#[test]
fn a_racks_nginx_fronts_the_regions_maas_agent_and_rackd_under_pebble() {
    let pg = Postgres::start();
    let (api, internal, temporal) = (free_port(), free_port(), free_port());
    let ports = format!("{api},{internal},{temporal}");
    let region = Sandbox::new("rackhttp-region")
        .with("MAAS_STANDIN_PORTS", &ports)
        .with("MAAS_STANDIN_RPC_PORTS", &free_ports(3))
        .with("MAAS_STANDIN_BIND", "127.0.0.1")
        .with(
            "MAAS_STANDIN_METRICS_PORTS",
            &format!("{},{}", free_port(), free_port()),
        )
        .with("MAAS_STANDIN_HOSTNAME", "region-r");
    let url = format!("http://127.0.0.1:{api}/MAAS");
    assert_ok(&region.run_line(&format!(
        "maas init region --maas-url {url} --database-uri {} --num-workers 2 --force",
        pg.uri()
    )));
    let _procs = RegionProcs::spawn(&region, "snap");
    let secret = wait_for("the shared secret", T, || {
        std::fs::read_to_string(region.path("/var/snap/maas/common/maas/secret")).ok()
    });

    let (rack_http, rackd_http) = (free_port(), free_port());
    let rack = Sandbox::new("rackhttp-rack")
        .with("MAAS_STANDIN_HOSTNAME", "rack-r")
        .with("MAAS_STANDIN_INTERFACES", "10.77.0.9/24")
        // The region's ports as the rack dials them (5240, 5242, 5271 on every host).
        .with("MAAS_STANDIN_PORTS", &ports)
        .with("MAAS_STANDIN_BIND", "127.0.0.1")
        .with("MAAS_STANDIN_RACK_HTTP_PORT", &rack_http.to_string())
        .with(
            "MAAS_STANDIN_METRICS_PORTS",
            &format!("{},{rackd_http}", free_port()),
        );
    assert_ok(&rack.run_line(&format!(
        "maas init rack --maas-url {url} --secret {} --force",
        secret.trim()
    )));
    let pebble = rack.spawn(&["pebble"], &[]);
    let pid = pebble.child.id();

    // rackd reaches the region, its service monitor asks pebble for nginx and maas-agent.
    let started = rack.path("/var/snap/maas/common/pebble/standin-started");
    wait_for("rackd's service monitor asks for http and agent", T, || {
        (std::fs::read_to_string(&started).ok()? == "http\nagent\n").then_some(())
    });
    let nginx = wait_for("nginx under pebble", T, || {
        children_named(pid, "nginx").first().copied()
    });
    let agent = wait_for("maas-agent under pebble", T, || {
        children_named(pid, "maas-agent").first().copied()
    });
    let rackd = children_named(pid, "rackd");
    assert_eq!(rackd.len(), 1, "one rackd");

    // rackd.nginx.conf: the region rackd is connected to, maas-agent's socket.
    let conf_path = rack.path("/var/snap/maas/current/http/rackd.nginx.conf");
    let conf = wait_for("rackd renders the region into its nginx", T, || {
        let c = std::fs::read_to_string(&conf_path).ok()?;
        c.contains("upstream maas-regions").then_some(c)
    });
    assert!(conf.contains(&format!("server 127.0.0.1:{api};")), "{conf}");
    let socket = rack.path("/run/snap.maas/agent-http.sock");
    assert!(
        conf.contains(&format!("server unix:{};", socket.display())),
        "{conf}"
    );
    assert!(
        conf.contains(&format!("listen 127.0.0.1:{rack_http};")),
        "{conf}"
    );
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let m = wait_for("maas-agent's socket", T, || std::fs::metadata(&socket).ok());
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
    }

    // Through the rack's nginx: maas-agent's metrics, the region's API, rackd's /boot/.
    let base = format!("http://127.0.0.1:{rack_http}");
    let (s, b) = wait_for("maas-agent's metrics through the rack's nginx", T, || {
        get(&format!("{base}/metrics/agent")).filter(|(s, _)| *s == 200)
    });
    assert_eq!(s, 200);
    assert!(b.contains("target_info{service_name=\"maas.agent\""), "{b}");
    assert!(b.contains("# TYPE cache_usage_total counter"), "{b}");
    assert!(
        b.contains("cache_size{otel_scope_name=\"httpproxy\",otel_scope_version=\"\",type=\"max\"} 20000000000"),
        "{b}"
    );
    assert!(b.contains("# TYPE go_goroutines gauge"), "{b}");
    let (s, b) = wait_for("the region's API through the rack's nginx", T, || {
        get(&format!("{base}/MAAS/api/2.0/version/")).filter(|(s, _)| *s == 200)
    });
    assert!(b.contains("region-r"), "{s} {b}");
    // `/` is rackd's `/boot/`, which the stand-in's rackd does not serve: its 404, not nginx's.
    let (s, b) = get(&format!("{base}/pxelinux.0")).unwrap();
    assert_eq!(s, 404, "{b}");
    assert!(
        b.contains("No Such Resource"),
        "rackd's Twisted site answered: {b}"
    );

    // rackd stopped (SIGSTOP, as the drill does): maas-agent, a process of its own, answers.
    assert_eq!(comm(agent), "maas-agent");
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(rackd[0] as i32, libc::SIGSTOP);
    }
    let r = get(&format!("{base}/metrics/agent"));
    // SAFETY: as above.
    unsafe {
        libc::kill(rackd[0] as i32, libc::SIGCONT);
    }
    let (s, b) = r.expect("an answer while rackd is stopped");
    assert_eq!(s, 200, "{b}");
    assert_eq!(children_named(pid, "nginx"), vec![nginx]);
}

/// region+rack: regiond's and rackd's service monitors ask pebble for the same `http`, so one
/// nginx serves both regiond.nginx.conf (5240) and rackd.nginx.conf (5248), never a second
/// nginx on 5248 (canonical/maas: one `http` service per host, `get_http_config_dir` shared by
/// `RegionHTTPService` and `RackHTTPService`; snap layers 001-maas-base-layer.yaml `http`).
#[test]
fn a_region_plus_rack_host_runs_one_nginx_for_both() {
    let pg = Postgres::start();
    let (api, internal, temporal) = (free_port(), free_port(), free_port());
    let rack_http = free_port();
    let sb = Sandbox::new("rackhttp-both")
        .with(
            "MAAS_STANDIN_PORTS",
            &format!("{api},{internal},{temporal}"),
        )
        .with("MAAS_STANDIN_RPC_PORTS", &free_ports(3))
        .with("MAAS_STANDIN_BIND", "127.0.0.1")
        .with("MAAS_STANDIN_RACK_HTTP_PORT", &rack_http.to_string())
        .with(
            "MAAS_STANDIN_METRICS_PORTS",
            &format!("{},{}", free_port(), free_port()),
        )
        .with(
            "MAAS_STANDIN_TEMPORAL_METRICS_PORT",
            &free_port().to_string(),
        )
        .with("MAAS_STANDIN_INTERFACES", "10.77.0.8/24")
        .with("MAAS_STANDIN_HOSTNAME", "both-r");
    let url = format!("http://127.0.0.1:{api}/MAAS");
    assert_ok(&sb.run_line(&format!(
        "maas init region+rack --maas-url {url} --database-uri {} --num-workers 2 --force",
        pg.uri()
    )));
    let pebble = sb.spawn(&["pebble"], &[]);
    let pid = pebble.child.id();
    let started = sb.path("/var/snap/maas/common/pebble/standin-started");
    wait_for("both service monitors' requests", T, || {
        let s = std::fs::read_to_string(&started).ok()?;
        let mut l: Vec<&str> = s.lines().collect();
        l.sort();
        (l == ["agent", "http", "temporal"]).then_some(())
    });
    let base = format!("http://127.0.0.1:{rack_http}");
    wait_for("maas-agent's metrics on 5248", T, || {
        get(&format!("{base}/metrics/agent")).filter(|(s, _)| *s == 200)
    });
    wait_for("the version on 5240", T, || {
        get(&format!("{url}/api/2.0/version/")).filter(|(s, _)| *s == 200)
    });
    let http = sb.path("/var/snap/maas/current/http");
    assert!(http.join("regiond.nginx.conf").exists());
    assert!(http.join("rackd.nginx.conf").exists());
    assert_eq!(children_named(pid, "nginx").len(), 1, "one nginx for both");
}
