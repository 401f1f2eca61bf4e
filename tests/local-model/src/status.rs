//! `lm status`: the model as JSON (shaped like `juju status --format=json`) and as a table.

use crate::hooktools::app_status;
use crate::state::{ModelState, Unit};
use serde_json::{json, Map, Value};

fn unit_json(st: &ModelState, u: &Unit) -> Value {
    let machine = st.machines.get(&u.machine);
    let (wl, wm) = match &u.error {
        Some(e) => (
            "error".to_string(),
            format!("hook failed: {:?}", e.hook.name),
        ),
        None => (u.workload.status.clone(), u.workload.message.clone()),
    };
    // a unit on a stopped machine is what Juju calls lost
    let (agent, agent_msg) = match machine.map(|m| m.state.as_str()) {
        Some("stopped") => (
            "lost".to_string(),
            "agent is not communicating with the server".to_string(),
        ),
        _ => (u.agent.clone(), u.agent_message.clone()),
    };
    let mut v = json!({
        "workload-status": {"current": wl, "message": wm, "since": u.workload.since},
        "juju-status": {"current": agent, "message": agent_msg},
        "machine": u.machine,
        "public-address": machine.map(|m| m.ip.clone()).unwrap_or_default(),
        "open-ports": u.ports.iter().collect::<Vec<_>>(),
        "life": if u.life == crate::state::Life::Alive { "alive" } else { "dying" },
        "hooks-run": u.hooks_run,
    });
    if st.is_leader(&u.name) {
        v["leader"] = json!(true);
    }
    // a unit whose charm dir still holds an older charm than its application's (a unit in
    // error after a refresh): `upgrading-from` names that charm (cmd/juju/status
    // formatted.go unitStatus.Charm, set when the unit's charm URL is not the application's)
    if let Some(a) = st.applications.get(&u.app) {
        if u.view.charm_deployed < a.charm_revision {
            v["upgrading-from"] = json!(format!("local:{}-{}", a.meta.name, u.view.charm_deployed));
        }
    }
    let subs: Map<String, Value> = st
        .units
        .values()
        .filter(|s| s.principal.as_deref() == Some(&u.name))
        .map(|s| (s.name.clone(), unit_json(st, s)))
        .collect();
    if !subs.is_empty() {
        v["subordinates"] = Value::Object(subs);
    }
    v
}

/// A base as `juju status --format=json` shows a machine's and an application's:
/// `{"name": "ubuntu", "channel": "22.04"}` (cmd/juju/status/formatter.go formatMachine and
/// formatApplication: formattedBase, the channel's DisplayString).
fn base_json(base: &str) -> Option<Value> {
    let (name, channel) = base.split_once('@')?;
    Some(json!({"name": name, "channel": channel}))
}

/// The model as JSON.
pub fn status_json(st: &ModelState) -> Value {
    let machines: Map<String, Value> = st
        .machines
        .values()
        .map(|m| {
            let mut v = json!({"hostname": m.hostname, "dns-name": m.ip, "ip-addresses": [m.ip], "juju-status": {"current": m.state}});
            if let Some(b) = base_json(&m.base) {
                v["base"] = b;
            }
            (m.id.clone(), v)
        })
        .collect();
    let mut apps = Map::new();
    for a in st.applications.values() {
        let s = app_status(st, &a.name);
        let units: Map<String, Value> = st
            .units
            .values()
            .filter(|u| u.app == a.name && u.principal.is_none())
            .map(|u| (u.name.clone(), unit_json(st, u)))
            .collect();
        let mut rels: Map<String, Value> = Map::new();
        let mut sub_to = Vec::new();
        for r in st.relations.values().filter(|r| !r.dying) {
            if let Some(l) = r.local(&a.name) {
                let remote = r.remote_app(&a.name).unwrap_or_default().to_string();
                if a.meta.subordinate && r.container && remote != a.name {
                    sub_to.push(json!(remote));
                }
                let e = rels.entry(l.spec.name.clone()).or_insert_with(|| json!([]));
                e.as_array_mut().unwrap().push(json!(remote));
            }
        }
        let mut v = json!({
            "charm": a.meta.name,
            "charm-rev": a.charm_revision,
            "version": a.workload_version,
            "application-status": {"current": s.status, "message": s.message, "since": s.since},
            "relations": rels,
        });
        if let Some(b) = base_json(&a.base) {
            v["base"] = b;
        }
        if a.meta.subordinate {
            v["subordinate-to"] = Value::Array(sub_to);
        } else {
            v["units"] = Value::Object(units);
            v["scale"] = json!(st.units.values().filter(|u| u.app == a.name).count());
        }
        apps.insert(a.name.clone(), v);
    }
    json!({
        "model": {"name": st.name, "uuid": st.uuid, "type": "iaas", "version": st.settings.juju_version,
                  "substrate": st.substrate},
        "machines": machines,
        "applications": apps,
        "relations": st.relations.values().map(|r| json!({"id": r.id, "endpoints": r.key(), "peer": r.is_peer(), "container": r.container, "dying": r.dying})).collect::<Vec<_>>(),
    })
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let w: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:width$}", s, width = w[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The model as a `juju status`-like table.
pub fn status_table(st: &ModelState) -> String {
    let mut out = table(&[
        vec![
            "Model".into(),
            "Controller".into(),
            "Cloud/Region".into(),
            "Version".into(),
        ],
        vec![
            st.name.clone(),
            "local-model".into(),
            format!("local/{:?}", st.substrate).to_lowercase(),
            st.settings.juju_version.clone(),
        ],
    ]);
    out.push('\n');
    let mut apps = vec![vec![
        "App".into(),
        "Version".into(),
        "Status".into(),
        "Scale".into(),
        "Charm".into(),
        "Rev".into(),
        "Message".into(),
    ]];
    for a in st.applications.values() {
        let s = app_status(st, &a.name);
        let scale = st.units.values().filter(|u| u.app == a.name).count();
        apps.push(vec![
            a.name.clone(),
            a.workload_version.clone(),
            s.status,
            scale.to_string(),
            a.meta.name.clone(),
            a.charm_revision.to_string(),
            s.message,
        ]);
    }
    out.push_str(&table(&apps));
    out.push('\n');
    let mut units = vec![vec![
        "Unit".into(),
        "Workload".into(),
        "Agent".into(),
        "Machine".into(),
        "Public address".into(),
        "Ports".into(),
        "Message".into(),
    ]];
    let mut add = |u: &Unit, indent: &str| {
        let lead = if st.is_leader(&u.name) { "*" } else { "" };
        let (wl, msg) = match &u.error {
            Some(e) => (
                "error".to_string(),
                format!("hook failed: {:?}", e.hook.name),
            ),
            None => (u.workload.status.clone(), u.workload.message.clone()),
        };
        let ip = st
            .machines
            .get(&u.machine)
            .map(|m| m.ip.clone())
            .unwrap_or_default();
        let agent = if st
            .machines
            .get(&u.machine)
            .is_some_and(|m| m.state == "stopped")
        {
            "lost".to_string()
        } else {
            u.agent.clone()
        };
        units.push(vec![
            format!("{indent}{}{lead}", u.name),
            wl,
            agent,
            u.machine.clone(),
            ip,
            u.ports.iter().cloned().collect::<Vec<_>>().join(","),
            msg,
        ]);
    };
    let mut principals: Vec<&Unit> = st
        .units
        .values()
        .filter(|u| u.principal.is_none())
        .collect();
    principals.sort_by_key(|u| (u.app.clone(), crate::state::unit_number(&u.name)));
    for u in principals {
        add(u, "");
        for s in st
            .units
            .values()
            .filter(|s| s.principal.as_deref() == Some(&u.name))
        {
            add(s, "  ");
        }
    }
    out.push_str(&table(&units));
    out.push('\n');
    let mut ms = vec![vec![
        "Machine".into(),
        "State".into(),
        "Address".into(),
        "Inst id".into(),
    ]];
    for m in st.machines.values() {
        ms.push(vec![
            m.id.clone(),
            m.state.clone(),
            m.ip.clone(),
            m.hostname.clone(),
        ]);
    }
    out.push_str(&table(&ms));
    if !st.relations.is_empty() {
        out.push('\n');
        let mut rs = vec![vec![
            "Integration provider".into(),
            "Requirer".into(),
            "Type".into(),
        ]];
        // cmd/juju/status formatter.go formatRelation: each side by its role (a peer
        // endpoint is both), whichever order `integrate` was given; output_tabular.go
        // printRelations sorts by provider, then requirer
        let mut rows: Vec<Vec<String>> = Vec::new();
        for r in st.relations.values() {
            let side = |role: crate::charm::Role| {
                r.endpoints
                    .iter()
                    .find(|e| e.spec.role == role || e.spec.role == crate::charm::Role::Peer)
                    .map(|e| format!("{}:{}", e.app, e.spec.name))
                    .unwrap_or_default()
            };
            let kind = if r.container {
                "subordinate"
            } else if r.is_peer() {
                "peer"
            } else {
                "regular"
            };
            rows.push(vec![
                side(crate::charm::Role::Provider),
                side(crate::charm::Role::Requirer),
                if r.dying {
                    format!("{kind} (dying)")
                } else {
                    kind.into()
                },
            ]);
        }
        rows.sort();
        rs.extend(rows);
        out.push_str(&table(&rs));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ModelState, RelEndpoint, Relation, Settings, Substrate};

    #[test]
    fn relations_list_the_provider_then_the_requirer_whatever_the_order_given() {
        let meta = |m: &str| crate::charm::parse_meta(m, None, None).unwrap();
        let db = meta("name: db\nprovides: {database: {interface: pg}}\n");
        let app = meta("name: app\nrequires: {db: {interface: pg}}\n");
        let mut st = ModelState::new(Substrate::Bare, Settings::default());
        // as `lm integrate app db` records it: the requirer first
        st.relations.insert(
            0,
            Relation {
                id: 0,
                endpoints: vec![
                    RelEndpoint {
                        app: "app".into(),
                        spec: app.endpoint("db").unwrap(),
                    },
                    RelEndpoint {
                        app: "db".into(),
                        spec: db.endpoint("database").unwrap(),
                    },
                ],
                container: false,
                dying: false,
                unit_bags: Default::default(),
                app_bags: Default::default(),
                in_scope: Default::default(),
            },
        );
        // and one given provider first, whose provider sorts first
        let mut second = st.relations[&0].clone();
        second.id = 1;
        second.endpoints.reverse();
        second.endpoints[0].app = "alpha".into();
        st.relations.insert(1, second);
        let out = status_table(&st);
        let rows: Vec<Vec<&str>> = out
            .lines()
            .skip_while(|l| !l.starts_with("Integration provider"))
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                ["alpha:database", "app:db", "regular"],
                ["db:database", "app:db", "regular"]
            ],
            "{out}"
        );
    }
}
