//! Lab lifecycle: re-open from lab.json, remove a host, clean up after a crashed lab,
//! destroy leaving nothing.

mod common;
use common::*;
use hosts::{Lab, LabConfig};
use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("hosts-labs")
        .join(name)
}

#[test]
fn open_reattaches_and_destroy_leaves_nothing() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hlife1", 51, None);
    let a = t.add("alpha");
    t.add("beta");
    t.add("gamma");
    write(
        &a,
        "/etc/systemd/system/idle.service",
        "[Service]\nExecStart=/bin/sleep 1000\n",
    );
    sh(&a, "systemctl start idle");

    let again = Lab::open(&dir("hlife1")).unwrap();
    let names: Vec<String> = again.hosts().iter().map(|h| h.name().to_string()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    let a2 = again.host("alpha").unwrap();
    assert_eq!(a2.ip(), a.ip());
    assert_eq!(sh(&a2, "systemctl is-active idle"), "active");

    // Two handles on one lab (two processes, say) do not lose each other's hosts.
    let mut other = Lab::open(&dir("hlife1")).unwrap();
    let delta = other.add_host("delta").unwrap();
    let epsilon = t.add("epsilon");
    assert_ne!(delta.ip(), epsilon.ip());
    let names: Vec<String> = t
        .lab()
        .hosts()
        .iter()
        .map(|h| h.name().to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma", "delta", "epsilon"]);
    other.remove_host("delta").unwrap();
    t.lab().remove_host("gamma").unwrap();
    assert!(t.lab().host("gamma").is_err());
    assert!(!Lab::leftovers("hlife1").iter().any(|l| l.contains("gamma")));
    assert!(
        !Lab::leftovers("hlife1").is_empty(),
        "a live lab has things"
    );

    // A machine reboot loses the namespaces but not the disk: start wires the host again.
    let beta = t.lab().host("beta").unwrap();
    beta.stop().unwrap();
    for ns in ["hlife1-h-beta", "hlife1-br"] {
        let st = std::process::Command::new("ip")
            .args(["netns", "delete", ns])
            .status()
            .unwrap();
        assert!(st.success());
    }
    beta.start().unwrap();
    assert_eq!(sh(&beta, "hostname"), "beta");
    let alpha = t.lab().host("alpha").unwrap();
    alpha.stop().unwrap();
    alpha.start().unwrap();
    // A freshly wired bridge may drop the first echo while ARP settles: poll, as after restore.
    wait_for(10, "hosts rewired after the bridge was lost", || {
        ping(&alpha, beta.ip()).then_some(())
    });

    t.destroy();
    assert!(Lab::leftovers("hlife1").is_empty());
    assert!(!dir("hlife1").join("lab.json").exists());
}

#[test]
fn create_cleans_up_a_crashed_lab_with_the_same_prefix() {
    if skip() {
        return;
    }
    let cfg = |d: &str| LabConfig {
        dir: dir(d),
        prefix: "hlife2".into(),
        subnet: "10.77.52.0/24".into(),
        catalog: None,
        shared: vec![],
    };
    let mut crashed = Lab::create(cfg("hlife2-old")).unwrap();
    let h = crashed.add_host("ghost").unwrap();
    let old_init = h.pids("systemd").unwrap();
    assert_eq!(old_init.len(), 1);
    drop(crashed); // no destroy: as if the process owning it had died

    let mut lab = Lab::create(cfg("hlife2-new")).unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{}", old_init[0])).exists() || !h.is_up());
    assert!(!h.is_up(), "the crashed lab's host survived");
    assert!(
        Lab::leftovers("hlife2")
            .iter()
            .all(|l| !l.contains("ghost")),
        "{:?}",
        Lab::leftovers("hlife2")
    );
    lab.add_host("ghost").unwrap();
    lab.destroy().unwrap();
    assert!(Lab::leftovers("hlife2").is_empty());
    let _ = std::fs::remove_dir_all(dir("hlife2-old"));
}

#[test]
fn bad_configs_are_refused() {
    if skip() {
        return;
    }
    let bad = |prefix: &str, subnet: &str, d: PathBuf| {
        Lab::create(LabConfig {
            dir: d,
            prefix: prefix.into(),
            subnet: subnet.into(),
            catalog: None,
            shared: vec![],
        })
        .is_err()
    };
    assert!(bad("TOOLONGPREFIX", "10.77.53.0/24", dir("hbad")));
    assert!(bad("hbad", "10.77.53.0/30", dir("hbad")));
    assert!(bad("hbad", "not-a-subnet", dir("hbad")));
    assert!(bad("hbad", "10.77.53.0/24", PathBuf::from("/run/hbad-lab")));
    assert!(bad("hbad", "10.77.53.0/24", PathBuf::from("relative")));
    assert!(
        !PathBuf::from("/run/hbad-lab").exists(),
        "a refused lab dir was created"
    );
    assert!(Lab::leftovers("hbad").is_empty());
    let mut t = TestLab::new("hbad2", 54, None);
    assert!(t.lab().add_host("Bad_Name").is_err());
    t.add("ok");
    assert!(t.lab().add_host("ok").is_err(), "duplicate name");
    t.destroy();
}

#[test]
fn a_lab_may_live_in_tmp_or_under_an_overlaid_directory() {
    if skip() {
        return;
    }
    // CI may clone the repository anywhere: under /tmp (hosts do not see the lab dir then)
    // or under a directory hosts overlay (the layers then go to /tmp/hosts-layers/PREFIX).
    for (prefix, dir, net, layers) in [
        (
            "hlife3",
            "/tmp/hosts-test-hlife3",
            55,
            "/tmp/hosts-test-hlife3/hosts/box/upper",
        ),
        (
            "hlife4",
            "/var/tmp/hosts-test-hlife4",
            56,
            "/tmp/hosts-layers/hlife4/hosts/box/upper",
        ),
    ] {
        let d = PathBuf::from(dir);
        let cfg = LabConfig {
            dir: d.clone(),
            prefix: prefix.into(),
            subnet: format!("10.77.{net}.0/24"),
            catalog: None,
            shared: vec![],
        };
        let mut lab = Lab::create(cfg).unwrap();
        let h = lab.add_host("box").unwrap();
        assert!(
            PathBuf::from(layers).join("etc/hostname").exists(),
            "{prefix}: layers not in {layers}"
        );
        assert_eq!(sh(&h, "hostname"), "box");
        write(
            &h,
            "/etc/systemd/system/idle.service",
            "[Service]\nExecStart=/bin/sleep 1000\n",
        );
        sh(&h, "systemctl start idle");
        assert_eq!(sh(&h, "systemctl is-active idle"), "active");
        lab.destroy().unwrap();
        assert!(Lab::leftovers(prefix).is_empty());
        assert!(!d.exists(), "{dir} left");
        assert!(!PathBuf::from(layers).exists(), "{layers} left");
    }
}

#[test]
fn shared_directories_under_tmp_or_var_are_the_machines_own_in_every_host() {
    if skip() {
        return;
    }
    // A program driving the hosts (the local model) keeps its sockets and tools wherever it
    // was cloned: hosts see a shared directory live, read-write, even where they have a /tmp
    // of their own or an overlay; a directory next to it that is not shared stays apart.
    for (prefix, base, net) in [
        ("hlife5", "/tmp/hosts-test-hlife5", 57),
        ("hlife6", "/var/tmp/hosts-test-hlife6", 58),
    ] {
        let base = PathBuf::from(base);
        let _ = std::fs::remove_dir_all(&base);
        let shared = base.join("shared");
        let apart = base.join("apart");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::create_dir_all(&apart).unwrap();
        std::fs::write(shared.join("before"), "written before boot\n").unwrap();
        let sock = shared.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut c, _) = listener.accept().unwrap();
            c.write_all(b"hello from the machine\n").unwrap();
        });
        let mut lab = Lab::create(LabConfig {
            dir: base.join("lab"),
            prefix: prefix.into(),
            subnet: format!("10.77.{net}.0/24"),
            catalog: None,
            shared: vec![shared.clone()],
        })
        .unwrap();
        let h = lab.add_host("box").unwrap();
        let s = shared.display();
        assert_eq!(sh(&h, &format!("cat {s}/before")), "written before boot");
        std::fs::write(shared.join("after"), "written after boot\n").unwrap();
        assert_eq!(sh(&h, &format!("cat {s}/after")), "written after boot");
        sh(&h, &format!("echo from the host > {s}/back"));
        assert_eq!(
            std::fs::read_to_string(shared.join("back")).unwrap(),
            "from the host\n"
        );
        let got = sh(
            &h,
            &format!("python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('{}'); print(s.makefile().readline().strip())\"", sock.display()),
        );
        assert_eq!(got, "hello from the machine", "{prefix}");
        server.join().unwrap();
        // Not shared: what the host writes there stays in the host.
        sh(
            &h,
            &format!("mkdir -p {a} && echo x > {a}/back", a = apart.display()),
        );
        assert!(
            !apart.join("back").exists(),
            "{prefix}: an unshared directory reached the machine"
        );
        lab.destroy().unwrap();
        assert!(Lab::leftovers(prefix).is_empty());
        std::fs::remove_dir_all(&base).unwrap();
    }
}

#[test]
fn shared_directories_must_exist_and_not_be_system_ones() {
    if skip() {
        return;
    }
    for bad in ["/tmp/hosts-test-no-such-dir", "/proc/self", "/", "/usr/bin"] {
        let r = Lab::create(LabConfig {
            dir: dir("hbad3"),
            prefix: "hbad3".into(),
            subnet: "10.77.53.0/24".into(),
            catalog: None,
            shared: vec![PathBuf::from(bad)],
        });
        let e = r.err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(
            format!("{e:#}").contains("shared directory"),
            "{bad}: {e:#}"
        );
    }
    assert!(Lab::leftovers("hbad3").is_empty());
}
