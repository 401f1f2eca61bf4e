//! apt-get and snap against the package catalog, a Debian package the machine has, and
//! names nobody has.

mod common;
use common::*;
use std::path::PathBuf;

/// A tiny catalog: one deb-style package with a daemon, one snap.
fn catalog(prefix: &str, base: &std::path::Path) -> PathBuf {
    let dir = base.join("hosts-catalogs").join(prefix);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let files = dir.join("files");
    std::fs::write(
        files.join("lmtestd"),
        "#!/bin/sh\necho started >> /var/lib/lmtest/log\nexec sleep 1000\n",
    )
    .unwrap();
    std::fs::write(
        files.join("lmtest.service"),
        "[Unit]\nDescription=catalog test daemon\n[Service]\nUser=lmtest\nExecStart=/usr/local/bin/lmtestd\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    std::fs::write(
        files.join("snap.lmsnap.daemon.service"),
        "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    // One source on the machine's /tmp, which hosts replace with their own tmpfs: catalog
    // paths are machine paths.
    let on_machine_tmp = PathBuf::from(format!("/tmp/hosts-test-{prefix}-lmtestd"));
    std::fs::copy(files.join("lmtestd"), &on_machine_tmp).unwrap();
    let f = |n: &str| {
        if n == "lmtestd" {
            on_machine_tmp.display().to_string()
        } else {
            files.join(n).display().to_string()
        }
    };
    let deb = serde_json::json!({
        "name": "lmtest", "kind": "deb", "version": "1.2-3",
        "files": [
            {"src": f("lmtestd"), "dst": "/usr/local/bin/lmtestd", "mode": "0755"},
            {"src": f("lmtest.service"), "dst": "/lib/systemd/system/lmtest.service", "mode": "0644"}
        ],
        "symlinks": [{"dst": "/usr/sbin/lmtest", "target": "/usr/local/bin/lmtestd"}],
        "dirs": [{"path": "/var/lib/lmtest", "mode": "0750", "owner": "lmtest", "group": "lmtest"}],
        "users": ["lmtest"],
        "enable": ["lmtest.service"],
        "postinst": [["/bin/sh", "-c", "echo configured > /var/lib/lmtest/postinst"]]
    });
    let snap = serde_json::json!({
        "name": "lmsnap", "kind": "snap", "version": "3.5.1",
        "files": [{"src": f("snap.lmsnap.daemon.service"), "dst": "/etc/systemd/system/snap.lmsnap.daemon.service", "mode": "0644"}],
        "enable": ["snap.lmsnap.daemon.service"]
    });
    std::fs::write(dir.join("lmtest.json"), deb.to_string()).unwrap();
    std::fs::write(dir.join("lmsnap.json"), snap.to_string()).unwrap();
    dir
}

#[test]
fn apt_get_installs_catalog_and_debian_packages_and_rejects_missing_ones() {
    if skip() {
        return;
    }
    let cat = catalog("hpkg1", std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let mut t = TestLab::new("hpkg1", 17, Some(cat.clone()));
    let a = t.add("pkg1");
    let b = t.add("pkg2");
    assert_eq!(
        sh(
            &a,
            "ls /usr/lib/local-model/catalog/ | grep json | sort | tr '\\n' ' '"
        ),
        "lmsnap.json lmtest.json"
    );
    assert_ne!(
        code(&a, "touch /usr/lib/local-model/catalog/x"),
        0,
        "catalog must be read-only"
    );

    let out = sh(&a, "apt-get install -y lmtest");
    assert!(out.contains("1 newly installed"), "{out}");
    assert_eq!(sh(&a, "systemctl is-active lmtest"), "active");
    let _ = std::fs::remove_file("/tmp/hosts-test-hpkg1-lmtestd");
    assert_eq!(sh(&a, "systemctl is-enabled lmtest"), "enabled");
    assert_eq!(sh(&a, "cat /var/lib/lmtest/postinst"), "configured");
    assert_eq!(sh(&a, "stat -c '%U %a' /var/lib/lmtest"), "lmtest 750");
    assert_eq!(
        sh(&a, "readlink /usr/sbin/lmtest"),
        "/usr/local/bin/lmtestd"
    );
    let pid = sh(&a, "systemctl show -p MainPID --value lmtest");
    assert_eq!(sh(&a, &format!("ps -o user= -p {pid}")), "lmtest");
    assert!(a.path("/var/lib/local-model/packages/lmtest.json").exists());
    assert_eq!(
        sh(&a, "dpkg-query -W -f='${Status} ${Version}' lmtest"),
        "install ok installed 1.2-3"
    );
    assert_eq!(
        code(&b, "dpkg-query -W lmtest"),
        1,
        "not installed in the other host"
    );
    assert_eq!(
        code(
            &a,
            "dpkg-query -W -f='${Status}' haproxy | grep -q 'install ok installed'"
        ),
        0
    );
    // Users and files stay in the host.
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("lmtest"));
    assert_eq!(code(&b, "id lmtest"), 1);
    // Installing again changes nothing: same daemon, postinst not rerun.
    sh(&a, "echo again > /var/lib/lmtest/postinst");
    let out = sh(&a, "apt-get install -y lmtest");
    assert!(out.contains("already the newest version"), "{out}");
    assert_eq!(sh(&a, "systemctl show -p MainPID --value lmtest"), pid);
    assert_eq!(sh(&a, "cat /var/lib/lmtest/postinst"), "again");

    // A Debian package the machine has: accepted, its service enabled and started.
    assert_eq!(
        sh(&a, "systemctl is-enabled haproxy || true"),
        "disabled",
        "a fresh host has nothing enabled"
    );
    sh(&a, "apt install -y haproxy 2>/dev/null");
    assert_eq!(sh(&a, "systemctl is-enabled haproxy"), "enabled");
    wait_for(20, "haproxy active", || {
        (sh(&a, "systemctl is-active haproxy || true") == "active").then_some(())
    });
    assert!(!a.pids("haproxy").unwrap().is_empty());
    assert!(b.pids("haproxy").unwrap().is_empty());
    // Its ExecReload lines (the second one signals $MAINPID) keep the same master running.
    let master = sh(&a, "systemctl show -p MainPID --value haproxy");
    sh(&a, "systemctl reload haproxy");
    assert_eq!(sh(&a, "systemctl show -p CanReload --value haproxy"), "yes");
    // Debian's `service` goes through systemctl when /run/systemd/system exists.
    sh(&a, "service haproxy reload");
    // haproxy (Type=notify) tells systemd RELOADING=1 and then READY=1 on its own after
    // ExecReload returned, so right after the reload it may show "reloading" (systemd's
    // service_notify_message does the same): it must come back to "active".
    wait_for(20, "haproxy active after its reload", || {
        (sh(&a, "systemctl is-active haproxy || true") == "active").then_some(())
    });
    assert_eq!(sh(&a, "systemctl show -p MainPID --value haproxy"), master);
    sh(&a, "systemctl stop haproxy");
    assert!(
        a.pids("haproxy").unwrap().is_empty(),
        "haproxy left after stop"
    );

    // A missing package fails like apt.
    let o = a
        .command("apt-get")
        .args(["install", "-y", "no-such-package-lm"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("E: Unable to locate package no-such-package-lm"));
    t.destroy();
}

#[test]
fn snap_installs_from_the_catalog_with_channels() {
    if skip() {
        return;
    }
    // This catalog lives in the machine's /tmp, which hosts replace with their own.
    let cat = catalog("hpkg2", std::path::Path::new("/tmp"));
    let mut t = TestLab::new("hpkg2", 18, Some(cat));
    let a = t.add("snappy");
    sh(&a, "snap install lmsnap --channel=3.5/edge");
    assert!(sh(&a, "snap list").contains("3.5/edge"));
    assert_eq!(sh(&a, "systemctl is-active snap.lmsnap.daemon"), "active");
    assert!(sh(&a, "snap services lmsnap").contains("lmsnap.daemon"));
    sh(&a, "snap stop lmsnap");
    assert_eq!(
        sh(&a, "systemctl is-active snap.lmsnap.daemon || true"),
        "inactive"
    );
    sh(&a, "snap start lmsnap.daemon");
    assert_eq!(sh(&a, "systemctl is-active snap.lmsnap.daemon"), "active");
    let before = sh(&a, "systemctl show -p MainPID --value snap.lmsnap.daemon");
    sh(&a, "snap refresh lmsnap --channel 3.6/stable");
    let after = sh(&a, "systemctl show -p MainPID --value snap.lmsnap.daemon");
    assert_ne!(
        before, after,
        "a refresh to another channel restarts the snap's services"
    );
    assert!(sh(&a, "snap list lmsnap").contains("3.6/stable"));
    sh(&a, "snap set lmsnap mode=region");
    assert_eq!(sh(&a, "snap get lmsnap mode"), "region");

    // apt does not install snaps, nor snap debs.
    assert_eq!(code(&a, "apt-get install -y lmsnap"), 100);
    assert_eq!(code(&a, "snap install lmtest"), 1);
    let o = a
        .command("snap")
        .args(["install", "nosuchsnap"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error: snap \"nosuchsnap\" not found"));
    let _ = std::fs::remove_file("/tmp/hosts-test-hpkg2-lmtestd");
    sh(&a, "snap remove lmsnap");
    let _ = std::fs::remove_dir_all("/tmp/hosts-catalogs/hpkg2");
    let _ = std::fs::remove_dir("/tmp/hosts-catalogs");
    assert_eq!(
        sh(&a, "systemctl is-active snap.lmsnap.daemon || true"),
        "inactive"
    );
    t.destroy();
}

/// A snap offered on two channels with a post-refresh hook and a daemon.
fn versioned_catalog(prefix: &str, revision_of_1: &str) -> PathBuf {
    let dir = PathBuf::from("/tmp/hosts-catalogs").join(prefix);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("snap.lmmaas.daemon.service"),
        // More refreshes in ten seconds than systemd's default start limit (5) allows.
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    // The hook records each run with the version snapd reports, and fails while
    // /var/lib/lmmaas/fail exists.
    let hook = "mkdir -p /var/lib/lmmaas; [ ! -e /var/lib/lmmaas/fail ] || { echo migration failed >&2; exit 1; }; snap list lmmaas | awk 'NR==2 {print $2}' >> /var/lib/lmmaas/post-refresh";
    let snap = serde_json::json!({
        "name": "lmmaas", "kind": "snap",
        "files": [{"src": dir.join("snap.lmmaas.daemon.service").display().to_string(),
                   "dst": "/etc/systemd/system/snap.lmmaas.daemon.service", "mode": "0644"}],
        "enable": ["snap.lmmaas.daemon.service"],
        "channels": {
            "1.0/stable": {"version": "1.0.1", "revision": revision_of_1},
            "2.0/stable": {"version": "2.0.3", "revision": "20"}
        },
        "hooks": {"post-refresh": [["/bin/sh", "-c", hook]]}
    });
    std::fs::write(dir.join("lmmaas.json"), snap.to_string()).unwrap();
    dir
}

fn out(h: &hosts::Host, script: &str) -> (i32, String, String) {
    let o = h.command("sh").args(["-c", script]).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

/// `snap refresh` as snapd does it for a snap with channels and a post-refresh hook: a channel
/// the store lacks is refused; a refresh stops the services, links the new revision, runs
/// the hook, starts the services; a failing hook undoes it; an older channel is allowed (a
/// downgrade is a refresh); `--hold` holds general and auto refreshes but not a refresh that
/// names the snap; `--unhold` lifts it; the auto-refresh knob refreshes what is not held.
#[test]
fn snap_refresh_runs_post_refresh_hooks_and_respects_holds() {
    if skip() {
        return;
    }
    let cat = versioned_catalog("hpkg3", "10");
    let mut t = TestLab::new("hpkg3", 56, Some(cat.clone()));
    let a = t.add("refresher");
    let (c, _, e) = out(&a, "snap install lmmaas --channel=9.9/stable");
    assert_eq!(c, 1);
    assert!(
        e.starts_with("error: snap \"lmmaas\" is not available on 9.9/stable but is available to install on the following tracks:")
            && e.contains("1.0/stable") && e.contains("2.0/stable"),
        "{e}"
    );
    sh(&a, "snap install lmmaas --channel=1.0/stable");
    let list = sh(&a, "snap list lmmaas");
    assert!(
        list.contains("1.0.1") && list.contains(" 10 ") && list.contains("1.0/stable"),
        "{list}"
    );
    assert_eq!(
        code(&a, "test -e /var/lib/lmmaas/post-refresh"),
        1,
        "no post-refresh hook on install"
    );

    // Up: the service restarts around the hook, which sees the new revision.
    let pid = || sh(&a, "systemctl show -p MainPID --value snap.lmmaas.daemon");
    let before = pid();
    let (c, o, _) = out(&a, "snap refresh lmmaas --channel 2.0/stable");
    assert_eq!(c, 0);
    assert_eq!(o, "lmmaas (2.0/stable) 2.0.3 from Local Model refreshed");
    assert_ne!(pid(), before, "the services were stopped and started");
    assert_eq!(sh(&a, "cat /var/lib/lmmaas/post-refresh"), "2.0.3");
    let (c, _, e) = out(&a, "snap refresh lmmaas");
    assert_eq!(
        (c, e.as_str()),
        (0, "snap \"lmmaas\" has no updates available")
    );
    assert_eq!(sh(&a, "wc -l < /var/lib/lmmaas/post-refresh"), "1");

    // A failing hook undoes the refresh.
    sh(&a, "touch /var/lib/lmmaas/fail");
    let (c, _, e) = out(&a, "snap refresh lmmaas --channel 1.0/stable");
    assert_eq!(c, 1);
    assert!(
        e.contains("Run post-refresh hook of \"lmmaas\" snap if present")
            && e.contains("migration failed"),
        "{e}"
    );
    let list = sh(&a, "snap list lmmaas");
    assert!(
        list.contains("2.0.3") && list.contains("2.0/stable"),
        "still the old revision: {list}"
    );
    assert_eq!(sh(&a, "systemctl is-active snap.lmmaas.daemon"), "active");
    sh(&a, "rm /var/lib/lmmaas/fail");

    // Down: snapd allows an older channel; the hook runs as on any refresh.
    sh(&a, "snap refresh lmmaas --channel 1.0/stable");
    assert!(sh(&a, "snap list lmmaas").contains("1.0.1"));
    assert_eq!(sh(&a, "tail -n1 /var/lib/lmmaas/post-refresh"), "1.0.1");

    // Held: a new revision on the tracked channel is left alone by general and auto refreshes.
    let (c, o, _) = out(&a, "snap refresh --hold lmmaas");
    assert_eq!(
        (c, o.as_str()),
        (0, "General refreshes of \"lmmaas\" held indefinitely")
    );
    versioned_catalog("hpkg3", "11");
    let (c, _, e) = out(&a, "snap refresh");
    assert_eq!((c, e.as_str()), (0, "All snaps up to date."));
    sh(&a, "snap lm-auto-refresh");
    assert!(sh(&a, "snap list lmmaas").contains(" 10 "), "held");
    // ...but not by a refresh that names it.
    sh(&a, "snap refresh lmmaas");
    assert!(sh(&a, "snap list lmmaas").contains(" 11 "));
    versioned_catalog("hpkg3", "12");
    let (c, o, _) = out(&a, "snap refresh --unhold lmmaas");
    assert_eq!(
        (c, o.as_str()),
        (0, "Removed general refresh hold of \"lmmaas\"")
    );
    sh(&a, "snap lm-auto-refresh");
    assert!(
        sh(&a, "snap list lmmaas").contains(" 12 "),
        "auto-refreshed once unheld"
    );

    // Durations as Go's time.ParseDuration reads them.
    let (c, o, _) = out(&a, "snap refresh --hold=72h lmmaas");
    assert_eq!(c, 0);
    assert!(
        o.starts_with("General refreshes of \"lmmaas\" held until 20") && o.ends_with('Z'),
        "{o}"
    );
    let (c, _, e) = out(&a, "snap refresh --hold=500ms lmmaas");
    assert_eq!(
        (c, e.as_str()),
        (
            1,
            "error: cannot hold refreshes for less than a second: 500ms"
        )
    );
    let (c, _, e) = out(&a, "snap refresh --hold=soon lmmaas");
    assert_eq!(c, 1);
    assert!(
        e.starts_with(
            "error: hold value must be a number of hours, minutes or seconds, or \"forever\": "
        ),
        "{e}"
    );
    let (c, o, _) = out(&a, "snap refresh --hold");
    assert_eq!(
        (c, o.as_str()),
        (0, "Auto-refresh of all snaps held indefinitely")
    );
    sh(&a, "snap refresh --unhold lmmaas");
    versioned_catalog("hpkg3", "13");
    sh(&a, "snap lm-auto-refresh");
    assert!(
        sh(&a, "snap list lmmaas").contains(" 12 "),
        "every snap's auto-refresh held"
    );
    let (_, o, _) = out(&a, "snap refresh --unhold");
    assert_eq!(o, "Removed auto-refresh hold on all snaps");
    sh(&a, "snap lm-auto-refresh");
    assert!(sh(&a, "snap list lmmaas").contains(" 13 "));

    sh(&a, "snap remove lmmaas");
    t.destroy();
    let _ = std::fs::remove_dir_all(&cat);
}

/// A snap whose one app writes the file named by its first argument into /tmp.
fn private_tmp_catalog(prefix: &str) -> PathBuf {
    let dir = PathBuf::from("/tmp/hosts-catalogs").join(prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let snap = serde_json::json!({
        "name": "lmtmp", "kind": "snap", "version": "1.0",
        "symlinks": [{"dst": "/snap/bin/lmtmp", "target": "/usr/bin/snap"}],
        "apps": {"lmtmp": ["/bin/sh", "-c", "echo ran > /tmp/\"$0\" && ls /tmp"]}
    });
    std::fs::write(dir.join("lmtmp.json"), snap.to_string()).unwrap();
    dir
}

/// A snap's app runs with the snap's private /tmp (snap-confine's
/// /tmp/snap-private-tmp/snap.<snap>/tmp), whether through `snap run` or its /snap/bin link;
/// the host's /tmp does not see what it writes there, and a private tmp root with other
/// permissions than snap-confine's 0700 root is refused.
#[test]
fn snap_apps_run_with_the_snaps_private_tmp() {
    if skip() {
        return;
    }
    let cat = private_tmp_catalog("hpkg4");
    let mut t = TestLab::new("hpkg4", 60, Some(cat));
    let a = t.add("confined");
    sh(&a, "snap install lmtmp");
    sh(&a, "echo host > /tmp/host-only");
    let listed = sh(&a, "snap run lmtmp by-run");
    assert!(
        !listed.contains("host-only"),
        "the app saw the host's /tmp: {listed}"
    );
    sh(&a, "/snap/bin/lmtmp by-link");
    let private = "/tmp/snap-private-tmp/snap.lmtmp/tmp";
    for f in ["by-run", "by-link"] {
        assert_eq!(sh(&a, &format!("cat {private}/{f}")), "ran");
        let (c, _, _) = out(&a, &format!("test -e /tmp/{f}"));
        assert_eq!(c, 1, "/tmp/{f} is in the host's /tmp");
    }
    assert_eq!(
        sh(
            &a,
            "stat -c '%a %U' /tmp/snap-private-tmp /tmp/snap-private-tmp/snap.lmtmp"
        ),
        "700 root\n700 root"
    );
    assert_eq!(sh(&a, &format!("stat -c '%a %U' {private}")), "1777 root");
    let (c, _, e) = out(&a, "snap run lmtmp.nope");
    assert_eq!(c, 1);
    assert_eq!(e, "error: cannot find app \"nope\" in \"lmtmp\"");
    sh(&a, "chmod 0755 /tmp/snap-private-tmp");
    let (c, _, e) = out(&a, "snap run lmtmp refused");
    assert_eq!(c, 1);
    assert!(
        e.contains("/tmp/snap-private-tmp has unexpected ownership / permissions"),
        "{e}"
    );
}
