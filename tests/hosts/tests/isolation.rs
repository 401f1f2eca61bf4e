//! Each host has its own hostname, process table and filesystem writes.

mod common;
use common::*;
use hosts::Target;
use std::process::Stdio;

#[test]
fn each_host_has_its_own_hostname_and_sees_only_its_own_processes() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hiso1", 19, None);
    let a = t.add("alpha");
    let b = t.add("beta");
    assert_eq!(sh(&a, "hostname"), "alpha");
    assert_eq!(sh(&b, "cat /etc/hostname"), "beta");
    assert_eq!(sh(&a, "cat /proc/1/comm"), "systemd");

    let mut sleeper = a
        .command("sleep")
        .arg("1000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pids = wait_for(10, "sleep in alpha", || {
        Some(a.pids("sleep").unwrap()).filter(|p| !p.is_empty())
    });
    assert!(b.pids("sleep").unwrap().is_empty());
    assert_eq!(code(&b, "pgrep -x sleep"), 1, "beta sees alpha's sleep");
    assert_eq!(code(&a, "pgrep -x sleep"), 0);
    // Inside, PIDs are the host's own: few processes, init is 1.
    let n: usize = sh(&a, "ls /proc | grep -c '^[0-9]'").parse().unwrap();
    assert!(n < 10, "alpha sees {n} processes");

    // freeze/thaw and kill by machine-side PID or by name.
    let p = pids[0];
    a.freeze(p).unwrap();
    wait_for(5, "stopped state", || state(p).filter(|s| *s == 'T'));
    a.thaw(p).unwrap();
    wait_for(5, "running again", || state(p).filter(|s| *s != 'T'));
    assert!(
        b.kill(Target::Pid(p), 9).is_err(),
        "beta may not kill alpha's process"
    );
    assert!(b.kill(Target::Name("sleep".into()), 9).is_err());
    a.kill(Target::Name("sleep".into()), 9).unwrap();
    let st = sleeper.wait().unwrap();
    assert!(!st.success());
    // Killing the Command's child kills the program in the host.
    let mut child = a.command("sleep").arg("1001").spawn().unwrap();
    wait_for(10, "second sleep", || {
        (!a.pids("sleep").unwrap().is_empty()).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for(10, "sleep gone with its child", || {
        a.pids("sleep").unwrap().is_empty().then_some(())
    });
    t.destroy();
}

fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

#[test]
fn writes_to_etc_stay_in_their_host() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hiso2", 50, None);
    let a = t.add("alpha");
    let b = t.add("beta");
    let marker = "/etc/hosts-test-marker-hiso2";
    sh(&a, &format!("echo only-alpha > {marker}"));
    assert_eq!(sh(&a, &format!("cat {marker}")), "only-alpha");
    assert!(
        !std::path::Path::new(marker).exists(),
        "leaked to the machine"
    );
    assert_eq!(code(&b, &format!("test -e {marker}")), 1, "leaked to beta");
    assert_eq!(
        std::fs::read_to_string(a.path(marker)).unwrap(),
        "only-alpha\n"
    );
    // Host paths resolve their symlinks inside the host (/var/run is /run there).
    sh(&a, "echo in-run > /run/hiso2-file");
    assert_eq!(
        std::fs::read_to_string(a.path("/var/run/hiso2-file")).unwrap(),
        "in-run\n"
    );
    // The machine's files are visible (overlay lower), /tmp and /run are private.
    assert_eq!(code(&a, "test -x /usr/sbin/haproxy"), 0);
    sh(&a, "echo x > /tmp/hiso2");
    assert_eq!(code(&b, "test -e /tmp/hiso2"), 1);
    assert!(!std::path::Path::new("/tmp/hiso2").exists());
    // The runtime's systemctl shadows the machine's, inside hosts only.
    assert_eq!(code(&a, "systemctl --version | grep -q local-model"), 0);
    assert_eq!(
        code(&a, "/bin/systemctl --version | grep -q local-model"),
        0
    );
    let machine = std::process::Command::new("/usr/bin/systemctl")
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&machine.stdout).contains("local-model"),
        "machine's systemctl shadowed"
    );
    // Network sysctls are the host's own; the machine's kernel settings are out of reach.
    sh(&a, "sysctl -qw net.ipv4.ip_nonlocal_bind=1");
    assert_eq!(sh(&a, "cat /proc/sys/net/ipv4/ip_nonlocal_bind"), "1");
    assert_eq!(sh(&b, "cat /proc/sys/net/ipv4/ip_nonlocal_bind"), "0");
    assert_ne!(
        code(&a, "cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness"),
        0
    );
    // cwd is kept across the namespace switch.
    let out = a.command("pwd").current_dir("/usr/share").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/usr/share");
    t.destroy();
}
