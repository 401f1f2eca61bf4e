//! Small helpers shared by the CLIs and daemons: randomness, time, files with modes, encoding.

use anyhow::{Context, Result};
use sha2::Digest;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Host name this process reports (test override: `MAAS_STANDIN_HOSTNAME`).
pub fn hostname() -> String {
    if let Ok(h) = std::env::var("MAAS_STANDIN_HOSTNAME") {
        if !h.is_empty() {
            return h;
        }
    }
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        if f.read_exact(&mut buf).is_ok() {
            return buf;
        }
    }
    // /dev/urandom missing is not worth failing for in a stand-in: mix time and pid.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ std::process::id() as u128;
    let digest = sha2::Sha256::digest(seed.to_le_bytes());
    buf.iter_mut()
        .zip(digest.iter().cycle())
        .for_each(|(b, d)| *b = *d);
    buf
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random hex string of `nchars` characters (the MAAS shared secret is 32).
pub fn random_hex(nchars: usize) -> String {
    let mut s = hex(&random_bytes(nchars.div_ceil(2)));
    s.truncate(nchars);
    s
}

/// A random string from `alphabet`.
pub fn random_from(alphabet: &[u8], n: usize) -> String {
    random_bytes(n)
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

/// A MAAS-looking system id (6 characters).
pub fn system_id() -> String {
    random_from(b"abcdefghkmnpqrstwxy34678", 6)
}

/// A MAAS-looking API key: `consumer_key:token_key:token_secret` (18:18:32).
pub fn api_key() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    format!(
        "{}:{}:{}",
        random_from(ALNUM, 18),
        random_from(ALNUM, 18),
        random_from(ALNUM, 32)
    )
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha2::Sha256::digest(data))
}

/// What a rack sends to prove it holds the shared secret without sending the secret itself.
pub fn rack_proof(secret: &str, hostname: &str) -> String {
    sha256_hex(format!("maas-standin-rack\n{}\n{}", secret.trim(), hostname).as_bytes())
}

/// Seconds since the epoch.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    rfc3339(now_unix())
}

/// Formats epoch seconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let millis = ((t - secs as f64) * 1000.0) as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

// Howard Hinnant's days-to-civil algorithm: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    if std::env::var("MAAS_STANDIN_SKIP_ROOT_CHECK").as_deref() == Ok("1") {
        return true;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The gid of group `name` from /etc/group, if it exists.
pub fn group_gid(name: &str) -> Option<u32> {
    let text = fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? == name {
            f.nth(1)?.parse().ok()
        } else {
            None
        }
    })
}

/// Writes `content` atomically with `mode`; `group` (if it exists on this host) owns it.
///
/// The temporary file is created with the final mode so a secret is never world-readable,
/// not even for an instant.
pub fn write_file(path: &Path, content: &[u8], mode: u32, group: Option<&str>) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("standin-tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(content)?;
        f.sync_all().ok();
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group.and_then(group_gid) {
        // Only root may chown; a non-root test run keeps its own group.
        let _ = std::os::unix::fs::chown(&tmp, Some(0), Some(gid));
    }
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a file and trims it; `None` when missing or empty.
pub fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Decodes `%XX` escapes (and `+` as space when `plus` is set).
pub fn percent_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hexval = |c: u8| (c as char).to_digit(16);
                match (hexval(b[i + 1]), hexval(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes for `application/x-www-form-urlencoded`.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parses `a=1&b=2` into ordered pairs.
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(p, true), String::new()),
        })
        .collect()
}

/// Makes the current process's name (`comm`) `name`, so `pidof`/`killall` find it.
pub fn set_comm(name: &str) {
    let _ = fs::write("/proc/self/comm", name);
}

/// Asks the kernel to SIGTERM this process when the thread that spawned it dies, so that
/// supervised daemons never outlive their supervisor. Meant for `pre_exec`.
pub fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on the calling process; it is
    // async-signal-safe and therefore fine between fork and exec.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000.5), "2023-11-14T22:13:20.500Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn form_round_trip() {
        let enc = format!("a={}&b=", form_encode("x y&z=1/é"));
        assert_eq!(
            form_decode(&enc),
            vec![("a".into(), "x y&z=1/é".into()), ("b".into(), "".into())]
        );
        assert_eq!(percent_decode("p%40ss%2", false), "p@ss%2");
    }

    #[test]
    fn api_keys_and_secrets_look_like_maas() {
        let k = api_key();
        let parts: Vec<_> = k.split(':').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![18, 18, 32]
        );
        let s = random_hex(32);
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(random_hex(32), s);
    }
}
