//! The CLIs as the charms run them: accepted and refused commands, exit codes, messages,
//! the files written and their modes. No database needed here.

mod common;
use common::*;

#[test]
fn init_refuses_what_maas_refuses() {
    let sb = Sandbox::new("init-refuse");
    // No --maas-url: MAAS would prompt; the stand-in refuses with a clear message, exit 2.
    let o = sb.run_line("maas init rack --secret abcd");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("usage: maas init rack"),
        "{}",
        stderr(&o)
    );
    assert_stderr_has(&o, "the following arguments are required: --maas-url");
    // Each: the command line, the exit code where it is checked, what stderr says.
    let refusals: [(&str, Option<i32>, &str); 10] = [
        // Unknown option: argparse's "unrecognized arguments", exit 2.
        (
            "maas init region --maas-url http://10.0.0.1/MAAS --database-uri postgres://u:p@h/d --bogus",
            Some(2),
            "maas init region: error: unrecognized arguments: --bogus",
        ),
        // --database-uri belongs to region modes; --secret to rack mode.
        (
            "maas init rack --maas-url http://x/MAAS --secret ab --database-uri postgres://u@h/d",
            None,
            "unrecognized arguments: --database-uri",
        ),
        (
            "maas init region+rack --maas-url http://x/MAAS --database-uri postgres://u@h/d --secret ab",
            None,
            "unrecognized arguments: --secret",
        ),
        // Bad mode, missing mode, region mode without a database.
        ("maas init controller", Some(2), "invalid choice: 'controller'"),
        ("maas init", None, "the following arguments are required: run_mode"),
        ("maas init region --maas-url http://x/MAAS", None, "required: --database-uri"),
        // Database URI with parameters MAAS does not allow.
        (
            "maas init region --maas-url http://x/MAAS --database-uri postgres://u:p@h/d?sslmode=require",
            Some(1),
            "Error parsing database URI: Unsupported parameters: sslmode",
        ),
        // (No URL is refused: real init writes --maas-url as given; see failures.rs
        // `init_writes_any_maas_url_as_given`.)
        // Debug flags belong to region modes; there, they exclude each other.
        (
            "maas init rack --maas-url http://x/MAAS --secret ab --enable-debug",
            None,
            "unrecognized arguments: --enable-debug",
        ),
        (
            "maas init region --maas-url http://x/MAAS --database-uri postgres://u@h/d --enable-debug --disable-debug",
            Some(2),
            "not allowed with argument",
        ),
        // Vault needs its companions.
        (
            "maas init region --maas-url http://x/MAAS --database-uri postgres://u@h/d --vault-uri http://v:8200",
            Some(1),
            "Missing required vault arguments: vault-approle-id, vault-wrapped-token, vault-secrets-path",
        ),
    ];
    for (line, code, says) in refusals {
        let o = sb.run_line(line);
        if let Some(code) = code {
            assert_eq!(o.status.code(), Some(code), "{line}");
        }
        assert!(stderr(&o).contains(says), "{line}: {}", stderr(&o));
    }
    // Nothing was written by any of that.
    assert!(!sb.path("/var/snap/maas/common/snap_mode").exists());
}

#[test]
fn init_rack_writes_maas_files_and_config_round_trips() {
    let sb = Sandbox::new("init-rack");
    let secret = "0123456789abcdef0123456789abcdef";
    let init = format!("maas init rack --maas-url http://10.77.0.200/MAAS --secret {secret}");
    assert_ok(&sb.run_line(&format!("{init} --force")));
    let mode = read(&sb.path("/var/snap/maas/common/snap_mode"));
    assert_eq!(mode.trim(), "rack");
    let secret_path = sb.path("/var/snap/maas/common/maas/secret");
    assert_eq!(read_trimmed(&secret_path), secret);
    assert_eq!(
        mode_of(&secret_path) & 0o037,
        0,
        "secret must be 0640 or stricter"
    );
    let rackd = read(&sb.path("/var/snap/maas/current/rackd.conf"));
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
    assert_fails_with(&sb.run_line(&init), 1, "--force");

    // maas config: show, parsable, change the URL and the secret; no --database-uri, no --mode.
    let o = sb.run_line("maas config --parsable --show-secret");
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("mode=rack\n")
            && out.contains("maas_url=http://10.77.0.200/MAAS\n")
            && out.contains(&format!("secret={secret}")),
        "{out}"
    );
    assert_ok(&sb.run_line(
        "maas config --maas-url http://10.77.0.201/MAAS --secret abcdef0123456789abcdef0123456789",
    ));
    let o = sb.run_line("maas config --show");
    assert!(
        stdout(&o).contains("Mode: rack")
            && stdout(&o).contains("maas_url=http://10.77.0.201/MAAS"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        read_trimmed(&secret_path),
        "abcdef0123456789abcdef0123456789"
    );
    assert_eq!(mode_of(&secret_path) & 0o037, 0);
    for (flag, value) in [("--database-uri", "postgres://u@h/d"), ("--mode", "region")] {
        let o = sb.run_line(&format!("maas config {flag} {value}"));
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert_stderr_has(&o, &format!("unrecognized arguments: {flag}"));
    }
    // `set_rpc_secret` writes what it is given, hex or not.
    assert_ok(&sb.run_line("maas config --secret zz"));
    assert_eq!(read_trimmed(&secret_path), "zz");

    // maas status asks pebble (no `snap` here to say otherwise, so the newest MAAS); with no
    // pebble running it fails as MAAS 3.5+ does (`cmd_status.handle`, src/maascli/snap.py).
    // The tables are tested in daemons.rs, with the supervisor running.
    let o = sb.run_line("maas status");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (
            Some(1),
            "Pebble exited with error code 1 and the following output:\n"
        )
    );
    assert_stderr_has(&o, "error: cannot communicate with server");
}

#[test]
fn config_before_init_and_secret_only_in_rack_mode() {
    let sb = Sandbox::new("config-none");
    let o = sb.run_line("maas config --show");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "Mode: none\n")
    );
    let o = sb.run_line("maas config --maas-url http://x/MAAS");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (
            Some(1),
            "Following flags are not supported in 'none' mode: --maas-url\n"
        )
    );
    let o = sb.run_line("maas status");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(1), "MAAS is not configured\n")
    );
    // A region-mode snap refuses --secret (the region owns the secret).
    std::fs::create_dir_all(sb.path("/var/snap/maas/common")).unwrap();
    std::fs::write(sb.path("/var/snap/maas/common/snap_mode"), "region\n").unwrap();
    let o = sb.run_line("maas config --secret abcd");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (
            Some(1),
            "Following flags are not supported in 'region' mode: --secret\n"
        )
    );
}

#[test]
fn deb_rack_register_config_and_shared_secret() {
    let sb = Sandbox::new("deb-rack");
    let rackd_conf = sb.path("/etc/maas/rackd.conf");
    let secret = "00112233445566778899aabbccddeeff";
    assert_ok(&sb.run_line(&format!(
        "maas-rack register --url http://10.77.0.200/MAAS --secret {secret}"
    )));
    let conf = read(&rackd_conf);
    assert!(
        conf.contains("maas_url:\n- http://10.77.0.200/MAAS\n"),
        "{conf}"
    );
    assert_eq!(mode_of(&rackd_conf), 0o640);
    let sp = sb.path("/var/lib/maas/secret");
    assert_eq!(read_trimmed(&sp), secret);
    assert_eq!(mode_of(&sp) & 0o037, 0);
    // Secret from stdin, several URLs become a list.
    let other = "ffeeddccbbaa99887766554433221100";
    assert_ok(&sb.run_stdin(
        &[
            "maas-rack",
            "register",
            "--url",
            "http://a/MAAS",
            "--url=http://b/MAAS",
        ],
        &format!("{other}\n"),
    ));
    assert_eq!(read_trimmed(&sp), other);
    let conf = read(&rackd_conf);
    assert!(
        conf.contains("- http://a/MAAS") && conf.contains("- http://b/MAAS"),
        "{conf}"
    );
    // A URL MAAS refuses (tests/failures.rs has what it prints).
    let o = sb.run(&[
        "maas-rack",
        "register",
        "--url",
        "http://a b/MAAS",
        "--secret",
        secret,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_fails_with(
        &sb.run_line(&format!("maas-rack register --secret {secret} --bogus")),
        2,
        "unrecognized arguments: --bogus",
    );
    // The seed's older way.
    assert_ok(&sb.run_line("maas-rack config --region-url http://10.77.0.250/MAAS"));
    let conf = read(&rackd_conf);
    assert!(
        conf.contains("maas_url:\n- http://10.77.0.250/MAAS\n"),
        "{conf}"
    );
    let o = sb.run_stdin(&["maas-rack", "install-shared-secret"], secret);
    assert_ok(&o);
    assert!(stdout(&o).contains("Secret installed to"));
    assert_eq!(read_trimmed(&sp), secret);
    let o = sb.run_stdin(&["maas-rack", "install-shared-secret"], "not hex!");
    assert_eq!(o.status.code(), Some(1));
    assert_ok(&sb.run_line("maas-rack check-for-shared-secret"));
    assert_fails_with(
        &sb.run_line("maas-rack frobnicate"),
        2,
        "invalid choice: 'frobnicate'",
    );
}

#[test]
fn deb_region_local_config_round_trip() {
    let sb = Sandbox::new("deb-region");
    assert_ok(&sb.run_line(
        "maas-region local_config_set --maas-url http://10.77.0.200/MAAS \
         --database-host 10.77.0.201 --database-port 5433 --database-name maasdb \
         --database-user maas --database-pass s3cret",
    ));
    let path = sb.path("/etc/maas/regiond.conf");
    assert_eq!(mode_of(&path), 0o640);
    let text = read(&path);
    assert!(
        text.contains("database_port: 5433") && text.contains("database_pass: s3cret"),
        "{text}"
    );
    let o = sb
        .run_line("maas-region local_config_get --json --database-host --database-port --maas-url");
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"maas_url": "http://10.77.0.200/MAAS", "database_host": "10.77.0.201", "database_port": 5433})
    );
    let o = sb.run_line("maas-region local_config_get --plain --database-name");
    assert_eq!(stdout(&o), "maasdb\n");
    // Only the named setting changes.
    let o = sb.run_line("maas-region local_config_set --database-host 10.77.0.202");
    assert!(o.status.success());
    let o = sb.run_line("maas-region local_config_get --database-host --database-pass");
    assert_eq!(
        stdout(&o),
        "database_host: 10.77.0.202\ndatabase_pass: s3cret\n",
        "YAML by default, as MAAS"
    );
    // Refusals.
    let o = sb.run_line("maas-region local_config_set --database-port many");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("CommandError: database-port:"),
        "{}",
        stderr(&o)
    );
    assert_fails_with(
        &sb.run_line("maas-region local_config_set --database-uri postgres://x"),
        2,
        "unrecognized arguments",
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
        assert_ok(&sb.run_line("maas-region edit_named_options --migrate-conflicting-options"));
    }
    let text = read(&opts);
    assert!(
        !text.contains("forwarders") && text.matches("named.conf.options.inside.maas").count() == 1,
        "{text}"
    );
    let inside = read(&sb.path("/etc/bind/maas/named.conf.options.inside.maas"));
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
    assert_fails_with(&sb.run_line("no-such-tool"), 2, "stand-in");
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
        let v: serde_json::Value =
            serde_json::from_str(&read(&out.0.join(format!("{pkg}.json")))).unwrap();
        assert_eq!(v["name"], pkg);
        if pkg != "maas" {
            // dpkg's version of the MAAS the deb stand-in is (debian/changelog's epoch 1).
            assert_eq!(v["version"], "1:3.6.3-0ubuntu1", "{pkg}");
        }
        for f in v["files"].as_array().unwrap() {
            let src = f["src"].as_str().unwrap();
            assert!(
                src.starts_with('/') && std::path::Path::new(src).exists(),
                "{src}"
            );
        }
    }
    let snap: serde_json::Value = serde_json::from_str(&read(&out.0.join("maas.json"))).unwrap();
    assert_eq!(snap["kind"], "snap");
    assert_eq!(snap["enable"][0], "snap.maas.pebble.service");
    assert_eq!(snap["symlinks"][0]["dst"], "/snap/bin/maas");
    // Where a region keeps what its database does not hold (maas-region's backups read them).
    let dirs = |v: &serde_json::Value| -> Vec<String> {
        v["dirs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap().to_string())
            .collect()
    };
    for d in [
        "/var/snap/maas/current/preseeds",
        "/var/snap/maas/common/maas/image-storage",
    ] {
        assert!(
            dirs(&snap).iter().any(|p| p == d),
            "{d} in {:?}",
            dirs(&snap)
        );
    }
    for pkg in ["maas-region-api", "maas-region-controller"] {
        let v: serde_json::Value =
            serde_json::from_str(&read(&out.0.join(format!("{pkg}.json")))).unwrap();
        for d in ["/etc/maas/preseeds", "/var/lib/maas/image-storage"] {
            assert!(
                dirs(&v).iter().any(|p| p == d),
                "{pkg}: {d} in {:?}",
                dirs(&v)
            );
        }
    }
    let unit = read(&out.0.join("units/maas-regiond.service"));
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
        let o = sb.run_line(&format!("postinst {pkg}"));
        assert!(o.status.success(), "{pkg}: {}", stderr(&o));
    }
    // MAAS's snap/hooks/install writes no snap_mode (3.4 to master): the snap is in mode none.
    assert!(!sb.path("/var/snap/maas/common/snap_mode").exists());
    assert_eq!(
        stdout(&sb.run_line("maas status")),
        "MAAS is not configured\n"
    );
    assert!(read(&sb.path("/etc/maas/regiond.conf")).contains("maas_url"));
    assert!(read(&sb.path("/etc/bind/named.conf.options")).contains("inside.maas"));
}
