//! Services under the host's systemctl: they run in the host's namespaces, answer on its
//! IP, restart after kill -9 when Restart=always, report is-active, and enabled ones come
//! back after a power cut and a boot.

mod common;
use common::*;
use hosts::Target;

const WEB: &str = "[Unit]
Description=test web server
[Service]
Environment=PORT=8080
EnvironmentFile=-/etc/default/web-missing
ExecStart=/usr/bin/python3 -m http.server $PORT --bind ${BIND} --directory /srv
Restart=always
RestartSec=200ms
[Install]
WantedBy=multi-user.target
";

fn main_pid(h: &hosts::Host, unit: &str) -> u32 {
    sh(h, &format!("systemctl show -p MainPID --value {unit}"))
        .parse()
        .unwrap_or(0)
}

/// Machine-side PID of a host-side PID, through the NSpid line of the host's processes.
fn machine_pid(h: &hosts::Host, comm: &str, inner: u32) -> u32 {
    for p in h.pids(comm).unwrap() {
        let st = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let ns = st.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("");
        if ns.split_whitespace().last() == Some(&inner.to_string()) {
            return p;
        }
    }
    panic!("no {comm} with inner pid {inner} in {}", h.name());
}

#[test]
fn unit_service_runs_in_host_answers_on_its_ip_and_restarts_after_kill() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hsvc1", 13, None);
    let a = t.add("web1");
    let b = t.add("client");
    write(&a, "/etc/default/web", &format!("BIND={}\n", a.ip()));
    write(
        &a,
        "/etc/systemd/system/web.service",
        &WEB.replace(
            "[Service]\n",
            "[Service]\nEnvironmentFile=/etc/default/web\n",
        ),
    );
    write(&a, "/srv/index.html", "hello\n");
    sh(&a, "systemctl daemon-reload && systemctl start web");
    assert_eq!(sh(&a, "systemctl is-active web"), "active");
    wait_for(20, "web answering on the host's IP", || {
        http_ok(&b, a.ip(), 8080).then_some(())
    });
    // Only in its host: the other host has no python3 process.
    assert!(b.pids("python3").unwrap().is_empty());
    let first = main_pid(&a, "web");
    assert!(first > 1, "MainPID {first}");
    let outer = machine_pid(&a, "python3", first);

    a.kill(Target::Pid(outer), 9).unwrap();
    let second = wait_for(20, "web restarted with a new main PID", || {
        let p = main_pid(&a, "web");
        (p != 0 && p != first && sh(&a, "systemctl is-active web") == "active").then_some(p)
    });
    assert_ne!(second, first);
    wait_for(20, "web answering again", || {
        http_ok(&b, a.ip(), 8080).then_some(())
    });
    assert_eq!(sh(&a, "systemctl show -p NRestarts --value web"), "1");
    assert_eq!(sh(&a, "systemctl show -p Restart --value web"), "always");
    // The service's output is kept per unit (python's http.server logs each request).
    wait_for(10, "request in the unit's log", || {
        sh(&a, "journalctl -u web -n 50")
            .contains("GET /")
            .then_some(())
    });

    sh(&a, "systemctl stop web");
    assert_eq!(code(&a, "systemctl is-active web"), 3);
    assert_eq!(sh(&a, "systemctl is-active web || true"), "inactive");
    assert!(
        a.pids("python3").unwrap().is_empty(),
        "stop left python3 running"
    );
    assert_eq!(code(&a, "systemctl status no-such-unit"), 4);
    assert_eq!(code(&a, "systemctl start no-such-unit"), 5);
    t.destroy();
}

#[test]
fn notify_oneshot_templates_and_failures() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hsvc2", 14, None);
    let a = t.add("box");
    // Type=notify: active only once READY=1 arrives on NOTIFY_SOCKET.
    write(&a, "/usr/local/bin/notifier", "#!/usr/bin/python3\nimport os, socket, time\ntime.sleep(0.3)\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.sendto(b'READY=1\\nSTATUS=serving', os.environ['NOTIFY_SOCKET'])\ntime.sleep(1000)\n");
    sh(&a, "chmod 755 /usr/local/bin/notifier");
    write(
        &a,
        "/etc/systemd/system/notifier.service",
        "[Service]\nType=notify\nExecStart=/usr/local/bin/notifier\n",
    );
    write(
        &a,
        "/etc/systemd/system/stamp@.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStartPre=-/bin/false\nExecStart=/bin/sh -c 'echo %i %I %H %p > /run/stamp-%i'\n",
    );
    write(
        &a,
        "/etc/systemd/system/broken.service",
        "[Service]\nExecStart=/bin/sh -c 'exit 3'\nExecStartPre=/bin/true\n",
    );
    write(
        &a,
        "/etc/systemd/system/badpre.service",
        "[Service]\nExecStartPre=/bin/false\nExecStart=/bin/sleep 100\n",
    );
    write(&a, "/etc/systemd/system/asuser.service", "[Service]\nUser=nobody\nRuntimeDirectory=asuser\nStateDirectory=asuser\nWorkingDirectory=/tmp\nExecStart=/bin/sleep 1000\n");
    sh(&a, "systemctl daemon-reload");

    assert!(
        sh(&a, "systemctl list-unit-files notifier.service").contains("notifier.service  static")
    );
    sh(&a, "systemctl start notifier");
    assert_eq!(sh(&a, "systemctl is-active notifier"), "active");
    assert_eq!(
        sh(&a, "systemctl show -p StatusText --value notifier"),
        "serving"
    );

    sh(&a, "systemctl start stamp@db-main");
    assert_eq!(
        sh(&a, "cat /run/stamp-db-main"),
        "db-main db/main box stamp"
    );
    assert_eq!(sh(&a, "systemctl is-active stamp@db-main"), "active");

    // A main process that exits non-zero: failed, no restart (Restart=no).
    sh(&a, "systemctl start broken");
    wait_for(10, "broken to fail", || {
        (sh(&a, "systemctl is-active broken || true") == "failed").then_some(())
    });
    assert_eq!(code(&a, "systemctl is-failed broken"), 0);
    // A failing ExecStartPre fails the start job.
    assert_eq!(code(&a, "systemctl start badpre"), 1);
    assert_eq!(sh(&a, "systemctl is-active badpre || true"), "failed");

    // A crash loop hits the start limit (5 starts in 10 s by default) and stays failed,
    // manual starts included, until reset-failed.
    write(
        &a,
        "/etc/systemd/system/crashy.service",
        "[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=10ms\n",
    );
    sh(&a, "systemctl start crashy || true");
    wait_for(10, "crashy to hit its start limit", || {
        (sh(&a, "systemctl show -p Result --value crashy") == "start-limit-hit").then_some(())
    });
    assert_eq!(sh(&a, "systemctl is-active crashy || true"), "failed");
    let o = a
        .command("systemctl")
        .args(["start", "crashy"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("attempted too often"));
    sh(
        &a,
        "systemctl reset-failed crashy && systemctl start crashy",
    );
    sh(&a, "systemctl start asuser");
    let pid = main_pid(&a, "asuser");
    assert_eq!(sh(&a, &format!("stat -c %U /proc/{pid}")), "nobody");
    assert_eq!(sh(&a, &format!("readlink /proc/{pid}/cwd")), "/tmp");
    assert_eq!(sh(&a, "stat -c %U /run/asuser"), "nobody");
    assert_eq!(sh(&a, "stat -c %U /var/lib/asuser"), "nobody");
    assert_eq!(
        sh(
            &a,
            &format!("tr '\\0' '\\n' < /proc/{pid}/environ | grep STATE_DIRECTORY")
        ),
        "STATE_DIRECTORY=/var/lib/asuser"
    );
    sh(&a, "systemctl stop asuser");
    assert_eq!(
        code(&a, "test -e /run/asuser"),
        1,
        "RuntimeDirectory not removed"
    );
    t.destroy();
}

#[test]
fn enabled_services_come_back_after_stop_and_start() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hsvc3", 15, None);
    let a = t.add("web2");
    let b = t.add("client");
    write(
        &a,
        "/etc/systemd/system/web.service",
        &WEB.replace("${BIND}", &a.ip().to_string()),
    );
    write(
        &a,
        "/etc/systemd/system/idle.service",
        "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=multi-user.target\n",
    );
    sh(&a, "systemctl enable web && systemctl start web idle");
    assert_eq!(sh(&a, "systemctl is-enabled web"), "enabled");
    assert_eq!(sh(&a, "systemctl is-enabled idle || true"), "disabled");
    assert!(a
        .path("/etc/systemd/system/multi-user.target.wants/web.service")
        .symlink_metadata()
        .is_ok());
    wait_for(20, "web up", || http_ok(&b, a.ip(), 8080).then_some(()));

    a.stop().unwrap();
    assert!(!a.is_up());
    assert!(!http_ok(&b, a.ip(), 8080));
    assert!(a.exec(&["true"]).is_err(), "a stopped host runs nothing");
    // Its disk survives the power cut.
    assert!(a.path("/etc/systemd/system/web.service").exists());

    a.start().unwrap();
    assert!(a.is_up());
    // is-system-running --wait returns once the boot's jobs are done.
    assert_eq!(sh(&a, "systemctl is-system-running --wait"), "running");
    assert_eq!(sh(&a, "systemctl is-active web"), "active");
    wait_for(20, "web back after boot", || {
        http_ok(&b, a.ip(), 8080).then_some(())
    });
    assert_eq!(sh(&a, "systemctl is-active web"), "active");
    assert_eq!(sh(&a, "systemctl is-active idle || true"), "inactive");
    t.destroy();
}

#[test]
fn unit_file_changes_need_daemon_reload_and_boot_honours_after() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hsvc4", 16, None);
    let a = t.add("box");
    // Each run of the service appends a line: the last line says which definition ran.
    let unit = |msg: &str| {
        format!("[Service]\nExecStart=/bin/sh -c 'echo {msg} >> /run/said; exec sleep 1000'\n[Install]\nWantedBy=multi-user.target\n")
    };
    let next_run = |a: &hosts::Host, before: usize| {
        wait_for(10, "the service to run again", || {
            let out = sh(a, "cat /run/said 2>/dev/null || true");
            let runs: Vec<&str> = out.lines().collect();
            (runs.len() > before).then(|| runs.last().unwrap_or(&"").to_string())
        })
    };
    write(&a, "/etc/systemd/system/say.service", &unit("old"));
    sh(&a, "systemctl enable --now say");
    assert_eq!(next_run(&a, 0), "old");
    // Like systemd: a loaded unit keeps its definition until daemon-reload, with a warning.
    write(&a, "/etc/systemd/system/say.service", &unit("new"));
    assert_eq!(
        sh(&a, "systemctl show -p NeedDaemonReload --value say"),
        "yes"
    );
    let out = a.exec(&["systemctl", "restart", "say"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Run 'systemctl daemon-reload'"));
    assert_eq!(next_run(&a, 1), "old");
    sh(&a, "systemctl daemon-reload && systemctl restart say");
    assert_eq!(next_run(&a, 2), "new");
    assert_eq!(
        sh(&a, "systemctl show -p NeedDaemonReload --value say"),
        "no"
    );

    // Unprivileged callers may look but not touch.
    assert_eq!(
        sh(&a, "su nobody -s /bin/sh -c 'systemctl is-active say'"),
        "active"
    );
    let o = a
        .command("su")
        .args(["nobody", "-s", "/bin/sh", "-c", "systemctl stop say"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Interactive authentication required"));

    // At boot, After= orders the enabled units.
    write(
        &a,
        "/etc/systemd/system/first.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'sleep 0.5; echo ready > /run/first'\n[Install]\nWantedBy=multi-user.target\n",
    );
    write(
        &a,
        "/etc/systemd/system/second.service",
        "[Unit]\nAfter=first.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'cat /run/first > /run/second-saw'\n[Install]\nWantedBy=multi-user.target\n",
    );
    sh(&a, "systemctl enable first second");
    // Wants=/Requires= pull their units in (a cycle does not loop).
    write(
        &a,
        "/etc/systemd/system/pulled.service",
        "[Unit]\nWants=puller.service\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    write(&a, "/etc/systemd/system/puller.service", "[Unit]\nRequires=pulled.service\nAfter=pulled.service\n[Service]\nExecStart=/bin/sleep 1000\n");
    write(
        &a,
        "/etc/systemd/system/needs-missing.service",
        "[Unit]\nRequires=missing.service\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    sh(&a, "systemctl daemon-reload && systemctl start puller");
    assert_eq!(
        sh(&a, "systemctl is-active pulled puller | tr '\\n' ' '"),
        "active active"
    );
    assert_ne!(code(&a, "systemctl start needs-missing"), 0);
    a.stop().unwrap();
    a.start().unwrap();
    wait_for(20, "second done", || {
        (sh(&a, "systemctl is-active second || true") == "active").then_some(())
    });
    assert_eq!(sh(&a, "cat /run/second-saw"), "ready");
    assert_eq!(
        next_run(&a, 0),
        "new",
        "after a boot the new definition runs"
    );
    t.destroy();
}

/// `systemctl kill --kill-whom=main -s KILL` then `systemctl stop`, while the unit is still
/// going down by itself (ExecStopPost= running): the manual stop wins over Restart=always, as
/// in systemd (`service_stop` sets `forbid_restart` in every state), and KillMode=process leaves
/// the main process's child running. postgresql-ha's force-promote kills, then stops, Patroni.
#[test]
fn a_stop_during_a_crash_forbids_the_automatic_restart() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hsvc5", 67, None);
    let a = t.add("crash");
    write(
        &a,
        "/etc/systemd/system/parent.service",
        "[Service]\nExecStart=/bin/sh -c 'sleep 1001 & exec sleep 1000'\nKillMode=process\nExecStopPost=/bin/sleep 1\nRestart=always\nRestartSec=500ms\n",
    );
    sh(&a, "systemctl start parent");
    wait_for(5, "the child to start", || {
        (code(&a, "pgrep -fx 'sleep 1001'") == 0).then_some(())
    });
    let before = main_pid(&a, "parent");
    assert_ne!(before, 0);
    sh(
        &a,
        "systemctl kill --kill-whom=main --signal=SIGKILL parent",
    );
    // The stop lands while the unit is going down by itself (its ExecStopPost= runs 1 s).
    wait_for(5, "the unit to notice its main process died", || {
        (sh(&a, "systemctl is-active parent || true") == "deactivating").then_some(())
    });
    sh(&a, "systemctl stop parent");
    // Past ExecStopPost= and RestartSec=: a restart would have come by now.
    wait_for(5, "the stop to finish", || {
        let st = sh(&a, "systemctl is-active parent || true");
        (st == "inactive" || st == "failed").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let st = sh(&a, "systemctl is-active parent || true");
    assert!(
        st == "inactive" || st == "failed",
        "restarted after a manual stop: {st}"
    );
    assert_eq!(main_pid(&a, "parent"), 0);
    assert_eq!(
        code(&a, "pgrep -fx 'sleep 1000'"),
        1,
        "the killed main came back"
    );
    assert_eq!(
        code(&a, "pgrep -fx 'sleep 1001'"),
        0,
        "KillMode=process killed the child"
    );
    t.destroy();
}
