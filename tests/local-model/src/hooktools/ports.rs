//! open-port, close-port and opened-ports.

use super::args::{no_extra, out, parse_args, FMT};
use super::{usage, R};
use crate::hookctx::HookContext;
use crate::state::ModelState;
use serde_json::{json, Value};

/// Normalise a port spec to Juju's form (`80/tcp`, `8000-8999/udp`, `icmp`).
pub fn normalize_port(spec: &str) -> Option<String> {
    if spec == "icmp" {
        return Some("icmp".into());
    }
    let (range, proto) = match spec.split_once('/') {
        Some((r, p)) => (r, p.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        return None;
    }
    let ok = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    match range.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (ok(a)?, ok(b)?);
            (a <= b).then(|| {
                if a == b {
                    format!("{a}/{proto}")
                } else {
                    format!("{a}-{b}/{proto}")
                }
            })
        }
        None => Some(format!("{}/{proto}", ok(range)?)),
    }
}

pub(super) fn port(ctx: &mut HookContext, args: &[String], open: bool) -> R<String> {
    let p = parse_args(args, &[FMT, ("endpoints", None, true)])?;
    no_extra(&p, 1)?;
    let Some(spec) = p.pos.first() else {
        return usage("no port or range specified");
    };
    let Some(norm) = normalize_port(spec) else {
        return usage(format!(
            "expected <port>[/<protocol>] or <from>-<to>[/<protocol>] or icmp; got {spec:?}"
        ));
    };
    ctx.ports.push((open, norm));
    Ok(String::new())
}

pub(super) fn opened_ports(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT, ("endpoints", None, false)])?;
    no_extra(&p, 0)?;
    let mut ports = st
        .units
        .get(&ctx.unit)
        .map(|u| u.ports.clone())
        .unwrap_or_default();
    for (open, port) in &ctx.ports {
        if *open {
            ports.insert(port.clone());
        } else {
            ports.remove(port);
        }
    }
    let list: Vec<Value> = ports
        .into_iter()
        .map(|x| {
            if p.has("endpoints") {
                json!(format!("{x} (*)"))
            } else {
                json!(x)
            }
        })
        .collect();
    out(&p, Value::Array(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_ports() {
        assert_eq!(normalize_port("80").as_deref(), Some("80/tcp"));
        assert_eq!(normalize_port("53/UDP").as_deref(), Some("53/udp"));
        assert_eq!(
            normalize_port("8000-8999/udp").as_deref(),
            Some("8000-8999/udp")
        );
        assert_eq!(normalize_port("icmp").as_deref(), Some("icmp"));
        assert_eq!(normalize_port("0"), None);
        assert_eq!(normalize_port("90-80"), None);
        assert_eq!(normalize_port("80/sctp"), None);
    }
}
