//! Hosts reach each other through the bridge, never through the machine; a cut network
//! stops traffic both ways and a restore brings it back.

mod common;
use common::*;
use std::process::Command;

#[test]
fn hosts_ping_each_other_through_the_bridge_and_not_the_machine() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hnet1", 11, None);
    let a = t.add("alpha");
    let b = t.add("beta");
    assert_eq!(a.ip().to_string(), "10.77.11.2");
    assert_eq!(b.cidr(), "10.77.11.3/24");
    assert_eq!(a.interface(), "eth0");
    assert!(ping(&a, b.ip()), "alpha cannot ping beta");
    assert!(ping(&b, a.ip()), "beta cannot ping alpha");

    // The machine has no link, address or route of the lab: nothing of it is in the
    // machine's namespace (we never send traffic from the machine to lab addresses).
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("hnet1"),
        "lab link in the machine's namespace: {links}"
    );
    let addrs = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&addrs.stdout).contains("10.77.11."));
    // Inside, only the lab subnet is routed: there is no way out.
    let routes = sh(&a, "ip route");
    assert_eq!(routes.lines().count(), 1, "unexpected routes: {routes}");
    assert!(routes.starts_with("10.77.11.0/24 dev eth0"), "{routes}");
    t.destroy();
}

#[test]
fn cut_network_stops_traffic_and_restore_brings_it_back() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hnet2", 12, None);
    let a = t.add("alpha");
    let b = t.add("beta");
    let c = t.add("gamma");
    assert!(ping(&a, b.ip()));
    a.cut_network().unwrap();
    assert!(!ping(&a, b.ip()), "alpha still reaches beta after the cut");
    assert!(!ping(&b, a.ip()), "beta still reaches alpha after the cut");
    assert!(ping(&b, c.ip()), "the others must still talk");
    // Nothing in the bridge namespace can answer either: it has no address, not even an
    // IPv6 link-local one.
    let br = Command::new("ip")
        .args(["-n", "hnet2-br", "-o", "addr", "show"])
        .output()
        .unwrap();
    let br = String::from_utf8_lossy(&br.stdout);
    assert!(
        br.lines().all(|l| l.contains(": lo ")),
        "addresses in the bridge namespace: {br}"
    );
    // The cut host keeps its link up (as behind a failed switch).
    assert!(sh(&a, "ip -o link show eth0").contains("state UP"));
    a.restore_network().unwrap();
    wait_for(10, "traffic after restore", || {
        ping(&a, b.ip()).then_some(())
    });
    assert!(ping(&b, a.ip()));
    t.destroy();
}
