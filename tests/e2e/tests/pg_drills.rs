//! postgresql-ha in the local model (issue 7's acceptance, as root): 3 units with the DB VIP of
//! a keepalived-vip subordinate settle as one primary and two streaming standbys (one
//! synchronous); a `db` client and a `database` client were given the VIP and write through it.
//! Then, in sequence on that deployment, each under continuous writes through the DB VIP from
//! the clients' machine and each ending with every acknowledged write on every member (asked
//! locally with psql), exactly one primary holding the VIP and every unit Active: switchover;
//! kill -9 of the primary's postmaster; kill -9 of Patroni on the primary; the primary's
//! postgres SIGSTOPped for 30 s then SIGCONTed; the primary's network cut for 30 s and for 60 s
//! (the old primary rejoins as a standby, and every acknowledged write is on the final
//! primary, so no second primary acknowledged one); two faults back to back (the primary's
//! postmaster killed, then the new primary's host down as soon as it acknowledges a write; the
//! primary's host down, then the new primary's host down while the old one rejoins: issue 16);
//! every database host stopped and started; remove-unit of the primary; then, with the 2 units
//! left, the primary's host down → the survivor Blocked → force-promote → writes resume and
//! the host rejoins. The postmaster killed and every host restarted run by default in
//! bundle_drills.rs only ([`IN_BUNDLE_DRILLS`]), the 30 s cut only when asked for
//! ([`COVERED_BY_LONGER`]).
//!
//! One deployment on 10.77.70.0/24 (`bench-pg` uses .71); a failing step stops the rest, as
//! each starts from the state the previous one left. See `e2e::pg_drills`. `E2E_KEEP=1` keeps
//! the model in build/e2e/pg-drills; `E2E_PG_DRILLS` (comma-separated parts of drill names)
//! runs only those; `E2E_PG_OPTIONS` (`loop-wait=1,...`) deploys postgresql-ha with those
//! options, to measure a setting before it becomes a default.

use e2e::pg_drills::{self as pg, Ledger};

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 70;

/// Drills bundle_drills.rs runs on the same charm under MAAS's traffic too (its "database
/// primary killed" and "whole deployment stopped and started"): left out here by default, to
/// keep CI under 45 minutes; `E2E_PG_DRILLS` still runs them (`bench-pg` runs every step).
const IN_BUNDLE_DRILLS: [&str; 2] = ["postmaster killed", "all hosts restarted"];

/// Drills a longer one of the same fault covers by default: the 60 s network cut sees the same
/// promotion during the cut (about 22 s in) and the same rejoin of the old primary after it.
/// Left out by default for CI time, as [`IN_BUNDLE_DRILLS`].
const COVERED_BY_LONGER: [&str; 1] = ["network cut 30 s"];

#[test]
fn postgresql_ha_survives_every_drill_in_sequence() {
    let env = e2e::env_or_skip!();
    let d = pg::deploy(&env, "pg-drills", NET).expect("deploy");
    let first = pg::settled(&d).expect(
        "3 units settle: one primary, two streaming standbys, clients write through the VIP",
    );
    eprintln!("settled; primary {first}");
    let mut l = Ledger::default();
    // E2E_PG_DRILLS="primary removed,force-promote" runs only the drills named (to debug one;
    // the last needs the 2 units "primary removed" leaves).
    let only = std::env::var("E2E_PG_DRILLS").unwrap_or_default();
    let wanted = |name: &str| {
        if only.is_empty() {
            !IN_BUNDLE_DRILLS.contains(&name) && !COVERED_BY_LONGER.contains(&name)
        } else {
            only.split(',').any(|w| name.contains(w.trim()))
        }
    };
    for (name, step) in pg::steps().into_iter().filter(|(n, _)| wanted(n)) {
        eprintln!("== drill: {name}");
        step(&d, &mut l).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}
