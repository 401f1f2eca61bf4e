//! Process-level behaviour the charms and the local model rely on: the snap's pebble runs
//! regiond, the apiserver, rackd and a process named `named` by snap mode and takes them down
//! with it; the deb apache2 forwards port 80 to 5240; CLIs insist on root.

mod common;
use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn children_of(ppid: u32) -> Vec<(u32, String)> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        if field("PPid:").and_then(|p| p.parse::<u32>().ok()) == Some(ppid)
            && field("State:").is_some_and(|s| !s.starts_with('Z'))
        {
            out.push((pid, field("Name:").unwrap_or_default()));
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn pebble_runs_daemons_by_snap_mode_and_takes_them_down() {
    let (api, internal, temporal) = (free_port(), free_port(), free_port());
    let sb = Sandbox::new("pebble")
        .with(
            "MAAS_STANDIN_PORTS",
            &format!("{api},{internal},{temporal}"),
        )
        .with("MAAS_STANDIN_BIND", "127.0.0.1")
        .with("MAAS_STANDIN_INTERFACES", "");
    std::fs::create_dir_all(sb.path("/var/snap/maas/common")).unwrap();
    // No snap_mode is mode "none" (`get_current_mode`, src/maascli/snap.py): nothing runs.
    let mut pebble = sb.spawn(&["pebble"], &[]);
    let pid = pebble.child.id();
    wait_for("pebble in mode none", T, || {
        pebble
            .output()
            .contains("pebble: snap mode none: running []")
            .then_some(())
    });
    assert_eq!(children_of(pid), vec![], "no daemon without snap_mode");
    std::fs::write(sb.path("/var/snap/maas/common/snap_mode"), "region+rack\n").unwrap();
    // MAAS 3.5+'s region layer starts regiond and the apiserver itself; nginx and Temporal wait
    // for regiond's service monitor, which runs only after regiond's start-up against its
    // database (src/maasserver/eventloop.py `MAASServices.startService`).
    let kids = wait_for(
        "regiond, apiserver, rackd and named under pebble",
        T,
        || {
            let mut names: Vec<(u32, String)> = children_of(pid);
            names.sort_by(|a, b| a.1.cmp(&b.1));
            let n: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
            (n == ["maas-apiserver", "named", "rackd", "regiond"]).then_some(names)
        },
    );
    // No database configured: regiond never finishes its start-up, so no nginx runs and
    // nothing answers on 5240.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        get(&format!("http://127.0.0.1:{api}/MAAS/api/2.0/version/")).is_none(),
        "nothing may answer on 5240 before regiond's start-up"
    );
    assert!(!sb
        .path("/var/snap/maas/common/pebble/standin-started")
        .exists());
    // A mode change is followed without restarting pebble.
    std::fs::write(sb.path("/var/snap/maas/common/snap_mode"), "rack\n").unwrap();
    wait_for("only rackd in rack mode", T, || {
        let n: Vec<String> = children_of(pid).into_iter().map(|(_, n)| n).collect();
        (n == ["rackd"]).then_some(())
    });
    for (k, _) in &kids {
        if children_of(pid).iter().all(|(p, _)| p != k) {
            wait_for("old daemons gone", T, || (!alive(*k)).then_some(()));
        }
    }
    let rackd: Vec<u32> = children_of(pid).into_iter().map(|(p, _)| p).collect();
    pebble.stop();
    for k in rackd {
        wait_for("daemons die with pebble", T, || (!alive(k)).then_some(()));
    }
}

/// A `snap` on PATH that says the maas snap tracks whatever `<sandbox>/track` holds, as the
/// hosts' snap does (`snap list`, tests/CONTRACTS.md §2).
fn fake_snap(sb: &Sandbox) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = sb.dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let track = sb.dir.0.join("track");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = list ] || exit 1\nprintf 'Name  Version  Rev  Tracking  Publisher  Notes\\nmaas  1.0  1  %s  local-model  -\\n' \"$(cat {})\"\n",
        track.display()
    );
    std::fs::write(bin.join("snap"), script).unwrap();
    std::fs::set_permissions(bin.join("snap"), std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn maas_status_prints_pebbles_table_from_3_5_and_supervisorctls_before() {
    let sb = Sandbox::new("status").with("MAAS_STANDIN_INTERFACES", "");
    let path = fake_snap(&sb);
    let sb = sb.with("PATH", &path);
    let track = |t: &str| std::fs::write(sb.dir.0.join("track"), t).unwrap();
    assert_ok(&sb.run_line(
        "maas init rack --maas-url http://127.0.0.1:9/MAAS --secret 0123456789abcdef --force",
    ));

    // The supervisor is down: each CLI's failure, as MAAS passes it on (`cmd_status.handle`).
    track("3.6/stable");
    let o = sb.run_line("maas status");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (
            Some(1),
            "Pebble exited with error code 1 and the following output:\n"
        )
    );
    track("3.4/stable");
    let o = sb.run_line("maas status");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (
            Some(4),
            "unix:///var/snap/maas/current/supervisord/sock no such file\n"
        )
    );

    let pebble = sb.spawn(&["pebble"], &[]);
    let pid = pebble.child.id();
    wait_for("rackd under the snap's supervisor", T, || {
        children_of(pid)
            .iter()
            .any(|(_, n)| n == "rackd")
            .then_some(())
    });

    // 3.5+: pebble's table (Go tabwriter: widest cell + 2, `-` when never started).
    for t in ["3.5/stable", "3.6/stable", "latest/edge"] {
        track(t);
        let o = sb.run_line("maas status");
        assert_ok(&o);
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0], "Service          Startup   Current   Since",
            "{t}"
        );
        let row = |svc: &str| {
            *lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(svc))
                .unwrap_or_else(|| panic!("{svc} missing in {out}"))
        };
        assert!(
            row("rackd").starts_with("rackd            enabled   active    today at "),
            "{out}"
        );
        assert_eq!(
            row("regiond"),
            "regiond          disabled  inactive  -",
            "{out}"
        );
        assert_eq!(
            row("dhcpd6"),
            "dhcpd6           disabled  inactive  -",
            "{out}"
        );
    }

    // 3.4 and older: supervisorctl's lines in lexical order, name padded to 33 and state to
    // 10; exit 3 because dhcpd6 is not started (supervisorctl `do_status`).
    for t in ["3.4/stable", "3.3/edge", "2.9/stable"] {
        track(t);
        let o = sb.run_line("maas status");
        assert_eq!(o.status.code(), Some(3), "{t}: {}", stdout(&o));
        let out = stdout(&o);
        let names: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            names,
            ["bind9", "dhcpd", "dhcpd6", "http", "ntp", "proxy", "rackd", "syslog"],
            "rack mode has no regiond: {out}"
        );
        let rackd = out.lines().find(|l| l.starts_with("rackd")).unwrap();
        assert!(
            rackd.starts_with(&format!("{:<33}RUNNING   pid ", "rackd")),
            "{rackd}"
        );
        assert!(rackd.contains(", uptime 0:0"), "{rackd}");
        let bind9 = out.lines().find(|l| l.starts_with("bind9")).unwrap();
        assert!(
            bind9.starts_with(&format!("{:<33}RUNNING   pid ", "bind9")),
            "autostarted in every mode: {bind9}"
        );
        assert!(
            out.contains(&format!("{:<33}STOPPED   Not started\n", "dhcpd6")),
            "{out}"
        );
    }
}

#[test]
fn named_runs_under_its_own_name() {
    let sb = Sandbox::new("named-proc");
    let link = sb.dir.0.join("named");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let mut child = std::process::Command::new(&link)
        .args(["-f", "-u", "bind"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let comm = wait_for("comm named", T, || {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|c| c == "named")
    });
    assert_eq!(comm, "named");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn apache2_forwards_port_80_to_5240() {
    let (api, internal, temporal, apache) = (free_port(), free_port(), free_port(), free_port());
    let sb = Sandbox::new("apache")
        .with(
            "MAAS_STANDIN_PORTS",
            &format!("{api},{internal},{temporal}"),
        )
        .with("MAAS_STANDIN_APACHE_PORT", &apache.to_string());
    // Whatever holds 5240 (nginx in MAAS) gets apache2's connections.
    let l = std::net::TcpListener::bind(("127.0.0.1", api)).unwrap();
    let h: maas_standin::http::Handler = std::sync::Arc::new(|r: maas_standin::http::Request| {
        maas_standin::http::Response::text(200, format!("5240 got {}", r.path))
    });
    std::thread::spawn(move || maas_standin::http::serve(l, h));
    let _apache = sb.spawn(&["apache2"], &[]);
    let (status, body) = wait_for("5240 through apache2", T, || {
        get(&format!("http://127.0.0.1:{apache}/MAAS/api/2.0/version/"))
    });
    assert_eq!(
        (status, body.as_str()),
        (200, "5240 got /MAAS/api/2.0/version/")
    );
}

#[test]
fn clis_insist_on_root() {
    let sb = Sandbox::new("nonroot");
    let root = sb.path("/");
    let o = std::process::Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "env",
            &format!("MAAS_STANDIN_ROOT={}", root.display()),
            BIN,
            "maas",
            "init",
            "rack",
            "--maas-url",
            "http://10.0.0.1/MAAS",
            "--secret",
            "abcd",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("The 'init' command must be run by root."),
        "{}",
        stderr(&o)
    );
    assert!(!sb.path("/var/snap/maas/common/snap_mode").exists());
}
