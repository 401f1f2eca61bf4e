//! Health checks: parsed from the principal's `check` (over `vip`) or the `check` option, and
//! turned into the command lines of keepalived `vrrp_script`s.
//!
//! Every value that reaches a script line is checked against a narrow character set first:
//! the line is parsed by keepalived (quotes, `$` macros, `#` comments) and then by a shell.

use std::fmt;

/// The form every check list must have, for error messages.
pub const EXPECTED: &str =
    "expected comma-separated checks: process:<name>, tcp:<port> or an http:// or https:// URL";

/// Where `pgrep` lives on Debian and Ubuntu (procps, usr-merged).
const PGREP: &str = "/usr/bin/pgrep";
/// Where `curl` lives on Debian and Ubuntu.
const CURL: &str = "/usr/bin/curl";

/// One health check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// A process whose name (the kernel's `comm`) is exactly this runs on this host.
    Process(String),
    /// 127.0.0.1:port accepts a TCP connection.
    Tcp(u16),
    /// The URL answers with a 2xx status.
    Http(String),
    /// The https URL answers with a 2xx status to a client that verifies it against a CA and
    /// presents a certificate (a principal's API that requires one, e.g. Patroni's).
    HttpTls(String, ClientTls),
}

/// Files on this machine (the principal's) a URL check presents and verifies with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientTls {
    /// The CA the server's certificate must chain to.
    pub ca: String,
    /// The client certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
}

/// A file path keepalived's script line can carry as it is: absolute, letters, digits and
/// `/ . _ -`, no `..`.
pub fn parse_path(what: &str, p: &str) -> Result<String, String> {
    let ok = p.starts_with('/')
        && !p.contains("..")
        && p.len() <= 256
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok {
        Ok(p.to_string())
    } else {
        Err(format!(
            "{what} {p:?}: expected an absolute path of letters, digits and / . _ -"
        ))
    }
}

impl Check {
    /// The command keepalived runs, as it appears (quoted) after `script`.
    pub fn script(&self) -> String {
        match self {
            // pgrep takes a regular expression: the two metacharacters a name may hold are
            // put in brackets so they match themselves.
            Check::Process(name) => format!("{PGREP} -x {}", name.replace('.', "[.]").replace('+', "[+]")),
            Check::Tcp(port) => format!("/bin/bash -c '</dev/tcp/127.0.0.1/{port}'"),
            // curl --fail would also accept 3xx answers; the contract is 2xx. The URL is a
            // separate argument ($1), never part of the shell text.
            Check::Http(url) => format!(
                "/bin/sh -c 'case $({CURL} -s -o /dev/null --max-time 2 -w %{{http_code}} \\\"$1\\\") in 2??) exit 0;; esac; exit 1' http-check {url}"
            ),
            Check::HttpTls(url, t) => format!(
                "/bin/sh -c 'case $({CURL} -s -o /dev/null --max-time 2 --cacert {} --cert {} --key {} -w %{{http_code}} \\\"$1\\\") in 2??) exit 0;; esac; exit 1' http-check {url}",
                t.ca, t.cert, t.key
            ),
        }
    }

    /// A short name for the `vrrp_script` block, e.g. `process_haproxy`.
    pub fn slug(&self) -> String {
        let raw = match self {
            Check::Process(n) => format!("process_{n}"),
            Check::Tcp(p) => format!("tcp_{p}"),
            Check::Http(_) | Check::HttpTls(..) => "http".to_string(),
        };
        raw.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Process(n) => write!(f, "process:{n}"),
            Check::Tcp(p) => write!(f, "tcp:{p}"),
            Check::Http(u) | Check::HttpTls(u, _) => f.write_str(u),
        }
    }
}

/// Parses a comma-separated check list; empty items are ignored. The error names the item at
/// fault and why.
pub fn parse_checks(text: &str) -> Result<Vec<Check>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let check = parse_one(item)?;
        if !out.contains(&check) {
            out.push(check);
        }
    }
    Ok(out)
}

fn parse_one(item: &str) -> Result<Check, String> {
    if let Some(name) = item.strip_prefix("process:") {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
        if name.is_empty() || !ok_chars || name.starts_with('-') {
            return Err(format!(
                "{item:?}: a process name is letters, digits and . _ - + (not starting with -)"
            ));
        }
        if name.len() > 15 {
            return Err(format!("{item:?}: the kernel keeps only 15 characters of a process name; use tcp:<port> or a URL for this service"));
        }
        return Ok(Check::Process(name.to_string()));
    }
    if let Some(port) = item.strip_prefix("tcp:") {
        return match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Check::Tcp(p)),
            _ => Err(format!("{item:?}: the port must be a number 1-65535")),
        };
    }
    if item.starts_with("http://") || item.starts_with("https://") {
        let host_part = item.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        let safe = item
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/?=&%@[]+,;*()".contains(c));
        if host_part.is_empty() || host_part.starts_with('/') || !safe || item.len() > 1024 {
            return Err(format!("{item:?}: a URL needs a host and may hold only letters, digits and - . _ ~ : / ? = & % @ [ ] + , ; * ( )"));
        }
        return Ok(Check::Http(item.to_string()));
    }
    Err(format!("{item:?} is not a check"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds_and_ignores_empty_items() {
        let c = parse_checks(
            " process:haproxy, process:named,,tcp:5240 , http://127.0.0.1:8008/primary",
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                Check::Process("haproxy".into()),
                Check::Process("named".into()),
                Check::Tcp(5240),
                Check::Http("http://127.0.0.1:8008/primary".into())
            ]
        );
        assert_eq!(parse_checks("").unwrap(), vec![]);
        assert_eq!(
            parse_checks("tcp:80,tcp:80").unwrap().len(),
            1,
            "duplicates collapse"
        );
    }

    #[test]
    fn refuses_what_could_break_out_of_the_script_line() {
        for bad in [
            "process:",
            "process:-9",
            "process:a b",
            "process:x;reboot",
            "process:averyveryverylongname",
            "tcp:0",
            "tcp:70000",
            "tcp:http",
            "http://",
            "http:///path",
            "http://x/\"a",
            "http://x/'a",
            "http://x/$(id)",
            "http://x/a b",
            "http://x/#frag",
            "ftp://x",
            "haproxy",
        ] {
            assert!(parse_checks(bad).is_err(), "{bad} should be refused");
        }
        assert!(
            parse_checks("process:x;y")
                .unwrap_err()
                .contains("\"process:x;y\""),
            "names the item"
        );
    }

    #[test]
    fn script_lines() {
        assert_eq!(
            Check::Process("haproxy".into()).script(),
            "/usr/bin/pgrep -x haproxy"
        );
        assert_eq!(
            Check::Process("php-fpm8.1".into()).script(),
            "/usr/bin/pgrep -x php-fpm8[.]1"
        );
        assert_eq!(
            Check::Tcp(5240).script(),
            "/bin/bash -c '</dev/tcp/127.0.0.1/5240'"
        );
        let h = Check::Http("http://127.0.0.1:8008/primary".into()).script();
        assert!(
            h.ends_with("' http-check http://127.0.0.1:8008/primary"),
            "{h}"
        );
        assert!(h.contains("%{http_code}") && h.contains("2??) exit 0"));
        assert_eq!(Check::Process("named".into()).slug(), "process_named");
        assert_eq!(Check::Tcp(80).slug(), "tcp_80");
    }
}
