//! Helpers shared by the end-to-end tests: pack the test charms, write the test bundle,
//! read the records the test charm writes, and check hook orderings.

#![allow(dead_code)]

use local_model::LocalModel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One hook as recorded by the test charm: its name, JUJU_* vars, and notes.
#[derive(Clone, Debug)]
pub struct Rec {
    pub hook: String,
    pub vars: BTreeMap<String, String>,
    pub notes: Vec<String>,
}

impl Rec {
    pub fn var(&self, k: &str) -> &str {
        self.vars.get(k).map(|s| s.as_str()).unwrap_or("")
    }
}

/// A scratch directory for one test, outside /tmp (hosts have their own /tmp).
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lm-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Pack both test charms and write the test bundle into `dir`; returns the bundle path.
pub fn write_bundle(dir: &Path, extra_options: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testcharms");
    std::fs::create_dir_all(dir.join("charms")).unwrap();
    local_model::charm::pack_dir(&src.join("lm-test"), &dir.join("charms/lm-test.charm")).unwrap();
    local_model::charm::pack_dir(
        &src.join("lm-test-sub"),
        &dir.join("charms/lm-test-sub.charm"),
    )
    .unwrap();
    std::fs::write(dir.join("blob.txt"), "blob-content\n").unwrap();
    let rec = dir.join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let bundle = format!(
        "description: local-model test bundle
applications:
  a:
    charm: ./charms/lm-test.charm
    num_units: 3
    options: {{record-dir: {rec}{extra_options}}}
    resources: {{blob: ./blob.txt}}
  b:
    charm: ./charms/lm-test.charm
    num_units: 1
    options: {{record-dir: {rec}, greeting: hi-from-b}}
  sub:
    charm: ./charms/lm-test-sub.charm
    options: {{record-dir: {rec}}}
relations:
- [a:web, b:client]
- [a, sub]
",
        rec = rec.display()
    );
    let p = dir.join("bundle.yaml");
    std::fs::write(&p, bundle).unwrap();
    p
}

/// The records of one unit.
pub fn records(dir: &Path, unit: &str) -> Vec<Rec> {
    let p = dir
        .join("rec")
        .join(format!("{}.log", unit.replace('/', "-")));
    let text = std::fs::read_to_string(&p).unwrap_or_default();
    let mut out: Vec<Rec> = Vec::new();
    for line in text.lines() {
        if let Some(note) = line.strip_prefix("  ") {
            if let Some(last) = out.last_mut() {
                last.notes.push(note.to_string());
            }
            continue;
        }
        let (hook, vars) = line.split_once(" |").unwrap_or((line, ""));
        let vars = vars
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push(Rec {
            hook: hook.to_string(),
            vars,
            notes: vec![],
        });
    }
    out
}

/// Hook names only.
pub fn names(recs: &[Rec]) -> Vec<String> {
    recs.iter().map(|r| r.hook.clone()).collect()
}

/// The `lm` binary built for these tests.
pub fn lm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lm"))
}

/// A model in `dir/model` with fast settings.
pub fn model(dir: &Path) -> LocalModel {
    LocalModel::new(&dir.join("model"), &lm_bin())
        .with_env("LM_RETRY_BASE_MS", "0")
        .with_env("LM_UPDATE_STATUS_MS", "0")
}

/// Check the setup order of reference §3.1 for a unit's first hooks and return the index
/// of `start`.
pub fn check_setup_order(unit: &str, hooks: &[String], leader: bool) -> usize {
    assert_eq!(
        hooks.first().map(|s| s.as_str()),
        Some("install"),
        "{unit}: {hooks:?}"
    );
    let mut i = 1;
    while i < hooks.len() && hooks[i].ends_with("-relation-created") {
        i += 1;
    }
    let lead = if leader {
        "leader-elected"
    } else {
        "leader-settings-changed"
    };
    assert_eq!(
        hooks.get(i).map(|s| s.as_str()),
        Some(lead),
        "{unit}: {hooks:?}"
    );
    assert_eq!(
        hooks.get(i + 1).map(|s| s.as_str()),
        Some("config-changed"),
        "{unit}: {hooks:?}"
    );
    assert_eq!(
        hooks.get(i + 2).map(|s| s.as_str()),
        Some("start"),
        "{unit}: {hooks:?}"
    );
    i + 2
}

/// Every relation-joined is followed, within its relation id, by relation-changed for the
/// same remote unit; no joined/changed/departed comes before created or after broken.
pub fn check_relation_order(unit: &str, recs: &[Rec]) {
    for (i, r) in recs.iter().enumerate() {
        let id = r.var("JUJU_RELATION_ID");
        if r.hook.ends_with("-relation-joined") {
            let next = recs[i + 1..]
                .iter()
                .find(|x| x.var("JUJU_RELATION_ID") == id);
            let next = next.unwrap_or_else(|| {
                panic!(
                    "{unit}: joined {id} {} not followed by changed",
                    r.var("JUJU_REMOTE_UNIT")
                )
            });
            assert!(
                next.hook.ends_with("-relation-changed")
                    && next.var("JUJU_REMOTE_UNIT") == r.var("JUJU_REMOTE_UNIT"),
                "{unit}: after {} came {}",
                r.hook,
                next.hook
            );
        }
        if [
            "-relation-joined",
            "-relation-changed",
            "-relation-departed",
            "-relation-broken",
        ]
        .iter()
        .any(|s| r.hook.ends_with(s))
        {
            let created = recs[..i]
                .iter()
                .any(|x| x.hook.ends_with("-relation-created") && x.var("JUJU_RELATION_ID") == id);
            assert!(
                created,
                "{unit}: {} on {id} before relation-created",
                r.hook
            );
            let broken = recs[..i]
                .iter()
                .any(|x| x.hook.ends_with("-relation-broken") && x.var("JUJU_RELATION_ID") == id);
            assert!(!broken, "{unit}: {} on {id} after relation-broken", r.hook);
        }
    }
}

/// Units (principal and subordinate) present in a status JSON.
pub fn units_in(status: &serde_json::Value) -> Vec<String> {
    let mut v = vec![];
    for app in status["applications"].as_object().unwrap().values() {
        for (u, ud) in app["units"].as_object().cloned().unwrap_or_default() {
            v.push(u.clone());
            for s in ud["subordinates"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .keys()
            {
                v.push(s.clone());
            }
        }
    }
    v.sort();
    v
}

/// A unit's JSON in a status.
pub fn unit_status<'a>(status: &'a serde_json::Value, unit: &str) -> &'a serde_json::Value {
    let app = unit.split('/').next().unwrap();
    &status["applications"][app]["units"][unit]
}
