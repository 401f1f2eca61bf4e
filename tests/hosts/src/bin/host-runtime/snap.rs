//! `snap` inside a host: install/refresh/remove/list from the catalog, services and their
//! start/stop/restart, and get/set of recorded configuration.

use crate::catalog::{self, Record};
use crate::unit::DIRS;
use std::path::Path;

const DEFAULT_CHANNEL: &str = "latest/stable";

struct Cli {
    names: Vec<String>,
    channel: Option<String>,
    enable: bool,
    disable: bool,
    /// `--hold[=<duration>]`: go-flags' optional value, `forever` when bare.
    hold: Option<String>,
    unhold: bool,
}

fn parse(argv: &[String]) -> Result<Cli, String> {
    let mut c = Cli {
        names: vec![],
        channel: None,
        enable: false,
        disable: false,
        hold: None,
        unhold: false,
    };
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--channel" => {
                c.channel = it
                    .next()
                    .map(|v| option_value("--channel", v))
                    .transpose()?
            }
            s if s.starts_with("--channel=") => {
                c.channel = Some(option_value("--channel", &s["--channel=".len()..])?)
            }
            "--stable" | "--candidate" | "--beta" | "--edge" => {
                c.channel = Some(format!("latest/{}", &a[2..]))
            }
            "--enable" => c.enable = true,
            "--disable" => c.disable = true,
            "--hold" => c.hold = Some("forever".into()),
            s if s.starts_with("--hold=") => {
                c.hold = Some(option_value("--hold", &s["--hold=".len()..])?)
            }
            "--unhold" => c.unhold = true,
            // Installing a given revision or joining a cohort (Canonical's snap library passes
            // both when a charm asks) is not modelled: refused, so a charm never gets another
            // revision than it asked for without knowing.
            s if ["--revision", "--cohort"]
                .iter()
                .any(|f| s == *f || s.starts_with(&format!("{f}="))) =>
            {
                let flag = s.split('=').next().unwrap_or(s);
                return Err(format!(
                    "error: {flag} is not supported by the local model's snap"
                ));
            }
            s if s.starts_with('-') => {}
            _ => c.names.push(a.clone()),
        }
    }
    Ok(c)
}

/// An option's value as go-flags hands it to snap: one that starts with `"` is a Go string
/// literal and is unquoted (go-flags parser.go `parseOption`, `unquoteIfPossible` →
/// `strconv.Unquote`, for every option without an `unquote:"false"` tag; in snapd's cmd/snap
/// only `snap get --default` has one, not `--channel` nor `--hold`), so `--channel="3.8/edge"`
/// reaching snap through an exec without a shell is channel 3.8/edge. Positional arguments (snap names, `snap set`'s
/// `key=value`) are not unquoted (`addArgs` converts them as they are). A literal go-flags
/// cannot unquote is refused with its `marshalError` message.
fn option_value(flag: &str, v: &str) -> Result<String, String> {
    if !v.starts_with('"') {
        return Ok(v.to_string());
    }
    go_unquote(v).ok_or_else(|| {
        format!("error: invalid argument for flag `{flag}' (expected string): invalid syntax")
    })
}

/// Go's `strconv.Unquote` for a double-quoted literal: the escapes of the Go spec's
/// interpreted string literals; a bare `"` or a newline inside, or a bad escape, is an error.
fn go_unquote(s: &str) -> Option<String> {
    let body = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::new();
    let mut it = body.chars();
    let hex = |it: &mut std::str::Chars, n: usize| -> Option<u32> {
        let digits: String = it.by_ref().take(n).collect();
        (digits.len() == n)
            .then(|| u32::from_str_radix(&digits, 16).ok())
            .flatten()
    };
    while let Some(ch) = it.next() {
        match ch {
            '"' | '\n' => return None,
            '\\' => {
                let e = it.next()?;
                match e {
                    'a' => out.push(7),
                    'b' => out.push(8),
                    'f' => out.push(12),
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    'v' => out.push(11),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    // A byte, as Go puts it in the string (not a code point).
                    'x' => out.push(u8::try_from(hex(&mut it, 2)?).ok()?),
                    '0'..='7' => {
                        let rest: String = it.by_ref().take(2).collect();
                        let v = u32::from_str_radix(&format!("{e}{rest}"), 8).ok()?;
                        if rest.len() != 2 || v > 255 {
                            return None;
                        }
                        out.push(v as u8);
                    }
                    'u' | 'U' => {
                        let c = char::from_u32(hex(&mut it, if e == 'u' { 4 } else { 8 })?)?;
                        out.extend_from_slice(c.to_string().as_bytes());
                    }
                    _ => return None,
                }
            }
            c => out.extend_from_slice(c.to_string().as_bytes()),
        }
    }
    // Go strings may hold any bytes; an argv option value here is text.
    String::from_utf8(out).ok()
}

/// "3.5" → "3.5/stable"; "latest/edge" stays.
fn full_channel(c: &str) -> String {
    if c.contains('/') || matches!(c, "stable" | "candidate" | "beta" | "edge") {
        if c.contains('/') {
            c.to_string()
        } else {
            format!("latest/{c}")
        }
    } else {
        format!("{c}/stable")
    }
}

pub fn main(argv: &[String]) -> i32 {
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("error: the local model's snap needs a command");
        return 1;
    };
    if cmd == "run" {
        // The app's own arguments are not snap's options.
        return match rest.split_first() {
            Some((app, args)) => report(run_app(app, args)),
            None => report(Err(
                "error: the required argument `<snap-app>` was not provided".into(),
            )),
        };
    }
    let cli = match parse(rest) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let r = match cmd.as_str() {
        "install" => install(&cli),
        "refresh" => refresh(&cli),
        // The local model's stand-in for snapd's refresh timer (a test knob, not a snap
        // command): what an auto-refresh would do now.
        "lm-auto-refresh" => auto_refresh(),
        "remove" => remove(&cli),
        "list" => list(&cli),
        "services" => services(&cli),
        "start" | "stop" | "restart" => control(cmd, &cli),
        "set" => set(rest),
        "get" => get(rest),
        "version" => {
            println!("snap    2.63+local-model\nsnapd   2.63+local-model");
            Ok(())
        }
        other => Err(format!(
            "error: unknown command \"{other}\" (not supported by the local model)"
        )),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn report(r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Where snapd links a snap's commands (`dirs.SnapBinariesDir`).
const SNAP_BIN: &str = "/snap/bin";
/// snap-confine's parent of every snap's private /tmp (cmd/snap-confine/mount-support.c
/// `SNAP_PRIVATE_TMP_ROOT_DIR`; data/systemd-tmpfiles/snapd.conf `D! ... 0700 root root`).
const PRIVATE_TMP_ROOT: &str = "/tmp/snap-private-tmp";

/// Whether `prog` is a snap's command: snapd links `/snap/bin/<app>` to /usr/bin/snap, which
/// runs the app when called by that name (cmd/snapd/cli/main.go `main`: `snapApp :=
/// filepath.Base(os.Args[0])`, `osutil.IsSymlink(filepath.Join(dirs.SnapBinariesDir, snapApp))`).
pub fn is_app_command(prog: &str) -> bool {
    !prog.is_empty()
        && !prog.contains('/')
        && std::fs::symlink_metadata(Path::new(SNAP_BIN).join(prog))
            .is_ok_and(|m| m.file_type().is_symlink())
}

/// `snap run <snap>[.<app>] ARGS` (also `/snap/bin/<app> ARGS`): the app's command from the
/// snap's metadata, in a mount namespace of its own where /tmp is the snap's private
/// /tmp/snap-private-tmp/snap.<snap>/tmp, as snap-confine sets it up
/// (cmd/snap-confine/mount-support.c `setup_private_tmp`). Services run this way too: snapd's
/// unit files start `/usr/bin/snap run <snap>.<app>` (snap/info.go `launcherCommand`).
/// snapd keeps one preserved namespace per snap (/run/snapd/ns/<snap>.mnt); each run here
/// gets its own, which shows the same /tmp.
pub fn run_app(spec: &str, args: &[String]) -> Result<(), String> {
    let (snap, app) = spec.split_once('.').unwrap_or((spec, spec));
    if installed(snap).is_none() {
        return Err(format!(
            "error: cannot find current revision for snap {snap}: readlink /snap/{snap}/current: no such file or directory"
        ));
    }
    let entry = match catalog::lookup_kind(snap, "snap") {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(format!("error: {e}")),
        None => return Err(format!("error: snap \"{snap}\" not found")),
    };
    let Some((program, fixed)) = entry.apps.get(app).and_then(|c| c.split_first()) else {
        return Err(format!("error: cannot find app \"{app}\" in \"{snap}\""));
    };
    private_tmp(snap)?;
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new(program)
        .args(fixed)
        .args(args)
        .exec();
    Err(format!("error: cannot run {program}: {e}"))
}

/// Enters a new mount namespace whose /tmp is the snap's private one (created 0700/01777
/// root, checked as snap-confine checks it), without the change reaching the host's.
fn private_tmp(snap: &str) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let fail = |what: &str, e: std::io::Error| format!("cannot {what}: {e}");
    let ensure = |path: &Path, mode: u32| -> Result<(), String> {
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| fail(&format!("chmod {}", path.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(fail(&format!("create {}", path.display()), e)),
        }
    };
    let check = |path: &Path, mode: u32| -> Result<(), String> {
        let m = std::fs::symlink_metadata(path)
            .map_err(|e| fail(&format!("stat {}", path.display()), e))?;
        if !m.file_type().is_dir() || m.uid() != 0 || m.gid() != 0 || m.mode() & 0o7777 != mode {
            return Err(format!(
                "{} has unexpected ownership / permissions",
                path.display()
            ));
        }
        Ok(())
    };
    let root = Path::new(PRIVATE_TMP_ROOT);
    ensure(root, 0o700)?;
    check(root, 0o700)?;
    let base = root.join(format!("snap.{snap}"));
    ensure(&base, 0o700)?;
    check(&base, 0o700)?;
    let tmp = base.join("tmp");
    ensure(&tmp, 0o1777)?;
    check(&tmp, 0o1777)?;
    let cstr = |s: &str| std::ffi::CString::new(s).expect("no NUL in a path");
    let (slash, tmp_target, none) = (cstr("/"), cstr("/tmp"), cstr("none"));
    let source = cstr(&tmp.to_string_lossy());
    // SAFETY: plain syscalls on NUL-terminated strings that outlive them.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(fail(
                "unshare the mount namespace",
                std::io::Error::last_os_error(),
            ));
        }
        // Mounts made from here on stay in this namespace.
        if libc::mount(
            none.as_ptr(),
            slash.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail(
                "make / a slave mount",
                std::io::Error::last_os_error(),
            ));
        }
        if libc::mount(
            source.as_ptr(),
            tmp_target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail(
                "bind the private /tmp",
                std::io::Error::last_os_error(),
            ));
        }
        if libc::mount(
            none.as_ptr(),
            tmp_target.as_ptr(),
            std::ptr::null(),
            libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail("make /tmp private", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

pub(crate) fn installed(name: &str) -> Option<Record> {
    catalog::record(name).filter(|r| r.kind == "snap")
}

fn install(c: &Cli) -> Result<(), String> {
    if c.names.is_empty() {
        return Err("error: the required argument `<snap>` was not provided".into());
    }
    for n in &c.names {
        if catalog::record(n).is_some() {
            println!("snap \"{n}\" is already installed, see 'snap help refresh'");
            continue;
        }
        let e = match catalog::lookup_kind(n, "snap") {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(format!("error: {e}")),
            None => return Err(format!("error: snap \"{n}\" not found")),
        };
        let ch = full_channel(c.channel.as_deref().unwrap_or(DEFAULT_CHANNEL));
        let offered = offered(&e, &ch, "install")?;
        let mut rec = catalog::install_entry(&e, "snap", Some(ch.clone())).map_err(|e| format!("error: cannot perform the following tasks:\n- Run install hook of \"{n}\" snap ({e})"))?;
        rec.version = offered.version;
        rec.revision = offered.revision;
        catalog::save(&rec)?;
        let tag = if ch == DEFAULT_CHANNEL {
            String::new()
        } else {
            format!(" ({ch})")
        };
        println!("{n}{tag} {} from Local Model installed", rec.version);
    }
    Ok(())
}

/// What the store offers `entry` on `channel`: its channel map's version and revision, or,
/// for an entry without one, its version on every channel. A channel the map lacks is refused
/// with snapd's message ([`not_available`]); `action` is the command (`install`, `refresh`).
fn offered(
    entry: &catalog::Entry,
    channel: &str,
    action: &str,
) -> Result<catalog::ChannelEntry, String> {
    if entry.channels.is_empty() {
        return Ok(catalog::ChannelEntry {
            version: entry.version.clone().unwrap_or_else(|| "1.0".into()),
            revision: "1".into(),
        });
    }
    entry.channels.get(channel).cloned().ok_or_else(|| {
        let offered: Vec<&str> = entry.channels.keys().map(String::as_str).collect();
        format!(
            "error: {}",
            not_available(&entry.name, channel, action, &offered)
        )
    })
}

/// snapd's answer to a channel the store does not have for a snap (canonical/snapd
/// cmd/snap/error.go, `errorToCmdMessage`'s snap-channel-not-available case): the channels of
/// the same track ("architecture:track"), else the same risk on other tracks
/// ("architecture:risk"), each as an `installTable` of the command that would work, else a
/// generic hint. `channel` and `offered` are full `track/risk` channels.
fn not_available(name: &str, channel: &str, action: &str, offered: &[&str]) -> String {
    let split = |c: &str| -> (String, String) {
        match c.split_once('/') {
            Some((t, r)) => (t.to_string(), r.to_string()),
            None => ("latest".into(), c.to_string()),
        }
    };
    // snap.Channel's String(): the latest track is left out.
    let short = |t: &str, r: &str| {
        if t == "latest" {
            r.to_string()
        } else {
            format!("{t}/{r}")
        }
    };
    // `channelOption`.
    let option = |t: &str, r: &str| {
        if t == "latest" {
            format!("--{r}")
        } else if r == "stable" {
            format!("--channel={t}")
        } else {
            format!("--channel={t}/{r}")
        }
    };
    // `installTable`: tabwriter (minwidth len("candidate")+2, padding 2), each line indented
    // by two spaces, rows joined by newlines with none after the last.
    let table = |hits: &[(String, String)], full: bool| {
        let rows: Vec<(String, String)> = hits
            .iter()
            .map(|(t, r)| {
                let ch = if full {
                    format!("{t}/{r}")
                } else {
                    short(t, r)
                };
                (ch, format!("snap {action} {} {name}", option(t, r)))
            })
            .collect();
        let width = rows
            .iter()
            .map(|(c, _)| c.chars().count() + 2)
            .max()
            .unwrap_or(0)
            .max("candidate".len() + 2);
        rows.iter()
            .map(|(c, cmd)| format!("  {c:<width$}{cmd}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (track, risk) = split(channel);
    let all: Vec<(String, String)> = offered.iter().map(|c| split(c)).collect();
    let same_track: Vec<_> = all.iter().filter(|(t, _)| *t == track).cloned().collect();
    let same_risk: Vec<_> = all.iter().filter(|(_, r)| *r == risk).cloned().collect();
    let pre_release = "Please be mindful pre-release channels may include features not completely tested or implemented.";
    let track_warn = "Please be mindful that different tracks may include different features.";
    let more_info = format!("Get more information with 'snap info {name}'.");
    if !same_track.is_empty() {
        let mut msg = format!(
            "snap \"{name}\" is not available on {} but is available to install on the following channels:\n{}\n",
            short(&track, &risk),
            table(&same_track, false)
        );
        if risk == "stable" {
            msg += &format!("\n{pre_release}");
        }
        return msg + &format!("\n{more_info}");
    }
    if !same_risk.is_empty() {
        return format!(
            "snap \"{name}\" is not available on {track}/{risk} but is available to install on the following tracks:\n{}\n\n{track_warn}\n{more_info}",
            table(&same_risk, true)
        );
    }
    format!(
        "snap \"{name}\" is not available on {track}/{risk} but other tracks exist.\n\n\n{track_warn}\n{more_info}"
    )
}

/// Whether a `--hold` (`forever` or an RFC 3339 time) is still in force.
fn held(hold: Option<&str>) -> bool {
    match hold {
        None => false,
        Some("forever") => true,
        Some(t) => rfc3339_to_unix(t).is_some_and(|until| until > now_unix()),
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` ↔ seconds since the epoch (UTC only: what this snap writes).
pub(crate) fn unix_to_rfc3339(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn rfc3339_to_unix(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss)
}

/// Go's `time.ParseDuration` for what a hold takes (`72h`, `30m`, `1h30m`, `90s`): seconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s.chars().peekable();
    if s.is_empty() {
        return Err(format!("time: invalid duration \"{s}\""));
    }
    while let Some(ch) = rest.next() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let mut unit = ch.to_string();
        while let Some(&c2) = rest.peek() {
            if c2.is_ascii_digit() || c2 == '.' {
                break;
            }
            unit.push(c2);
            rest.next();
        }
        let n: f64 = num
            .parse()
            .map_err(|_| format!("time: invalid duration \"{s}\""))?;
        let mult = match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000001,
            "ns" => 0.000000001,
            _ => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        total += n * mult;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("time: missing unit in duration \"{s}\""));
    }
    Ok(total as i64)
}

/// Where a hold of every snap's auto-refresh is kept (`snap refresh --hold` with no name).
const AUTO_REFRESH_HOLD: &str = "/var/lib/local-model/snap-auto-refresh-hold";

/// `snap refresh --hold[=<duration>] [<snap>...]` (snapd cmd/snap/cmd_snap_op.go
/// `holdRefreshes`): a named snap's general refreshes and auto-refreshes are held, not a
/// refresh that names it; without a name, auto-refreshes of every snap.
fn hold(c: &Cli, value: &str) -> Result<(), String> {
    let time = if value == "forever" {
        "forever".to_string()
    } else {
        let secs = parse_duration(value).map_err(|e| {
            format!("error: hold value must be a number of hours, minutes or seconds, or \"forever\": {e}")
        })?;
        if secs < 1 {
            return Err(format!(
                "error: cannot hold refreshes for less than a second: {value}"
            ));
        }
        unix_to_rfc3339(now_unix() + secs)
    };
    let shown = if time == "forever" {
        "indefinitely".to_string()
    } else {
        format!("until {time}")
    };
    if c.names.is_empty() {
        std::fs::write(AUTO_REFRESH_HOLD, &time).map_err(|e| format!("error: {e}"))?;
        println!("Auto-refresh of all snaps held {shown}");
        return Ok(());
    }
    for n in &c.names {
        let mut r = installed(n).ok_or(format!("error: snap \"{n}\" is not installed"))?;
        r.hold = Some(time.clone());
        catalog::save(&r)?;
    }
    println!("General refreshes of {} held {shown}", quoted(&c.names));
    Ok(())
}

/// `snap refresh --unhold [<snap>...]` (`unholdRefreshes`).
fn unhold(c: &Cli) -> Result<(), String> {
    if c.names.is_empty() {
        let _ = std::fs::remove_file(AUTO_REFRESH_HOLD);
        println!("Removed auto-refresh hold on all snaps");
        return Ok(());
    }
    for n in &c.names {
        let mut r = installed(n).ok_or(format!("error: snap \"{n}\" is not installed"))?;
        r.hold = None;
        catalog::save(&r)?;
    }
    println!("Removed general refresh hold of {}", quoted(&c.names));
    Ok(())
}

/// strutil.Quoted: `"a", "b"`.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The catalog's offer for an installed snap on `channel`, if it differs from what is
/// installed (another channel, or another revision on the same one).
fn update_for(
    r: &Record,
    channel: &str,
) -> Result<Option<(catalog::Entry, catalog::ChannelEntry)>, String> {
    let e = match catalog::lookup_kind(&r.name, "snap") {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(format!("error: {e}")),
        None => return Err(format!("error: snap \"{}\" not found", r.name)),
    };
    let o = offered(&e, channel, "refresh")?;
    let same =
        r.channel.as_deref() == Some(channel) && o.revision == r.revision && o.version == r.version;
    Ok((!same).then_some((e, o)))
}

fn refresh(c: &Cli) -> Result<(), String> {
    if let Some(h) = &c.hold {
        if c.unhold {
            return Err("error: cannot use --hold with other flags".into());
        }
        return hold(c, h);
    }
    if c.unhold {
        return unhold(c);
    }
    if c.names.len() > 1 && c.channel.is_some() {
        return Err("error: a single snap name is needed to specify mode or channel flags".into());
    }
    if c.names.is_empty() {
        // A general refresh: every snap with an update that is not held
        // (cmd_snap_op.go `refreshMany`; a snap's hold covers general refreshes).
        let mut done = false;
        for r in catalog::records().into_iter().filter(|r| r.kind == "snap") {
            if held(r.hold.as_deref()) {
                continue;
            }
            let ch = r.channel.clone().unwrap_or_else(|| DEFAULT_CHANNEL.into());
            if let Some((e, o)) = update_for(&r, &ch)? {
                do_refresh(r, &e, &ch, o)?;
                done = true;
            }
        }
        if !done {
            eprintln!("All snaps up to date.");
        }
        return Ok(());
    }
    for n in &c.names {
        let Some(r) = installed(n) else {
            return Err(format!("error: snap \"{n}\" is not installed"));
        };
        // A refresh that names the snap is not held back by its hold.
        let ch = c
            .channel
            .as_deref()
            .map(full_channel)
            .or_else(|| r.channel.clone())
            .unwrap_or_else(|| DEFAULT_CHANNEL.into());
        match update_for(&r, &ch)? {
            Some((e, o)) => do_refresh(r, &e, &ch, o)?,
            None => eprintln!("snap \"{n}\" has no updates available"),
        }
    }
    Ok(())
}

/// One refresh as snapd's `doInstall` orders it for an installed snap
/// (overlord/snapstate/snapstate.go): the running services stop, the new revision is linked
/// (files laid again, `current` moves; the data under /var/snap/NAME stays), the snap's
/// `post-refresh` hook runs, then the services start. A failing hook undoes the refresh: the
/// old revision is linked back and its services started, and the error names the hook.
fn do_refresh(
    mut r: Record,
    e: &catalog::Entry,
    ch: &str,
    o: catalog::ChannelEntry,
) -> Result<(), String> {
    let n = r.name.clone();
    let running: Vec<String> = snap_units(&n)
        .into_iter()
        .filter(|u| crate::systemctl::call(&["is-active".into(), u.clone()]).code == 0)
        .collect();
    for u in &running {
        catalog::systemctl(&["stop", u]).map_err(|e| format!("error: {e}"))?;
    }
    let old = r.clone();
    catalog::lay_files(e).map_err(|x| format!("error: {x}"))?;
    // link-snap writes the new revision's service wrappers and reloads systemd.
    catalog::systemctl(&["daemon-reload"]).map_err(|x| format!("error: {x}"))?;
    r.channel = Some(ch.to_string());
    r.version = o.version.clone();
    r.revision = o.revision.clone();
    catalog::save(&r)?;
    let hook = e
        .hooks
        .get("post-refresh")
        .map(|cmds| cmds.iter().try_for_each(|argv| catalog::run(argv)))
        .unwrap_or(Ok(()));
    if let Err(err) = hook {
        catalog::save(&old)?;
        for u in &running {
            let _ = catalog::systemctl(&["start", u]);
        }
        return Err(format!(
            "error: cannot perform the following tasks:\n- Run post-refresh hook of \"{n}\" snap if present (run hook \"post-refresh\": {err})"
        ));
    }
    for u in &running {
        catalog::systemctl(&["start", u]).map_err(|e| format!("error: {e}"))?;
    }
    let tag = if ch == DEFAULT_CHANNEL {
        String::new()
    } else {
        format!(" ({ch})")
    };
    println!("{n}{tag} {} from Local Model refreshed", r.version);
    Ok(())
}

/// What snapd's refresh timer would do now: refresh every snap whose tracked channel the
/// catalog offers another revision of, unless its refreshes are held or every snap's
/// auto-refresh is (`holdRefreshes`: a named hold is at level "general", which covers
/// auto-refreshes too; with no name, level "auto-refresh" for every snap).
fn auto_refresh() -> Result<(), String> {
    let all_held = std::fs::read_to_string(AUTO_REFRESH_HOLD)
        .ok()
        .is_some_and(|t| held(Some(t.trim())));
    if all_held {
        println!("auto-refresh: held");
        return Ok(());
    }
    for r in catalog::records().into_iter().filter(|r| r.kind == "snap") {
        if held(r.hold.as_deref()) {
            println!("auto-refresh: {} held", r.name);
            continue;
        }
        let ch = r.channel.clone().unwrap_or_else(|| DEFAULT_CHANNEL.into());
        if let Some((e, o)) = update_for(&r, &ch)? {
            do_refresh(r, &e, &ch, o)?;
        }
    }
    Ok(())
}

fn remove(c: &Cli) -> Result<(), String> {
    for n in &c.names {
        match installed(n) {
            Some(r) => {
                catalog::uninstall(&r)?;
                println!("{n} removed");
            }
            None => println!("snap \"{n}\" is not installed"),
        }
    }
    Ok(())
}

fn list(c: &Cli) -> Result<(), String> {
    let recs: Vec<Record> = catalog::records()
        .into_iter()
        .filter(|r| r.kind == "snap" && (c.names.is_empty() || c.names.contains(&r.name)))
        .collect();
    if recs.is_empty() && c.names.is_empty() {
        eprintln!("No snaps are installed yet. Try 'snap install hello-world'.");
        return Ok(());
    }
    if recs.is_empty() {
        return Err("error: no matching snaps installed".into());
    }
    println!(
        "{:<20} {:<12} {:<6} {:<16} {:<12} Notes",
        "Name", "Version", "Rev", "Tracking", "Publisher"
    );
    for r in recs {
        let ch = r.channel.clone().unwrap_or_else(|| DEFAULT_CHANNEL.into());
        let rev = if r.revision.is_empty() {
            "1"
        } else {
            r.revision.as_str()
        };
        println!(
            "{:<20} {:<12} {:<6} {:<16} {:<12} -",
            r.name, r.version, rev, ch, "local-model"
        );
    }
    Ok(())
}

/// Units of a snap: `snap.NAME.APP.service` files in the unit directories.
pub(crate) fn snap_units(name: &str) -> Vec<String> {
    let pre = format!("snap.{name}.");
    let mut v = Vec::new();
    for d in DIRS {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                if f.starts_with(&pre) && f.ends_with(".service") && !v.contains(&f) {
                    v.push(f);
                }
            }
        }
    }
    v.sort();
    v
}

/// "maas" → all its services; "maas.pebble" → that one.
fn targets(names: &[String]) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    for n in names {
        let (snap, app) = n
            .split_once('.')
            .map_or((n.as_str(), None), |(s, a)| (s, Some(a)));
        if installed(snap).is_none() {
            return Err(format!("error: snap \"{snap}\" not found"));
        }
        match app {
            Some(a) => v.push(format!("snap.{snap}.{a}.service")),
            None => v.extend(snap_units(snap)),
        }
    }
    Ok(v)
}

fn services(c: &Cli) -> Result<(), String> {
    let names: Vec<String> = if c.names.is_empty() {
        catalog::records()
            .into_iter()
            .filter(|r| r.kind == "snap")
            .map(|r| r.name)
            .collect()
    } else {
        c.names.clone()
    };
    let units = targets(&names)?;
    println!("{:<30} {:<9} {:<9} Notes", "Service", "Startup", "Current");
    for u in units {
        let svc = u.trim_start_matches("snap.").trim_end_matches(".service");
        let en = catalog::systemctl(&["is-enabled", &u]).is_ok();
        let act = crate::systemctl::call(&["is-active".into(), u.clone()]).code == 0;
        println!(
            "{:<30} {:<9} {:<9} -",
            svc,
            if en { "enabled" } else { "disabled" },
            if act { "active" } else { "inactive" }
        );
    }
    Ok(())
}

fn control(cmd: &str, c: &Cli) -> Result<(), String> {
    let units = targets(&c.names)?;
    for u in &units {
        if cmd == "start" && c.enable {
            catalog::systemctl(&["enable", u])?;
        }
        if cmd == "stop" && c.disable {
            catalog::systemctl(&["disable", u])?;
        }
        catalog::systemctl(&[cmd, u]).map_err(|e| format!("error: {e}"))?;
    }
    let verb = match cmd {
        "start" => "Started",
        "stop" => "Stopped",
        _ => "Restarted",
    };
    println!("{verb}.");
    Ok(())
}

/// A configuration change: a value to set, or None to unset (snapd's null).
pub(crate) type Patch = Vec<(String, Option<serde_json::Value>)>;

/// `key=value` and `key!` as snapd's client reads them (client/clientutil/config.go
/// `ParseConfigValues`): a value that parses as JSON is that JSON, else the string as given
/// (`-s`: always the string; `-t`: JSON or an error). Keys are flat here: a dotted key is not
/// nested into a document as snapd does.
fn parse_config_values(kvs: &[&String], string: bool, typed: bool) -> Result<Patch, String> {
    let mut patch = Patch::new();
    for kv in kvs {
        let Some((k, v)) = kv.split_once('=') else {
            if let Some(k) = kv.strip_suffix('!') {
                if k.is_empty() {
                    return Err(
                        "error: configuration keys cannot be empty (use key! to unset a key)"
                            .into(),
                    );
                }
                patch.push((k.to_string(), None));
                continue;
            }
            return Err(format!(
                "error: invalid configuration: {kv:?} (want key=value)"
            ));
        };
        if k.is_empty() {
            return Err("error: configuration keys cannot be empty".into());
        }
        let value = if string {
            serde_json::Value::String(v.to_string())
        } else {
            match serde_json::from_str(v) {
                Ok(j) => j,
                Err(e) if typed => return Err(format!("error: failed to parse JSON: {e}")),
                Err(_) => serde_json::Value::String(v.to_string()),
            }
        };
        patch.push((k.to_string(), Some(value)));
    }
    Ok(patch)
}

/// Applies a patch as snapd's configstate does: a null value removes the key.
pub(crate) fn apply_patch(
    conf: &mut std::collections::BTreeMap<String, serde_json::Value>,
    patch: Patch,
) {
    for (k, v) in patch {
        match v {
            Some(serde_json::Value::Null) | None => {
                conf.remove(&k);
            }
            Some(v) => {
                conf.insert(k, v);
            }
        }
    }
}

/// `snap set [-s|-t] <snap> key=value... key!...` (cmd/snap/cmd_set.go).
fn set(argv: &[String]) -> Result<(), String> {
    let string = argv.iter().any(|a| a == "-s" || a == "--string");
    let typed = argv.iter().any(|a| a == "-t" || a == "--typed");
    if string && typed {
        return Err("error: cannot use -t and -s together".into());
    }
    let args: Vec<&String> = argv.iter().filter(|a| !a.starts_with('-')).collect();
    let (name, kvs) = args
        .split_first()
        .ok_or("error: the required argument `<snap>` was not provided")?;
    let mut r = installed(name).ok_or(format!("error: snap \"{name}\" is not installed"))?;
    let patch = parse_config_values(kvs, string, typed)?;
    apply_patch(&mut r.config, patch);
    catalog::save(&r)
}

/// Go's `json.MarshalIndent(v, "", "\t")`, which `snap get` prints documents with.
fn json_tabs(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"\t"),
    );
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&out).into_owned()
}

/// `snap get [-d|-t|-l] <snap> [<key>...]` (cmd/snap/cmd_get.go `Execute`, `outputDefault`):
/// `-d` prints the document (`{key: value}`, or all of it) as JSON; otherwise one key with a
/// string value prints the string, another value prints as JSON (`-t`: strings too), and
/// several keys or none print a list on a terminal, else JSON after snapd's warning.
fn get(argv: &[String]) -> Result<(), String> {
    let has = |f: &str| argv.iter().any(|a| a == f);
    let (document, typed, list) = (has("-d"), has("-t"), has("-l"));
    if document && typed {
        return Err("error: cannot use -d and -t together".into());
    }
    if document && list {
        return Err("error: cannot use -d and -l together".into());
    }
    let args: Vec<&String> = argv.iter().filter(|a| !a.starts_with('-')).collect();
    let (name, keys) = args
        .split_first()
        .ok_or("error: the required argument `<snap>` was not provided")?;
    let r = installed(name).ok_or(format!("error: snap \"{name}\" is not installed"))?;
    let mut conf = serde_json::Map::new();
    if keys.is_empty() {
        conf.extend(r.config.clone());
    }
    for k in keys {
        let v = r.config.get(k.as_str()).ok_or(format!(
            "error: snap \"{name}\" has no \"{k}\" configuration option"
        ))?;
        conf.insert(k.to_string(), v.clone());
    }
    let print_list = |conf: &serde_json::Map<String, serde_json::Value>| {
        println!("Key  Value");
        for (k, v) in conf {
            match v {
                serde_json::Value::String(s) => println!("{k}  {s}"),
                serde_json::Value::Object(_) => println!("{k}  {{...}}"),
                other => println!("{k}  {other}"),
            }
        }
    };
    if document {
        println!("{}", json_tabs(&serde_json::Value::Object(conf)));
        return Ok(());
    }
    if list {
        print_list(&conf);
        return Ok(());
    }
    if keys.is_empty() && conf.is_empty() {
        return Err(format!("error: snap \"{name}\" has no configuration"));
    }
    if keys.len() == 1 {
        match &conf[keys[0].as_str()] {
            serde_json::Value::String(s) if !typed => println!("{s}"),
            serde_json::Value::Object(_) => {}
            v => println!("{}", json_tabs(v)),
        }
        if !conf[keys[0].as_str()].is_object() {
            return Ok(());
        }
    }
    // SAFETY: isatty has no preconditions.
    if unsafe { libc::isatty(1) } == 1 {
        print_list(&conf);
    } else {
        eprintln!("WARNING: The output of 'snap get' will become a list with columns - use -d or -l to force the output format.");
        println!("{}", json_tabs(&serde_json::Value::Object(conf)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_track_the_store_lacks_lists_the_same_risk_on_other_tracks_as_snapd() {
        let offered = ["3.6/stable", "3.7/edge", "3.7/stable"];
        assert_eq!(
            not_available("maas", "9.9/stable", "install", &offered),
            "snap \"maas\" is not available on 9.9/stable but is available to install on the following tracks:\n  3.6/stable  snap install --channel=3.6 maas\n  3.7/stable  snap install --channel=3.7 maas\n\nPlease be mindful that different tracks may include different features.\nGet more information with 'snap info maas'."
        );
    }

    #[test]
    fn a_risk_the_track_lacks_lists_the_tracks_channels_as_snapd() {
        let offered = ["3.6/stable", "3.7/edge", "3.7/stable", "latest/edge"];
        assert_eq!(
            not_available("maas", "3.7/candidate", "refresh", &offered),
            "snap \"maas\" is not available on 3.7/candidate but is available to install on the following channels:\n  3.7/edge    snap refresh --channel=3.7/edge maas\n  3.7/stable  snap refresh --channel=3.7 maas\n\nGet more information with 'snap info maas'."
        );
        // The latest track is left out of names, and its option is the risk alone; asking
        // for stable adds the pre-release warning.
        assert_eq!(
            not_available("maas", "latest/stable", "install", &offered),
            "snap \"maas\" is not available on stable but is available to install on the following channels:\n  edge       snap install --edge maas\n\nPlease be mindful pre-release channels may include features not completely tested or implemented.\nGet more information with 'snap info maas'."
        );
        assert_eq!(
            not_available("maas", "9.9/candidate", "install", &offered),
            "snap \"maas\" is not available on 9.9/candidate but other tracks exist.\n\n\nPlease be mindful that different tracks may include different features.\nGet more information with 'snap info maas'."
        );
    }

    #[test]
    fn option_values_are_unquoted_as_go_flags_does() {
        let c = parse(&argv(&["maas", "--channel=\"3.8/edge\""])).unwrap();
        assert_eq!(c.channel.as_deref(), Some("3.8/edge"));
        let c = parse(&argv(&["--channel", "\"3.6/stable\"", "maas"])).unwrap();
        assert_eq!(c.channel.as_deref(), Some("3.6/stable"));
        assert_eq!(c.names, ["maas"]);
        let c = parse(&argv(&["--hold=\"72h\"", "maas"])).unwrap();
        assert_eq!(c.hold.as_deref(), Some("72h"));
        // Only a value that starts with a quote is a literal.
        let c = parse(&argv(&["--channel=3.8/\"edge\""])).unwrap();
        assert_eq!(c.channel.as_deref(), Some("3.8/\"edge\""));
        // Positional arguments stay as given.
        let c = parse(&argv(&["\"maas\""])).unwrap();
        assert_eq!(c.names, ["\"maas\""]);
    }

    #[test]
    fn revisions_and_cohorts_are_refused_not_ignored() {
        for a in ["--revision=\"57\"", "--cohort=\"+\"", "--revision"] {
            let e = parse(&argv(&["maas", a, "57"])).err().unwrap();
            assert!(
                e.ends_with("is not supported by the local model's snap"),
                "{a}: {e}"
            );
        }
        assert!(parse(&argv(&["maas", "--classic"])).is_ok());
    }

    #[test]
    fn a_literal_go_cannot_unquote_is_refused() {
        for bad in ["\"3.8/edge", "\"a\"b\"", "\"\\q\"", "\"\\x4\""] {
            let e = parse(&argv(&[&format!("--channel={bad}")])).err();
            assert_eq!(
                e.as_deref(),
                Some("error: invalid argument for flag `--channel' (expected string): invalid syntax"),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_values_parse_as_snapds_client_does() {
        let a: Vec<String> = argv(&["n=5", "s=region", "j={\"a\":[1]}", "q=\"5\"", "gone!"]);
        let refs: Vec<&String> = a.iter().collect();
        let p = parse_config_values(&refs, false, false).unwrap();
        assert_eq!(
            p,
            vec![
                ("n".to_string(), Some(serde_json::json!(5))),
                ("s".to_string(), Some(serde_json::json!("region"))),
                ("j".to_string(), Some(serde_json::json!({"a": [1]}))),
                ("q".to_string(), Some(serde_json::json!("5"))),
                ("gone".to_string(), None),
            ]
        );
        // -s keeps the text; -t wants JSON.
        let p = parse_config_values(&refs[..1], true, false).unwrap();
        assert_eq!(p[0].1, Some(serde_json::json!("5")));
        let bad = argv(&["s=region"]);
        let e = parse_config_values(&[&bad[0]], false, true).unwrap_err();
        assert!(e.starts_with("error: failed to parse JSON: "), "{e}");
        let bad = argv(&["novalue"]);
        assert_eq!(
            parse_config_values(&[&bad[0]], false, false).unwrap_err(),
            "error: invalid configuration: \"novalue\" (want key=value)"
        );
    }

    #[test]
    fn a_null_or_unset_removes_a_key() {
        let mut c = std::collections::BTreeMap::new();
        apply_patch(
            &mut c,
            vec![
                ("a".into(), Some(serde_json::json!(1))),
                ("b".into(), Some(serde_json::json!("x"))),
            ],
        );
        apply_patch(
            &mut c,
            vec![
                ("a".into(), Some(serde_json::Value::Null)),
                ("b".into(), None),
            ],
        );
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn documents_print_as_go_marshal_indent_with_tabs() {
        assert_eq!(
            json_tabs(&serde_json::json!({"a": {"b": 1}, "c": "x"})),
            "{\n\t\"a\": {\n\t\t\"b\": 1\n\t},\n\t\"c\": \"x\"\n}"
        );
    }

    #[test]
    fn go_escapes() {
        assert_eq!(
            go_unquote(r#""a\tb\x41\101\u00e9\\\"""#).as_deref(),
            Some("a\tbAAé\\\"")
        );
        assert_eq!(go_unquote("\"\"").as_deref(), Some(""));
        assert_eq!(go_unquote("\"").as_deref(), None);
    }
}
