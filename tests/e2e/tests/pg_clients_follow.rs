//! postgresql-ha without a VIP (issue 7): clients are given the primary's own address, and when
//! the primary changes between hooks they are given the new one promptly. The primary is moved
//! with patronictl on the machine, so no Juju event follows, and update-status never runs in
//! this model: only the charm's observer, asking the unit agent for a hook through juju-exec,
//! can republish the address (the model was settled before, so no hook was pending).

use e2e::pg_drills::{self as pg, RECOVER};
use e2e::until;
use std::time::{Duration, Instant};

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 72;

#[test]
fn clients_follow_the_primary_without_a_vip() {
    let env = e2e::env_or_skip!();
    let d = pg::deploy_without_vip(&env, "pg-no-vip", NET).expect("deploy");
    d.wait_active(Duration::from_secs(600)).expect("settled");
    pg::wait_sync_standby(&d).expect("a synchronous standby to switch over to");
    let (old, old_machine) = pg::primary(&d).expect("one primary");
    until(RECOVER, "clients given the primary's address", || {
        pg::clients_given(&d, &d.address_of(&old)?)
    })
    .expect("before the switchover");
    pg::clients_write(&d).expect("clients write through the primary's address");

    let moved = Instant::now();
    d.exec(
        &old_machine,
        &[
            "/opt/postgresql-ha/venv/bin/patronictl",
            "-c",
            "/etc/postgresql-ha/patroni.yml",
            "switchover",
            "--force",
        ],
    )
    .expect("patronictl switchover");
    let new = pg::wait_new_primary(&d, &old, RECOVER).expect("a new primary");
    let new_address = d.address_of(&new).expect("the new primary's address");
    until(RECOVER, "clients given the new primary's address", || {
        pg::clients_given(&d, &new_address)
    })
    .expect("after the switchover");
    eprintln!(
        "clients given {new} ({new_address}) {:.1} s after the switchover",
        moved.elapsed().as_secs_f64()
    );
    pg::clients_write(&d).expect("clients write through the new primary's address");
}
