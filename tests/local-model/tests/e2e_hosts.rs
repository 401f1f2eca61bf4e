//! End-to-end on namespaced hosts (needs root): the test bundle on `hosts` machines, a
//! service started by the charm through systemctl answering on the unit's IP, faults, and
//! a destroy that leaves nothing behind.

mod common;

#[cfg(not(feature = "namespaced"))]
#[test]
fn bundle_on_namespaced_hosts() {
    eprintln!("SKIPPED: local-model built without the `namespaced` feature (the hosts crate)");
}

#[cfg(feature = "namespaced")]
mod namespaced {
    use super::common;

    use common::*;
    use local_model::{FaultOp, Substrate};
    use std::time::{Duration, Instant};

    const T: Duration = Duration::from_secs(90);

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }

    /// The hosts crate's init/systemctl binary: next to `lm` when the workspace was built
    /// (the hosts crate finds it there), else built here into a target dir of its own (the
    /// running `cargo test` holds the lock of the main one) and passed as HOSTS_RUNTIME_BIN.
    fn host_runtime() -> Result<Option<std::path::PathBuf>, String> {
        let bin = lm_bin().with_file_name("host-runtime");
        if bin.is_file() && std::env::var_os("LM_TEST_BUILD_RUNTIME").is_none() {
            return Ok(None);
        }
        let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hosts-runtime-build");
        let mut child = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "-p",
                "hosts",
                "--bin",
                "host-runtime",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                let built = target.join("debug/host-runtime");
                if st.success() && built.is_file() {
                    return Ok(Some(built));
                }
                let mut err = String::new();
                use std::io::Read;
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                return Err(format!("cargo build -p hosts failed: {err}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("building host-runtime took more than 300 s".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Why the test cannot run here, or the HOSTS_RUNTIME_BIN to use.
    fn prerequisites() -> Result<Option<std::path::PathBuf>, String> {
        if !is_root() {
            return Err(
                "SKIPPED: namespaced end-to-end test needs root (network/mount/PID namespaces)"
                    .into(),
            );
        }
        host_runtime().map_err(|e| format!("SKIPPED: hosts runtime unavailable: {e}"))
    }

    /// Hosts have their own /tmp and overlay /var: a model dir there (a clone under /tmp)
    /// works all the same, its sockets and hook tools shared with every host.
    #[test]
    fn a_model_dir_under_tmp_works_on_hosts() {
        let runtime = match prerequisites() {
            Ok(r) => r,
            Err(why) => {
                eprintln!("{why}");
                return;
            }
        };
        let dir = scratch("tmp-model");
        write_bundle(&dir, "");
        let base = std::path::Path::new("/tmp/lm-test-tmp-model");
        let _ = std::fs::remove_dir_all(base);
        let plan = local_model::bundle::charm_plan(
            &dir.join("charms/lm-test.charm"),
            Some("t".into()),
            1,
            None,
            &[format!("record-dir={}", dir.join("rec").display())],
            &["blob=".to_string() + &dir.join("blob.txt").display().to_string()],
        )
        .unwrap();
        // The test charm records its hooks in `dir`, which the hosts must see too (a clone
        // under /tmp puts it in the hosts' own /tmp otherwise).
        let mut m = model(base)
            .with_env("LM_SUBNET", "10.77.59.0/24")
            .with_env("LM_SHARED_DIRS", &dir.display().to_string());
        assert!(m.layout.dir.starts_with("/tmp"));
        if let Some(r) = runtime {
            m = m.with_env("HOSTS_RUNTIME_BIN", &r.display().to_string());
        }
        m.deploy_plan(plan, Substrate::Hosts).expect("deploy");
        m.wait(T).expect("settle with the model under /tmp");
        let st = m.status().unwrap();
        assert_eq!(
            unit_status(&st, "t/0")["workload-status"]["current"],
            "active",
            "{st:#}"
        );
        // the hooks ran in the host and reached the agent through the shared model dir
        let hooks = names(&records(&dir, "t/0"));
        check_setup_order("t/0", &hooks, true);
        let (code, out, _) = m.exec("t/0", &["hostname"]).unwrap();
        assert_eq!((code, out.trim()), (0, "m0"));
        let prefix = local_model::namespaced::prefix_for(&m.layout.lab());
        m.destroy().unwrap();
        assert_eq!(hosts::Lab::leftovers(&prefix), Vec::<String>::new());
        assert!(!m.layout.dir.exists());
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn bundle_on_namespaced_hosts() {
        let runtime = match prerequisites() {
            Ok(r) => r,
            Err(why) => {
                eprintln!("{why}");
                return;
            }
        };
        let dir = scratch("hosts");
        let bundle = write_bundle(&dir, "");
        let mut m = model(&dir).with_env("LM_SHARED_DIRS", &dir.display().to_string());
        if let Some(r) = runtime {
            m = m.with_env("HOSTS_RUNTIME_BIN", &r.display().to_string());
        }
        let t0 = Instant::now();
        m.deploy_bundle(&bundle, &[], Substrate::Hosts)
            .expect("deploy on hosts");
        m.wait(T).expect("settle after deploy");
        eprintln!("deploy to settled on hosts: {:?}", t0.elapsed());
        let st = m.status().unwrap();
        assert_eq!(
            units_in(&st),
            vec!["a/0", "a/1", "a/2", "b/0", "sub/0", "sub/1", "sub/2"]
        );

        // the same ordering guarantees as in bare mode
        for u in ["a/0", "a/1", "a/2", "b/0", "sub/0"] {
            let recs = records(&dir, u);
            let mut h = names(&recs);
            h.dedup_by(|a, b| a == b && a == "leader-settings-changed");
            check_setup_order(u, &h, u.ends_with("/0"));
            check_relation_order(u, &recs);
        }
        // each unit is its own machine: its own hostname and IP
        let ip = |u: &str| {
            unit_status(&st, u)["public-address"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_ne!(ip("a/0"), ip("a/1"));
        let (_, hn, _) = m.exec("a/1", &["hostname"]).unwrap();
        assert_eq!(hn.trim(), "m1");
        // the hook ran inside the host: the charm is unpacked there with dispatch 0755
        let install = records(&dir, "a/1").into_iter().next().unwrap();
        assert_eq!(
            install.var("JUJU_CHARM_DIR"),
            "/var/lib/juju/agents/unit-a-1/charm"
        );
        let (code, mode, _) = m
            .exec(
                "a/1",
                &[
                    "stat",
                    "-c",
                    "%a",
                    "/var/lib/juju/agents/unit-a-1/charm/dispatch",
                ],
            )
            .unwrap();
        assert_eq!((code, mode.trim()), (0, "755"));
        let (code, _, _) = m
            .exec("a/0", &["test", "-e", "/var/lib/juju/agents/unit-a-1"])
            .unwrap();
        assert_ne!(code, 0, "a/1's files are not on a/0's machine");
        // the subordinate shares its principal's machine (subordinates are numbered in the
        // order their principals entered the relation's scope, so a/1's may not be sub/1)
        let subs = unit_status(&st, "a/1")["subordinates"].as_object().unwrap();
        assert_eq!(subs.len(), 1, "{st}");
        let sub1 = subs.values().next().unwrap();
        assert_eq!(sub1["public-address"], ip("a/1"));
        // relation data flowed both ways with the hosts' addresses
        let b = records(&dir, "b/0");
        assert!(b
            .iter()
            .flat_map(|r| r.notes.iter())
            .any(|n| n.contains(&format!("\"addr\":\"{}\"", ip("a/1")))));
        let a1 = records(&dir, "a/1");
        assert!(a1
            .iter()
            .flat_map(|r| r.notes.iter())
            .any(|n| n == "app-write rc=1 ERROR cannot write relation settings"));

        // a service started by the charm through systemctl, answering on the unit's IP
        m.request(&local_model::Request::Config {
            app: "a".into(),
            set: vec!["serve-port=8080".into()],
            reset: vec![],
        })
        .unwrap();
        m.wait(T).expect("settle after config");
        let url = format!("http://{}:8080/", ip("a/1"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, out, err) = m
                .exec("b/0", &["curl", "-sS", "--max-time", "2", &url])
                .unwrap();
            if code == 0 {
                assert_eq!(out.trim(), "a/1");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "service on {url} never answered: {err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (code, out, _) = m
            .exec("a/1", &["systemctl", "is-active", "lm-test-web"])
            .unwrap();
        assert_eq!((code, out.trim()), (0, "active"));
        assert_eq!(
            unit_status(&m.status().unwrap(), "a/1")["open-ports"],
            serde_json::json!(["8080/tcp"])
        );
        // it runs in a/1's own PID namespace: visible by name there, not on a/2's host
        let pids = m
            .fault(
                "a/1",
                FaultOp::Pids {
                    comm: "python3".into(),
                },
            )
            .unwrap();
        assert_eq!(pids.as_array().map(|a| a.len()), Some(1), "{pids}");
        let pids2 = m
            .fault(
                "a/2",
                FaultOp::Pids {
                    comm: "python3".into(),
                },
            )
            .unwrap();
        assert_eq!(pids2.as_array().map(|a| a.len()), Some(1), "{pids2}");
        assert_ne!(pids, pids2);

        // faults: kill the service by name; systemd (Restart=always) brings it back
        m.fault(
            "a/1",
            FaultOp::Kill {
                target: "python3".into(),
                signal: 9,
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = m
                .fault(
                    "a/1",
                    FaultOp::Pids {
                        comm: "python3".into(),
                    },
                )
                .unwrap();
            if now.as_array().is_some_and(|a| a.len() == 1) && now != pids {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "service not restarted after kill: {now}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        // faults: cut a/2's network, b/0 cannot reach it; restore, it answers again
        let url2 = format!("http://{}:8080/", ip("a/2"));
        m.fault("a/2", FaultOp::Cut).unwrap();
        let (code, _, _) = m
            .exec("b/0", &["curl", "-sS", "--max-time", "1", &url2])
            .unwrap();
        assert_ne!(code, 0, "a/2 reachable while cut");
        m.fault("a/2", FaultOp::Restore).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while m
            .exec("b/0", &["curl", "-sS", "--max-time", "1", &url2])
            .unwrap()
            .0
            != 0
        {
            assert!(Instant::now() < deadline, "a/2 unreachable after restore");
            std::thread::sleep(Duration::from_millis(100));
        }

        // a reboot: stop pulls the plug, start boots the host; the unit runs start again and
        // the enabled service is back
        let n = records(&dir, "a/2").len();
        m.fault("a/2", FaultOp::Stop).unwrap();
        assert_ne!(
            m.exec("b/0", &["curl", "-sS", "--max-time", "1", &url2])
                .unwrap()
                .0,
            0,
            "a/2 answers while down"
        );
        let st = m.status().unwrap();
        assert_eq!(unit_status(&st, "a/2")["juju-status"]["current"], "lost");
        assert_eq!(st["machines"]["2"]["juju-status"]["current"], "stopped");
        m.fault("a/2", FaultOp::Start).unwrap();
        m.wait(T).expect("settle after reboot");
        assert_eq!(names(&records(&dir, "a/2")[n..]), vec!["start"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while m
            .exec("b/0", &["curl", "-sS", "--max-time", "1", &url2])
            .unwrap()
            .0
            != 0
        {
            assert!(Instant::now() < deadline, "service not back after reboot");
            std::thread::sleep(Duration::from_millis(100));
        }

        // destroy leaves no namespace, link, process or mount of the lab
        let prefix = local_model::namespaced::prefix_for(&m.layout.lab());
        assert!(!hosts::Lab::leftovers(&prefix).is_empty());
        m.destroy().unwrap();
        assert_eq!(hosts::Lab::leftovers(&prefix), Vec::<String>::new());
        assert!(!dir.join("model").exists());
    }
}
