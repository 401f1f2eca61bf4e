//! network-get and unit-get: the unit's addresses.

use super::args::{no_extra, out, parse_args, FMT};
use super::relation::resolve_relation;
use super::{fail, usage, ToolError, R};
use crate::hookctx::HookContext;
use crate::state::{app_of, ModelState};
use serde_json::{json, Map, Value};

pub(super) fn network_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[
            FMT,
            ("relation", Some('r'), true),
            ("bind-address", None, false),
            ("ingress-address", None, false),
            ("egress-subnets", None, false),
            ("primary-address", None, false),
        ],
    )?;
    no_extra(&p, 1)?;
    let app = st
        .applications
        .get(app_of(&ctx.unit))
        .ok_or_else(|| ToolError::Fail("application not found".into()))?;
    let binding = match p.pos.first() {
        Some(b) => b.clone(),
        None if p.has("relation") => {
            let id = resolve_relation(st, ctx, p.get("relation"))?;
            st.relations[&id]
                .local(&app.name)
                .map(|e| e.spec.name.clone())
                .unwrap_or_default()
        }
        None => return usage("no arguments specified"),
    };
    if p.has("relation") {
        resolve_relation(st, ctx, p.get("relation"))?;
    }
    if app.meta.endpoint(&binding).is_none() && !app.meta.extra_bindings.contains(&binding) {
        return fail(format!("no network config found for binding {binding:?}"));
    }
    let net = ctx.cidr.split('/').nth(1).unwrap_or("24");
    let subnet = subnet_of(&ctx.ip, net.parse().unwrap_or(24));
    let mut wanted = Map::new();
    if p.has("bind-address") || p.has("primary-address") {
        wanted.insert("bind-address".into(), json!(ctx.ip));
    }
    if p.has("ingress-address") {
        wanted.insert("ingress-address".into(), json!(ctx.ip));
    }
    if p.has("egress-subnets") {
        wanted.insert("egress-subnets".into(), json!([format!("{}/32", ctx.ip)]));
    }
    match wanted.len() {
        0 => out(
            &p,
            json!({
                "bind-addresses": [{"mac-address": "", "interface-name": "eth0",
                    "addresses": [{"hostname": "", "value": ctx.ip, "cidr": subnet}], "macaddress": "", "interfacename": "eth0"}],
                "egress-subnets": [format!("{}/32", ctx.ip)],
                "ingress-addresses": [ctx.ip],
            }),
        ),
        1 => out(&p, wanted.into_iter().next().unwrap().1),
        _ => out(&p, Value::Object(wanted)),
    }
}

pub(super) fn subnet_of(ip: &str, bits: u32) -> String {
    let Ok(a) = ip.parse::<std::net::Ipv4Addr>() else {
        return String::new();
    };
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits.min(32))
    };
    format!("{}/{}", std::net::Ipv4Addr::from(u32::from(a) & mask), bits)
}

pub(super) fn unit_get(ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 1)?;
    match p.pos.first().map(|s| s.as_str()) {
        Some("private-address" | "public-address") => out(&p, Value::String(ctx.ip.clone())),
        // unit-get.go Init: an unknown setting is a usage error
        Some(k) => usage(format!("unknown setting {k:?}")),
        None => usage("no setting specified"),
    }
}
