//! Layer 2: the event that started this process, parsed once from the JUJU_* environment.
//!
//! The hook is derived from `JUJU_DISPATCH_PATH` plus `JUJU_RELATION` / `JUJU_STORAGE_ID` /
//! `JUJU_SECRET_ID`, never by splitting the hook name on `-` (endpoint names contain dashes).

use crate::tools::RelationId;
use std::collections::BTreeMap;
use std::fmt;

/// What a relation hook is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationPhase {
    /// `-relation-created`
    Created,
    /// `-relation-joined`
    Joined,
    /// `-relation-changed`
    Changed,
    /// `-relation-departed`
    Departed,
    /// `-relation-broken`
    Broken,
}

impl RelationPhase {
    const ALL: [RelationPhase; 5] = [
        RelationPhase::Created,
        RelationPhase::Joined,
        RelationPhase::Changed,
        RelationPhase::Departed,
        RelationPhase::Broken,
    ];

    /// The hook-name suffix, e.g. `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationPhase::Created => "created",
            RelationPhase::Joined => "joined",
            RelationPhase::Changed => "changed",
            RelationPhase::Departed => "departed",
            RelationPhase::Broken => "broken",
        }
    }
}

/// What a secret hook is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPhase {
    /// `secret-changed` (consumers: a new revision exists)
    Changed,
    /// `secret-rotate` (owner: time to rotate)
    Rotate,
    /// `secret-remove` (owner: a revision is unused)
    Remove,
    /// `secret-expired` (owner: a revision expired)
    Expired,
}

impl SecretPhase {
    /// The hook name, e.g. `secret-changed`.
    pub fn hook_name(self) -> &'static str {
        match self {
            SecretPhase::Changed => "secret-changed",
            SecretPhase::Rotate => "secret-rotate",
            SecretPhase::Remove => "secret-remove",
            SecretPhase::Expired => "secret-expired",
        }
    }
}

/// The relation a relation hook fired for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationEvent {
    /// Which relation hook.
    pub phase: RelationPhase,
    /// The relation, e.g. `db:7`.
    pub relation: RelationId,
    /// The application at the other end: `JUJU_REMOTE_APP`; where Juju left that empty (3.4
    /// does in some relation hooks), the remote unit's application, else what
    /// `relation-list --app` says ([`crate::dispatch::run`] asks); empty only if that is empty
    /// too.
    pub remote_app: String,
    /// The remote unit this hook is about; `None` for created, broken, and app-data changes.
    pub remote_unit: Option<String>,
    /// In `-departed`, the unit leaving (possibly this unit itself).
    pub departing_unit: Option<String>,
}

/// The secret a secret hook fired for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEvent {
    /// Which secret hook.
    pub phase: SecretPhase,
    /// `secret:<xid>`.
    pub id: String,
    /// The label this unit gave it, if any.
    pub label: Option<String>,
    /// The revision concerned (remove and expired only).
    pub revision: Option<u32>,
}

/// The storage a storage hook fired for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageEvent {
    /// `true` for `-storage-attached`, `false` for `-storage-detaching`.
    pub attached: bool,
    /// Storage id, e.g. `data/0`.
    pub id: String,
    /// Storage name, e.g. `data`.
    pub name: String,
    /// Where it is mounted or attached, if Juju said.
    pub location: Option<String>,
}

/// Which hook or action this process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `install`
    Install,
    /// `start`
    Start,
    /// `stop`
    Stop,
    /// `remove`
    Remove,
    /// `config-changed`
    ConfigChanged,
    /// `upgrade-charm`
    UpgradeCharm,
    /// `update-status`
    UpdateStatus,
    /// `leader-elected`
    LeaderElected,
    /// `leader-settings-changed`
    LeaderSettingsChanged,
    /// `pre-series-upgrade` (Juju ≤ 3.6)
    PreSeriesUpgrade,
    /// `post-series-upgrade` (Juju ≤ 3.6)
    PostSeriesUpgrade,
    /// `<endpoint>-relation-<phase>`
    Relation(RelationEvent),
    /// `secret-<phase>`
    Secret(SecretEvent),
    /// `<name>-storage-attached|detaching`
    Storage(StorageEvent),
    /// `actions/<name>`
    Action {
        /// The action's name.
        name: String,
        /// Its id (`JUJU_ACTION_UUID`).
        id: String,
    },
}

/// The event, with the identity of the unit it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// This unit, e.g. `maas-region/0`.
    pub unit: String,
    /// This unit's application, e.g. `maas-region`.
    pub app: String,
    /// The model's name, if Juju set it.
    pub model_name: Option<String>,
    /// The model's UUID (`JUJU_MODEL_UUID`), if Juju set it: the topology labels of metrics
    /// and alert rules carry it ([`crate::cos_agent`]).
    pub model_uuid: Option<String>,
    /// The Juju agent version, if set.
    pub juju_version: Option<String>,
    /// For a subordinate, its principal unit.
    pub principal_unit: Option<String>,
    /// The machine id, if set.
    pub machine_id: Option<String>,
    /// The charm's directory as Juju set it (`JUJU_CHARM_DIR`, `CHARM_DIR` in older agents),
    /// if absolute; [`Event::charm_dir`] has the machine layout's default.
    pub juju_charm_dir: Option<String>,
}

/// Why the environment does not describe a hook or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// The variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for EnvError {}

fn err(var: &'static str, problem: impl Into<String>) -> EnvError {
    EnvError {
        var,
        problem: problem.into(),
    }
}

impl Event {
    /// Parses the process environment.
    pub fn from_process_env() -> Result<Event, EnvError> {
        Event::from_env(&std::env::vars().collect())
    }

    /// Parses an environment given as a map (what [`Event::to_env`] produces, or the process's).
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Event, EnvError> {
        let get = |k: &str| env.get(k).map(|v| v.as_str()).filter(|v| !v.is_empty());
        let unit = get("JUJU_UNIT_NAME").ok_or_else(|| err("JUJU_UNIT_NAME", "not set"))?;
        let (app, num) = unit
            .split_once('/')
            .ok_or_else(|| err("JUJU_UNIT_NAME", format!("{unit:?} is not <app>/<number>")))?;
        if app.is_empty() || num.parse::<u32>().is_err() {
            return Err(err(
                "JUJU_UNIT_NAME",
                format!("{unit:?} is not <app>/<number>"),
            ));
        }
        let path = get("JUJU_DISPATCH_PATH").ok_or_else(|| err("JUJU_DISPATCH_PATH", "not set"))?;
        let kind = match path.split_once('/') {
            Some(("hooks", name)) if !name.is_empty() => hook_kind(name, &get)?,
            Some(("actions", name)) if !name.is_empty() => {
                match get("JUJU_ACTION_NAME") {
                    Some(n) if n == name => {}
                    Some(n) => {
                        return Err(err(
                            "JUJU_ACTION_NAME",
                            format!("{n:?} does not match JUJU_DISPATCH_PATH {path:?}"),
                        ))
                    }
                    None => {
                        return Err(err(
                            "JUJU_ACTION_NAME",
                            format!("not set for action {name:?}"),
                        ))
                    }
                }
                let id = get("JUJU_ACTION_UUID").ok_or_else(|| {
                    err("JUJU_ACTION_UUID", format!("not set for action {name:?}"))
                })?;
                EventKind::Action {
                    name: name.to_string(),
                    id: id.to_string(),
                }
            }
            _ => {
                return Err(err(
                    "JUJU_DISPATCH_PATH",
                    format!("{path:?} is neither hooks/<name> nor actions/<name>"),
                ))
            }
        };
        Ok(Event {
            kind,
            unit: unit.to_string(),
            app: app.to_string(),
            model_name: get("JUJU_MODEL_NAME").map(String::from),
            model_uuid: get("JUJU_MODEL_UUID").map(String::from),
            juju_version: get("JUJU_VERSION").map(String::from),
            principal_unit: get("JUJU_PRINCIPAL_UNIT").map(String::from),
            machine_id: get("JUJU_MACHINE_ID").map(String::from),
            juju_charm_dir: ["JUJU_CHARM_DIR", "CHARM_DIR"]
                .into_iter()
                .filter_map(get)
                .find(|d| d.starts_with('/'))
                .map(String::from),
        })
    }

    /// The charm's directory, where `dispatch` is: as Juju set it, else where machine agents
    /// put it (`/var/lib/juju/agents/unit-<app>-<n>/charm`). Background processes (a
    /// service, a notify script) need it to ask for a hook through `juju-exec`.
    pub fn charm_dir(&self) -> String {
        self.juju_charm_dir.clone().unwrap_or_else(|| {
            format!(
                "/var/lib/juju/agents/unit-{}/charm",
                self.unit.replace('/', "-")
            )
        })
    }

    /// The hook name as Juju spells it (`db-relation-changed`), or the action name.
    pub fn name(&self) -> String {
        match &self.kind {
            EventKind::Relation(r) => {
                format!("{}-relation-{}", r.relation.endpoint, r.phase.as_str())
            }
            EventKind::Secret(s) => s.phase.hook_name().to_string(),
            EventKind::Storage(s) => format!(
                "{}-storage-{}",
                s.name,
                if s.attached { "attached" } else { "detaching" }
            ),
            EventKind::Action { name, .. } => name.clone(),
            other => simple_hook_name(other)
                .expect("every other kind is a simple hook")
                .to_string(),
        }
    }

    /// `true` for actions.
    pub fn is_action(&self) -> bool {
        matches!(self.kind, EventKind::Action { .. })
    }

    /// The relation event, if this is one.
    pub fn relation(&self) -> Option<&RelationEvent> {
        match &self.kind {
            EventKind::Relation(r) => Some(r),
            _ => None,
        }
    }

    /// The environment Juju would set for this event (the JUJU_* variables that identify it).
    pub fn to_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_string(), v.to_string());
        };
        set("JUJU_UNIT_NAME", &self.unit);
        set(
            "JUJU_MODEL_NAME",
            self.model_name.as_deref().unwrap_or("test-model"),
        );
        if let Some(u) = &self.model_uuid {
            set("JUJU_MODEL_UUID", u);
        }
        set(
            "JUJU_VERSION",
            self.juju_version.as_deref().unwrap_or("3.6.14"),
        );
        if let Some(p) = &self.principal_unit {
            set("JUJU_PRINCIPAL_UNIT", p);
        }
        if let Some(m) = &self.machine_id {
            set("JUJU_MACHINE_ID", m);
        }
        if let Some(d) = &self.juju_charm_dir {
            set("JUJU_CHARM_DIR", d);
        }
        match &self.kind {
            EventKind::Action { name, id } => {
                set("JUJU_DISPATCH_PATH", &format!("actions/{name}"));
                set("JUJU_HOOK_NAME", "");
                set("JUJU_ACTION_NAME", name);
                set("JUJU_ACTION_UUID", id);
                set("JUJU_ACTION_TAG", &format!("action-{id}"));
            }
            kind => {
                let name = self.name();
                set("JUJU_DISPATCH_PATH", &format!("hooks/{name}"));
                set("JUJU_HOOK_NAME", &name);
                match kind {
                    EventKind::Relation(r) => {
                        set("JUJU_RELATION", &r.relation.endpoint);
                        set("JUJU_RELATION_ID", &r.relation.to_string());
                        set("JUJU_REMOTE_APP", &r.remote_app);
                        set("JUJU_REMOTE_UNIT", r.remote_unit.as_deref().unwrap_or(""));
                        if let Some(d) = &r.departing_unit {
                            set("JUJU_DEPARTING_UNIT", d);
                        }
                    }
                    EventKind::Secret(s) => {
                        set("JUJU_SECRET_ID", &s.id);
                        set("JUJU_SECRET_LABEL", s.label.as_deref().unwrap_or(""));
                        if let Some(r) = s.revision {
                            set("JUJU_SECRET_REVISION", &r.to_string());
                        }
                    }
                    EventKind::Storage(s) => {
                        set("JUJU_STORAGE_ID", &s.id);
                        if let Some(l) = &s.location {
                            set("JUJU_STORAGE_LOCATION", l);
                        }
                    }
                    _ => {}
                }
            }
        }
        env
    }
}

fn simple_hook_name(kind: &EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::Install => "install",
        EventKind::Start => "start",
        EventKind::Stop => "stop",
        EventKind::Remove => "remove",
        EventKind::ConfigChanged => "config-changed",
        EventKind::UpgradeCharm => "upgrade-charm",
        EventKind::UpdateStatus => "update-status",
        EventKind::LeaderElected => "leader-elected",
        EventKind::LeaderSettingsChanged => "leader-settings-changed",
        EventKind::PreSeriesUpgrade => "pre-series-upgrade",
        EventKind::PostSeriesUpgrade => "post-series-upgrade",
        _ => return None,
    })
}

fn hook_kind<'e>(name: &str, get: &dyn Fn(&str) -> Option<&'e str>) -> Result<EventKind, EnvError> {
    if let Some(hook_name) = get("JUJU_HOOK_NAME") {
        if hook_name != name {
            return Err(err(
                "JUJU_HOOK_NAME",
                format!("{hook_name:?} does not match JUJU_DISPATCH_PATH hooks/{name}"),
            ));
        }
    }
    if let Some(endpoint) = get("JUJU_RELATION") {
        return relation_kind(name, endpoint, get);
    }
    if name.contains("-relation-") {
        return Err(err(
            "JUJU_RELATION",
            format!("not set for relation hook {name:?}"),
        ));
    }
    if let Some(storage_id) = get("JUJU_STORAGE_ID") {
        let (storage, _) = storage_id.split_once('/').ok_or_else(|| {
            err(
                "JUJU_STORAGE_ID",
                format!("{storage_id:?} is not <name>/<n>"),
            )
        })?;
        let attached = match name
            .strip_prefix(storage)
            .and_then(|r| r.strip_prefix("-storage-"))
        {
            Some("attached") => true,
            Some("detaching") => false,
            _ => {
                return Err(err(
                    "JUJU_STORAGE_ID",
                    format!("{storage_id:?} does not match hook {name:?}"),
                ))
            }
        };
        return Ok(EventKind::Storage(StorageEvent {
            attached,
            id: storage_id.to_string(),
            name: storage.to_string(),
            location: get("JUJU_STORAGE_LOCATION").map(String::from),
        }));
    }
    let secret_phase = match name {
        "secret-changed" => Some(SecretPhase::Changed),
        "secret-rotate" => Some(SecretPhase::Rotate),
        "secret-remove" => Some(SecretPhase::Remove),
        "secret-expired" => Some(SecretPhase::Expired),
        _ => None,
    };
    if let Some(phase) = secret_phase {
        let id = get("JUJU_SECRET_ID")
            .ok_or_else(|| err("JUJU_SECRET_ID", format!("not set for {name}")))?;
        let revision = match get("JUJU_SECRET_REVISION") {
            Some(r) => Some(
                r.parse()
                    .map_err(|_| err("JUJU_SECRET_REVISION", format!("{r:?} is not a number")))?,
            ),
            None if matches!(phase, SecretPhase::Remove | SecretPhase::Expired) => {
                return Err(err("JUJU_SECRET_REVISION", format!("not set for {name}")))
            }
            None => None,
        };
        return Ok(EventKind::Secret(SecretEvent {
            phase,
            id: id.to_string(),
            label: get("JUJU_SECRET_LABEL").map(String::from),
            revision,
        }));
    }
    let simple = [
        EventKind::Install,
        EventKind::Start,
        EventKind::Stop,
        EventKind::Remove,
        EventKind::ConfigChanged,
        EventKind::UpgradeCharm,
        EventKind::UpdateStatus,
        EventKind::LeaderElected,
        EventKind::LeaderSettingsChanged,
        EventKind::PreSeriesUpgrade,
        EventKind::PostSeriesUpgrade,
    ];
    simple
        .into_iter()
        .find(|k| simple_hook_name(k) == Some(name))
        .ok_or_else(|| err("JUJU_DISPATCH_PATH", format!("unknown hook {name:?}")))
}

fn relation_kind<'e>(
    name: &str,
    endpoint: &str,
    get: &dyn Fn(&str) -> Option<&'e str>,
) -> Result<EventKind, EnvError> {
    let phase = name
        .strip_prefix(endpoint)
        .and_then(|rest| rest.strip_prefix("-relation-"))
        .and_then(|p| RelationPhase::ALL.into_iter().find(|ph| ph.as_str() == p))
        .ok_or_else(|| {
            err(
                "JUJU_RELATION",
                format!("endpoint {endpoint:?} does not match hook {name:?}"),
            )
        })?;
    let raw_id = get("JUJU_RELATION_ID")
        .ok_or_else(|| err("JUJU_RELATION_ID", format!("not set for {name}")))?;
    let relation: RelationId = match raw_id.parse::<RelationId>() {
        Ok(r) => r,
        // Juju always sends <endpoint>:<n>, but a bare number is unambiguous here.
        Err(_) => match raw_id.parse::<u32>() {
            Ok(n) => RelationId::new(endpoint, n),
            Err(_) => {
                return Err(err(
                    "JUJU_RELATION_ID",
                    format!("{raw_id:?} is not <endpoint>:<number>"),
                ))
            }
        },
    };
    if relation.endpoint != endpoint {
        return Err(err(
            "JUJU_RELATION_ID",
            format!("{raw_id:?} belongs to another endpoint than JUJU_RELATION {endpoint:?}"),
        ));
    }
    let remote_unit = get("JUJU_REMOTE_UNIT").map(String::from);
    // Juju 3.4 can leave JUJU_REMOTE_APP empty (relation-changed, -broken): then, as ops
    // (_main._get_event_args), the remote unit's application, else empty here and
    // `relation-list --app` once the tools are at hand (dispatch::run)
    let remote_app = match get("JUJU_REMOTE_APP") {
        Some(app) => {
            if let Some(u) = &remote_unit {
                if u.split_once('/').map(|(a, _)| a) != Some(app) {
                    return Err(err(
                        "JUJU_REMOTE_UNIT",
                        format!("{u:?} is not a unit of JUJU_REMOTE_APP {app:?}"),
                    ));
                }
            }
            app
        }
        None => match &remote_unit {
            Some(u) => match u.split_once('/') {
                Some((a, n)) if !a.is_empty() && n.parse::<u32>().is_ok() => a,
                _ => {
                    return Err(err(
                        "JUJU_REMOTE_UNIT",
                        format!("{u:?} is not <app>/<number>"),
                    ))
                }
            },
            None => "",
        },
    };
    if matches!(phase, RelationPhase::Joined | RelationPhase::Departed) && remote_unit.is_none() {
        return Err(err("JUJU_REMOTE_UNIT", format!("not set for {name}")));
    }
    let departing_unit = get("JUJU_DEPARTING_UNIT").map(String::from);
    if phase == RelationPhase::Departed && departing_unit.is_none() {
        return Err(err("JUJU_DEPARTING_UNIT", format!("not set for {name}")));
    }
    Ok(EventKind::Relation(RelationEvent {
        phase,
        relation,
        remote_app: remote_app.to_string(),
        remote_unit,
        departing_unit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [
            ("JUJU_UNIT_NAME", "maas-region/1"),
            ("JUJU_MODEL_NAME", "m"),
            ("JUJU_VERSION", "3.6.14"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    fn hook(name: &str) -> BTreeMap<String, String> {
        env(&[
            ("JUJU_DISPATCH_PATH", &format!("hooks/{name}")),
            ("JUJU_HOOK_NAME", name),
        ])
    }

    #[test]
    fn every_simple_hook() {
        for (name, kind) in [
            ("install", EventKind::Install),
            ("start", EventKind::Start),
            ("stop", EventKind::Stop),
            ("remove", EventKind::Remove),
            ("config-changed", EventKind::ConfigChanged),
            ("upgrade-charm", EventKind::UpgradeCharm),
            ("update-status", EventKind::UpdateStatus),
            ("leader-elected", EventKind::LeaderElected),
            ("leader-settings-changed", EventKind::LeaderSettingsChanged),
            ("pre-series-upgrade", EventKind::PreSeriesUpgrade),
            ("post-series-upgrade", EventKind::PostSeriesUpgrade),
        ] {
            let e = Event::from_env(&hook(name)).unwrap();
            assert_eq!(e.kind, kind, "{name}");
            assert_eq!(e.app, "maas-region");
            assert_eq!(e.name(), name);
            assert_eq!(
                Event::from_env(&e.to_env()).unwrap(),
                e,
                "round trip {name}"
            );
        }
    }

    #[test]
    fn the_charm_dir_comes_from_the_hook_environment() {
        let with = |pairs: &[(&str, &str)]| {
            let mut e = hook("update-status");
            for (k, v) in pairs {
                e.insert(k.to_string(), v.to_string());
            }
            Event::from_env(&e).unwrap()
        };
        let newer = with(&[("JUJU_CHARM_DIR", "/srv/c"), ("CHARM_DIR", "/old")]);
        assert_eq!(newer.charm_dir(), "/srv/c");
        assert_eq!(Event::from_env(&newer.to_env()).unwrap(), newer);
        assert_eq!(with(&[("CHARM_DIR", "/old")]).charm_dir(), "/old");
        assert_eq!(
            with(&[("JUJU_CHARM_DIR", "relative")]).charm_dir(),
            "/var/lib/juju/agents/unit-maas-region-1/charm"
        );
    }

    #[test]
    fn every_relation_phase_with_dashed_endpoint() {
        for phase in RelationPhase::ALL {
            let name = format!("database-peers-relation-{}", phase.as_str());
            let mut vars = vec![
                ("JUJU_RELATION", "database-peers"),
                ("JUJU_RELATION_ID", "database-peers:3"),
                ("JUJU_REMOTE_APP", "maas-region"),
                ("JUJU_REMOTE_UNIT", "maas-region/0"),
            ];
            if phase == RelationPhase::Departed {
                vars.push(("JUJU_DEPARTING_UNIT", "maas-region/0"));
            }
            let mut e = hook(&name);
            e.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let ev = Event::from_env(&e).unwrap();
            let r = ev.relation().unwrap();
            assert_eq!(r.phase, phase);
            assert_eq!(r.relation, RelationId::new("database-peers", 3));
            assert_eq!(r.remote_unit.as_deref(), Some("maas-region/0"));
            assert_eq!(ev.name(), name);
            assert_eq!(Event::from_env(&ev.to_env()).unwrap(), ev);
        }
    }

    #[test]
    fn empty_remote_unit_means_app_change_or_created() {
        let mut e = hook("db-relation-changed");
        e.extend(
            [
                ("JUJU_RELATION", "db"),
                ("JUJU_RELATION_ID", "db:1"),
                ("JUJU_REMOTE_APP", "pg"),
                ("JUJU_REMOTE_UNIT", ""),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(
            Event::from_env(&e).unwrap().relation().unwrap().remote_unit,
            None
        );
    }

    // Juju 3.4 can leave JUJU_REMOTE_APP empty; ops (_main._get_event_args) then takes the
    // remote unit's application, and the remote app stays to be asked for otherwise
    #[test]
    fn an_empty_remote_app_comes_from_the_remote_unit_or_stays_to_be_asked() {
        let with = |pairs: &[(&str, &str)]| {
            let mut e = hook("db-relation-changed");
            e.extend(
                [("JUJU_RELATION", "db"), ("JUJU_RELATION_ID", "db:1")]
                    .iter()
                    .chain(pairs)
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            Event::from_env(&e)
        };
        let ev = with(&[("JUJU_REMOTE_APP", ""), ("JUJU_REMOTE_UNIT", "pg/2")]).unwrap();
        assert_eq!(ev.relation().unwrap().remote_app, "pg");
        let ev = with(&[("JUJU_REMOTE_UNIT", "")]).unwrap();
        assert_eq!(ev.relation().unwrap().remote_app, "");
        assert_eq!(ev.relation().unwrap().remote_unit, None);
        let er = with(&[("JUJU_REMOTE_APP", ""), ("JUJU_REMOTE_UNIT", "pg")]).unwrap_err();
        assert_eq!(er.var, "JUJU_REMOTE_UNIT");
    }

    #[test]
    fn relation_id_of_another_endpoint_is_an_error() {
        let mut e = hook("db-relation-changed");
        e.extend(
            [
                ("JUJU_RELATION", "db"),
                ("JUJU_RELATION_ID", "database:1"),
                ("JUJU_REMOTE_APP", "pg"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let er = Event::from_env(&e).unwrap_err();
        assert_eq!(er.var, "JUJU_RELATION_ID");
        assert!(er.to_string().contains("another endpoint"));
    }

    #[test]
    fn relation_hook_without_relation_vars_names_the_variable() {
        let er = Event::from_env(&hook("db-relation-changed")).unwrap_err();
        assert_eq!(er.var, "JUJU_RELATION");
        let mut e = hook("db-relation-joined");
        e.extend(
            [
                ("JUJU_RELATION", "db"),
                ("JUJU_RELATION_ID", "db:1"),
                ("JUJU_REMOTE_APP", "pg"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_REMOTE_UNIT");
    }

    #[test]
    fn departed_needs_departing_unit() {
        let mut e = hook("db-relation-departed");
        e.extend(
            [
                ("JUJU_RELATION", "db"),
                ("JUJU_RELATION_ID", "db:1"),
                ("JUJU_REMOTE_APP", "pg"),
                ("JUJU_REMOTE_UNIT", "pg/1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_DEPARTING_UNIT");
    }

    #[test]
    fn remote_unit_of_another_app_is_an_error() {
        let mut e = hook("db-relation-changed");
        e.extend(
            [
                ("JUJU_RELATION", "db"),
                ("JUJU_RELATION_ID", "db:1"),
                ("JUJU_REMOTE_APP", "pg"),
                ("JUJU_REMOTE_UNIT", "other/1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_REMOTE_UNIT");
    }

    #[test]
    fn secret_hooks() {
        let mut e = hook("secret-changed");
        e.insert("JUJU_SECRET_ID".into(), "secret:abc".into());
        e.insert("JUJU_SECRET_LABEL".into(), "".into());
        let ev = Event::from_env(&e).unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Secret(SecretEvent {
                phase: SecretPhase::Changed,
                id: "secret:abc".into(),
                label: None,
                revision: None
            })
        );
        let mut e = hook("secret-remove");
        e.insert("JUJU_SECRET_ID".into(), "secret:abc".into());
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_SECRET_REVISION");
        e.insert("JUJU_SECRET_REVISION".into(), "2".into());
        let ev = Event::from_env(&e).unwrap();
        assert_eq!(Event::from_env(&ev.to_env()).unwrap(), ev);
        for name in ["secret-rotate", "secret-expired"] {
            let mut e = hook(name);
            e.insert("JUJU_SECRET_ID".into(), "secret:abc".into());
            e.insert("JUJU_SECRET_REVISION".into(), "1".into());
            assert_eq!(Event::from_env(&e).unwrap().name(), name);
        }
        assert_eq!(
            Event::from_env(&hook("secret-changed")).unwrap_err().var,
            "JUJU_SECRET_ID"
        );
    }

    #[test]
    fn storage_hooks() {
        for (suffix, attached) in [("attached", true), ("detaching", false)] {
            let mut e = hook(&format!("pg-data-storage-{suffix}"));
            e.insert("JUJU_STORAGE_ID".into(), "pg-data/0".into());
            e.insert("JUJU_STORAGE_LOCATION".into(), "/srv/pg".into());
            let ev = Event::from_env(&e).unwrap();
            match &ev.kind {
                EventKind::Storage(s) => {
                    assert_eq!(
                        (s.attached, s.name.as_str(), s.location.as_deref()),
                        (attached, "pg-data", Some("/srv/pg"))
                    )
                }
                k => panic!("{k:?}"),
            }
            assert_eq!(Event::from_env(&ev.to_env()).unwrap(), ev);
        }
        let mut e = hook("data-storage-attached");
        e.insert("JUJU_STORAGE_ID".into(), "logs/0".into());
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_STORAGE_ID");
    }

    #[test]
    fn actions() {
        let e = env(&[
            ("JUJU_DISPATCH_PATH", "actions/create-admin"),
            ("JUJU_HOOK_NAME", ""),
            ("JUJU_ACTION_NAME", "create-admin"),
            ("JUJU_ACTION_UUID", "42"),
        ]);
        let ev = Event::from_env(&e).unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Action {
                name: "create-admin".into(),
                id: "42".into()
            }
        );
        assert!(ev.is_action());
        assert_eq!(Event::from_env(&ev.to_env()).unwrap(), ev);
        let e = env(&[
            ("JUJU_DISPATCH_PATH", "actions/create-admin"),
            ("JUJU_ACTION_NAME", "other"),
            ("JUJU_ACTION_UUID", "1"),
        ]);
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_ACTION_NAME");
        let e = env(&[
            ("JUJU_DISPATCH_PATH", "actions/create-admin"),
            ("JUJU_ACTION_NAME", "create-admin"),
        ]);
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_ACTION_UUID");
    }

    #[test]
    fn unknown_or_missing_dispatch_path() {
        let er = Event::from_env(&hook("frobnicate")).unwrap_err();
        assert_eq!(er.var, "JUJU_DISPATCH_PATH");
        assert!(er.to_string().contains("unknown hook \"frobnicate\""));
        let er = Event::from_env(&env(&[("JUJU_DISPATCH_PATH", "bin/install")])).unwrap_err();
        assert_eq!(er.var, "JUJU_DISPATCH_PATH");
        assert_eq!(
            Event::from_env(&env(&[])).unwrap_err().var,
            "JUJU_DISPATCH_PATH"
        );
    }

    #[test]
    fn hook_name_must_match_dispatch_path() {
        let mut e = hook("install");
        e.insert("JUJU_HOOK_NAME".into(), "start".into());
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_HOOK_NAME");
    }

    #[test]
    fn unit_name_is_required_and_well_formed() {
        let mut e = hook("install");
        e.remove("JUJU_UNIT_NAME");
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_UNIT_NAME");
        e.insert("JUJU_UNIT_NAME".into(), "maas-region".into());
        assert_eq!(Event::from_env(&e).unwrap_err().var, "JUJU_UNIT_NAME");
    }
}
