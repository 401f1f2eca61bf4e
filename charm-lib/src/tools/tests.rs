//! Every wrapper's argv and parsing, against a runner that records calls and plays back output.

use super::*;
use std::cell::RefCell;

/// Plays back one scripted answer per call and records (tool, args, stdin).
/// (tool, args, stdin) of one call.
type Call = (String, Vec<String>, Option<String>);

struct Script {
    answers: RefCell<Vec<Result<Vec<u8>, ToolErrorKind>>>,
    calls: RefCell<Vec<Call>>,
}

impl Script {
    fn new(answers: Vec<Result<&str, ToolErrorKind>>) -> Script {
        Script {
            answers: RefCell::new(
                answers
                    .into_iter()
                    .rev()
                    .map(|a| a.map(|s| s.as_bytes().to_vec()))
                    .collect(),
            ),
            calls: RefCell::new(Vec::new()),
        }
    }
    fn ok(out: &str) -> Script {
        Script::new(vec![Ok(out)])
    }
    fn argv(&self) -> Vec<String> {
        let calls = self.calls.borrow();
        let (tool, args, _) = calls.last().expect("a call was made");
        std::iter::once(tool.clone())
            .chain(args.iter().cloned())
            .collect()
    }
    fn stdin(&self) -> Option<String> {
        self.calls.borrow().last().and_then(|c| c.2.clone())
    }
}

impl ToolRunner for Script {
    fn run(&self, tool: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Vec<u8>, ToolError> {
        self.calls.borrow_mut().push((
            tool.into(),
            args.to_vec(),
            stdin.map(|b| String::from_utf8_lossy(b).into_owned()),
        ));
        let answer = self
            .answers
            .borrow_mut()
            .pop()
            .expect("more calls than scripted answers");
        answer.map_err(|kind| ToolError::new(tool, args, kind))
    }
}

fn failed(stderr: &str) -> ToolErrorKind {
    ToolErrorKind::Failed {
        code: Some(1),
        stderr: stderr.into(),
    }
}

fn rid(s: &str) -> RelationId {
    s.parse().unwrap()
}

#[test]
fn relation_ids_parses_ids_and_accepts_null() {
    let r = Script::ok(r#"["db:1","db:3"]"#);
    assert_eq!(
        HookTools::new(&r).relation_ids("db").unwrap(),
        vec![rid("db:1"), rid("db:3")]
    );
    assert_eq!(r.argv(), ["relation-ids", "--format=json", "db"]);
    let r = Script::ok("null");
    assert!(HookTools::new(&r).relation_ids("db").unwrap().is_empty());
}

#[test]
fn relation_ids_rejects_a_malformed_id() {
    let r = Script::ok(r#"["db"]"#);
    let e = HookTools::new(&r).relation_ids("db").unwrap_err();
    assert!(matches!(e.kind, ToolErrorKind::BadOutput { .. }), "{e}");
}

#[test]
fn relation_id_with_dashed_endpoint_round_trips() {
    let r = rid("database-peers:12");
    assert_eq!(r.endpoint, "database-peers");
    assert_eq!(r.id, 12);
    assert_eq!(r.to_string(), "database-peers:12");
    assert!("peers:x".parse::<RelationId>().is_err());
    assert!(":1".parse::<RelationId>().is_err());
}

#[test]
fn relation_list_units_and_app() {
    let r = Script::ok(r#"["pg/0","pg/1"]"#);
    assert_eq!(
        HookTools::new(&r).relation_list(&rid("db:2")).unwrap(),
        ["pg/0", "pg/1"]
    );
    assert_eq!(r.argv(), ["relation-list", "--format=json", "-r", "db:2"]);
    let r = Script::ok(r#""pg""#);
    assert_eq!(
        HookTools::new(&r)
            .relation_list_app(&rid("db:2"))
            .unwrap()
            .as_deref(),
        Some("pg")
    );
    assert_eq!(
        r.argv(),
        ["relation-list", "--format=json", "-r", "db:2", "--app"]
    );
}

#[test]
fn relation_get_whole_bag_unit_and_app() {
    let r = Script::ok(r#"{"host":"10.0.0.1","port":"5432"}"#);
    let bag = HookTools::new(&r)
        .relation_get(&rid("db:2"), "pg/0", false)
        .unwrap();
    assert_eq!(bag["host"], "10.0.0.1");
    assert_eq!(
        r.argv(),
        ["relation-get", "--format=json", "-r", "db:2", "-", "pg/0"]
    );
    let r = Script::ok("null");
    assert!(HookTools::new(&r)
        .relation_get(&rid("db:2"), "pg", true)
        .unwrap()
        .is_empty());
    assert_eq!(
        r.argv(),
        [
            "relation-get",
            "--format=json",
            "-r",
            "db:2",
            "--app",
            "-",
            "pg"
        ]
    );
}

#[test]
fn relation_get_key_null_is_none() {
    let r = Script::ok("null");
    assert_eq!(
        HookTools::new(&r)
            .relation_get_key(&rid("db:2"), "host", "pg/0", false)
            .unwrap(),
        None
    );
    assert_eq!(
        r.argv(),
        [
            "relation-get",
            "--format=json",
            "-r",
            "db:2",
            "host",
            "pg/0"
        ]
    );
}

#[test]
fn relation_get_rejects_non_string_values() {
    let r = Script::ok(r#"{"port":5432}"#);
    let e = HookTools::new(&r)
        .relation_get(&rid("db:2"), "pg/0", false)
        .unwrap_err();
    assert!(matches!(e.kind, ToolErrorKind::BadOutput { .. }));
}

#[test]
fn relation_set_sends_json_on_stdin() {
    let r = Script::ok("");
    let mut bag = Databag::new();
    bag.insert("a".into(), "1".into());
    bag.insert("gone".into(), "".into());
    HookTools::new(&r)
        .relation_set(&rid("peers:0"), &bag, true)
        .unwrap();
    assert_eq!(
        r.argv(),
        ["relation-set", "-r", "peers:0", "--app", "--file", "-"]
    );
    assert_eq!(r.stdin().unwrap(), r#"{"a":"1","gone":""}"#);
}

#[test]
fn relation_set_failure_carries_stderr() {
    let r = Script::new(vec![Err(failed("ERROR cannot write relation settings"))]);
    let e = HookTools::new(&r)
        .relation_set(&rid("db:1"), &Databag::new(), true)
        .unwrap_err();
    assert_eq!(e.stderr(), Some("ERROR cannot write relation settings"));
    assert!(e
        .to_string()
        .contains("relation-set failed (exit 1): ERROR cannot write relation settings"));
}

#[test]
fn config_get_native_types_and_null() {
    let r = Script::ok(r#"{"port":5432,"vip":"10.0.0.100/24","preempt":false,"ratio":0.5}"#);
    let c = HookTools::new(&r).config_get().unwrap();
    assert_eq!(c["port"], 5432);
    assert_eq!(c["preempt"], false);
    assert_eq!(r.argv(), ["config-get", "--format=json"]);
    let r = Script::ok("null");
    assert!(HookTools::new(&r).config_get().unwrap().is_empty());
}

#[test]
fn is_leader_true_false_and_garbage() {
    let r = Script::ok("true");
    assert!(HookTools::new(&r).is_leader().unwrap());
    assert_eq!(r.argv(), ["is-leader", "--format=json"]);
    let r = Script::ok("false\n");
    assert!(!HookTools::new(&r).is_leader().unwrap());
    let r = Script::ok("True");
    assert!(matches!(
        HookTools::new(&r).is_leader().unwrap_err().kind,
        ToolErrorKind::BadOutput { .. }
    ));
}

#[test]
fn status_set_unit_and_application() {
    let r = Script::ok("");
    HookTools::new(&r)
        .status_set("blocked", "set vip", false)
        .unwrap();
    assert_eq!(r.argv(), ["status-set", "--", "blocked", "set vip"]);
    let r = Script::ok("");
    HookTools::new(&r)
        .status_set("active", "-1 replicas", true)
        .unwrap();
    assert_eq!(
        r.argv(),
        ["status-set", "--application", "--", "active", "-1 replicas"]
    );
}

#[test]
fn status_get_unit_and_both_application_shapes() {
    let r = Script::ok(r#"{"status":"active","message":"ok","status-data":{}}"#);
    let st = HookTools::new(&r).status_get().unwrap();
    assert_eq!((st.status.as_str(), st.message.as_str()), ("active", "ok"));
    assert_eq!(r.argv(), ["status-get", "--include-data", "--format=json"]);
    let juju = r#"{"application-status":{"status":"waiting","message":"m","status-data":{},"units":{"a/0":{}}}}"#;
    let r = Script::ok(juju);
    assert_eq!(
        HookTools::new(&r).status_get_application().unwrap().status,
        "waiting"
    );
    let ops = r#"{"status":"blocked","message":"m","status-data":{},"units":{}}"#;
    let r = Script::ok(ops);
    assert_eq!(
        HookTools::new(&r).status_get_application().unwrap().status,
        "blocked"
    );
}

#[test]
fn juju_log_level_and_dashes() {
    let r = Script::ok("");
    HookTools::new(&r)
        .juju_log(LogLevel::Warning, "-x happened")
        .unwrap();
    assert_eq!(
        r.argv(),
        ["juju-log", "--log-level", "WARNING", "--", "-x happened"]
    );
}

#[test]
fn ports_format_and_parse() {
    let r = Script::ok("");
    HookTools::new(&r).open_port(Port::Tcp(80)).unwrap();
    assert_eq!(r.argv(), ["open-port", "80/tcp"]);
    let r = Script::ok("");
    HookTools::new(&r)
        .close_port(Port::UdpRange(5241, 5247))
        .unwrap();
    assert_eq!(r.argv(), ["close-port", "5241-5247/udp"]);
    let r = Script::ok(r#"["80/tcp","icmp","8000-8999/udp","443/tcp (ep1,ep2)"]"#);
    let ports = HookTools::new(&r).opened_ports().unwrap();
    assert_eq!(
        ports,
        [
            Port::Tcp(80),
            Port::Icmp,
            Port::UdpRange(8000, 8999),
            Port::Tcp(443)
        ]
    );
    assert!("80/sctp".parse::<Port>().is_err());
    assert!("http".parse::<Port>().is_err());
}

#[test]
fn network_get_full_shape() {
    let out = r#"{"bind-addresses":[{"mac-address":"aa","interface-name":"eth0","addresses":[{"hostname":"","value":"10.0.0.5","cidr":"10.0.0.0/24"}]}],"egress-subnets":["10.0.0.5/32"],"ingress-addresses":["10.0.0.5"]}"#;
    let r = Script::ok(out);
    let n = HookTools::new(&r).network_get("juju-info", None).unwrap();
    assert_eq!(n.ingress_addresses, ["10.0.0.5"]);
    assert_eq!(n.bind_addresses[0].interface_name, "eth0");
    assert_eq!(n.bind_addresses[0].addresses[0].cidr, "10.0.0.0/24");
    assert_eq!(r.argv(), ["network-get", "--format=json", "juju-info"]);
    let r = Script::ok(out);
    HookTools::new(&r)
        .network_get("db", Some(&rid("db:4")))
        .unwrap();
    assert_eq!(
        r.argv(),
        ["network-get", "--format=json", "-r", "db:4", "db"]
    );
}

#[test]
fn unit_get_address() {
    let r = Script::ok(r#""10.0.0.5""#);
    assert_eq!(
        HookTools::new(&r)
            .unit_get("private-address")
            .unwrap()
            .as_deref(),
        Some("10.0.0.5")
    );
    assert_eq!(r.argv(), ["unit-get", "--format=json", "private-address"]);
}

#[test]
fn action_tools() {
    let r = Script::ok(r#"{"username":"admin","nested":{"a":1}}"#);
    let p = HookTools::new(&r).action_get().unwrap();
    assert_eq!(p["nested"]["a"], 1);
    assert_eq!(r.argv(), ["action-get", "--format=json"]);
    let r = Script::ok("");
    let mut res = BTreeMap::new();
    res.insert("api-url".to_string(), "http://10.0.0.100/MAAS".to_string());
    res.insert("db.host".to_string(), "a=b".to_string());
    HookTools::new(&r).action_set(&res).unwrap();
    assert_eq!(
        r.argv(),
        [
            "action-set",
            "api-url=http://10.0.0.100/MAAS",
            "db.host=a=b"
        ]
    );
    let r = Script::ok("");
    HookTools::new(&r).action_fail("no such user").unwrap();
    assert_eq!(r.argv(), ["action-fail", "--", "no such user"]);
    let r = Script::ok("");
    HookTools::new(&r).action_log("working").unwrap();
    assert_eq!(r.argv(), ["action-log", "--", "working"]);
}

#[test]
fn action_get_outside_an_action_is_not_found() {
    let r = Script::new(vec![Err(ToolErrorKind::NotFound)]);
    let e = HookTools::new(&r).action_get().unwrap_err();
    assert!(e.to_string().contains("action-get not found on PATH"));
}

#[test]
fn secret_add_uses_a_private_file_not_argv() {
    struct Peek(RefCell<Option<(Vec<String>, String, u32)>>);
    impl ToolRunner for Peek {
        fn run(
            &self,
            _tool: &str,
            args: &[String],
            _stdin: Option<&[u8]>,
        ) -> Result<Vec<u8>, ToolError> {
            let path = &args[args.iter().position(|a| a == "--file").unwrap() + 1];
            let content = std::fs::read_to_string(path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            *self.0.borrow_mut() = Some((args.to_vec(), content, mode));
            Ok(b"secret:cv1abc\n".to_vec())
        }
    }
    let r = Peek(RefCell::new(None));
    let mut content = BTreeMap::new();
    content.insert("password".to_string(), "hunter2".to_string());
    let opts = SecretOptions {
        label: Some("auth".into()),
        ..Default::default()
    };
    let uri = HookTools::new(&r).secret_add(&content, &opts).unwrap();
    assert_eq!(uri, "secret:cv1abc");
    let (args, file, mode) = r.0.borrow().clone().unwrap();
    assert!(
        !args.iter().any(|a| a.contains("hunter2")),
        "secret in argv: {args:?}"
    );
    assert_eq!(&args[..2], ["--label", "auth"]);
    assert_eq!(file, r#"{"password":"hunter2"}"#);
    assert_eq!(mode, 0o600);
    let path = &args[args.iter().position(|a| a == "--file").unwrap() + 1];
    assert!(
        !std::path::Path::new(path).exists(),
        "content file left behind"
    );
}

#[test]
fn secret_add_refuses_invalid_keys_before_calling() {
    let r = Script::new(vec![]);
    let mut content = BTreeMap::new();
    content.insert("PW".to_string(), "x".to_string());
    let e = HookTools::new(&r)
        .secret_add(&content, &SecretOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("secret key \"PW\" is invalid"));
    assert!(r.calls.borrow().is_empty());
}

#[test]
fn secret_add_rejects_output_that_is_not_a_uri() {
    let r = Script::ok("oops");
    let mut content = BTreeMap::new();
    content.insert("pass".to_string(), "x".to_string());
    assert!(matches!(
        HookTools::new(&r)
            .secret_add(&content, &SecretOptions::default())
            .unwrap_err()
            .kind,
        ToolErrorKind::BadOutput { .. }
    ));
}

#[test]
fn secret_get_by_id_label_refresh_and_peek() {
    let r = Script::ok(r#"{"password":"x"}"#);
    let c = HookTools::new(&r)
        .secret_get(Some("secret:abc"), None, true, false)
        .unwrap();
    assert_eq!(c["password"], "x");
    assert_eq!(
        r.argv(),
        ["secret-get", "--format=json", "secret:abc", "--refresh"]
    );
    let r = Script::ok(r#"{"password":"x"}"#);
    HookTools::new(&r)
        .secret_get(None, Some("auth"), false, true)
        .unwrap();
    assert_eq!(
        r.argv(),
        ["secret-get", "--format=json", "--label", "auth", "--peek"]
    );
}

#[test]
fn secret_info_ids_grant_revoke_remove() {
    let r = Script::ok(
        r#"{"cv1abc":{"revision":2,"label":"auth","description":null,"expiry":null,"rotation":"never","rotates":null}}"#,
    );
    let info = HookTools::new(&r)
        .secret_info_get(Some("secret:cv1abc"), None)
        .unwrap();
    assert_eq!(info["cv1abc"].revision, 2);
    assert_eq!(info["cv1abc"].label.as_deref(), Some("auth"));
    assert_eq!(
        r.argv(),
        ["secret-info-get", "--format=json", "secret:cv1abc"]
    );
    let r = Script::ok(r#"["secret:a"]"#);
    assert_eq!(HookTools::new(&r).secret_ids().unwrap(), ["secret:a"]);
    let r = Script::ok("");
    HookTools::new(&r)
        .secret_grant("secret:a", &rid("rpc:3"), Some("rack/0"))
        .unwrap();
    assert_eq!(
        r.argv(),
        [
            "secret-grant",
            "--relation",
            "3",
            "--unit",
            "rack/0",
            "secret:a"
        ]
    );
    let r = Script::ok("");
    HookTools::new(&r)
        .secret_revoke("secret:a", &rid("rpc:3"), None)
        .unwrap();
    assert_eq!(r.argv(), ["secret-revoke", "--relation", "3", "secret:a"]);
    let r = Script::ok("");
    HookTools::new(&r)
        .secret_remove("secret:a", Some(1))
        .unwrap();
    assert_eq!(r.argv(), ["secret-remove", "secret:a", "--revision", "1"]);
}

#[test]
fn secret_set_new_revision_through_file() {
    let r = Script::ok("");
    let mut content = BTreeMap::new();
    content.insert("auth-pass".to_string(), "abcdefgh".to_string());
    HookTools::new(&r)
        .secret_set("secret:a", &content, &SecretOptions::default())
        .unwrap();
    let argv = r.argv();
    assert_eq!(&argv[..3], ["secret-set", "secret:a", "--file"]);
    assert_eq!(argv.len(), 4);
}

#[test]
fn state_tools() {
    let r = Script::ok("null");
    assert!(HookTools::new(&r).state_get().unwrap().is_empty());
    assert_eq!(r.argv(), ["state-get", "--format=json"]);
    let r = Script::ok("");
    let mut m = BTreeMap::new();
    m.insert("k".to_string(), "v".to_string());
    HookTools::new(&r).state_set(&m).unwrap();
    assert_eq!(r.argv(), ["state-set", "--file", "-"]);
    assert_eq!(r.stdin().unwrap(), r#"{"k":"v"}"#);
    let r = Script::ok("");
    HookTools::new(&r).state_delete("k").unwrap();
    assert_eq!(r.argv(), ["state-delete", "k"]);
}

#[test]
fn version_and_resource() {
    let r = Script::ok("");
    HookTools::new(&r).application_version_set("3.6.1").unwrap();
    assert_eq!(r.argv(), ["application-version-set", "--", "3.6.1"]);
    let r = Script::ok("/var/lib/juju/agents/unit-pg-0/resources/wheelhouse/wheelhouse.tar\n");
    assert_eq!(
        HookTools::new(&r).resource_get("wheelhouse").unwrap(),
        PathBuf::from("/var/lib/juju/agents/unit-pg-0/resources/wheelhouse/wheelhouse.tar")
    );
    let r = Script::ok("");
    assert!(HookTools::new(&r).resource_get("wheelhouse").is_err());
}

#[test]
fn malformed_json_is_a_clear_error() {
    let r = Script::ok("{not json");
    let e = HookTools::new(&r).config_get().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("hook tool config-get printed unexpected output"),
        "{e}"
    );
}

#[test]
fn path_runner_reports_a_missing_tool() {
    let e = PathRunner
        .run("charm-lib-no-such-hook-tool", &[], None)
        .unwrap_err();
    assert_eq!(e.kind, ToolErrorKind::NotFound);
}

#[test]
fn path_runner_carries_stderr_and_exit_code() {
    let e = PathRunner
        .run(
            "sh",
            &[
                "-c".into(),
                "echo 'ERROR relation not found' >&2; exit 2".into(),
            ],
            None,
        )
        .unwrap_err();
    assert_eq!(
        e.kind,
        ToolErrorKind::Failed {
            code: Some(2),
            stderr: "ERROR relation not found".into()
        }
    );
}

#[test]
fn path_runner_feeds_stdin() {
    let out = PathRunner.run("cat", &[], Some(b"hello")).unwrap();
    assert_eq!(out, b"hello");
}

// core/secrets/secret.go: ParseURI reads `<id>`, `secret:<id>` and
// `secret://<source-uuid>/<id>` as the same secret; URI.String prints the last when the URI
// has a source (what secret-add prints), `secret:<id>` otherwise.
#[test]
fn secret_ids_compare_by_their_bare_id_in_every_form() {
    let uuid = "6ac6d2f3-0b4e-4c43-8b3a-2a6e7c1f0d9e";
    let forms = [
        "cv1abc".to_string(),
        "secret:cv1abc".to_string(),
        format!("secret://{uuid}/cv1abc"),
        format!(" secret://{uuid}/cv1abc\n"),
    ];
    for a in &forms {
        assert_eq!(secret_xid(a), "cv1abc", "{a:?}");
        for b in &forms {
            assert!(same_secret(a, b), "{a:?} {b:?}");
        }
    }
    assert!(!same_secret(
        "secret:cv1abc",
        &format!("secret://{uuid}/cv1abd")
    ));
}
