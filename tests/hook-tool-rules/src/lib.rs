//! One table of Juju's hook-tool rules, for both of our Juju stand-ins.
//!
//! `rules.yaml` (next to this crate's Cargo.toml) holds the rows: a tool's argv, stdin and a
//! small starting state, and what Juju answers (exit code, stdout, a stderr substring), each
//! citing the juju/juju file and function that decides it. charm-lib's `FakeJuju` and the local
//! model's hook tools each run every row through [`check_all`]; a row one of them cannot
//! express names that fake in `not_in` with the reason.
//!
//! The starting state is the same small world for every row ([`world`]); a row changes only
//! whether the unit leads and which hook runs ([`Given`]).

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The table, as written in rules.yaml.
pub const RULES_YAML: &str = include_str!("../rules.yaml");

/// The world every row starts from. Both fakes build it from these values.
pub mod world {
    /// The unit the hook runs on.
    pub const UNIT: &str = "demo/0";
    /// Its application.
    pub const APP: &str = "demo";
    /// metadata.yaml: requires `db`, peers `peers`.
    pub const METADATA: &str = "name: demo\nsummary: s\ndescription: d\nrequires:\n  db:\n    interface: pgsql\npeers:\n  peers:\n    interface: demo-peers\n";
    /// config.yaml: `name` (default "demo") and `port` (no default); the operator set nothing.
    pub const CONFIG: &str = "options:\n  name:\n    type: string\n    default: demo\n    description: n\n  port:\n    type: int\n    description: p\n";
    /// actions.yaml: `go` with `n` (default 1).
    pub const ACTIONS: &str =
        "go:\n  description: g\n  params:\n    n:\n      type: integer\n      default: 1\n";
    /// The action a `hook: action` row runs, and its parameters.
    pub const ACTION: &str = "go";
    /// The regular relation `db:1`.
    pub const DB_ID: u32 = 1;
    /// Its endpoint.
    pub const DB_ENDPOINT: &str = "db";
    /// The application on its other side.
    pub const REMOTE_APP: &str = "pg";
    /// Its one unit (`pg/0`).
    pub const REMOTE_UNIT: &str = "pg/0";
    /// pg/0's unit databag.
    pub const REMOTE_UNIT_DATA: &[(&str, &str)] = &[("host", "10.0.0.5")];
    /// pg's application databag.
    pub const REMOTE_APP_DATA: &[(&str, &str)] = &[("database", "maas")];
    /// The peer relation `peers:2`, with no other unit.
    pub const PEER_ID: u32 = 2;
    /// Its endpoint.
    pub const PEER_ENDPOINT: &str = "peers";
    /// Charm state (`state-get`).
    pub const CHARM_STATE: &[(&str, &str)] = &[("k", "v")];
    /// Leader settings (`leader-get`).
    pub const LEADER_SETTINGS: &[(&str, &str)] = &[("lk", "lv")];
    /// The secret demo owns (the application), with its label and content.
    pub const OWN_SECRET: &str = "secret:cqj7e1ijmuvs7i5d7gcg";
    /// Its label.
    pub const OWN_LABEL: &str = "mine";
    /// Its content.
    pub const OWN_CONTENT: &[(&str, &str)] = &[("pass", "one")];
    /// The secret pg owns and granted to demo on db:1; demo/0 tracks revision 1 of 2.
    pub const CONSUMED_SECRET: &str = "secret:cqj7e1ijmuvs7i5d7gd0";
    /// Its revisions, 1 then 2.
    pub const CONSUMED_REVISIONS: &[&[(&str, &str)]] = &[&[("token", "old")], &[("token", "new")]];
}

/// Which of our fakes runs the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fake {
    /// charm-lib's in-process `FakeJuju`.
    CharmLib,
    /// The local model's hook tools (`hooktools::run_tool`).
    LocalModel,
}

impl Fake {
    /// The name rows use in `not_in`.
    pub fn name(self) -> &'static str {
        match self {
            Fake::CharmLib => "charm-lib",
            Fake::LocalModel => "local-model",
        }
    }
}

/// Which hook runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// install: no relation, no action.
    #[default]
    Install,
    /// db-relation-changed on db:1 with remote unit pg/0.
    DbRelationChanged,
    /// The action `go` with n=1.
    Action,
}

/// What a row changes in the world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Given {
    /// Whether demo/0 is the leader (default false).
    #[serde(default)]
    pub leader: bool,
    /// The hook (default install).
    #[serde(default)]
    pub hook: Hook,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// What Juju answers.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exit code: 0, 1 (the command's Run failed) or 2 (usage: flags or Init).
    pub code: i32,
    /// stdout, parsed as JSON, equals this (`json: null` is the JSON null).
    #[serde(default, deserialize_with = "present")]
    pub json: Option<serde_json::Value>,
    /// stdout, exactly.
    #[serde(default)]
    pub stdout: Option<String>,
    /// stdout starts with this.
    #[serde(default)]
    pub stdout_prefix: Option<String>,
    /// stderr contains this.
    #[serde(default)]
    pub stderr: Option<String>,
}

/// One tool call.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The tool, then its arguments.
    pub run: Vec<String>,
    /// stdin, if any.
    #[serde(default)]
    pub stdin: Option<String>,
    /// What Juju answers.
    pub expect: Expect,
}

/// One row.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A short name, unique in the table.
    pub id: String,
    /// The juju/juju file and function that decide it.
    pub source: String,
    /// What the row changes in the world.
    #[serde(default)]
    pub given: Given,
    /// The tool, then its arguments.
    pub run: Vec<String>,
    /// stdin, if any.
    #[serde(default)]
    pub stdin: Option<String>,
    /// What Juju answers.
    pub expect: Expect,
    /// Further calls in the same hook.
    #[serde(default)]
    pub then: Vec<Step>,
    /// Fakes that cannot express this row, with the reason.
    #[serde(default)]
    pub not_in: BTreeMap<String, String>,
}

/// A call as a fake receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The tool's name.
    pub tool: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// stdin (empty if none).
    pub stdin: Vec<u8>,
}

/// What a fake answered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Rule {
    /// Every call of the row, in order, with what Juju answers to each.
    pub fn steps(&self) -> Vec<Step> {
        let mut v = vec![Step {
            run: self.run.clone(),
            stdin: self.stdin.clone(),
            expect: self.expect.clone(),
        }];
        v.extend(self.then.iter().cloned());
        v
    }

    /// The calls, as a fake receives them.
    pub fn calls(&self) -> Vec<Call> {
        self.steps().iter().map(Step::call).collect()
    }
}

impl Step {
    /// The call, as a fake receives it.
    pub fn call(&self) -> Call {
        Call {
            tool: self.run[0].clone(),
            args: self.run[1..].to_vec(),
            stdin: self.stdin.clone().unwrap_or_default().into_bytes(),
        }
    }
}

impl Expect {
    /// Whether `got` is what Juju answers; the error says what differs.
    pub fn check(&self, got: &Outcome) -> Result<(), String> {
        let mut wrong = Vec::new();
        if got.code != self.code {
            wrong.push(format!("exit code {} (Juju: {})", got.code, self.code));
        }
        if let Some(want) = &self.json {
            match serde_json::from_str::<serde_json::Value>(got.stdout.trim()) {
                Ok(v) if &v == want => {}
                Ok(v) => wrong.push(format!("stdout {v} (Juju: {want})")),
                Err(e) => wrong.push(format!(
                    "stdout {:?} is not JSON ({e}; Juju: {want})",
                    got.stdout
                )),
            }
        }
        if let Some(want) = &self.stdout {
            if &got.stdout != want {
                wrong.push(format!("stdout {:?} (Juju: {want:?})", got.stdout));
            }
        }
        if let Some(want) = &self.stdout_prefix {
            if !got.stdout.starts_with(want.as_str()) {
                wrong.push(format!(
                    "stdout {:?} (Juju's starts with {want:?})",
                    got.stdout
                ));
            }
        }
        if let Some(want) = &self.stderr {
            if !got.stderr.contains(want.as_str()) {
                wrong.push(format!("stderr {:?} (Juju's has {want:?})", got.stderr));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// The table.
pub fn rules() -> Vec<Rule> {
    serde_yaml::from_str(RULES_YAML).expect("rules.yaml parses")
}

/// Runs every row against `fake`: `run` starts the row's world in the row's hook, makes the
/// calls in order within that one hook, and returns what each answered. Panics listing every
/// row the fake gets wrong; prints the rows it cannot express, with their reasons.
pub fn check_all(fake: Fake, mut run: impl FnMut(&Given, &[Call]) -> Vec<Outcome>) {
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0, Vec::new());
    for rule in rules() {
        if let Some(reason) = rule.not_in.get(fake.name()) {
            skipped.push(format!("  {}: {reason}", rule.id));
            continue;
        }
        ran += 1;
        let steps = rule.steps();
        let calls = rule.calls();
        let outcomes = run(&rule.given, &calls);
        assert_eq!(
            outcomes.len(),
            calls.len(),
            "{}: one outcome per call",
            rule.id
        );
        for (i, (step, got)) in steps.iter().zip(&outcomes).enumerate() {
            if let Err(e) = step.expect.check(got) {
                failures.push(format!(
                    "{} (call {}: {}): {e}\n    source: {}",
                    rule.id,
                    i + 1,
                    step.run.join(" "),
                    rule.source
                ));
            }
        }
    }
    eprintln!(
        "hook-tool rules on {}: {ran} rows run, {} not expressible:\n{}",
        fake.name(),
        skipped.len(),
        skipped.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} disagrees with Juju on {} call(s):\n{}",
        fake.name(),
        failures.len(),
        failures.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS: &[&str] = &[
        "action-fail",
        "action-get",
        "action-log",
        "action-set",
        "application-version-set",
        "close-port",
        "config-get",
        "goal-state",
        "is-leader",
        "juju-log",
        "leader-get",
        "leader-set",
        "network-get",
        "open-port",
        "opened-ports",
        "relation-get",
        "relation-ids",
        "relation-list",
        "relation-set",
        "resource-get",
        "secret-add",
        "secret-get",
        "secret-grant",
        "secret-ids",
        "secret-info-get",
        "secret-remove",
        "secret-revoke",
        "secret-set",
        "state-delete",
        "state-get",
        "state-set",
        "status-get",
        "status-set",
        "unit-get",
    ];

    #[test]
    fn every_row_is_well_formed_and_cites_its_source() {
        let rules = rules();
        assert!(rules.len() >= 60, "{}", rules.len());
        let mut ids = std::collections::BTreeSet::new();
        for r in &rules {
            assert!(ids.insert(r.id.clone()), "duplicate id {}", r.id);
            assert!(
                r.source.contains(".go ") && (r.source.contains('(') || r.source.contains(' ')),
                "{}: source must name a .go file and a function: {}",
                r.id,
                r.source
            );
            for s in r.steps() {
                assert!(
                    TOOLS.contains(&s.run[0].as_str()),
                    "{}: unknown tool {}",
                    r.id,
                    s.run[0]
                );
            }
            for (fake, reason) in &r.not_in {
                assert!(
                    [Fake::CharmLib.name(), Fake::LocalModel.name()].contains(&fake.as_str()),
                    "{}: unknown fake {fake}",
                    r.id
                );
                assert!(
                    !reason.trim().is_empty(),
                    "{}: not_in {fake} needs a reason",
                    r.id
                );
            }
        }
    }

    #[test]
    fn json_null_is_told_from_no_json() {
        let r = rules();
        let null = r
            .iter()
            .find(|r| r.id == "config-get-missing-key-is-null")
            .unwrap();
        assert_eq!(null.expect.json, Some(serde_json::Value::Null));
        let none = r
            .iter()
            .find(|r| r.id == "status-set-application-by-leader")
            .unwrap();
        assert_eq!(none.expect.json, None);
    }

    #[test]
    fn check_reports_each_difference() {
        let e = Expect {
            code: 2,
            stderr: Some("not both".into()),
            ..Default::default()
        };
        assert!(e
            .check(&Outcome {
                code: 2,
                stdout: String::new(),
                stderr: "ERROR specify one of --peek or --refresh but not both\n".into()
            })
            .is_ok());
        let err = e.check(&Outcome::default()).unwrap_err();
        assert!(
            err.contains("exit code 0 (Juju: 2)") && err.contains("stderr"),
            "{err}"
        );
    }
}
