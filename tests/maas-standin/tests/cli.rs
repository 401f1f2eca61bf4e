//! The CLIs as the charms run them: accepted and refused commands, exit codes, messages,
//! the files written and their modes. No database needed here.

mod common;
use common::*;

#[test]
fn init_refuses_what_maas_refuses() {
    let sb = Sandbox::new("init-refuse");
    // No --maas-url: MAAS would prompt; the stand-in refuses with a clear message, exit 2.
    let o = sb.run(&["maas", "init", "rack", "--secret", "abcd"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("usage: maas init rack"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("the following arguments are required: --maas-url"),
        "{}",
        stderr(&o)
    );
    // Unknown option: argparse's "unrecognized arguments", exit 2.
    let o = sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        "http://10.0.0.1/MAAS",
        "--database-uri",
        "postgres://u:p@h/d",
        "--bogus",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("maas init region: error: unrecognized arguments: --bogus"),
        "{}",
        stderr(&o)
    );
    // --database-uri belongs to region modes; --secret to rack mode.
    let o = sb.run(&[
        "maas",
        "init",
        "rack",
        "--maas-url",
        "http://x/MAAS",
        "--secret",
        "ab",
        "--database-uri",
        "postgres://u@h/d",
    ]);
    assert!(
        stderr(&o).contains("unrecognized arguments: --database-uri"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&[
        "maas",
        "init",
        "region+rack",
        "--maas-url",
        "http://x/MAAS",
        "--database-uri",
        "postgres://u@h/d",
        "--secret",
        "ab",
    ]);
    assert!(
        stderr(&o).contains("unrecognized arguments: --secret"),
        "{}",
        stderr(&o)
    );
    // Bad mode, missing mode, region mode without a database.
    let o = sb.run(&["maas", "init", "controller"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid choice: 'controller'"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&["maas", "init"]);
    assert!(
        stderr(&o).contains("the following arguments are required: run_mode"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&["maas", "init", "region", "--maas-url", "http://x/MAAS"]);
    assert!(
        stderr(&o).contains("required: --database-uri"),
        "{}",
        stderr(&o)
    );
    // Database URI with parameters MAAS does not allow.
    let o = sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        "http://x/MAAS",
        "--database-uri",
        "postgres://u:p@h/d?sslmode=require",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Error parsing database URI: Unsupported parameters: sslmode"),
        "{}",
        stderr(&o)
    );
    // Not a URL.
    let o = sb.run(&[
        "maas",
        "init",
        "rack",
        "--maas-url",
        "10.0.0.1",
        "--secret",
        "abcd",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("MAAS URL"), "{}", stderr(&o));
    // Debug flags belong to region modes; there, they exclude each other.
    let o = sb.run(&[
        "maas",
        "init",
        "rack",
        "--maas-url",
        "http://x/MAAS",
        "--secret",
        "ab",
        "--enable-debug",
    ]);
    assert!(
        stderr(&o).contains("unrecognized arguments: --enable-debug"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        "http://x/MAAS",
        "--database-uri",
        "postgres://u@h/d",
        "--enable-debug",
        "--disable-debug",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not allowed with argument"),
        "{}",
        stderr(&o)
    );
    // Vault needs its companions.
    let o = sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        "http://x/MAAS",
        "--database-uri",
        "postgres://u@h/d",
        "--vault-uri",
        "http://v:8200",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Missing required vault arguments: vault-approle-id, vault-wrapped-token, vault-secrets-path"), "{}", stderr(&o));
    // Nothing was written by any of that.
    assert!(!sb.path("/var/snap/maas/common/snap_mode").exists());
}

#[test]
fn init_rack_writes_maas_files_and_config_round_trips() {
    let sb = Sandbox::new("init-rack");
    let secret = "0123456789abcdef0123456789abcdef";
    let o = sb.run(&[
        "maas",
        "init",
        "rack",
        "--maas-url",
        "http://10.77.0.200/MAAS",
        "--secret",
        secret,
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = std::fs::read_to_string(sb.path("/var/snap/maas/common/snap_mode")).unwrap();
    assert_eq!(mode.trim(), "rack");
    let secret_path = sb.path("/var/snap/maas/common/maas/secret");
    assert_eq!(
        std::fs::read_to_string(&secret_path).unwrap().trim(),
        secret
    );
    assert_eq!(
        mode_of(&secret_path) & 0o037,
        0,
        "secret must be 0640 or stricter"
    );
    let rackd = std::fs::read_to_string(sb.path("/var/snap/maas/current/rackd.conf")).unwrap();
    assert!(
        rackd.contains("maas_url: http://10.77.0.200/MAAS"),
        "{rackd}"
    );
    assert!(
        !sb.path("/var/snap/maas/current/http/regiond.nginx.conf")
            .exists(),
        "rack mode is not a region"
    );

    // Initialised already: without --force MAAS would ask; the stand-in refuses.
    let o = sb.run(&[
        "maas",
        "init",
        "rack",
        "--maas-url",
        "http://10.77.0.200/MAAS",
        "--secret",
        secret,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));

    // maas config: show, parsable, change the URL and the secret; no --database-uri, no --mode.
    let o = sb.run(&["maas", "config", "--parsable", "--show-secret"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("mode=rack\n")
            && out.contains("maas_url=http://10.77.0.200/MAAS\n")
            && out.contains(&format!("secret={secret}")),
        "{out}"
    );
    let o = sb.run(&[
        "maas",
        "config",
        "--maas-url",
        "http://10.77.0.201/MAAS",
        "--secret",
        "abcdef0123456789abcdef0123456789",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sb.run(&["maas", "config", "--show"]);
    assert!(
        stdout(&o).contains("Mode: rack")
            && stdout(&o).contains("maas_url=http://10.77.0.201/MAAS"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&secret_path).unwrap().trim(),
        "abcdef0123456789abcdef0123456789"
    );
    assert_eq!(mode_of(&secret_path) & 0o037, 0);
    for bad in [
        &["--database-uri", "postgres://u@h/d"][..],
        &["--mode", "region"][..],
    ] {
        let mut args = vec!["maas", "config"];
        args.extend_from_slice(bad);
        let o = sb.run(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(
            stderr(&o).contains(&format!("unrecognized arguments: {}", bad[0])),
            "{}",
            stderr(&o)
        );
    }
    let o = sb.run(&["maas", "config", "--secret", "zz"]);
    assert_eq!(o.status.code(), Some(1), "a secret must be hex");

    // maas status lists the pebble services.
    let o = sb.run(&["maas", "status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("Service"), "{out}");
    for svc in ["agent", "rackd", "regiond", "bind9", "dhcpd"] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(svc)),
            "{svc} missing in {out}"
        );
    }
    let regiond = out.lines().find(|l| l.starts_with("regiond")).unwrap();
    assert!(
        regiond.contains("disabled"),
        "rack mode has no regiond: {regiond}"
    );
}

#[test]
fn config_before_init_and_secret_only_in_rack_mode() {
    let sb = Sandbox::new("config-none");
    let o = sb.run(&["maas", "config", "--show"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "Mode: none\n")
    );
    let o = sb.run(&["maas", "config", "--maas-url", "http://x/MAAS"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Following flags are not supported in 'none' mode: --maas-url"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&["maas", "status"]);
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (Some(1), "MAAS is not configured\n")
    );
    // A region-mode snap refuses --secret (the region owns the secret).
    std::fs::create_dir_all(sb.path("/var/snap/maas/common")).unwrap();
    std::fs::write(sb.path("/var/snap/maas/common/snap_mode"), "region\n").unwrap();
    let o = sb.run(&["maas", "config", "--secret", "abcd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Following flags are not supported in 'region' mode: --secret"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn deb_rack_register_config_and_shared_secret() {
    let sb = Sandbox::new("deb-rack");
    let secret = "00112233445566778899aabbccddeeff";
    let o = sb.run(&[
        "maas-rack",
        "register",
        "--url",
        "http://10.77.0.200/MAAS",
        "--secret",
        secret,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let conf = std::fs::read_to_string(sb.path("/etc/maas/rackd.conf")).unwrap();
    assert!(conf.contains("maas_url: http://10.77.0.200/MAAS"), "{conf}");
    assert_eq!(mode_of(&sb.path("/etc/maas/rackd.conf")), 0o640);
    let sp = sb.path("/var/lib/maas/secret");
    assert_eq!(std::fs::read_to_string(&sp).unwrap().trim(), secret);
    assert_eq!(mode_of(&sp) & 0o037, 0);
    // Secret from stdin, several URLs become a list.
    let other = "ffeeddccbbaa99887766554433221100";
    let o = sb.run_stdin(
        &[
            "maas-rack",
            "register",
            "--url",
            "http://a/MAAS",
            "--url=http://b/MAAS",
        ],
        &format!("{other}\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&sp).unwrap().trim(), other);
    let conf = std::fs::read_to_string(sb.path("/etc/maas/rackd.conf")).unwrap();
    assert!(
        conf.contains("- http://a/MAAS") && conf.contains("- http://b/MAAS"),
        "{conf}"
    );
    // No secret at all (stdin closed and empty) is refused; so is a bad URL and no URL.
    let o = sb.run(&["maas-rack", "register", "--url", "http://a/MAAS"]);
    assert_eq!(o.status.code(), Some(1));
    let o = sb.run(&["maas-rack", "register", "--url", "nope", "--secret", secret]);
    assert_eq!(o.status.code(), Some(1));
    let o = sb.run(&["maas-rack", "register", "--secret", secret, "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unrecognized arguments: --bogus"));
    // The seed's older way.
    let o = sb.run(&[
        "maas-rack",
        "config",
        "--region-url",
        "http://10.77.0.250/MAAS",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let conf = std::fs::read_to_string(sb.path("/etc/maas/rackd.conf")).unwrap();
    assert!(conf.contains("maas_url: http://10.77.0.250/MAAS"), "{conf}");
    let o = sb.run_stdin(&["maas-rack", "install-shared-secret"], secret);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Secret installed to"));
    assert_eq!(std::fs::read_to_string(&sp).unwrap().trim(), secret);
    let o = sb.run_stdin(&["maas-rack", "install-shared-secret"], "not hex!");
    assert_eq!(o.status.code(), Some(1));
    let o = sb.run(&["maas-rack", "check-for-shared-secret"]);
    assert!(o.status.success());
    let o = sb.run(&["maas-rack", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid choice: 'frobnicate'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn deb_region_local_config_round_trip() {
    let sb = Sandbox::new("deb-region");
    let o = sb.run(&[
        "maas-region",
        "local_config_set",
        "--maas-url",
        "http://10.77.0.200/MAAS",
        "--database-host",
        "10.77.0.201",
        "--database-port",
        "5433",
        "--database-name",
        "maasdb",
        "--database-user",
        "maas",
        "--database-pass",
        "s3cret",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = sb.path("/etc/maas/regiond.conf");
    assert_eq!(mode_of(&path), 0o640);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("database_port: 5433") && text.contains("database_pass: s3cret"),
        "{text}"
    );
    let o = sb.run(&[
        "maas-region",
        "local_config_get",
        "--json",
        "--database-host",
        "--database-port",
        "--maas-url",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"maas_url": "http://10.77.0.200/MAAS", "database_host": "10.77.0.201", "database_port": 5433})
    );
    let o = sb.run(&[
        "maas-region",
        "local_config_get",
        "--plain",
        "--database-name",
    ]);
    assert_eq!(stdout(&o), "maasdb\n");
    // Only the named setting changes.
    let o = sb.run(&[
        "maas-region",
        "local_config_set",
        "--database-host",
        "10.77.0.202",
    ]);
    assert!(o.status.success());
    let o = sb.run(&[
        "maas-region",
        "local_config_get",
        "--database-host",
        "--database-pass",
    ]);
    assert_eq!(
        stdout(&o),
        "database_host: 10.77.0.202\ndatabase_pass: s3cret\n",
        "YAML by default, as MAAS"
    );
    // Refusals.
    let o = sb.run(&["maas-region", "local_config_set", "--database-port", "many"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("CommandError: database-port:"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&[
        "maas-region",
        "local_config_set",
        "--database-uri",
        "postgres://x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unrecognized arguments"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&["maas-region", "local_config_set", "--maas-url", "not a url"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn edit_named_options_migrates_once() {
    let sb = Sandbox::new("named");
    let opts = sb.path("/etc/bind/named.conf.options");
    std::fs::create_dir_all(opts.parent().unwrap()).unwrap();
    std::fs::write(&opts, "options {\n\tdirectory \"/var/cache/bind\";\n\tforwarders { 8.8.8.8; };\n\tdnssec-validation auto;\n};\n").unwrap();
    for _ in 0..2 {
        let o = sb.run(&[
            "maas-region",
            "edit_named_options",
            "--migrate-conflicting-options",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let text = std::fs::read_to_string(&opts).unwrap();
    assert!(
        !text.contains("forwarders") && text.matches("named.conf.options.inside.maas").count() == 1,
        "{text}"
    );
    let inside =
        std::fs::read_to_string(sb.path("/etc/bind/maas/named.conf.options.inside.maas")).unwrap();
    assert_eq!(inside.matches("forwarders").count(), 1, "{inside}");
}

#[test]
fn dispatch_on_argv0_and_unknown_names() {
    let sb = Sandbox::new("argv0");
    let link = sb.dir.0.join("maas-rack");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let o = std::process::Command::new(&link)
        .arg("check-for-shared-secret")
        .envs(sb.env.clone())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Shared secret not installed."));
    let o = sb.run(&["no-such-tool"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("stand-in"));
}

#[test]
fn catalog_entries_point_at_the_binary() {
    let out = TempDir::new("catalog");
    let o = std::process::Command::new(BIN)
        .args([
            "catalog",
            "--out",
            &out.0.display().to_string(),
            "--binary",
            BIN,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for pkg in [
        "maas",
        "maas-region-api",
        "maas-dns",
        "maas-rack-controller",
        "maas-cli",
        "maas-region-controller",
    ] {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.0.join(format!("{pkg}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(v["name"], pkg);
        for f in v["files"].as_array().unwrap() {
            let src = f["src"].as_str().unwrap();
            assert!(
                src.starts_with('/') && std::path::Path::new(src).exists(),
                "{src}"
            );
        }
    }
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.0.join("maas.json")).unwrap()).unwrap();
    assert_eq!(snap["kind"], "snap");
    assert_eq!(snap["enable"][0], "snap.maas.pebble.service");
    assert_eq!(snap["symlinks"][0]["dst"], "/snap/bin/maas");
    let unit = std::fs::read_to_string(out.0.join("units/maas-regiond.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/lib/maas-standin/maas-standin regiond --flavor deb"),
        "{unit}"
    );
    let o = std::process::Command::new(BIN)
        .args(["catalog"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn postinst_prepares_packages() {
    let sb = Sandbox::new("postinst");
    for pkg in [
        "maas",
        "maas-region-api",
        "maas-dns",
        "maas-rack-controller",
    ] {
        let o = sb.run(&["postinst", pkg]);
        assert!(o.status.success(), "{pkg}: {}", stderr(&o));
    }
    assert_eq!(
        std::fs::read_to_string(sb.path("/var/snap/maas/common/snap_mode"))
            .unwrap()
            .trim(),
        "none"
    );
    assert!(std::fs::read_to_string(sb.path("/etc/maas/regiond.conf"))
        .unwrap()
        .contains("maas_url"));
    assert!(
        std::fs::read_to_string(sb.path("/etc/bind/named.conf.options"))
            .unwrap()
            .contains("inside.maas")
    );
}
