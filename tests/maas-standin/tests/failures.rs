//! How the stand-in's commands fail, held to what real MAAS prints for the same failure: stdout,
//! stderr and exit code, each test naming the canonical/maas function it follows
//! (tests/maas-standin/README.md, "How commands fail").

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;

/// An HTTP server answering every request with `status` and an empty body, on a thread that
/// lives as long as the test process. Returns its base URL.
fn answering(status: u16) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://127.0.0.1:{port}/MAAS")
}

const KEY: &str = "ck:tk:ts";

fn login(sb: &Sandbox, url: &str, key: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["maas", "login", "p", url, "-"];
    args.extend_from_slice(extra);
    sb.run_stdin(&args, &format!("{key}\n"))
}

// src/maascli/auth.py `check_valid_apikey`, src/maascli/cli.py `cmd_login.__call__`: 401 is
// `SystemExit("The MAAS server rejected your API key.")`: the bare message, exit 1.
#[test]
fn login_with_a_rejected_key_exits_1_with_maas_words() {
    let sb = Sandbox::new("login-401");
    let o = login(&sb, &answering(401), KEY, &[]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (Some(1), "", "The MAAS server rejected your API key.\n")
    );
}

// `check_valid_apikey`: any status but 200 and 401 is `UnexpectedResponse`, the status only.
#[test]
fn login_answered_otherwise_names_the_status_only() {
    let sb = Sandbox::new("login-403");
    let o = login(&sb, &answering(403), KEY, &[]);
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(1),
            "The MAAS server gave an unexpected response: 403\n"
        )
    );
}

// src/apiclient/creds.py `convert_string_to_tuple` raises ValueError; src/maascli/__init__.py
// `main` hands it to argparse: usage, `maas: error: …`, exit 2; no request is made.
#[test]
fn login_with_a_malformed_key_is_argparses_error_with_the_key() {
    let sb = Sandbox::new("login-malformed");
    let o = login(
        &sb,
        &format!("http://127.0.0.1:{}/MAAS", free_port()),
        "abc",
        &[],
    );
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (
            Some(2),
            "",
            "usage: maas [-h] COMMAND ...\nmaas: error: Malformed credentials string.  Expected 3 colon-separated items, got 'abc'.\n"
        )
    );
}

// httplib2 `Http._conn_request` re-raises a refused connection's OSError; maascli's `main`
// reports `str(error)` through argparse (exit 2).
#[test]
fn login_to_a_closed_port_is_the_oserror_through_argparse() {
    let sb = Sandbox::new("login-refused");
    let o = login(
        &sb,
        &format!("http://127.0.0.1:{}/MAAS", free_port()),
        KEY,
        &[],
    );
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(2),
            "usage: maas [-h] COMMAND ...\nmaas: error: [Errno 111] Connection refused\n"
        )
    );
    assert!(!sb.dir.0.join("home/.maascli.standin.json").exists());
}

// httplib2 `Http._conn_request`: `socket.gaierror` becomes `ServerNotFoundError`.
#[test]
fn login_to_a_name_that_does_not_resolve_is_server_not_found() {
    let sb = Sandbox::new("login-dns");
    let o = login(&sb, "http://no-such-host.invalid:5240/MAAS", KEY, &[]);
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(2),
            "usage: maas [-h] COMMAND ...\nmaas: error: Unable to find the server at no-such-host.invalid\n"
        )
    );
}

// `cmd_login.__call__`: `CommandError("Invalid PEM material")`, and maascli's `CommandError`
// is `SystemExit` (src/maascli/command.py): the bare message, exit 1, before any request.
#[test]
fn login_with_a_cacerts_file_that_is_not_pem_exits_1() {
    let sb = Sandbox::new("login-pem");
    let f = sb.dir.0.join("ca.pem");
    std::fs::write(&f, "not a certificate\n").unwrap();
    let o = login(
        &sb,
        &answering(200),
        KEY,
        &["--cacerts", f.to_str().unwrap()],
    );
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (Some(1), "", "Invalid PEM material\n")
    );
}

// src/maascli/api.py `http_request`: an `ssl.SSLError` is its `CommandError` (exit 1) naming
// the way out first.
#[test]
fn login_to_a_server_that_speaks_no_tls_is_a_certificate_failure() {
    let sb = Sandbox::new("login-tls");
    let url = answering(200).replace("http://", "https://");
    let o = login(&sb, &url, KEY, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(
            "Certificate verification failed, use --insecure/-k to disable the certificate check.\n[SSL"
        ),
        "{}",
        stderr(&o)
    );
}

// src/maascli/snap.py `cmd_config._validate_flags`: `print_msg` writes to stdout, then exit 1.
#[test]
fn config_prints_unsupported_flags_on_stdout() {
    let sb = Sandbox::new("config-flags");
    let o = sb.run_line("maas config --maas-url http://x/MAAS");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (
            Some(1),
            "Following flags are not supported in 'none' mode: --maas-url\n",
            ""
        )
    );
}

// ARGUMENTS["num-workers"] has `type=int` (src/maascli/snap.py): argparse refuses, exit 2;
// `--maas-url` has no type and `cmd_config.handle` checks nothing: written as given.
#[test]
fn config_leaves_checks_to_argparse_and_writes_the_url_as_given() {
    let sb = Sandbox::new("config-types");
    std::fs::create_dir_all(sb.path("/var/snap/maas/common")).unwrap();
    std::fs::write(sb.path("/var/snap/maas/common/snap_mode"), "region\n").unwrap();
    assert_fails_with(
        &sb.run_line("maas config --num-workers four"),
        2,
        "maas config: error: argument --num-workers: invalid int value: 'four'",
    );
    assert_ok(&sb.run_line("maas config --maas-url not-a-url"));
    let conf = read(&sb.path("/var/snap/maas/current/regiond.conf"));
    assert!(conf.contains("maas_url: not-a-url"), "{conf}");
}

// src/provisioningserver/register_command.py `run`: without `--url` off a terminal, a print
// (stdout) and exit 1, before rackd is touched.
#[test]
fn register_without_url_off_a_terminal_prints_on_stdout() {
    let sb = Sandbox::new("register-nourl");
    let o = sb.run_stdin(&["maas-rack", "register"], "00ff\n");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (
            Some(1),
            "MAAS region controller URL must be given when supplying the shared secret via stdin with a non-interactive shell.\n",
            ""
        )
    );
}

// `run`: `ClusterConfiguration.maas_url`'s validator raises formencode's `Invalid`, which
// nothing catches: Python's traceback, exit 1, its exception two lines (`ForEach`'s `Errors:`).
#[test]
fn register_with_a_url_maas_refuses_is_formencodes_traceback() {
    let sb = Sandbox::new("register-badurl");
    let o = sb.run(&[
        "maas-rack",
        "register",
        "--url",
        "http://bad host/MAAS",
        "--secret",
        "00ff",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("Traceback (most recent call last):\n"),
        "{err}"
    );
    assert!(
        err.contains("register_command.py\", line 95, in run\n    config.maas_url = args.url\n"),
        "{err}"
    );
    assert!(
        err.ends_with("formencode.api.Invalid: Errors:\nThat is not a valid URL\n"),
        "{err}"
    );
    assert!(!sb.path("/var/lib/maas/secret").exists());
}

// `run` → `InstallSharedSecretScript.run` (src/provisioningserver/security.py): a secret on
// stdin is installed, `Secret installed to …`, and its `SystemExit(0)` ends `register` before
// `systemctl enable/start maas-rackd`; a secret that is not hex is binascii's message, exit 1.
#[test]
fn register_with_the_secret_on_stdin_installs_it_and_starts_nothing() {
    let sb = Sandbox::new("register-stdin");
    let bin = sb.dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = sb.dir.0.join("systemctl.calls");
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |input: &str| {
        let mut c = sb.command(&["maas-rack", "register", "--url", "http://10.0.0.1/MAAS"]);
        c.env_remove("MAAS_STANDIN_NO_SERVICES").env("PATH", &path);
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = run("00112233445566778899aabbccddeeff\n");
    let secret_path = sb.path("/var/lib/maas/secret");
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (
            Some(0),
            format!("Secret installed to {}.\n", secret_path.display())
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        read_trimmed(&secret_path),
        "00112233445566778899aabbccddeeff"
    );
    assert_eq!(read(&calls), "stop maas-rackd\n");
    let o = run("not hex\n");
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(1),
            "Secret could not be decoded: Non-hexadecimal digit found\n"
        )
    );
    let o = run("abc\n");
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (Some(1), "Secret could not be decoded: Odd-length string\n")
    );
    // An empty line is a secret too: `FileBackedValue.set` removes the file.
    let o = run("\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!secret_path.exists());
}

// `run`: `call_and_check(["systemctl", "stop", "maas-rackd"])` failing prints two lines on
// stderr, the second carrying systemctl's stderr, exit 1; `--secret` given, a failed start
// likewise.
#[test]
fn register_reports_systemctl_failures_with_systemctls_stderr() {
    let sb = Sandbox::new("register-systemctl");
    let bin = sb.dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1\" in\n  $FAIL) echo \"Failed to $1 maas-rackd.service: Access denied\" >&2; exit 1;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |fail: &str| {
        let mut c = sb.command(&[
            "maas-rack",
            "register",
            "--url",
            "http://10.0.0.1/MAAS",
            "--secret",
            "00ff",
        ]);
        c.env_remove("MAAS_STANDIN_NO_SERVICES")
            .env("PATH", &path)
            .env("FAIL", fail)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let o = run("stop");
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(1),
            "Unable to stop maas-rackd service.\nFailed with error: Failed to stop maas-rackd.service: Access denied.\n"
        )
    );
    let o = run("start");
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(1),
            "Unable to enable and start the maas-rackd service.\nFailed with error: Failed to start maas-rackd.service: Access denied.\n"
        )
    );
    let o = run("none");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

// `maas-rack install-shared-secret` is `InstallSharedSecretScript` itself.
#[test]
fn install_shared_secret_checks_hex_as_maas() {
    let sb = Sandbox::new("install-secret");
    let o = sb.run_stdin(&["maas-rack", "install-shared-secret"], "zz\n");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (
            Some(1),
            "",
            "Secret could not be decoded: Non-hexadecimal digit found\n"
        )
    );
    let o = sb.run_stdin(&["maas-rack", "install-shared-secret"], "00ff\n");
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (
            Some(0),
            format!(
                "Secret installed to {}.\n",
                sb.path("/var/lib/maas/secret").display()
            )
        )
    );
}

// src/maascli/snap.py `cmd_init.handle`: `get_database_settings`'s `DatabaseSettingsError`
// becomes `CommandError(str(error))`, and maascli's `CommandError` is `SystemExit`: the bare
// message, exit 1, before anything is written.
#[test]
fn init_with_a_database_uri_maas_refuses_prints_the_bare_message() {
    let sb = Sandbox::new("init-uri");
    let o = sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        "http://10.0.0.1/MAAS",
        "--database-uri",
        "postgres://u:p@h/d?sslmode=require",
    ]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (
            Some(1),
            "",
            "Error parsing database URI: Unsupported parameters: sslmode\n"
        )
    );
    assert!(!sb.path("/var/snap/maas/common/snap_mode").exists());
}

// src/maascli/snap.py `cmd_init.handle` gives `--maas-url` (no argparse `type`) to
// `MAASConfiguration().update` (src/maascli/configfile.py), which writes it as given: real
// `maas init` refuses no URL. A rack init needs no database, so it succeeds with one that
// `ExtendedURL` would refuse, and with one it would have completed with `http://`.
#[test]
fn init_writes_any_maas_url_as_given() {
    for url in ["maas.example:5240/MAAS", "not a url", "10.0.0.1"] {
        let sb = Sandbox::new("init-anyurl");
        let o = sb.run(&[
            "maas",
            "init",
            "rack",
            "--maas-url",
            url,
            "--secret",
            "00ff",
        ]);
        assert_eq!(o.status.code(), Some(0), "{url}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{url}");
        let conf: serde_yaml::Value =
            serde_yaml::from_str(&read(&sb.path("/var/snap/maas/current/rackd.conf"))).unwrap();
        assert_eq!(conf["maas_url"].as_str(), Some(url));
        assert_eq!(
            read(&sb.path("/var/snap/maas/common/snap_mode")).trim(),
            "rack"
        );
    }
}

// `ForEach(ExtendedURL(require_tld=False))` (src/provisioningserver/config.py
// `ClusterConfiguration.maas_url`, src/provisioningserver/utils/config.py `ExtendedURL`;
// formencode `URL._convert_to_python`, `ForEach._attempt_convert`): `add_http` completes a URL
// without a scheme and the completed one is stored; every refused URL is one `That is not a
// valid URL` line under `Errors:`.
#[test]
fn register_stores_what_extended_url_returns_and_lists_each_refusal() {
    let sb = Sandbox::new("register-urls");
    let o = sb.run(&[
        "maas-rack",
        "register",
        "--url",
        "10.0.0.1:5240/MAAS",
        "--url",
        "HTTPS://[fd00::1]/MAAS",
        "--secret",
        "00ff",
    ]);
    // `10.0.0.1:` is no scheme to `^[a-zA-Z]+:` (digits), so `http://` is added;
    // `localhost:` below is one, so nothing is added and the URL is refused.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let conf: serde_yaml::Value =
        serde_yaml::from_str(&read(&sb.path("/etc/maas/rackd.conf"))).unwrap();
    assert_eq!(
        conf["maas_url"],
        serde_yaml::from_str::<serde_yaml::Value>(
            "[http://10.0.0.1:5240/MAAS, 'https://[fd00::1]/MAAS']"
        )
        .unwrap()
    );

    let sb = Sandbox::new("register-urls2");
    let o = sb.run(&[
        "maas-rack",
        "register",
        "--url",
        "localhost:5240/MAAS",
        "--url",
        "http://10.0.0.1/MAAS",
        "--url",
        "http://[fd00:1::]/MAAS",
        "--secret",
        "00ff",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.ends_with(
            "formencode.api.Invalid: Errors:\nThat is not a valid URL\nThat is not a valid URL\n"
        ),
        "{err}"
    );
    assert!(!sb.path("/etc/maas/rackd.conf").exists());
}

// `SetCommand.handle` (src/maasserver/management/commands/_config.py): `RegionConfiguration.
// maas_url` is `ExtendedURL(require_tld=False)`; its `Invalid` becomes `CommandError("maas-url:
// That is not a valid URL.")`; an accepted URL is stored as `to_python` returned it.
#[test]
fn local_config_set_maas_url_is_extended_url() {
    let sb = Sandbox::new("lcs-url");
    let o = sb.run(&[
        "maas-region",
        "local_config_set",
        "--maas-url",
        "localhost:5240/MAAS",
    ]);
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(1),
            "CommandError: maas-url: That is not a valid URL.\n"
        )
    );
    let o = sb.run(&[
        "maas-region",
        "local_config_set",
        "--maas-url",
        "maas.example/MAAS",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let conf: serde_yaml::Value =
        serde_yaml::from_str(&read(&sb.path("/etc/maas/regiond.conf"))).unwrap();
    assert_eq!(conf["maas_url"].as_str(), Some("http://maas.example/MAAS"));
}
