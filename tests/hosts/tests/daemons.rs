//! Real daemons from the machine's Debian packages under the host runtime: keepalived
//! (Type=notify, which it only uses when /proc/1/stat says systemd) moving a VIP when its
//! holder loses power, etcd (Type=notify, User=etcd) and PostgreSQL (Type=forking with a
//! PIDFile, through pg_ctlcluster).

mod common;
use common::*;
use hosts::Target;

fn has_vip(h: &hosts::Host, vip: &str) -> bool {
    h.is_up() && sh(h, "ip -o addr show eth0").contains(vip)
}

#[test]
fn keepalived_vip_moves_when_its_holder_loses_power_and_comes_back() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hdmn1", 61, None);
    let a = t.add("ka1");
    let b = t.add("ka2");
    let vip = "10.77.61.200";
    for (h, prio) in [(&a, 100), (&b, 90)] {
        sh(h, "apt-get install -y keepalived");
        // Without a configuration the packaged unit's condition skips the start.
        assert_eq!(sh(h, "systemctl is-active keepalived || true"), "inactive");
        write(
            h,
            "/etc/keepalived/keepalived.conf",
            &format!("vrrp_instance VI_1 {{\n state BACKUP\n interface eth0\n virtual_router_id 51\n priority {prio}\n advert_int 1\n virtual_ipaddress {{\n {vip}/24\n }}\n}}\n"),
        );
        sh(h, "systemctl restart keepalived");
        assert_eq!(sh(h, "systemctl is-active keepalived"), "active");
    }
    wait_for(15, "VIP on ka1", || has_vip(&a, vip).then_some(()));
    a.stop().unwrap();
    wait_for(15, "VIP on ka2 after ka1 lost power", || {
        has_vip(&b, vip).then_some(())
    });
    a.start().unwrap();
    // The VIP a dead keepalived held does not survive a reboot; the enabled service does.
    wait_for(15, "VIP back on ka1", || has_vip(&a, vip).then_some(()));
    wait_for(15, "VIP gone from ka2", || {
        (!has_vip(&b, vip)).then_some(())
    });
    t.destroy();
}

#[test]
fn etcd_and_postgresql_run_as_their_packages_say() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hdmn2", 62, None);
    let a = t.add("db1");
    sh(&a, "apt-get install -y etcd-server postgresql");
    assert_eq!(sh(&a, "systemctl is-active etcd"), "active");
    let pid = sh(&a, "systemctl show -p MainPID --value etcd");
    assert_eq!(sh(&a, &format!("ps -o user= -p {pid}")), "etcd");
    sh(&a, "ETCDCTL_API=3 etcdctl put k v >/dev/null");
    let get = "ETCDCTL_API=3 etcdctl get --print-value-only k";
    assert_eq!(sh(&a, get), "v");
    // Alias= names reach the same unit.
    assert_eq!(sh(&a, "systemctl is-active etcd2"), "active");
    // Restart=on-abnormal: a SIGKILLed etcd comes back (and is notify-ready again).
    a.kill(Target::Name("etcd".into()), 9).unwrap();
    wait_for(20, "etcd restarted", || {
        let p = sh(&a, "systemctl show -p MainPID --value etcd");
        let active = sh(&a, "systemctl is-active etcd || true") == "active";
        (p != pid && p != "0" && active).then_some(())
    });
    assert_eq!(sh(&a, get), "v");

    sh(&a, "systemctl start postgresql@15-main");
    assert_eq!(sh(&a, "systemctl is-active postgresql@15-main"), "active");
    let main = sh(&a, "systemctl show -p MainPID --value postgresql@15-main");
    assert_eq!(sh(&a, "cat /run/postgresql/15-main.pid"), main);
    assert_eq!(sh(&a, "su postgres -c \"psql -tAc 'select 41+1'\""), "42");
    sh(
        &a,
        "systemctl reload postgresql@15-main && systemctl stop postgresql@15-main",
    );
    assert!(
        a.pids("postgres").unwrap().is_empty(),
        "postgres left after stop"
    );
    t.destroy();
}
