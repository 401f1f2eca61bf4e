//! Unit files on disk: names (suffixes, templates, aliases), the search path with masks and
//! drop-ins, the `[Section]`/`Key=value` syntax, and what a loaded unit was read from.

use crate::specifiers::Specifiers;
use crate::unit::{interpret, LoadError, Unit, DIRS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `foo` → `foo.service`; names with a known unit suffix are kept.
pub fn normalize(name: &str) -> String {
    const SUFFIXES: &[&str] = &[
        ".service",
        ".target",
        ".socket",
        ".timer",
        ".mount",
        ".path",
        ".slice",
        ".scope",
        ".device",
        ".swap",
        ".automount",
    ];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// The unit a name stands for: normalized, and with alias symlinks (a unit file linked
/// under another name, as `Alias=` makes them) followed to the real unit's name.
pub fn canonical(name: &str) -> String {
    let mut n = normalize(name);
    for _ in 0..8 {
        let Some(next) = DIRS.iter().find_map(|d| {
            let t = std::fs::read_link(Path::new(d).join(&n)).ok()?;
            let base = t.file_name()?.to_string_lossy().into_owned();
            (t != Path::new("/dev/null")
                && base != n
                && base.ends_with(".service") == n.ends_with(".service"))
            .then_some(base)
        }) else {
            break;
        };
        n = next;
    }
    n
}

/// Splits `a@b.service` into ("a", Some("b"), ".service").
pub fn split_name(name: &str) -> (String, Option<String>, String) {
    let (stem, suffix) = match name.rfind('.') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    match stem.split_once('@') {
        Some((p, i)) => (p.to_string(), Some(i.to_string()), suffix.to_string()),
        None => (stem.to_string(), None, suffix.to_string()),
    }
}

/// The fragment for `name`: its own file, else its template's. Masked if it is /dev/null.
pub fn find(name: &str) -> Result<PathBuf, LoadError> {
    let (prefix, instance, suffix) = split_name(name);
    let mut candidates = vec![name.to_string()];
    if instance.as_deref().is_some_and(|i| !i.is_empty()) {
        candidates.push(format!("{prefix}@{suffix}"));
    }
    for c in &candidates {
        for d in DIRS {
            let p = Path::new(d).join(c);
            if p.symlink_metadata().is_ok() {
                let masked = std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null"))
                    || p.canonicalize().is_ok_and(|t| t == Path::new("/dev/null"));
                if masked {
                    return Err(LoadError::Masked(p));
                }
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
    }
    Err(LoadError::NotFound)
}

/// Loads and interprets a unit. `hostname` resolves %H.
pub fn load(name: &str, hostname: &str) -> Result<Unit, LoadError> {
    let name = normalize(name);
    let path = find(&name)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| LoadError::Bad(format!("{}: {e}", path.display())))?;
    let mut entries = parse(&text);
    for d in drop_ins(&name) {
        if let Ok(t) = std::fs::read_to_string(&d) {
            entries.extend(parse(&t));
        }
    }
    let spec = Specifiers::new(&name, hostname);
    let entries: Vec<(String, String, String)> = entries
        .into_iter()
        .map(|(s, k, v)| (s, k, spec.resolve(&v)))
        .collect();
    let mut u = interpret(&name, path, &entries).map_err(LoadError::Bad)?;
    u.fingerprint = fingerprint(&name);
    Ok(u)
}

/// What the unit's files on disk look like now (see [`Unit::fingerprint`]).
pub fn fingerprint(name: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut files: Vec<PathBuf> = find(name).into_iter().collect();
    files.extend(drop_ins(name));
    files
        .iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => format!(
                "{}:{}.{}:{};",
                p.display(),
                m.mtime(),
                m.mtime_nsec(),
                m.len()
            ),
            Err(_) => format!("{}:-;", p.display()),
        })
        .collect()
}

/// Interprets unit text that is not on disk (tests, previews).
#[cfg(test)]
pub fn load_text(name: &str, text: &str, hostname: &str) -> Result<Unit, String> {
    let spec = Specifiers::new(name, hostname);
    let entries: Vec<(String, String, String)> = parse(text)
        .into_iter()
        .map(|(s, k, v)| (s, k, spec.resolve(&v)))
        .collect();
    interpret(name, PathBuf::from("/dev/null"), &entries)
}

/// Drop-in files for `name` (and its template), ordered by file name; a file in a
/// higher-priority directory hides a same-named one below it.
fn drop_ins(name: &str) -> Vec<PathBuf> {
    let (prefix, instance, suffix) = split_name(name);
    let mut dirs = vec![format!("{name}.d")];
    if instance.is_some() {
        dirs.insert(0, format!("{prefix}@{suffix}.d"));
    }
    let mut out = Vec::new();
    for dname in dirs {
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for d in DIRS.iter().rev() {
            if let Ok(rd) = std::fs::read_dir(Path::new(d).join(&dname)) {
                for e in rd.flatten() {
                    let f = e.file_name().to_string_lossy().into_owned();
                    if f.ends_with(".conf") {
                        files.insert(f, e.path());
                    }
                }
            }
        }
        out.extend(files.into_values());
    }
    out
}

/// Raw (section, key, value) entries, with continuation lines joined.
pub fn parse(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending: Option<(String, String)> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some((k, mut v)) = pending.take() {
            if line.starts_with('#') || line.starts_with(';') {
                pending = Some((k, v));
                continue;
            }
            if let Some(l) = line.strip_suffix('\\') {
                v.push(' ');
                v.push_str(l.trim());
                pending = Some((k, v));
            } else {
                v.push(' ');
                v.push_str(line);
                out.push((section.clone(), k, v));
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if let Some(l) = v.strip_suffix('\\') {
            pending = Some((k, l.trim().to_string()));
        } else {
            out.push((section.clone(), k, v));
        }
    }
    if let Some((k, v)) = pending {
        out.push((section, k, v));
    }
    out
}
