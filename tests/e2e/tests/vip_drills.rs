//! keepalived-vip in the local model (issue 3's acceptance): 3 principal units with
//! keepalived-vip, one holder; kill the holder's host → another holds the VIP within
//! 3 × advert-int + 1 s; make the holder's check fail → it moves; a clean stop moves it at once;
//! the old holder returns → with preempt=false the VIP stays where it is; polling every host
//! all along, never two holders for more than 1 s; a second application on the same hosts
//! coexists (Blocked on a router id clash) and its removal leaves the first VIP alone. At
//! advert-int 1 (VRRP v2) and 0.1 (VRRP v3).
//!
//! The drills share one deployment and run in order in one test (one model at a time on the
//! machine, and a poller that must see every step); subnet 10.77.40.0/24. Needs root and
//! `make charms catalog deps` (skipped otherwise, with the reason). `E2E_KEEP=1` keeps the
//! model. Each failover prints a `failover:` line; `make bench` times them properly.

mod vip;

use std::time::{Duration, Instant};
use vip::{Advert, Fault, Poller, VipDrill, APP};

/// 10.77.40.0/24: this file's subnet (`bench-vip` uses .41).
const NET: u8 = 40;
/// The second application's VIP.
const VIP2: &str = "10.77.40.201";
/// The VIP of the application under a principal related over `vip`.
const VIP3: &str = "10.77.40.202";

/// Polls until every unit of `app` shows a message starting with `prefix`.
fn wait_messages(drill: &VipDrill, app: &str, prefix: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let msgs = drill.vip_messages(app).unwrap();
        if msgs.len() == 3 && msgs.iter().all(|(_, m)| m.starts_with(prefix)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{app} never showed {prefix:?} on every unit: {msgs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Exactly one host holds the VIP, and its unit (alone) says so.
fn one_holder_and_its_unit_says_so(drill: &VipDrill, poller: &Poller) -> String {
    let holder = drill.one_holder(Duration::from_secs(30)).unwrap();
    let mark = poller.mark();
    // 3 s of rounds (an observation window, not a wait for something): always that holder.
    std::thread::sleep(Duration::from_secs(3));
    poller
        .wait_for(mark, Duration::from_secs(1), |h| h != [holder.clone()])
        .expect_err("exactly one holder throughout");
    let st = drill.d.status().unwrap();
    let sub_on_holder = st["applications"][vip::PRINCIPAL]["units"]
        .as_object()
        .unwrap()
        .values()
        .find(|u| u["machine"] == holder.as_str())
        .and_then(|u| u["subordinates"].as_object())
        .and_then(|s| {
            s.keys()
                .find(|k| k.starts_with(&format!("{APP}/")))
                .cloned()
        })
        .expect("a keepalived-vip unit on the holder");
    let label = format!("VIP {}/24", drill.vip);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let msgs = drill.vip_messages(APP).unwrap();
        let held: Vec<&String> = msgs
            .iter()
            .filter(|(_, m)| *m == format!("{label} held"))
            .map(|(u, _)| u)
            .collect();
        let standby = msgs
            .iter()
            .filter(|(_, m)| *m == format!("{label} standby"))
            .count();
        if held.len() == 1 && standby == 2 {
            assert_eq!(
                held[0], &sub_on_holder,
                "the unit on the holding machine says held"
            );
            exporters_agree(drill, &holder);
            return holder;
        }
        assert!(
            Instant::now() < deadline,
            "statuses never showed one holder: {msgs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every unit's VIP-state exporter (127.0.0.1:9700 + router id 51) says 1 on the holder, 0
/// elsewhere: what the observability alerts read.
fn exporters_agree(drill: &VipDrill, holder: &str) {
    for m in drill.d.machines_of(vip::PRINCIPAL).unwrap() {
        let text = drill
            .d
            .exec(
                &m,
                &["curl", "-sSf", "-m", "2", "http://127.0.0.1:9751/metrics"],
            )
            .unwrap_or_else(|e| panic!("machine {m}: the exporter does not answer: {e:#}"));
        let want = format!(
            "keepalived_vip_held{{vip=\"{}\"}} {}",
            drill.vip,
            u8::from(m == holder)
        );
        assert!(
            text.contains(&want),
            "machine {m} (holder {holder}): {text}"
        );
    }
}

/// A second application with the same router id is Blocked on every host; with its own, both
/// VIPs are held; removing its relation removes it and leaves the first VIP where it was.
fn a_second_application_coexists_and_leaves_cleanly(
    drill: &VipDrill,
    poller: &Poller,
    holder: &str,
) {
    let mark = poller.mark();
    drill
        .add_vip_app(
            "vip2",
            &format!("vip: {VIP2}/24, check: 'process:python3', virtual-router-id: 51"),
        )
        .unwrap();
    wait_messages(
        drill,
        "vip2",
        "virtual-router-id 51 on eth0 is already used on this host by vip",
        Duration::from_secs(30),
    );
    assert!(
        drill.machines.iter().all(|m| !drill.holds(m, VIP2)),
        "a Blocked application claims nothing"
    );
    drill
        .d
        .lm
        .config("vip2", &["virtual-router-id=52"])
        .unwrap();
    drill.d.lm.wait(Duration::from_secs(120)).unwrap();
    wait_messages(
        drill,
        "vip2",
        &format!("VIP {VIP2}/24"),
        Duration::from_secs(30),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while drill
        .machines
        .iter()
        .filter(|m| drill.holds(m, VIP2))
        .count()
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "vip2 never held by exactly one machine"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drill.d.lm.remove_relation(vip::PRINCIPAL, "vip2").unwrap();
    drill.d.lm.wait(Duration::from_secs(120)).unwrap();
    for m in &drill.machines {
        assert!(
            !drill.holds(m, VIP2),
            "machine {m} still has vip2's address"
        );
        let (code, _, _) = drill
            .d
            .lm
            .exec(m, &["systemctl", "is-active", "keepalived-vip2"])
            .unwrap();
        assert_ne!(code, 0, "keepalived-vip2 still runs on machine {m}");
        let (code, _, _) = drill
            .d
            .lm
            .exec(m, &["test", "-e", "/etc/keepalived/keepalived-vip2.conf"])
            .unwrap();
        assert_ne!(code, 0, "vip2's configuration is still on machine {m}");
        drill
            .d
            .exec(m, &["systemctl", "is-active", "keepalived-vip"])
            .unwrap_or_else(|e| panic!("keepalived-vip on machine {m}: {e:#}"));
    }
    poller
        .wait_for(mark, Duration::from_millis(200), |h| {
            h != [holder.to_string()]
        })
        .expect_err("the first VIP never moved or vanished meanwhile");
}

/// The startup race seen with postgresql-ha: keepalived-vip under a principal related over
/// `vip` starts nothing (so no host can win the VIP unchecked) until the principal's check is
/// there, then starts with it; the principal naming its service later reloads the very same
/// vrrp_instance (the VIP stays put).
fn a_vip_principal_is_waited_for_then_checked(drill: &VipDrill, poller: &Poller, holder: &str) {
    let mark = poller.mark();
    drill
        .add_vip_principal(
            "q",
            "vip3",
            &[
                ("vip", format!("{VIP3}/24").into()),
                ("virtual-router-id", 53.into()),
            ],
        )
        .unwrap();
    let msgs = drill.vip_messages("vip3").unwrap();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    for (unit, msg) in &msgs {
        assert!(
            msg.starts_with("waiting for q/") && msg.ends_with("'s health check"),
            "{unit}: {msg:?}"
        );
    }
    let conf = "/etc/keepalived/keepalived-vip3.conf";
    for m in &drill.machines {
        assert!(
            !drill.holds(m, VIP3),
            "machine {m} took vip3's VIP without a check"
        );
        let (code, _, _) = drill
            .d
            .lm
            .exec(m, &["systemctl", "is-active", "keepalived-vip3"])
            .unwrap();
        assert_ne!(
            code, 0,
            "keepalived-vip3 started on machine {m} without the check"
        );
        let (code, _, _) = drill.d.lm.exec(m, &["test", "-e", conf]).unwrap();
        assert_ne!(
            code, 0,
            "vip3's configuration rendered on machine {m} without the check"
        );
    }
    drill.d.lm.config("q", &["check=process:python3"]).unwrap();
    drill.d.lm.wait(Duration::from_secs(120)).unwrap();
    wait_messages(
        drill,
        "vip3",
        &format!("VIP {VIP3}/24"),
        Duration::from_secs(30),
    );
    let holder3 = drill.one_holder_of(VIP3, Duration::from_secs(20)).unwrap();
    let confs: Vec<String> = drill
        .machines
        .iter()
        .map(|m| e2e::read_in(&drill.d, m, conf).unwrap())
        .collect();
    for c in &confs {
        assert!(
            c.contains("\nvrrp_instance vip3 {\n")
                && c.contains("track_script {\n        vip3_0_process_python3\n"),
            "{c}"
        );
    }
    // The principal names its service: nothing changes, the VIP does not move.
    drill.d.lm.config("q", &["service=renamed"]).unwrap();
    drill.d.lm.wait(Duration::from_secs(120)).unwrap();
    let after: Vec<String> = drill
        .machines
        .iter()
        .map(|m| e2e::read_in(&drill.d, m, conf).unwrap())
        .collect();
    assert_eq!(after, confs, "the same vrrp_instance, the same file");
    assert_eq!(
        drill.one_holder_of(VIP3, Duration::from_secs(5)).unwrap(),
        holder3
    );
    drill.d.lm.remove_relation("q", "vip3").unwrap();
    drill.d.lm.wait(Duration::from_secs(120)).unwrap();
    for m in &drill.machines {
        let (code, _, _) = drill
            .d
            .lm
            .exec(m, &["systemctl", "is-active", "keepalived-vip3"])
            .unwrap();
        assert_ne!(code, 0, "keepalived-vip3 still runs on machine {m}");
    }
    poller
        .wait_for(mark, Duration::from_millis(200), |h| {
            h != [holder.to_string()]
        })
        .expect_err("the first VIP never moved or vanished meanwhile");
}

/// The three faults at one advert interval, each followed by the returning unit not taking
/// the VIP back.
fn failovers(drill: &VipDrill, poller: &Poller, a: Advert) {
    for fault in Fault::ALL {
        let limit = match fault {
            // keepalived runs the check every second (check-interval 1), then the holder
            // sends a priority-0 advert.
            Fault::CheckFailed => a.host_down_limit() + Duration::from_secs(1),
            Fault::HostDown | Fault::CleanStop => a.host_down_limit(),
        };
        let f = drill
            .failover(fault, poller, limit + Duration::from_secs(10))
            .unwrap();
        eprintln!(
            "failover: {} at advert-int {} s: {} ms (machine {} -> {}; request returned after {} ms)",
            fault.label(),
            a.secs,
            f.took.as_millis(),
            f.from,
            f.to,
            f.request.as_millis()
        );
        assert!(
            f.took <= limit,
            "{} at advert-int {}: took {:?}, more than {limit:?}",
            fault.label(),
            a.secs,
            f.took
        );
        // The old holder is back (host started, service or keepalived running again).
        drill.stays_with(&f.to, Duration::from_secs(3)).unwrap();
    }
}

#[test]
fn vip_drills() {
    let env = e2e::env_or_skip!();
    if let Some(why) = vip::host_runtime_missing(&env) {
        eprintln!("SKIPPED (local-model end-to-end): {why}");
        return;
    }
    let started = Instant::now();
    let drill = VipDrill::deploy(&env, "vip-drills", NET).unwrap();
    eprintln!("deployed in {:?}", started.elapsed());
    let poller = Poller::start(&drill);

    let holder = one_holder_and_its_unit_says_so(&drill, &poller);
    a_second_application_coexists_and_leaves_cleanly(&drill, &poller, &holder);
    a_vip_principal_is_waited_for_then_checked(&drill, &poller, &holder);
    eprintln!(
        "one holder, two applications, a vip principal: {:?}",
        started.elapsed()
    );

    failovers(&drill, &poller, Advert::ONE);
    drill.set_advert(Advert::TENTH).unwrap();
    failovers(&drill, &poller, Advert::TENTH);

    let (samples, worst) = poller.finish();
    assert!(
        samples.len() > 100,
        "polled all along ({} rounds)",
        samples.len()
    );
    assert!(
        worst <= Duration::from_secs(1),
        "two holders at once for {worst:?}"
    );
    eprintln!(
        "vip drills done in {:?} ({} poll rounds)",
        started.elapsed(),
        samples.len()
    );
}
