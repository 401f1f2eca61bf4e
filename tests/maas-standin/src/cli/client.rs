//! The `maas` API client: `login`, `logout`, `list`, and `maas <profile> <resource> <op> ...`
//! calls signed with OAuth PLAINTEXT like the real CLI. Profiles are kept in
//! `$HOME/.maascli.standin.json` (the real CLI uses a SQLite file, `~/.maascli.db`).

use super::{fail, parse, python, report};
use crate::argparse::Parser;
use crate::http;
use crate::util;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// A logged-in profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// API URL ending in `/api/2.0/`.
    pub url: String,
    /// `consumer:token:secret`.
    pub key: String,
    /// The CA file `login --cacerts` copied (MAAS keeps it as `~/.maascli.certs/<profile>.pem`
    /// and verifies every later call of the profile with it).
    pub cacerts: Option<PathBuf>,
}

fn store_path() -> PathBuf {
    let home = std::env::var("HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".maascli.standin.json")
}

fn load_store() -> serde_json::Map<String, Value> {
    std::fs::read_to_string(store_path())
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

fn save_store(m: &serde_json::Map<String, Value>) -> anyhow::Result<()> {
    util::write_file(
        &store_path(),
        Value::Object(m.clone()).to_string().as_bytes(),
        0o600,
        None,
    )
}

/// The stored profile `name`.
pub fn load_profile(name: &str) -> Option<Profile> {
    let v = load_store().get(name)?.clone();
    Some(Profile {
        url: v["url"].as_str()?.to_string(),
        key: v["credentials"].as_str()?.to_string(),
        cacerts: v["cacerts"].as_str().map(PathBuf::from),
    })
}

/// Where `login --cacerts` keeps a profile's CA (`src/maascli/cli.py`: `CERTS_DIR` is
/// `~/.maascli.certs`, the file `<profile>.pem`).
fn certs_path(profile: &str) -> PathBuf {
    store_path()
        .with_file_name(".maascli.certs")
        .join(format!("{profile}.pem"))
}

/// `.../MAAS` or `.../MAAS/api/2.0` → `.../MAAS/api/2.0/`, as the real CLI completes it.
pub fn api_url(url: &str) -> String {
    let mut u = url.trim().to_string();
    if !u.ends_with('/') {
        u.push('/');
    }
    if !u.ends_with("api/2.0/") {
        u.push_str("api/2.0/");
    }
    u
}

fn oauth_header(key: &str) -> Option<String> {
    let mut parts = key.trim().split(':');
    let (ck, tk, ts) = (parts.next()?, parts.next()?, parts.next()?);
    Some(format!(
        "OAuth oauth_version=\"1.0\", oauth_signature_method=\"PLAINTEXT\", oauth_consumer_key=\"{ck}\", oauth_token=\"{tk}\", oauth_signature=\"&{ts}\", oauth_nonce=\"{}\", oauth_timestamp=\"{}\"",
        util::random_hex(16),
        util::now_unix() as u64
    ))
}

fn send(
    method: &str,
    url: &str,
    key: &str,
    form: &[(String, String)],
    cacerts: Option<&std::path::Path>,
) -> anyhow::Result<http::ClientResponse> {
    let mut headers = vec![];
    if let Some(h) = oauth_header(key) {
        headers.push(("Authorization", h));
    }
    let encoded: String = form
        .iter()
        .map(|(k, v)| format!("{}={}", util::form_encode(k), util::form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    if method == "GET" {
        let full = if encoded.is_empty() {
            url.to_string()
        } else {
            format!("{url}?{encoded}")
        };
        http::request_verified(
            "GET",
            &full,
            &headers,
            None,
            Duration::from_secs(30),
            cacerts,
        )
    } else {
        http::request_verified(
            method,
            url,
            &headers,
            Some(("application/x-www-form-urlencoded", encoded.into_bytes())),
            Duration::from_secs(30),
            cacerts,
        )
    }
}

/// `maas login <profile> <url> [<credentials> | -] [--cacerts FILE] [--insecure]`, as
/// canonical/maas `src/maascli/cli.py` `cmd_login`: the CA file must be PEM (`Invalid PEM
/// material`), is copied for the profile, and verifies this and every later call.
pub fn login(args: &[String]) -> i32 {
    let p = Parser::new("maas login")
        .pos("profile-name", None)
        .pos("url", None)
        .opts(&[
            crate::argparse::Opt::value("--cacerts", "Certificate CA file in PEM format"),
            crate::argparse::Opt::flag("--insecure", "Disable SSL certificate check"),
        ])
        .rest();
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if a.positionals.len() > 3 {
        return report(p.error(&format!(
            "unrecognized arguments: {}",
            a.positionals[3..].join(" ")
        )));
    }
    let (name, url) = (&a.positionals[0], api_url(&a.positionals[1]));
    if a.flag("--insecure") && a.has("--cacerts") {
        eprintln!("You cannot use both cacerts and insecure arguments.");
        return 1;
    }
    if a.flag("--insecure") {
        return fail(
            "Error: --insecure is not supported by the MAAS stand-in (it always verifies).",
        );
    }
    let cacerts = match a.get("--cacerts") {
        None => None,
        Some(f) => {
            // argparse.FileType: an unreadable file is argparse's error (exit 2).
            let pem = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) => {
                    return report(p.error(&crate::argparse::cannot_open("--cacerts", f, &e)))
                }
            };
            // maascli's `CommandError` is `SystemExit` (src/maascli/command.py): Python
            // prints the bare message and exits 1.
            if openssl::x509::X509::from_pem(pem.as_bytes()).is_err() {
                return fail("Invalid PEM material");
            }
            let dest = certs_path(name);
            if let Err(e) = std::fs::create_dir_all(dest.parent().unwrap())
                .map_err(anyhow::Error::from)
                .and_then(|_| util::write_file(&dest, pem.as_bytes(), 0o600, None))
            {
                return fail(format!("Error: {e:#}"));
            }
            Some(dest)
        }
    };
    let key = match a.positionals.get(2).map(String::as_str) {
        Some("-") => {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            s.trim().to_string()
        }
        Some(k) => k.trim().to_string(),
        None => return fail("Error: credentials are required: MAAS would prompt for them, and the stand-in never prompts."),
    };
    // `convert_string_to_tuple` (src/apiclient/creds.py) raises ValueError, which maascli's
    // `main` hands to argparse: the key itself is in the message, as MAAS prints it.
    if !key.is_empty() && key.split(':').count() != 3 {
        return python::maascli_error(&format!(
            "Malformed credentials string.  Expected 3 colon-separated items, got {}.",
            python::repr(&key)
        ));
    }
    match send(
        "GET",
        &format!("{url}users/"),
        &key,
        &[("op".into(), "whoami".into())],
        cacerts.as_deref(),
    ) {
        Ok(r) if r.status == 200 => {}
        // `check_valid_apikey` (src/maascli/auth.py): 401 is a rejected key, any other status
        // but 200 `UnexpectedResponse`; `cmd_login` raises either as SystemExit (exit 1).
        Ok(r) if r.status == 401 => {
            return fail("The MAAS server rejected your API key.");
        }
        Ok(r) => {
            return fail(format!(
                "The MAAS server gave an unexpected response: {}",
                r.status
            ))
        }
        Err(e) => return unreachable(&e),
    }
    let mut store = load_store();
    let mut entry = json!({"url": url, "credentials": key});
    if let Some(c) = &cacerts {
        entry["cacerts"] = json!(c.to_string_lossy());
    }
    store.insert(name.clone(), entry);
    if let Err(e) = save_store(&store) {
        return fail(format!("Error: {e:#}"));
    }
    println!("\nYou are now logged in to the MAAS server at {url} with the profile name '{name}'.\n\nFor help with the available commands, try:\n\n  maas {name} --help\n");
    0
}

/// `maas logout <profile>`.
pub fn logout(args: &[String]) -> i32 {
    let p = Parser::new("maas logout").pos("profile-name", None);
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut store = load_store();
    store.remove(&a.positionals[0]);
    match save_store(&store) {
        Ok(()) => 0,
        Err(e) => fail(format!("Error: {e:#}")),
    }
}

/// `maas list`.
pub fn list(args: &[String]) -> i32 {
    if let Err(code) = parse(&Parser::new("maas list"), args) {
        return code;
    }
    for (name, v) in load_store() {
        println!("{name} {}", v["url"].as_str().unwrap_or(""));
    }
    0
}

/// One API operation the stand-in's client knows.
struct ApiOp(
    /// Resource (`vlan`).
    &'static str,
    /// Operation (`update`).
    &'static str,
    /// HTTP method.
    &'static str,
    /// Path under `/api/2.0/`, `{0}`, `{1}` standing for the positionals.
    &'static str,
    /// Names of the positionals.
    &'static [&'static str],
    /// The `op=` parameter MAAS dispatches on, if any.
    &'static str,
);

const OPS: &[ApiOp] = &[
    ApiOp("version", "read", "GET", "version/", &[], ""),
    ApiOp("users", "read", "GET", "users/", &[], ""),
    ApiOp("users", "whoami", "GET", "users/", &[], "whoami"),
    ApiOp(
        "region-controllers",
        "read",
        "GET",
        "regioncontrollers/",
        &[],
        "",
    ),
    ApiOp(
        "rack-controllers",
        "read",
        "GET",
        "rackcontrollers/",
        &[],
        "",
    ),
    ApiOp("subnets", "read", "GET", "subnets/", &[], ""),
    ApiOp(
        "vlan",
        "read",
        "GET",
        "fabrics/{0}/vlans/{1}/",
        &["fabric_id", "vid"],
        "",
    ),
    ApiOp(
        "vlan",
        "update",
        "PUT",
        "fabrics/{0}/vlans/{1}/",
        &["fabric_id", "vid"],
        "",
    ),
    ApiOp("ipranges", "read", "GET", "ipranges/", &[], ""),
    ApiOp("ipranges", "create", "POST", "ipranges/", &[], ""),
    ApiOp("maas", "set-config", "POST", "maas/", &[], "set_config"),
    ApiOp("maas", "get-config", "GET", "maas/", &[], "get_config"),
];

/// `maas <profile> <resource> <op> [ids...] [key=value...]`.
pub fn call(profile_name: &str, profile: &Profile, args: &[String]) -> i32 {
    let resources: Vec<&str> = {
        let mut r: Vec<&str> = OPS.iter().map(|o| o.0).collect();
        r.dedup();
        r
    };
    let Some(resource) = args.first() else {
        let p = Parser::new(format!("maas {profile_name}"));
        return report(p.error("the following arguments are required: COMMAND"));
    };
    if !resources.contains(&resource.as_str()) {
        let p = Parser::new(format!("maas {profile_name}"));
        return report(p.invalid_choice("COMMAND", resource, &resources));
    }
    let ops: Vec<&str> = OPS
        .iter()
        .filter(|o| o.0 == resource)
        .map(|o| o.1)
        .collect();
    let prog = format!("maas {profile_name} {resource}");
    let Some(op) = args.get(1) else {
        let p = Parser::new(prog);
        return report(p.error("the following arguments are required: COMMAND"));
    };
    let Some(spec) = OPS.iter().find(|o| o.0 == resource && o.1 == op) else {
        let p = Parser::new(prog);
        return report(p.invalid_choice("COMMAND", op, &ops));
    };
    let ApiOp(_, _, method, path, ids, fixed_op) = *spec;
    let mut positionals = vec![];
    let mut form: Vec<(String, String)> = vec![];
    for a in &args[2..] {
        match a.split_once('=') {
            Some((k, v)) => form.push((k.to_string(), v.to_string())),
            None => positionals.push(a.clone()),
        }
    }
    let mut p = Parser::new(format!("maas {profile_name} {resource} {op}")).rest();
    for id in ids {
        p = p.pos(id, None);
    }
    if positionals.len() < ids.len() {
        return report(p.error(&format!(
            "the following arguments are required: {}",
            ids[positionals.len()..].join(", ")
        )));
    }
    if positionals.len() > ids.len() {
        return report(p.error(&format!(
            "unrecognized arguments: {}",
            positionals[ids.len()..].join(" ")
        )));
    }
    let mut rel = path.to_string();
    for (i, v) in positionals.iter().enumerate() {
        rel = rel.replace(&format!("{{{i}}}"), &util::form_encode(v));
    }
    if !fixed_op.is_empty() {
        form.insert(0, ("op".into(), fixed_op.into()));
    }
    let url = format!("{}{rel}", profile.url);
    match send(
        method,
        &url,
        &profile.key,
        &form,
        profile.cacerts.as_deref(),
    ) {
        Ok(r) if (200..300).contains(&r.status) => {
            match serde_json::from_str::<Value>(&r.body) {
                Ok(v) if v.is_object() || v.is_array() => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or(r.body));
                }
                // `print_response_content` (src/maascli/utils.py): the body as it came; the
                // `Success.` banner and a final newline only on a terminal.
                // SAFETY: isatty has no preconditions.
                _ if unsafe { libc::isatty(1) } == 1 => {
                    println!("Success.\nMachine-readable output follows:\n{}", r.body)
                }
                _ => print!("{}", r.body),
            }
            0
        }
        // `Action.__call__` (src/maascli/api.py): `print_response_content` writes the body to
        // stdout whatever the status (on a terminal a newline after it, or, with no body,
        // `Request failed with code N: <reason>`), then `CommandError(2)`: exit 2, nothing
        // on stderr.
        Ok(r) => {
            print!("{}", r.body);
            // SAFETY: isatty has no preconditions.
            if unsafe { libc::isatty(1) } == 1 {
                if r.body.is_empty() {
                    print!("Request failed with code {}", r.status);
                }
                println!();
            }
            2
        }
        Err(e) => unreachable(&e),
    }
}

/// What MAAS's CLI prints when a request never got an answer. `http_request`
/// (src/maascli/api.py) turns only an `ssl.SSLError` into its `CommandError` (SystemExit:
/// the message, exit 1); everything else httplib2 raises reaches maascli's `main`
/// (src/maascli/__init__.py), which hands `str(error)` to argparse (exit 2): a name that does
/// not resolve is httplib2's `ServerNotFoundError` (`Http._conn_request`), a refused or
/// timed-out connection the socket's `OSError`, `[Errno N] <strerror>`.
fn unreachable(e: &anyhow::Error) -> i32 {
    let text = format!("{e:#}");
    if let Some(i) = text.find("[SSL: ") {
        return fail(format!(
            "Certificate verification failed, use --insecure/-k to disable the certificate check.\n{}",
            &text[i..]
        ));
    }
    if let Some(host) = e
        .chain()
        .find_map(|c| c.to_string().strip_prefix("resolving ").map(str::to_string))
    {
        return python::maascli_error(&format!("Unable to find the server at {host}"));
    }
    let io = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>());
    let message = match io {
        Some(io) => {
            // connect_timeout gives up where the kernel would go on retrying the SYN until
            // ETIMEDOUT (httplib2 sets no timeout): the same end, sooner.
            let errno = io.raw_os_error().unwrap_or(match io.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => libc::ETIMEDOUT,
                _ => libc::EIO,
            });
            python::os_error(errno)
        }
        None => text,
    };
    python::maascli_error(&message)
}
