//! Model operations behind the CLI: deploy, add/remove units, integrate, config, actions,
//! resolve, refresh. They change the model state (and create machines and unpack charms);
//! the resolver turns those changes into hooks.

use crate::charm::{coerce_option, read_charm, unpack, EndpointSpec, Role};
use crate::engine::Runtime;
use crate::protocol::{AppPlan, DeployPlan};
use crate::state::{
    app_of, unit_number, ActionRun, Application, Life, Machine, RelEndpoint, Relation, Status,
    Unit, UniterView,
};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where a new unit goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    NewMachine,
    Machine(String),
    WithUnit(String),
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Deploy a plan (one charm or a bundle). Validates everything before changing anything.
pub fn deploy(rt: &mut Runtime, plan: &DeployPlan) -> Result<Vec<String>> {
    let mut metas = BTreeMap::new();
    let mut bases = BTreeMap::new();
    for app in &plan.apps {
        if rt.state.applications.contains_key(&app.name) {
            bail!(
                "cannot add application {:?}: application already exists",
                app.name
            );
        }
        let meta = read_charm(&app.charm)?;
        // the charm's manifest must support the base asked for: a bundle's local charm is read
        // at its path with the application's or the bundle's base (bundlehandler.go
        // addLocalCharm: "cannot deploy local charm at %q"), a charm deployed alone with
        // --base (deployer.go maybeReadLocalCharm returns the error as it is)
        let base = crate::charm::select_base(&meta, app.base.as_deref()).map_err(|e| {
            if plan.bundle {
                anyhow!(
                    "cannot deploy local charm at {:?}: {e}",
                    app.charm.display().to_string()
                )
            } else {
                e
            }
        })?;
        // placed on a machine the model has, or with a unit it has: that machine's base must
        // be this one (add_unit), checked before anything is created
        for t in app.to.iter().filter(|_| !plan.bundle) {
            let m = match t.split_once('/') {
                Some(_) => rt.state.units.get(t).map(|u| u.machine.clone()),
                None => Some(t.clone()),
            };
            if let Some(m) = m.and_then(|m| rt.state.machines.get(&m)) {
                if !m.base.is_empty() && m.base != base {
                    bail!(
                        "cannot assign unit \"{}/0\" to machine {}: base does not match: unit has {base:?}, machine has {:?}",
                        app.name,
                        m.id,
                        m.base
                    );
                }
            }
        }
        bases.insert(app.name.clone(), base);
        if meta.subordinate && (app.num_units > 0 || !app.to.is_empty()) {
            bail!(
                "application {:?} is subordinate: it cannot have units or placement",
                app.name
            );
        }
        for (k, v) in &app.options {
            let opt = meta
                .options
                .get(k)
                .ok_or_else(|| anyhow!("application {:?}: unknown option {k:?}", app.name))?;
            coerce_option(opt, v)
                .with_context(|| format!("application {:?}: option {k:?}", app.name))?;
        }
        for (r, p) in &app.resources {
            if !meta.resources.contains(r) {
                bail!("application {:?}: charm has no resource {r:?}", app.name);
            }
            if !p.is_file() {
                bail!(
                    "application {:?}: resource {r:?}: file {} does not exist",
                    app.name,
                    p.display()
                );
            }
        }
        metas.insert(app.name.clone(), meta);
    }
    for app in &plan.apps {
        let meta = metas.remove(&app.name).unwrap();
        let copy = rt.layout.charms().join(format!("{}.charm", app.name));
        copy_file(&app.charm, &copy)?;
        let mut resources = BTreeMap::new();
        for (r, p) in &app.resources {
            let dst = rt
                .layout
                .resources()
                .join(&app.name)
                .join(r)
                .join(p.file_name().unwrap_or_default());
            copy_file(p, &dst)?;
            resources.insert(r.clone(), dst);
        }
        let mut config = BTreeMap::new();
        for (k, v) in &app.options {
            config.insert(k.clone(), coerce_option(&meta.options[k], v)?);
        }
        let peers: Vec<EndpointSpec> = meta.peers().cloned().collect();
        rt.state.applications.insert(
            app.name.clone(),
            Application {
                name: app.name.clone(),
                charm_path: copy,
                meta,
                config,
                leader: None,
                leader_term: 0,
                leader_settings: BTreeMap::new(),
                leader_settings_version: 1,
                status: None,
                workload_version: String::new(),
                next_unit: 0,
                resources,
                charm_revision: 0,
                force_units: false,
                base: bases.remove(&app.name).unwrap_or_default(),
            },
        );
        for p in peers {
            let id = rt.state.next_relation;
            rt.state.next_relation += 1;
            rt.state.relations.insert(
                id,
                Relation {
                    id,
                    endpoints: vec![RelEndpoint {
                        app: app.name.clone(),
                        spec: p,
                    }],
                    container: false,
                    dying: false,
                    unit_bags: BTreeMap::new(),
                    app_bags: BTreeMap::new(),
                    in_scope: BTreeSet::new(),
                },
            );
        }
    }
    // units, in an order where `to: other/N` targets exist first
    let mut machine_map: BTreeMap<String, String> = BTreeMap::new();
    let mut added = Vec::new();
    let mut todo: Vec<&AppPlan> = plan.apps.iter().collect();
    while !todo.is_empty() {
        let before = todo.len();
        let mut rest = Vec::new();
        for app in todo {
            let ready = app
                .to
                .iter()
                .all(|t| !t.contains('/') || rt.state.units.contains_key(t));
            if !ready {
                rest.push(app);
                continue;
            }
            for i in 0..app.num_units as usize {
                let placement = match app.to.get(i).or(if app.to.len() == 1 && !plan.bundle {
                    app.to.first()
                } else {
                    None
                }) {
                    None => Placement::NewMachine,
                    Some(t) => parse_placement(rt, t, plan.bundle, &mut machine_map)?,
                };
                added.push(add_unit(rt, &app.name, placement)?);
            }
        }
        if rest.len() == before {
            bail!(
                "placements refer to units that will never exist: {:?}",
                rest.iter().map(|a| &a.name).collect::<Vec<_>>()
            );
        }
        todo = rest;
    }
    for (a, b) in &plan.relations {
        integrate(rt, a, b)?;
    }
    Ok(added)
}

fn parse_placement(
    rt: &mut Runtime,
    t: &str,
    bundle: bool,
    machine_map: &mut BTreeMap<String, String>,
) -> Result<Placement> {
    if t == "new" || t.contains(':') {
        // lxd:N / kvm:N: a container is a machine of its own here
        return Ok(Placement::NewMachine);
    }
    if t.contains('/') {
        return Ok(Placement::WithUnit(t.to_string()));
    }
    if bundle {
        if let Some(m) = machine_map.get(t) {
            return Ok(Placement::Machine(m.clone()));
        }
        let m = new_machine(rt)?;
        machine_map.insert(t.to_string(), m.clone());
        return Ok(Placement::Machine(m));
    }
    if !rt.state.machines.contains_key(t) {
        bail!("machine {t} not found");
    }
    Ok(Placement::Machine(t.to_string()))
}

/// Create a machine (a host) and record it.
pub fn new_machine(rt: &mut Runtime) -> Result<String> {
    let id = rt.state.next_machine.to_string();
    let info = rt
        .machines
        .add(&id)
        .with_context(|| format!("creating machine {id}"))?;
    rt.state.next_machine += 1;
    rt.state.machines.insert(
        id.clone(),
        Machine {
            id: id.clone(),
            hostname: info.hostname,
            ip: info.ip,
            cidr: info.cidr,
            state: "started".into(),
            down_since_ms: None,
            base: String::new(),
        },
    );
    crate::juju_exec::install_wrappers_logged(rt, &id);
    Ok(id)
}

pub(crate) fn install_unit_files(rt: &Runtime, unit: &Unit) -> Result<()> {
    let app = &rt.state.applications[&unit.app];
    let charm_dir = rt.machines.host_path(&unit.machine, &unit.charm_dir());
    unpack(&app.charm_path, &charm_dir)
        .with_context(|| format!("unpacking the charm for {}", unit.name))?;
    for (name, path) in &app.resources {
        let dst = rt.machines.host_path(
            &unit.machine,
            &format!(
                "{}/resources/{}/{}",
                unit.agent_dir(),
                name,
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
        );
        copy_file(path, &dst)?;
    }
    Ok(())
}

fn make_unit(
    rt: &mut Runtime,
    app: &str,
    machine: String,
    principal: Option<String>,
) -> Result<String> {
    let a = rt
        .state
        .applications
        .get_mut(app)
        .ok_or_else(|| anyhow!("application {app:?} not found"))?;
    let name = format!("{app}/{}", a.next_unit);
    a.next_unit += 1;
    // a new unit installs the application's current charm (operation/deploy.go, kind
    // Install: the charm URL is the unit's from then on), so it has no upgrade-charm to run
    let view = UniterView {
        charm_revision_seen: a.charm_revision,
        charm_deployed: a.charm_revision,
        ..UniterView::default()
    };
    let unit = Unit {
        name: name.clone(),
        app: app.to_string(),
        machine,
        principal,
        life: Life::Alive,
        workload: Status::new("waiting", "agent initialising"),
        agent: "allocating".into(),
        agent_message: String::new(),
        ports: BTreeSet::new(),
        charm_state: BTreeMap::new(),
        view,
        error: None,
        pending_actions: vec![],
        pending_secret_changed: BTreeSet::new(),
        pending_secret_remove: BTreeSet::new(),
        status_ever_set: false,
        hooks_run: 0,
        hook_log: vec![],
        meter_status_seen: String::new(),
        failures: vec![],
    };
    install_unit_files(rt, &unit)?;
    rt.state.units.insert(name.clone(), unit);
    rt.state.ensure_leader(app);
    Ok(name)
}

/// Add a unit of a principal application, and its subordinates.
pub fn add_unit(rt: &mut Runtime, app: &str, placement: Placement) -> Result<String> {
    let a = rt
        .state
        .applications
        .get(app)
        .ok_or_else(|| anyhow!("application {app:?} not found"))?;
    if a.meta.subordinate {
        bail!("cannot add unit to application {app:?}: application is subordinate");
    }
    let machine = match placement {
        Placement::NewMachine => new_machine(rt)?,
        Placement::Machine(m) => {
            if !rt.state.machines.contains_key(&m) {
                bail!("machine {m} not found");
            }
            m
        }
        Placement::WithUnit(u) => rt
            .state
            .units
            .get(&u)
            .map(|u| u.machine.clone())
            .ok_or_else(|| anyhow!("unit {u:?} not found"))?,
    };
    // a machine hosts units of one base: the first unit's (a new machine is provisioned
    // with its application's base); another base is refused as state/unit.go
    // validateUnitMachineAssignment does, under assignToMachine's annotation
    let a = &rt.state.applications[app];
    let (base, unit_name) = (a.base.clone(), format!("{app}/{}", a.next_unit));
    let m = rt
        .state
        .machines
        .get_mut(&machine)
        .ok_or_else(|| anyhow!("machine {machine} not found"))?;
    if m.base.is_empty() {
        m.base = base;
    } else if !base.is_empty() && m.base != base {
        bail!(
            "cannot assign unit {unit_name:?} to machine {machine}: base does not match: unit has {base:?}, machine has {:?}",
            m.base
        );
    }
    let name = make_unit(rt, app, machine, None)?;
    ensure_subordinates(rt)?;
    Ok(name)
}

/// Every alive principal unit in the scope of a container relation with a subordinate app
/// gets one unit of it. Juju creates the subordinate when the principal enters the scope
/// (state/relationunit.go RelationUnit.EnterScope, subordinateOps: addUnitOps for the
/// related application when the principal has none), which its uniter does after install
/// (SynchronizeScopes), not when the relation is added. The engine calls this after each
/// hook and after implicit scopes move.
pub(crate) fn ensure_subordinates(rt: &mut Runtime) -> Result<()> {
    let mut wanted = Vec::new();
    for r in rt
        .state
        .relations
        .values()
        .filter(|r| r.container && !r.dying && r.endpoints.len() == 2)
    {
        for (i, e) in r.endpoints.iter().enumerate() {
            let other = &r.endpoints[1 - i];
            let sub = rt
                .state
                .applications
                .get(&e.app)
                .is_some_and(|a| a.meta.subordinate);
            let other_sub = rt
                .state
                .applications
                .get(&other.app)
                .is_some_and(|a| a.meta.subordinate);
            // Only a principal entering the scope creates a unit (subordinateOps returns no
            // ops unless RelationUnit.isPrincipal): a relation between two subordinates adds
            // none, its units meet where both already are.
            if !sub || other_sub {
                continue;
            }
            for p in rt.state.units.values().filter(|u| {
                u.app == other.app
                    && u.life == Life::Alive
                    && u.principal.is_none()
                    && r.in_scope.contains(&u.name)
            }) {
                let has = rt
                    .state
                    .units
                    .values()
                    .any(|s| s.app == e.app && s.principal.as_deref() == Some(&p.name));
                if !has {
                    wanted.push((e.app.clone(), p.name.clone(), p.machine.clone()));
                }
            }
        }
    }
    wanted.dedup();
    for (sub, principal, machine) in wanted {
        make_unit(rt, &sub, machine, Some(principal))?;
    }
    Ok(())
}

/// Start removing units (their subordinates go too); leadership moves if needed.
pub fn remove_units(rt: &mut Runtime, units: &[String]) -> Result<()> {
    for u in units {
        let unit = rt
            .state
            .units
            .get(u)
            .ok_or_else(|| anyhow!("unit {u:?} not found"))?;
        if unit.principal.is_some() {
            bail!("unit {u:?} is a subordinate, remove the relation or its principal instead");
        }
    }
    for u in units {
        let mut dying = vec![u.clone()];
        dying.extend(
            rt.state
                .units
                .values()
                .filter(|s| s.principal.as_deref() == Some(u))
                .map(|s| s.name.clone()),
        );
        for d in dying {
            if let Some(x) = rt.state.units.get_mut(&d) {
                x.life = Life::Dying;
            }
            rt.state.ensure_leader(app_of(&d));
        }
    }
    Ok(())
}

fn split_ep(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((a, e)) => (a, Some(e)),
        None => (s, None),
    }
}

/// Resolve `a[:ep] b[:ep]` to two endpoints, inferring them when unambiguous (implicit
/// juju-info only when nothing else fits, as Juju does).
pub fn resolve_endpoints(rt: &Runtime, a: &str, b: &str) -> Result<(RelEndpoint, RelEndpoint)> {
    let (aa, ae) = split_ep(a);
    let (ba, be) = split_ep(b);
    if aa == ba {
        bail!("cannot relate application {aa:?} to itself");
    }
    let ma = &rt
        .state
        .applications
        .get(aa)
        .ok_or_else(|| anyhow!("application {aa:?} not found"))?
        .meta;
    let mb = &rt
        .state
        .applications
        .get(ba)
        .ok_or_else(|| anyhow!("application {ba:?} not found"))?
        .meta;
    let cands = |m: &crate::charm::CharmMeta, e: Option<&str>| -> Vec<EndpointSpec> {
        m.all_endpoints()
            .into_iter()
            .filter(|x| x.role != Role::Peer && e.is_none_or(|e| x.name == e))
            .collect()
    };
    let (ca, cb) = (cands(ma, ae), cands(mb, be));
    if let Some(e) = ae.filter(|_| ca.is_empty()) {
        bail!("application {aa:?} has no {e:?} relation");
    }
    if let Some(e) = be.filter(|_| cb.is_empty()) {
        bail!("application {ba:?} has no {e:?} relation");
    }
    let mut pairs = Vec::new();
    for x in &ca {
        for y in &cb {
            let roles_ok = matches!(
                (x.role, y.role),
                (Role::Provider, Role::Requirer) | (Role::Requirer, Role::Provider)
            );
            if roles_ok && x.interface == y.interface {
                pairs.push((x.clone(), y.clone()));
            }
        }
    }
    if pairs.len() > 1 {
        let explicit: Vec<_> = pairs
            .iter()
            .filter(|(x, y)| x.name != "juju-info" && y.name != "juju-info")
            .cloned()
            .collect();
        if !explicit.is_empty() {
            pairs = explicit;
        }
    }
    match pairs.len() {
        0 => bail!("no relations found between {a:?} and {b:?}"),
        1 => {
            let (x, y) = pairs.remove(0);
            Ok((
                RelEndpoint {
                    app: aa.into(),
                    spec: x,
                },
                RelEndpoint {
                    app: ba.into(),
                    spec: y,
                },
            ))
        }
        _ => bail!(
            "ambiguous relation: {a:?} {b:?} could refer to {}",
            pairs
                .iter()
                .map(|(x, y)| format!("\"{aa}:{} {ba}:{}\"", x.name, y.name))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// `juju integrate a b`.
pub fn integrate(rt: &mut Runtime, a: &str, b: &str) -> Result<u32> {
    let (ea, eb) = resolve_endpoints(rt, a, b)?;
    let exists = rt.state.relations.values().any(|r| {
        !r.dying && r.endpoints.len() == 2 && r.endpoints.contains(&ea) && r.endpoints.contains(&eb)
    });
    if exists {
        bail!(
            "relation {}:{} {}:{} already exists",
            ea.app,
            ea.spec.name,
            eb.app,
            eb.spec.name
        );
    }
    let container = ea.spec.container || eb.spec.container;
    // a subordinate's units share its principals' machines: the two charms' manifests must
    // have a base in common (state/state.go AddRelation, compatibleSupportedBases)
    if container {
        let bases = |app: &str| rt.state.applications[app].meta.bases.clone();
        let (ba, bb) = (bases(&ea.app), bases(&eb.app));
        if !ba.is_empty() && !bb.is_empty() && !ba.iter().any(|b| bb.contains(b)) {
            // the relation key: the endpoints, requirer first (state relationKey)
            let mut eps = [&ea, &eb];
            eps.sort_by_key(|e| e.spec.role != Role::Requirer);
            bail!(
                "cannot add relation \"{}:{} {}:{}\": principal and subordinate applications' bases must match",
                eps[0].app,
                eps[0].spec.name,
                eps[1].app,
                eps[1].spec.name
            );
        }
    }
    let id = rt.state.next_relation;
    rt.state.next_relation += 1;
    rt.state.relations.insert(
        id,
        Relation {
            id,
            endpoints: vec![ea, eb],
            container,
            dying: false,
            unit_bags: BTreeMap::new(),
            app_bags: BTreeMap::new(),
            in_scope: BTreeSet::new(),
        },
    );
    ensure_subordinates(rt)?;
    Ok(id)
}

/// `juju remove-relation a b`: the relation dies; subordinates that were only there
/// because of it die too.
pub fn remove_relation(rt: &mut Runtime, a: &str, b: &str) -> Result<()> {
    let (ea, eb) = resolve_endpoints(rt, a, b).or_else(|e| {
        // explicit endpoints that were inferred differently: match by app names
        let (aa, ba) = (split_ep(a).0, split_ep(b).0);
        rt.state
            .relations
            .values()
            .find(|r| {
                !r.dying && r.endpoints.len() == 2 && r.local(aa).is_some() && r.local(ba).is_some()
            })
            .map(|r| (r.local(aa).unwrap().clone(), r.local(ba).unwrap().clone()))
            .ok_or(e)
    })?;
    let rel = rt
        .state
        .relations
        .values_mut()
        .find(|r| !r.dying && r.endpoints.contains(&ea) && r.endpoints.contains(&eb))
        .ok_or_else(|| {
            anyhow!(
                "relation \"{}:{} {}:{}\" not found",
                ea.app,
                ea.spec.name,
                eb.app,
                eb.spec.name
            )
        })?;
    rel.dying = true;
    let sub = |app: &str| rt.state.applications[app].meta.subordinate;
    // Between two subordinates no unit goes with the relation: none was created for it (see
    // ensure_subordinates).
    if rel.container && !(sub(&ea.app) && sub(&eb.app)) {
        let (pa, sa) = if rt.state.applications[&ea.app].meta.subordinate {
            (eb.app.clone(), ea.app.clone())
        } else {
            (ea.app.clone(), eb.app.clone())
        };
        let still = |st: &crate::state::ModelState| {
            st.relations.values().any(|r| {
                !r.dying && r.container && r.local(&pa).is_some() && r.local(&sa).is_some()
            })
        };
        if !still(&rt.state) {
            let subs: Vec<String> = rt
                .state
                .units
                .values()
                .filter(|u| u.app == sa && u.principal.as_deref().is_some_and(|p| app_of(p) == pa))
                .map(|u| u.name.clone())
                .collect();
            for s in subs {
                rt.state.units.get_mut(&s).unwrap().life = Life::Dying;
            }
            rt.state.ensure_leader(&sa);
        }
    }
    Ok(())
}

/// `juju config app [k=v ...] [--reset k]`; returns the effective config.
pub fn config(
    rt: &mut Runtime,
    app: &str,
    set: &[String],
    reset: &[String],
) -> Result<BTreeMap<String, Value>> {
    let a = rt
        .state
        .applications
        .get_mut(app)
        .ok_or_else(|| anyhow!("application {app:?} not found"))?;
    let mut changes = Vec::new();
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("expected key=value, got {kv:?}"))?;
        let opt = a
            .meta
            .options
            .get(k)
            .ok_or_else(|| anyhow!("unknown option {k:?}"))?;
        changes.push((
            k.to_string(),
            coerce_option(opt, &Value::String(v.to_string()))
                .with_context(|| format!("option {k:?}"))?,
        ));
    }
    for k in reset {
        if !a.meta.options.contains_key(k) {
            bail!("unknown option {k:?}");
        }
    }
    for (k, v) in changes {
        a.config.insert(k, v);
    }
    for k in reset {
        a.config.remove(k);
    }
    Ok(a.effective_config())
}

/// Resolve `app/leader` to the leader unit.
pub fn resolve_unit(rt: &Runtime, unit: &str) -> Result<String> {
    if let Some(app) = unit.strip_suffix("/leader") {
        return rt
            .state
            .applications
            .get(app)
            .and_then(|a| a.leader.clone())
            .ok_or_else(|| anyhow!("application {app:?} has no leader"));
    }
    if !rt.state.units.contains_key(unit) {
        bail!("unit {unit:?} not found");
    }
    Ok(unit.to_string())
}

/// Queue an action; returns its id. Params are `k=v` with YAML values (as `juju run`).
pub fn run_action(rt: &mut Runtime, unit: &str, action: &str, params: &[String]) -> Result<u32> {
    let unit = resolve_unit(rt, unit)?;
    let app = &rt.state.applications[app_of(&unit)];
    let defaults = app
        .meta
        .actions
        .get(action)
        .ok_or_else(|| anyhow!("action {action:?} not defined on unit {unit:?}"))?;
    let mut p = defaults.clone();
    for kv in params {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("expected key=value, got {kv:?}"))?;
        let val: Value = serde_yaml::from_str(v).unwrap_or(Value::String(v.to_string()));
        // dotted keys nest, as in `juju run`
        let parts: Vec<&str> = k.split('.').collect();
        let mut m = &mut p;
        for part in &parts[..parts.len() - 1] {
            let e = m
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if !e.is_object() {
                *e = Value::Object(Default::default());
            }
            m = e.as_object_mut().unwrap();
        }
        m.insert(parts[parts.len() - 1].to_string(), val);
    }
    let id = rt.state.next_action;
    rt.state.next_action += 1;
    rt.state.actions.insert(
        id,
        ActionRun {
            id,
            unit: unit.clone(),
            name: action.into(),
            params: p,
            status: "pending".into(),
            message: String::new(),
            results: Default::default(),
            log: vec![],
        },
    );
    rt.state
        .units
        .get_mut(&unit)
        .unwrap()
        .pending_actions
        .push(id);
    Ok(id)
}

/// `juju resolved [--no-retry]`.
pub fn resolve(rt: &mut Runtime, unit: &str, no_retry: bool) -> Result<()> {
    let unit = resolve_unit(rt, unit)?;
    let u = rt.state.units.get_mut(&unit).unwrap();
    let Some(err) = u.error.as_mut() else {
        bail!("unit {unit:?} is not in an error state")
    };
    if no_retry {
        let h = err.hook.clone();
        u.error = None;
        u.agent = "idle".into();
        u.agent_message.clear();
        crate::resolver::commit(&mut rt.state, &unit, &h, crate::state::now_ms());
        crate::engine::remove_empty_machines(rt);
    } else {
        err.retry_at_ms = Some(0);
        err.attempts = 0;
    }
    Ok(())
}

/// `juju refresh --path [--force-units]`: the application's charm changes; each unit's
/// charm dir keeps its old charm until its uniter runs the upgrade operation (engine.rs
/// deploy_charm), which it does only when not in hook error (worker/uniter/resolver.go
/// uniterResolver nextOp: charmModified -> newUpgradeOperation), or at once with
/// `force_units` (nextOpHookError: ForceCharmUpgrade && charmModified). So a unit in error
/// retries its failed hook with the old charm's code unless the refresh was forced.
pub fn refresh(rt: &mut Runtime, app: &str, path: Option<&Path>, force_units: bool) -> Result<()> {
    let a = rt
        .state
        .applications
        .get(app)
        .ok_or_else(|| anyhow!("application {app:?} not found"))?;
    let src = path
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| a.charm_path.clone());
    let meta = read_charm(&src)?;
    if meta.name != a.meta.name {
        bail!(
            "cannot refresh {app:?}: charm name {:?} differs from {:?}",
            meta.name,
            a.meta.name
        );
    }
    if src != a.charm_path {
        copy_file(&src, &a.charm_path)?;
    }
    let a = rt.state.applications.get_mut(app).unwrap();
    a.meta = meta;
    a.charm_revision += 1;
    // state/application.go SetCharm records ForceUnits with the new charm URL: the flag
    // belongs to this refresh, a later one without it clears it
    a.force_units = force_units;
    Ok(())
}

/// Sort unit names numerically within an app.
pub fn sort_units(v: &mut [String]) {
    v.sort_by_key(|u| (app_of(u).to_string(), unit_number(u)));
}
