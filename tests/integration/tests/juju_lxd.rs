//! The bundle and its drills on real Juju + LXD. Skipped, with the reason, where juju, a
//! controller, lxc or the site overlay is missing.

use integration::{http_get, until, Juju};
use std::time::Duration;

macro_rules! juju_or_skip {
    () => {
        match Juju::find() {
            Ok(j) => j,
            Err(why) => {
                eprintln!("SKIPPED (Juju + LXD integration): {why}");
                return;
            }
        }
    };
}

/// The region VIP from the deployed maas-region's `get-api-endpoint` action.
fn region_url(j: &Juju) -> String {
    let r = j
        .run_action("maas-region/leader", "get-api-endpoint", &[])
        .expect("get-api-endpoint");
    r["api-url"]
        .as_str()
        .expect("api-url in the action's results")
        .trim_end_matches('/')
        .to_string()
}

#[test]
fn bundle_deploys_and_survives_its_drills() {
    let j = juju_or_skip!();
    j.deploy_bundle().expect("deploy");
    j.wait_active(Duration::from_secs(1800))
        .expect("every unit active after deploy");

    let url = region_url(&j);
    http_get(&format!("{url}/api/2.0/version/")).expect("MAAS answers through the region VIP");

    // The region VIP holder's host goes down: requests through the VIP resume.
    let units = j.units().unwrap();
    let holder = units
        .iter()
        .find(|(n, _, m)| n.starts_with("region-vip/") && m.contains("held"))
        .map(|(n, _, _)| n.clone())
        .expect("a region VIP holder");
    let holder_status = j.status().unwrap();
    let principal = holder_status["applications"]["maas-region"]["units"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, u)| u["subordinates"].get(&holder).is_some())
        .map(|(n, _)| n.clone())
        .expect("the holder's principal");
    let container = j.container_of(&principal).unwrap();
    j.power(&container, false).unwrap();
    let took = until(Duration::from_secs(60), || {
        http_get(&format!("{url}/api/2.0/version/"))
    })
    .expect("VIP moved");
    eprintln!("region VIP failover seen by a client: {took:?}");
    j.power(&container, true).unwrap();
    j.wait_active(Duration::from_secs(900))
        .expect("active again after the host came back");

    // The database primary is killed: regions keep answering.
    let primary = j
        .run_action("postgresql-ha/leader", "get-primary", &[])
        .unwrap()["primary"]
        .as_str()
        .expect("primary")
        .to_string();
    j.exec(&primary, "pkill -9 -x postgres || true").unwrap();
    until(Duration::from_secs(60), || {
        http_get(&format!("{url}/api/2.0/version/"))
    })
    .expect("MAAS answers after a database failover");
    j.wait_active(Duration::from_secs(900))
        .expect("active after the database failover");

    // Scale out: a third region joins.
    j.add_unit("maas-region").unwrap();
    j.wait_active(Duration::from_secs(1800))
        .expect("active after add-unit");
    let regions = j.status().unwrap()["applications"]["maas-region"]["units"]
        .as_object()
        .map(|u| u.len())
        .unwrap_or(0);
    assert_eq!(regions, 3);

    // Racks registered through the VIP.
    for (name, status, message) in j
        .units()
        .unwrap()
        .iter()
        .filter(|(n, _, _)| n.starts_with("maas-rack/"))
    {
        assert_eq!(status, "active", "{name}: {message}");
        assert!(
            message.contains(&url),
            "{name} registered with {message}, not {url}"
        );
    }
}
