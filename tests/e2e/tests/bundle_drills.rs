//! HA drills on the whole bundle (bundles/maas-ha.yaml in the local model, as root): one
//! deployment on 10.77.30.0/24, the drills in sequence, each under continuous writes through
//! the DB VIP and requests through the region VIP from the rack machines, each ending with
//! nothing acknowledged lost, one primary, one holder per VIP and every unit Active (see
//! `e2e::drills`). Leadership moves as in Juju once a leader's machine has been down for the
//! lease ([`LEASE`]); the first drill keeps the leaders' machines down past it and has the new
//! leaders do what only a leader does. One deployment for all keeps CI time down; a failing
//! drill stops the rest, since each starts from the state the previous one left.
//!
//! `E2E_OVERLAYS=path.yaml` adds overlays (e.g. a charm built elsewhere); `E2E_KEEP=1` keeps
//! the model in build/e2e/bundle-drills for a look around.

use e2e::drills::{self, Ledger, Report};
use e2e::{ha, Deployment};
use std::time::Duration;

/// This file's subnet: 10.77.30.0/24 (the drills own 30–39).
const NET: u8 = 30;
/// A cold deployment of the whole bundle on a busy 2-core machine.
const SETTLE: Duration = Duration::from_secs(900);
/// The leadership lease: a lost leader's lease runs out 30–60 s after its machine went down
/// in Juju (internal/worker/leadership/tracker.go: a 60 s lease renewed every 30 s); the
/// drills take the shortest, so leadership moves in any drill that keeps a machine down
/// that long, and the takeover drill does not wait longer than it must.
const LEASE: Duration = Duration::from_secs(30);

/// Fails the test with the drill's error and the state of the deployment.
fn fail(d: &Deployment, drill: &str, e: anyhow::Error) -> ! {
    panic!("{drill}: {e:#}\nthe deployment now:\n{}", ha::diagnose(d))
}

fn show(r: &Report) {
    match &r.seen {
        Some(s) => eprintln!(
            "drill {:?}: healthy {:.1} s after the fault; writes {} ({} failed, longest outage {:?}), requests {} ({} failed, longest outage {:?})",
            r.name,
            r.healed.as_secs_f64(),
            s.writes,
            s.failed_writes,
            s.write_outage,
            s.requests,
            s.failed_requests,
            s.http_outage
        ),
        None => eprintln!("drill {:?}: healthy {:.1} s after the fault", r.name, r.healed.as_secs_f64()),
    }
    if let Some(s) = &r.seen {
        for line in drills::failed_requests(&s.http_records) {
            eprintln!("  {line}");
        }
    }
}

#[test]
fn bundle_survives_every_ha_drill_in_sequence() {
    let env = e2e::env_or_skip!();
    let charms = env.build.join("e2e/bundle-drills-charms");
    let client = ha::client_overlay(&env, &charms).expect("db-client overlay");
    let mut overlays = vec![client];
    overlays.extend(e2e::extra_overlays());
    // update-status every minute (`juju model-config update-status-hook-interval=1m`): a
    // status that only update-status refreshes must not hold a drill for Juju's default 5 min.
    let d = Deployment::bundle_with(
        &env,
        "bundle-drills",
        NET,
        &overlays,
        &[
            ("LM_UPDATE_STATUS_MS", "60000"),
            ("LM_LEADER_LEASE_MS", &LEASE.as_millis().to_string()),
        ],
    )
    .expect("deploy");
    d.wait_active(SETTLE)
        .expect("the bundle settles with every unit Active");
    ha::assert_healthy(&d, None, &[], drills::HEAL).expect("healthy after deploy");
    let mut ledger = Ledger::default();

    // First, while both applications' leaders are their /0 units on machine 0 (the local
    // model elects the lowest-numbered unit; in Juju the first to claim, and the drill takes
    // one machine at a time when they differ): one machine down covers both takeovers, which
    // keeps CI time down. It leaves another client behind.
    let r = drills::leaders_host_down(&d, &mut ledger, &charms.join("db-client.charm"), LEASE)
        .unwrap_or_else(|e| fail(&d, "leaders' hosts down past the lease", e));
    show(&r);

    let r = drills::primary_killed(&d, &mut ledger)
        .unwrap_or_else(|e| fail(&d, "database primary killed", e));
    show(&r);
    let r = drills::primary_host_down(&d, &mut ledger)
        .unwrap_or_else(|e| fail(&d, "database primary's host down", e));
    show(&r);
    let r = drills::region_holder_down(&d, &mut ledger)
        .unwrap_or_else(|e| fail(&d, "region VIP holder's host down", e));
    show(&r);
    // Also the drill "the rack whose region vanished re-reaches one".
    let (r, freed) =
        drills::region_removed(&d, &mut ledger).unwrap_or_else(|e| fail(&d, "region removed", e));
    show(&r);
    // Back where the removed one was: that machine has no region now.
    let r = drills::region_added(&d, &mut ledger, &freed)
        .unwrap_or_else(|e| fail(&d, "region added", e));
    show(&r);
    let r = drills::whole_deployment_restarted(&d, &mut ledger)
        .unwrap_or_else(|e| fail(&d, "whole deployment restarted", e));
    show(&r);
}
