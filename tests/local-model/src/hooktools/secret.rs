//! secret-add, secret-set, secret-get, secret-info-get, secret-ids, secret-grant,
//! secret-revoke and secret-remove: who owns a secret, who was granted it, which revision a
//! consumer tracks. Changes are buffered in the hook context until the hook succeeds.

use super::args::{key_values_repeatable, no_extra, out, parse_args, FlagSpec, Parsed, FMT};
use super::relation::resolve_relation;
use super::{fail, usage, ToolError, R};
use crate::hookctx::{HookContext, SecretOp};
use crate::state::{app_of, Consumer, ModelState, Secret};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The bare id of a secret as every tool takes it: `<id>`, `secret:<id>` or
/// `secret://<model-uuid>/<id>` (core/secrets/secret.go ParseURI: no scheme is the secret
/// scheme, the host is the source model's UUID, the path or opaque part is the id).
pub(super) fn parse_secret_id(s: &str) -> String {
    let s = s.strip_prefix("secret:").unwrap_or(s);
    let s = s.strip_prefix("//").unwrap_or(s);
    s.rsplit('/').next().unwrap_or(s).to_string()
}

pub(super) fn owns(st: &ModelState, ctx: &HookContext, s: &Secret) -> bool {
    s.owner == format!("unit:{}", ctx.unit)
        || (s.owner == format!("application:{}", app_of(&ctx.unit)) && st.is_leader(&ctx.unit))
}

/// A secret visible to this hook, including ones added earlier in the same hook.
pub(super) fn find_secret(st: &ModelState, ctx: &HookContext, xid: &str) -> Option<Secret> {
    let mut s = st.secrets.get(xid).cloned();
    for op in &ctx.secret_ops {
        if let SecretOp::Add(a) = op {
            if a.xid == xid {
                s = Some(a.clone());
            }
        }
    }
    s
}

/// The secret a label names among this hook's pending creations and label changes.
fn pending_label(ctx: &HookContext, label: &str) -> Option<String> {
    ctx.secret_ops.iter().rev().find_map(|o| match o {
        SecretOp::Add(s) if s.label.as_deref() == Some(label) => Some(s.xid.clone()),
        SecretOp::Set {
            xid,
            label: Some(l),
            ..
        } if l == label => Some(xid.clone()),
        _ => None,
    })
}

pub(super) fn owned_secret(st: &ModelState, ctx: &HookContext, id: Option<&String>) -> R<String> {
    let id = id.ok_or_else(|| ToolError::Usage("missing secret URI".into()))?;
    let xid = parse_secret_id(id);
    let s = find_secret(st, ctx, &xid)
        .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
    let app_owned_by_me = s.owner == format!("application:{}", app_of(&ctx.unit));
    if s.owner != format!("unit:{}", ctx.unit) && !(app_owned_by_me && st.is_leader(&ctx.unit)) {
        return fail(format!("secret {xid:?} not found"));
    }
    Ok(xid)
}

pub(super) const SECRET_FLAGS: &[FlagSpec] = &[
    ("owner", None, true),
    ("label", None, true),
    ("description", None, true),
    ("expire", None, true),
    ("rotate", None, true),
    ("file", None, true),
];

pub(super) fn secret_content(p: &Parsed, stdin: &[u8], skip: usize) -> R<BTreeMap<String, String>> {
    let mut pp = Parsed {
        flags: p.flags.clone(),
        pos: p.pos[skip.min(p.pos.len())..].to_vec(),
    };
    let mut out = BTreeMap::new();
    let mut plain = Vec::new();
    for a in std::mem::take(&mut pp.pos) {
        let Some((k, v)) = a.split_once('=') else {
            return usage(format!("key value {a:?} not valid"));
        };
        if let Some(key) = k.strip_suffix("#base64") {
            out.insert(key.to_string(), v.to_string());
        } else if k.ends_with("#file") {
            // the hook tool client replaces these with the file's content
            return fail(format!("{k}: file not readable by the hook tool"));
        } else {
            plain.push(a.clone());
        }
    }
    pp.pos = plain;
    for (k, v) in key_values_repeatable(&pp, stdin)? {
        out.insert(k, v);
    }
    for k in out.keys() {
        let ok = k.len() >= 3
            && k.starts_with(|c: char| c.is_ascii_lowercase())
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !k.ends_with('-')
            && !k.contains("--");
        if !ok {
            return usage(format!("key {k:?} not valid"));
        }
    }
    Ok(out)
}

pub(super) fn check_rotate(p: &Parsed) -> R<()> {
    if let Some(r) = p.get("rotate") {
        if ![
            "never",
            "hourly",
            "daily",
            "weekly",
            "monthly",
            "quarterly",
            "yearly",
        ]
        .contains(&r)
        {
            return usage(format!("rotate policy {r:?} not valid"));
        }
    }
    Ok(())
}

pub(super) fn secret_add(
    st: &ModelState,
    ctx: &mut HookContext,
    args: &[String],
    stdin: &[u8],
) -> R<String> {
    let p = parse_args(args, SECRET_FLAGS)?;
    check_rotate(&p)?;
    let content = secret_content(&p, stdin, 0)?;
    if content.is_empty() {
        return usage("missing secret value or filename");
    }
    let owner = match p.get("owner").unwrap_or("application") {
        "application" => {
            if !st.is_leader(&ctx.unit) {
                return fail("this unit is not the leader");
            }
            format!("application:{}", app_of(&ctx.unit))
        }
        "unit" => format!("unit:{}", ctx.unit),
        o => return usage(format!("secret owner {o:?} not valid")),
    };
    // context/secrets.go (*secretsChangeRecorder).create: a second secret with a label
    // already pending in this hook is refused at once (errors.AlreadyExistsf). One whose label
    // a committed secret has is refused when the hook commits (HookContext::commit_error).
    if let Some(l) = p.get("label") {
        if pending_label(ctx, l).is_some() {
            return fail(format!("secret with label {l:?} already exists"));
        }
    }
    let xid = crate::state::secret_xid();
    let mut revisions = BTreeMap::new();
    revisions.insert(1, content);
    ctx.secret_ops.push(SecretOp::Add(Secret {
        xid: xid.clone(),
        owner,
        label: p.get("label").map(String::from),
        description: p.get("description").map(String::from),
        expire: p.get("expire").map(String::from),
        rotate: p.get("rotate").map(String::from),
        revisions,
        grants: vec![],
        consumers: BTreeMap::new(),
        obsolete_notified: Default::default(),
    }));
    // jujuc/secret-add.go prints the URI HookContext.CreateSecret got from the controller's
    // CreateSecretURIs (apiserver secretsmanager: NewURI().WithSource(modelUUID)), whose
    // String() (core/secrets/secret.go) is secret://<model-uuid>/<id>
    Ok(format!("secret://{}/{xid}\n", st.uuid))
}

pub(super) fn secret_set(
    st: &ModelState,
    ctx: &mut HookContext,
    args: &[String],
    stdin: &[u8],
) -> R<String> {
    let p = parse_args(args, SECRET_FLAGS)?;
    check_rotate(&p)?;
    let xid = owned_secret(st, ctx, p.pos.first())?;
    let content = secret_content(&p, stdin, 1)?;
    // context/secrets.go (*secretsChangeRecorder).update: a change to a secret created in
    // this hook is folded into its creation, which stays revision 1.
    let pending = ctx.secret_ops.iter_mut().find_map(|o| match o {
        SecretOp::Add(s) if s.xid == xid => Some(s),
        _ => None,
    });
    if let Some(s) = pending {
        if let Some(l) = p.get("label") {
            s.label = Some(l.to_string());
        }
        if let Some(d) = p.get("description") {
            s.description = Some(d.to_string());
        }
        if let Some(e) = p.get("expire") {
            s.expire = Some(e.to_string());
        }
        if let Some(r) = p.get("rotate") {
            s.rotate = Some(r.to_string());
        }
        if !content.is_empty() {
            s.revisions.insert(1, content);
        }
        return Ok(String::new());
    }
    ctx.secret_ops.push(SecretOp::Set {
        xid,
        label: p.get("label").map(String::from),
        description: p.get("description").map(String::from),
        expire: p.get("expire").map(String::from),
        rotate: p.get("rotate").map(String::from),
        content: (!content.is_empty()).then_some(content),
    });
    Ok(String::new())
}

/// Whether a consumer unit has been granted access to a secret.
pub(super) fn granted(st: &ModelState, s: &Secret, unit: &str) -> bool {
    s.grants.iter().any(|(rel, who)| match who {
        Some(u) => u == unit,
        None => st.relations.get(rel).is_some_and(|r| {
            let owner_app = s
                .owner
                .split_once(':')
                .map(|(_, o)| app_of(o))
                .unwrap_or("");
            r.remote_app(owner_app) == Some(app_of(unit)) && r.local(app_of(unit)).is_some()
        }),
    })
}

pub(super) fn secret_get(st: &mut ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[
            FMT,
            ("label", None, true),
            ("refresh", None, false),
            ("peek", None, false),
        ],
    )?;
    no_extra(&p, 2)?;
    if p.has("refresh") && p.has("peek") {
        return usage("specify one of --peek or --refresh but not both");
    }
    let label = p.get("label");
    let xid = match (p.pos.first(), label) {
        (Some(id), _) => parse_secret_id(id),
        (None, Some(l)) => {
            let by_owner = st
                .secrets
                .values()
                .find(|s| owns(st, ctx, s) && s.label.as_deref() == Some(l));
            let by_consumer = st
                .secrets
                .values()
                .find(|s| s.consumers.get(&ctx.unit).and_then(|c| c.label.as_deref()) == Some(l));
            let pending = ctx.secret_ops.iter().find_map(|o| match o {
                SecretOp::Add(s) if s.label.as_deref() == Some(l) => Some(s.xid.clone()),
                _ => None,
            });
            by_owner
                .or(by_consumer)
                .map(|s| s.xid.clone())
                .or(pending)
                .ok_or_else(|| ToolError::Fail(format!("secret with label {l:?} not found")))?
        }
        (None, None) => return usage("require either a secret URI or label"),
    };
    let s = find_secret(st, ctx, &xid)
        .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
    let content = if owns(st, ctx, &s) || s.owner == format!("application:{}", app_of(&ctx.unit)) {
        // apiserver/facades/agent/secretsmanager/secrets.go getSecretContent: a secret the unit
        // or its application owns (getAppOwnedOrUnitOwnedSecretMetadata) is read at
        // md.LatestRevision, leader or not, with no tracking
        s.revisions
            .values()
            .next_back()
            .cloned()
            .unwrap_or_default()
    } else {
        if !granted(st, &s, &ctx.unit) {
            return fail("permission denied");
        }
        let latest = s.latest();
        let real = st
            .secrets
            .get_mut(&xid)
            .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
        let c = real
            .consumers
            .entry(ctx.unit.clone())
            .or_insert_with(|| Consumer {
                tracked: latest,
                label: None,
            });
        if p.has("refresh") {
            c.tracked = latest;
        }
        if let Some(l) = label {
            if !p.pos.is_empty() {
                ctx.secret_ops.push(SecretOp::ConsumerLabel {
                    xid: xid.clone(),
                    label: l.to_string(),
                });
            }
        }
        let rev = if p.has("peek") || p.has("refresh") {
            latest
        } else {
            c.tracked
        };
        s.revisions.get(&rev).cloned().unwrap_or_default()
    };
    // secret-get.go Run: a key after the id prints that value alone
    match p.pos.get(1) {
        Some(k) => match content.get(k) {
            Some(v) => out(&p, json!(v)),
            None => fail(format!("secret key {k:?} not found")),
        },
        None => out(&p, json!(content)),
    }
}

pub(super) fn secret_info_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT, ("label", None, true)])?;
    no_extra(&p, 1)?;
    // secret-info-get.go Init: an id or a label, not both; Run: NotFoundf("secret %q")
    let xid = match (p.pos.first(), p.get("label")) {
        (Some(_), Some(_)) => return usage("specify either a secret URI or label but not both"),
        (Some(id), None) => parse_secret_id(id),
        // context.go (*HookContext).SecretMetadata: the metadata includes the secrets
        // created in this hook and the labels set in it.
        (None, Some(l)) => pending_label(ctx, l)
            .or_else(|| {
                st.secrets
                    .values()
                    .find(|s| owns(st, ctx, s) && s.label.as_deref() == Some(l))
                    .map(|s| s.xid.clone())
            })
            .ok_or_else(|| ToolError::Fail(format!("secret {l:?} not found")))?,
        (None, None) => return usage("require either a secret URI or label"),
    };
    let s = find_secret(st, ctx, &xid)
        .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
    if !owns(st, ctx, &s) {
        return fail(format!("secret {xid:?} not found"));
    }
    let mut info = json!({"revision": s.latest(), "owner": s.owner.split(':').next().unwrap_or("application"), "rotation": s.rotate.clone().unwrap_or_else(|| "never".into())});
    if let Some(l) = &s.label {
        info["label"] = json!(l);
    }
    if let Some(d) = &s.description {
        info["description"] = json!(d);
    }
    if let Some(e) = &s.expire {
        info["expiry"] = json!(e);
    }
    out(&p, json!({ xid: info }))
}

pub(super) fn secret_grant(
    st: &ModelState,
    ctx: &mut HookContext,
    args: &[String],
    grant: bool,
) -> R<String> {
    let p = parse_args(
        args,
        &[
            ("relation", Some('r'), true),
            ("unit", None, true),
            ("app", None, true),
            ("application", None, true),
        ],
    )?;
    no_extra(&p, 1)?;
    if !grant {
        // secret-revoke.go Init: the grantee is checked before the secret is looked up
        if let Some(u) = p.get("unit").filter(|u| !u.contains('/')) {
            return usage(format!("unit {u:?} not valid"));
        }
        let app = p.get("app").or(p.get("application"));
        if p.get("relation").is_none() && app.is_none() && p.get("unit").is_none() {
            return usage("missing relation or application or unit");
        }
    }
    let xid = owned_secret(st, ctx, p.pos.first())?;
    let rel = match p.get("relation") {
        Some(r) => Some(resolve_relation(st, ctx, Some(r))?),
        // secret-grant.go Init: the relation is -r or the hook's (NewRelationIdValue)
        None if grant => Some(resolve_relation(st, ctx, None)?),
        None => None,
    };
    if let (true, Some(u), Some(id)) = (grant, p.get("unit"), rel) {
        let remote = st.relations[&id]
            .remote_app(app_of(&ctx.unit))
            .unwrap_or_default();
        if !u.contains('/') {
            return usage(format!("unit {u:?} not valid"));
        }
        if app_of(u) != remote {
            return usage(format!(
                "cannot specify unit {u:?} in relation to application {remote:?}"
            ));
        }
    }
    if grant {
        ctx.secret_ops.push(SecretOp::Grant {
            xid,
            relation: rel.unwrap(),
            unit: p.get("unit").map(String::from),
        });
    } else {
        let target = p
            .get("unit")
            .or(p.get("app"))
            .or(p.get("application"))
            .map(String::from);
        ctx.secret_ops.push(SecretOp::Revoke {
            xid,
            relation: rel,
            target,
        });
    }
    Ok(String::new())
}

pub(super) fn secret_ids(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 0)?;
    // jujuc/secret-ids.go prints the keys of HookContext.SecretMetadata, which are
    // the bare ids (URI.ID), pending creates included
    let mut ids: Vec<Value> = st
        .secrets
        .values()
        .filter(|s| owns(st, ctx, s))
        .map(|s| json!(s.xid))
        .collect();
    for op in &ctx.secret_ops {
        if let SecretOp::Add(s) = op {
            ids.push(json!(s.xid));
        }
    }
    out(&p, Value::Array(ids))
}

pub(super) fn secret_remove(st: &ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[("revision", None, true)])?;
    no_extra(&p, 1)?;
    let xid = owned_secret(st, ctx, p.pos.first())?;
    let revision = match p.get("revision") {
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ToolError::Usage(format!("invalid revision {r:?}")))?,
        ),
        None => None,
    };
    ctx.secret_ops.push(SecretOp::Remove { xid, revision });
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_ids_parse_in_all_forms() {
        assert_eq!(parse_secret_id("secret:abc"), "abc");
        assert_eq!(parse_secret_id("secret://uuid/abc"), "abc");
        assert_eq!(parse_secret_id("abc"), "abc");
    }
}
