//! Unit files: finding them (with templates, drop-ins and masks), resolving specifiers,
//! and reading the subset of [Unit], [Service] and [Install] the local model supports.

use crate::words;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Unit search path, highest priority first.
pub const DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Simple,
    Exec,
    Forking,
    Oneshot,
    Notify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnAbort,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::Always => "always",
            Restart::OnSuccess => "on-success",
            Restart::OnFailure => "on-failure",
            Restart::OnAbnormal => "on-abnormal",
            Restart::OnAbort => "on-abort",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillMode {
    ControlGroup,
    Mixed,
    Process,
    None,
}

/// One Exec line: its prefixes and its words (specifiers resolved, variables not yet).
#[derive(Clone, Debug)]
pub struct ExecLine {
    pub ignore_failure: bool,
    /// `+`, `!`, `!!`: runs with full privileges.
    pub privileged: bool,
    /// `:`: no variable expansion.
    pub no_expand: bool,
    /// `@`: the second word is argv[0].
    pub argv0: bool,
    pub words: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub kind: Kind,
    pub exec_start_pre: Vec<ExecLine>,
    pub exec_start: Vec<ExecLine>,
    pub exec_start_post: Vec<ExecLine>,
    pub exec_reload: Vec<ExecLine>,
    pub exec_stop: Vec<ExecLine>,
    pub exec_stop_post: Vec<ExecLine>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub environment: Vec<(String, String)>,
    /// (path, optional)
    pub environment_files: Vec<(String, bool)>,
    /// (path, optional)
    pub working_directory: Option<(String, bool)>,
    pub runtime_directory: Vec<String>,
    pub runtime_directory_mode: u32,
    /// StateDirectory=, CacheDirectory=, LogsDirectory=, ConfigurationDirectory=: (base, name).
    pub other_directories: Vec<(&'static str, String)>,
    pub pid_file: Option<String>,
    pub restart: Restart,
    pub restart_sec: Duration,
    /// None: no limit.
    pub timeout_start: Option<Duration>,
    pub timeout_stop: Option<Duration>,
    pub remain_after_exit: bool,
    pub success_exit_status: Vec<i32>,
    pub success_signals: Vec<i32>,
    pub kill_mode: KillMode,
    pub kill_signal: i32,
    pub limit_nofile: Option<u64>,
    pub permissions_start_only: bool,
    pub umask: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Install {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub alias: Vec<String>,
    pub default_instance: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Unit {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub after: Vec<String>,
    /// Wants= and Requires=: (unit, required).
    pub pulls: Vec<(String, bool)>,
    /// Condition*/Assert* settings: (key, value).
    pub conditions: Vec<(String, String)>,
    pub start_limit_burst: u32,
    pub start_limit_interval: Duration,
    pub svc: Service,
    pub install: Install,
    /// Has an [Install] section with something to enable.
    pub installable: bool,
    /// Identity of the files it was read from (path, mtime, size), to tell when they changed.
    pub fingerprint: String,
}

#[derive(Debug)]
pub enum LoadError {
    NotFound,
    Masked(PathBuf),
    Bad(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::NotFound => write!(f, "not found"),
            LoadError::Masked(_) => write!(f, "masked"),
            LoadError::Bad(e) => write!(f, "bad unit file: {e}"),
        }
    }
}

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

struct Specifiers {
    name: String,
    prefix: String,
    instance: String,
    hostname: String,
}

impl Specifiers {
    fn new(name: &str, hostname: &str) -> Specifiers {
        let (prefix, instance, _) = split_name(name);
        Specifiers {
            name: name.to_string(),
            prefix,
            instance: instance.unwrap_or_default(),
            hostname: hostname.to_string(),
        }
    }

    fn resolve(&self, v: &str) -> String {
        let mut s = String::new();
        let mut it = v.chars();
        while let Some(c) = it.next() {
            if c != '%' {
                s.push(c);
                continue;
            }
            let Some(k) = it.next() else {
                s.push('%');
                break;
            };
            let stem = self
                .name
                .rsplit_once('.')
                .map(|(a, _)| a)
                .unwrap_or(&self.name);
            match k {
                'n' => s.push_str(&self.name),
                'N' => s.push_str(stem),
                'p' => s.push_str(&self.prefix),
                'P' => s.push_str(&unescape_name(&self.prefix)),
                'i' => s.push_str(&self.instance),
                'I' => s.push_str(&unescape_name(&self.instance)),
                'j' => s.push_str(self.prefix.rsplit('-').next().unwrap_or("")),
                'H' => s.push_str(&self.hostname),
                'l' => s.push_str(self.hostname.split('.').next().unwrap_or("")),
                'm' => s.push_str(
                    std::fs::read_to_string("/etc/machine-id")
                        .unwrap_or_default()
                        .trim(),
                ),
                't' => s.push_str("/run"),
                'S' => s.push_str("/var/lib"),
                'C' => s.push_str("/var/cache"),
                'L' => s.push_str("/var/log"),
                'E' => s.push_str("/etc"),
                'T' => s.push_str("/tmp"),
                'V' => s.push_str("/var/tmp"),
                'h' => s.push_str("/root"),
                'u' => s.push_str("root"),
                'U' => s.push('0'),
                '%' => s.push('%'),
                other => {
                    s.push('%');
                    s.push(other);
                }
            }
        }
        s
    }
}

/// systemd's unit-name unescaping: `-` is `/`, `\xNN` is a byte.
pub fn unescape_name(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            out.push(b'/');
            i += 1;
        } else if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            match u8::from_str_radix(&s[i + 2..i + 4], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 4;
                }
                Err(_) => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_duration(v: &str) -> Option<Option<Duration>> {
    let v = v.trim();
    if v == "infinity" {
        return Some(None);
    }
    let mut total = 0f64;
    for tok in v.split_whitespace() {
        let n: String = tok
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let unit = &tok[n.len()..];
        let x: f64 = n.parse().ok()?;
        let mul = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 0.001,
            "us" | "usec" => 0.000_001,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return None,
        };
        total += x * mul;
    }
    Some(Some(Duration::from_secs_f64(total)))
}

fn parse_bool(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "yes" | "true" | "on"
    )
}

fn exec_line(v: &str) -> ExecLine {
    let mut e = ExecLine {
        ignore_failure: false,
        privileged: false,
        no_expand: false,
        argv0: false,
        words: Vec::new(),
    };
    let mut rest = v.trim();
    loop {
        match rest.chars().next() {
            Some('-') => e.ignore_failure = true,
            Some('+') | Some('!') => e.privileged = true,
            Some(':') => e.no_expand = true,
            Some('@') => e.argv0 = true,
            _ => break,
        }
        rest = &rest[1..];
    }
    e.words = words::split(rest);
    e
}

fn interpret(
    name: &str,
    path: PathBuf,
    entries: &[(String, String, String)],
) -> Result<Unit, String> {
    let mut s = Service {
        kind: Kind::Simple,
        exec_start_pre: vec![],
        exec_start: vec![],
        exec_start_post: vec![],
        exec_reload: vec![],
        exec_stop: vec![],
        exec_stop_post: vec![],
        user: None,
        group: None,
        environment: vec![],
        environment_files: vec![],
        working_directory: None,
        runtime_directory: vec![],
        runtime_directory_mode: 0o755,
        other_directories: vec![],
        pid_file: None,
        restart: Restart::No,
        restart_sec: Duration::from_millis(100),
        timeout_start: Some(Duration::from_secs(90)),
        timeout_stop: Some(Duration::from_secs(90)),
        remain_after_exit: false,
        success_exit_status: vec![],
        success_signals: vec![],
        kill_mode: KillMode::ControlGroup,
        kill_signal: libc::SIGTERM,
        limit_nofile: None,
        permissions_start_only: false,
        umask: 0o022,
    };
    let mut u = Unit {
        name: name.to_string(),
        path,
        description: name.to_string(),
        after: vec![],
        pulls: vec![],
        conditions: vec![],
        start_limit_burst: 5,
        start_limit_interval: Duration::from_secs(10),
        svc: s.clone(),
        install: Install::default(),
        installable: false,
        fingerprint: String::new(),
    };
    let mut explicit_type = false;
    for (sec, k, v) in entries {
        let lists = |l: &mut Vec<ExecLine>| {
            if v.is_empty() {
                l.clear()
            } else {
                l.push(exec_line(v))
            }
        };
        match (sec.as_str(), k.as_str()) {
            ("Unit", "Description") => u.description = v.clone(),
            ("Unit", "After") => u.after.extend(v.split_whitespace().map(String::from)),
            ("Unit", "Wants") => u
                .pulls
                .extend(v.split_whitespace().map(|d| (d.to_string(), false))),
            ("Unit", "Requires") | ("Unit", "Requisite") | ("Unit", "BindsTo") => u
                .pulls
                .extend(v.split_whitespace().map(|d| (d.to_string(), true))),
            ("Unit", k) if k.starts_with("Condition") || k.starts_with("Assert") => {
                if v.is_empty() {
                    u.conditions.retain(|(ck, _)| ck != k)
                } else {
                    u.conditions.push((k.to_string(), v.clone()))
                }
            }
            ("Unit", "StartLimitBurst") | ("Service", "StartLimitBurst") => {
                u.start_limit_burst = v.parse().map_err(|_| format!("bad StartLimitBurst={v}"))?
            }
            ("Unit", "StartLimitIntervalSec")
            | ("Service", "StartLimitInterval")
            | ("Service", "StartLimitIntervalSec") => {
                u.start_limit_interval = parse_duration(v).flatten().unwrap_or(Duration::ZERO)
            }
            ("Service", "Type") => {
                explicit_type = true;
                s.kind = match v.as_str() {
                    "simple" | "idle" | "dbus" => Kind::Simple,
                    "exec" => Kind::Exec,
                    "forking" => Kind::Forking,
                    "oneshot" => Kind::Oneshot,
                    "notify" | "notify-reload" => Kind::Notify,
                    other => return Err(format!("unsupported Type={other}")),
                }
            }
            ("Service", "ExecStartPre") => lists(&mut s.exec_start_pre),
            ("Service", "ExecStart") => lists(&mut s.exec_start),
            ("Service", "ExecStartPost") => lists(&mut s.exec_start_post),
            ("Service", "ExecReload") => lists(&mut s.exec_reload),
            ("Service", "ExecStop") => lists(&mut s.exec_stop),
            ("Service", "ExecStopPost") => lists(&mut s.exec_stop_post),
            ("Service", "User") => s.user = Some(v.clone()).filter(|v| !v.is_empty()),
            ("Service", "Group") => s.group = Some(v.clone()).filter(|v| !v.is_empty()),
            ("Service", "Environment") => {
                if v.is_empty() {
                    s.environment.clear()
                } else {
                    s.environment.extend(words::assignments(v))
                }
            }
            ("Service", "EnvironmentFile") => {
                if v.is_empty() {
                    s.environment_files.clear()
                } else {
                    let (opt, p) = v
                        .strip_prefix('-')
                        .map_or((false, v.as_str()), |p| (true, p));
                    s.environment_files.push((p.trim().to_string(), opt));
                }
            }
            ("Service", "WorkingDirectory") => {
                let (opt, p) = v
                    .strip_prefix('-')
                    .map_or((false, v.as_str()), |p| (true, p));
                s.working_directory = Some((
                    if p == "~" {
                        "/root".into()
                    } else {
                        p.to_string()
                    },
                    opt,
                ));
            }
            ("Service", "RuntimeDirectory") => s
                .runtime_directory
                .extend(v.split_whitespace().map(String::from)),
            ("Service", "StateDirectory") => s
                .other_directories
                .extend(v.split_whitespace().map(|d| ("/var/lib", d.to_string()))),
            ("Service", "CacheDirectory") => s
                .other_directories
                .extend(v.split_whitespace().map(|d| ("/var/cache", d.to_string()))),
            ("Service", "LogsDirectory") => s
                .other_directories
                .extend(v.split_whitespace().map(|d| ("/var/log", d.to_string()))),
            ("Service", "ConfigurationDirectory") => s
                .other_directories
                .extend(v.split_whitespace().map(|d| ("/etc", d.to_string()))),
            ("Service", "RuntimeDirectoryMode") => {
                s.runtime_directory_mode = u32::from_str_radix(v, 8).unwrap_or(0o755)
            }
            ("Service", "PIDFile") => s.pid_file = Some(v.clone()),
            ("Service", "Restart") => {
                s.restart = match v.as_str() {
                    "no" => Restart::No,
                    "always" => Restart::Always,
                    "on-success" => Restart::OnSuccess,
                    "on-failure" => Restart::OnFailure,
                    "on-abnormal" | "on-watchdog" => Restart::OnAbnormal,
                    "on-abort" => Restart::OnAbort,
                    other => return Err(format!("bad Restart={other}")),
                }
            }
            ("Service", "RestartSec") => {
                s.restart_sec = parse_duration(v)
                    .flatten()
                    .unwrap_or(Duration::from_millis(100))
            }
            ("Service", "TimeoutStartSec") => {
                s.timeout_start = parse_duration(v)
                    .unwrap_or(s.timeout_start)
                    .filter(|d| !d.is_zero())
            }
            ("Service", "TimeoutStopSec") => {
                s.timeout_stop = parse_duration(v)
                    .unwrap_or(s.timeout_stop)
                    .filter(|d| !d.is_zero())
            }
            ("Service", "TimeoutSec") => {
                let d = parse_duration(v)
                    .unwrap_or(s.timeout_start)
                    .filter(|d| !d.is_zero());
                s.timeout_start = d;
                s.timeout_stop = d;
            }
            ("Service", "RemainAfterExit") => s.remain_after_exit = parse_bool(v),
            ("Service", "SuccessExitStatus") => {
                for t in v.split_whitespace() {
                    if let Ok(n) = t.parse() {
                        s.success_exit_status.push(n)
                    } else if let Some(sig) = crate::sys::signal_name_to_num(t) {
                        s.success_signals.push(sig)
                    }
                }
            }
            ("Service", "KillMode") => {
                s.kill_mode = match v.as_str() {
                    "mixed" => KillMode::Mixed,
                    "process" => KillMode::Process,
                    "none" => KillMode::None,
                    _ => KillMode::ControlGroup,
                }
            }
            ("Service", "KillSignal") => {
                s.kill_signal = crate::sys::signal_name_to_num(v).unwrap_or(libc::SIGTERM)
            }
            ("Service", "LimitNOFILE") => {
                let first = v.split(':').next().unwrap_or("");
                s.limit_nofile = if first == "infinity" {
                    Some(1 << 20)
                } else {
                    first.parse().ok()
                };
            }
            ("Service", "PermissionsStartOnly") => s.permissions_start_only = parse_bool(v),
            ("Service", "UMask") => s.umask = u32::from_str_radix(v, 8).unwrap_or(0o022),
            ("Install", "WantedBy") => u
                .install
                .wanted_by
                .extend(v.split_whitespace().map(String::from)),
            ("Install", "RequiredBy") => u
                .install
                .required_by
                .extend(v.split_whitespace().map(String::from)),
            ("Install", "Alias") => u
                .install
                .alias
                .extend(v.split_whitespace().map(String::from)),
            ("Install", "DefaultInstance") => u.install.default_instance = Some(v.clone()),
            _ => {}
        }
    }
    if !explicit_type && s.exec_start.is_empty() && name.ends_with(".service") {
        s.kind = Kind::Oneshot;
    }
    if name.ends_with(".service")
        && s.exec_start.is_empty()
        && !s.remain_after_exit
        && s.exec_stop.is_empty()
    {
        return Err("Service has no ExecStart=, ExecStop=, or SuccessAction=. Refusing.".into());
    }
    if s.kind != Kind::Oneshot && s.exec_start.len() > 1 {
        return Err("Service has more than one ExecStart= setting, which is only allowed for Type=oneshot services. Refusing.".into());
    }
    u.installable = !(u.install.wanted_by.is_empty()
        && u.install.required_by.is_empty()
        && u.install.alias.is_empty());
    u.svc = s;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_and_templates() {
        let sp = Specifiers::new("postgresql@15-main.service", "db1");
        assert_eq!(
            sp.resolve("%i %I %p %H %n %%"),
            "15-main 15/main postgresql db1 postgresql@15-main.service %"
        );
    }

    #[test]
    fn interprets_a_service() {
        let text = "[Unit]\nDescription=x\n[Service]\nType=notify\nEnvironment=\"A=1\" B=2\nEnvironmentFile=-/etc/default/x\nExecStart=-/bin/x $A \\\n  --flag\nRestart=always\nRestartSec=200ms\n[Install]\nWantedBy=multi-user.target\n";
        let u = interpret("x.service", PathBuf::from("/x"), &parse(text)).unwrap();
        assert_eq!(u.svc.kind, Kind::Notify);
        assert_eq!(
            u.svc.environment,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert_eq!(
            u.svc.environment_files,
            vec![("/etc/default/x".to_string(), true)]
        );
        assert!(u.svc.exec_start[0].ignore_failure);
        assert_eq!(u.svc.exec_start[0].words, vec!["/bin/x", "$A", "--flag"]);
        assert_eq!(u.svc.restart, Restart::Always);
        assert_eq!(u.svc.restart_sec, Duration::from_millis(200));
        assert!(u.installable);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("1min 30s"),
            Some(Some(Duration::from_secs(90)))
        );
        assert_eq!(parse_duration("infinity"), Some(None));
        assert_eq!(parse_duration("5"), Some(Some(Duration::from_secs(5))));
    }
}
