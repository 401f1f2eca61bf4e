//! Shared fixtures: a rack host, a region that offers its URL and secret, and checks that the
//! shared secret stays where it belongs.
#![allow(dead_code)]

use charm_lib::testing::{Harness, MachineState, Output, Relation, Secret, State};
use charm_lib::CmdOutput;
use std::path::Path;

pub const URL: &str = "http://10.77.0.200/MAAS";
pub const URL2: &str = "http://10.77.0.201/MAAS";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const SECRET2: &str = "fedcba9876543210fedcba9876543210";
pub const SID: &str = "secret:cu2maasshared0001";
pub const REGIONS: &str = r#"["region-a","region-b"]"#;
pub const RPC: u32 = 3;

pub fn harness() -> Harness {
    Harness::new(env!("CARGO_MANIFEST_DIR"), maas_rack::handle)
}

/// A host named `name`.
pub fn host(name: &str) -> MachineState {
    MachineState::default().respond(&["hostname"], CmdOutput::ok(format!("{name}\n")))
}

/// The rpc relation with the region's app databag.
pub fn rpc(data: &[(&str, &str)]) -> Relation {
    Relation::new(RPC, "rpc", "maas-region")
        .remote_unit(0, &[])
        .remote_unit(1, &[])
        .remote_app_data(data)
}

/// A rack host related to a region that sent everything, the secret granted.
pub fn ready() -> State {
    State {
        machine: host("rack-1"),
        ..State::default()
    }
    .with_relation(rpc(&[
        ("maas_url", URL),
        ("secret_id", SID),
        ("regions", REGIONS),
    ]))
    .with_secret(Secret::granted(SID, &[("secret", SECRET)]))
}

/// `ready()` with install-method=deb.
pub fn ready_deb() -> State {
    ready().with_config("install-method", "deb")
}

/// Runs and insists the hook succeeded.
pub fn ok(h: &Harness, t: charm_lib::testing::Trigger, st: &State) -> Output {
    h.run_ok(t, st)
}

/// The state after the rack registered (snap), as the next hook sees it.
pub fn registered(st: State) -> State {
    let out = ok(
        &harness(),
        charm_lib::testing::Trigger::RelationChanged(RPC, None),
        &st,
    );
    assert!(
        out.state.unit_status.message.starts_with("registered with"),
        "{:?}",
        out.state.unit_status
    );
    out.state
}

/// Adds the files MAAS writes when it registers (the secret 0640 root:maas).
pub fn as_maas_wrote(mut st: State, flavor_secret: &str, secret: &str) -> State {
    st.machine = st.machine.with_file(
        flavor_secret,
        &format!("{secret}\n"),
        charm_lib::FileOptions::new("root", "maas", 0o640),
    );
    st
}

/// The secret appears nowhere the charm writes or says: logs, statuses, errors, relation
/// data, charm state, and files other than MAAS's own secret file.
pub fn assert_secret_kept(out: &Output, secret: &str) {
    assert!(
        !out.mentions(secret),
        "the secret leaked into logs, status or the error"
    );
    for r in &out.state.relations {
        for (k, v) in r.local_unit_data.iter().chain(r.local_app_data.iter()) {
            assert!(!v.contains(secret), "relation data {k} carries the secret");
        }
    }
    for (k, v) in &out.state.stored {
        assert!(!v.contains(secret), "charm state {k} carries the secret");
    }
    for (p, f) in &out.state.machine.files {
        let is_maas_secret = p == Path::new("/var/snap/maas/common/maas/secret")
            || p == Path::new("/var/lib/maas/secret");
        if is_maas_secret {
            assert!(
                f.options.mode & 0o037 == 0,
                "{} is mode {:o}",
                p.display(),
                f.options.mode
            );
        } else {
            assert!(
                !f.text().contains(secret),
                "{} carries the secret",
                p.display()
            );
        }
    }
}
