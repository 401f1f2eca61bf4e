//! `Condition*=` (a failed one skips the start quietly) and `Assert*=` (a failed one fails
//! it), for the path-based checks packaged units use.

use crate::unit::Unit;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Ok(true): start; Ok(false): skip, condition failed; Err: an assertion failed.
pub fn check(u: &Unit) -> Result<bool, String> {
    for (k, v) in &u.conditions {
        let (assert, kind) = match k.strip_prefix("Assert") {
            Some(kind) => (true, kind),
            None => (false, k.strip_prefix("Condition").unwrap_or(k)),
        };
        let v = v.trim().trim_start_matches('|');
        let (neg, arg) = v.strip_prefix('!').map_or((false, v), |a| (true, a));
        let p = Path::new(arg);
        let holds = match kind {
            "PathExists" => p.symlink_metadata().is_ok(),
            "PathIsDirectory" => p.is_dir(),
            "PathIsSymbolicLink" => std::fs::read_link(p).is_ok(),
            "FileNotEmpty" => p.metadata().is_ok_and(|m| m.is_file() && m.len() > 0),
            "DirectoryNotEmpty" => std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()),
            "FileIsExecutable" => p
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0),
            _ => !neg,
        } != neg;
        if !holds {
            if assert {
                return Err(format!("{k}={v} failed"));
            }
            return Ok(false);
        }
    }
    Ok(true)
}
