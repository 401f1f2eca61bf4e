//! Unit files: finding them (with templates, drop-ins and masks), resolving specifiers,
//! and reading the subset of `[Unit]`, `[Service]` and `[Install]` the local model supports.

#[cfg(test)]
pub use crate::unitfile::load_text;
pub use crate::unitfile::{canonical, find, fingerprint, load, normalize, parse, split_name};
use crate::words;
use std::path::PathBuf;
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

/// RuntimeDirectoryPreserve=.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preserve {
    /// Removed whenever the service stops, automatic restarts included (systemd's default).
    No,
    /// Never removed by the service's stop.
    Yes,
    /// Kept when the service will be restarted automatically (systemd also keeps it across
    /// `systemctl restart`; here that is a stop then a start, which removes it).
    Restart,
}

impl Preserve {
    /// Whether a stop keeps the runtime directories, given whether a restart follows.
    pub fn keeps(self, will_restart: bool) -> bool {
        match self {
            Preserve::No => false,
            Preserve::Yes => true,
            Preserve::Restart => will_restart,
        }
    }
}

/// KillMode=.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// `@`: the second word is `argv[0]`.
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
    /// RuntimeDirectoryPreserve=: whether the runtime directories outlive the service's stop.
    pub runtime_directory_preserve: Preserve,
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

/// A `.timer` unit's `[Timer]` section (systemd.timer(5)): realtime timers only.
#[derive(Clone, Debug)]
pub struct Timer {
    /// OnCalendar= (several elapse at the earliest of them).
    pub on_calendar: Vec<crate::calendar::Calendar>,
    /// Unit=: the unit to activate, by default the timer's name with `.service`.
    pub unit: String,
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
    /// A `.timer` unit's settings.
    pub timer: Option<Timer>,
    pub install: Install,
    /// Has an `[Install]` section with something to enable.
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

pub(crate) fn interpret(
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
        runtime_directory_preserve: Preserve::No,
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
        timer: None,
        install: Install::default(),
        installable: false,
        fingerprint: String::new(),
    };
    let mut explicit_type = false;
    let mut timer = crate::unit::Timer {
        on_calendar: vec![],
        unit: name
            .strip_suffix(".timer")
            .map(|n| format!("{n}.service"))
            .unwrap_or_default(),
    };
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
            ("Service", "RuntimeDirectoryPreserve") => {
                s.runtime_directory_preserve = match v.as_str() {
                    "yes" | "true" | "on" | "1" => Preserve::Yes,
                    "restart" => Preserve::Restart,
                    _ => Preserve::No,
                }
            }
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
            // systemd.timer(5). An empty value resets the list. A value systemd would ignore
            // with a warning (load-fragment.c config_parse_timer) is refused here, so that a
            // unit file the local model reads differently is noticed.
            ("Timer", "OnCalendar") => {
                if v.is_empty() {
                    timer.on_calendar.clear()
                } else {
                    timer.on_calendar.push(
                        crate::calendar::Calendar::parse(v)
                            .map_err(|e| format!("OnCalendar={v}: {e}"))?,
                    )
                }
            }
            ("Timer", "Unit") => timer.unit = v.clone(),
            // Elapsing at once is within the accuracy window and the random delay.
            ("Timer", "AccuracySec") | ("Timer", "RandomizedDelaySec") => {}
            ("Timer", k) => {
                return Err(format!("[Timer] {k}= is not supported by the local model"))
            }
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
    if name.ends_with(".timer") {
        // timer.c timer_verify.
        if timer.on_calendar.is_empty() {
            return Err("Timer unit lacks value setting. Refusing.".into());
        }
        u.timer = Some(timer);
    }
    let service = name.ends_with(".service");
    if service && s.kind != Kind::Oneshot && s.exec_start.is_empty() {
        return Err("Service has no ExecStart= setting, which is only allowed for Type=oneshot services. Refusing.".into());
    }
    if service && s.kind != Kind::Oneshot && s.exec_start.len() > 1 {
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
    fn runtime_directory_preserve() {
        let u = |v: &str| {
            let text = format!("[Service]\nExecStart=/bin/x\nRuntimeDirectory=x\n{v}");
            interpret("x.service", PathBuf::from("/x"), &parse(&text))
                .unwrap()
                .svc
                .runtime_directory_preserve
        };
        assert_eq!(u(""), Preserve::No);
        assert_eq!(u("RuntimeDirectoryPreserve=yes"), Preserve::Yes);
        assert_eq!(u("RuntimeDirectoryPreserve=restart"), Preserve::Restart);
        assert!(
            !Preserve::No.keeps(true),
            "the default removes them even before an automatic restart"
        );
        assert!(Preserve::Restart.keeps(true) && !Preserve::Restart.keeps(false));
        assert!(Preserve::Yes.keeps(false));
    }

    #[test]
    fn timers_activate_their_service_and_need_a_calendar() {
        let u = load_text(
            "nightly.timer",
            "[Timer]\nOnCalendar=daily\nOnCalendar=*:0/30\nAccuracySec=1s\n[Install]\nWantedBy=timers.target\n",
            "h",
        )
        .unwrap();
        let t = u.timer.unwrap();
        assert_eq!(
            (t.unit.as_str(), t.on_calendar.len()),
            ("nightly.service", 2)
        );
        assert!(u.installable);
        let other = load_text(
            "x.timer",
            "[Timer]\nOnCalendar=hourly\nUnit=y.service\n",
            "h",
        )
        .unwrap();
        assert_eq!(other.timer.unwrap().unit, "y.service");
        let e = load_text("x.timer", "[Timer]\nUnit=y.service\n", "h").unwrap_err();
        assert!(e.contains("lacks value setting"), "{e}");
        let e = load_text(
            "x.timer",
            "[Timer]\nOnCalendar=daily\nPersistent=true\n",
            "h",
        )
        .unwrap_err();
        assert!(e.contains("Persistent= is not supported"), "{e}");
        let e = load_text("x.timer", "[Timer]\nOnCalendar=*-*~01\n", "h").unwrap_err();
        assert!(e.contains("OnCalendar=*-*~01"), "{e}");
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
