//! A [`Machine`] over [`MachineState`]: a virtual filesystem, recorded commands, and the
//! behaviour of `systemctl`, `apt-get` and `snap` that charms rely on.

use super::state::{MachineState, VFile};
use crate::machine::{Cmd, CmdOutput, FileInfo, FileOptions, Machine, MachineError};
use std::cell::RefCell;
use std::path::Path;

/// The testing host.
pub struct FakeMachine {
    /// Its state; read it after the hook.
    pub state: RefCell<MachineState>,
    /// Commands run during this hook, in full (user, environment, stdin too).
    pub ran: RefCell<Vec<Cmd>>,
}

impl FakeMachine {
    /// A host in `state`.
    pub fn new(state: MachineState) -> FakeMachine {
        FakeMachine {
            state: RefCell::new(state),
            ran: RefCell::new(Vec::new()),
        }
    }

    fn builtin(&self, argv: &[String]) -> CmdOutput {
        let mut st = self.state.borrow_mut();
        let args: Vec<&str> = argv[1..]
            .iter()
            .map(|s| s.as_str())
            .filter(|a| !a.starts_with('-'))
            .collect();
        let flags: Vec<&str> = argv[1..]
            .iter()
            .map(|s| s.as_str())
            .filter(|a| a.starts_with('-'))
            .collect();
        match (argv[0].rsplit('/').next().unwrap_or(""), args.as_slice()) {
            ("systemctl", ["start" | "restart", units @ ..]) => {
                for u in units {
                    st.services.entry(unit_name(u)).or_default().active = true;
                }
                CmdOutput::ok("")
            }
            ("systemctl", ["stop", units @ ..]) => {
                for u in units {
                    st.services.entry(unit_name(u)).or_default().active = false;
                }
                CmdOutput::ok("")
            }
            ("systemctl", ["reload", units @ ..]) => {
                for u in units {
                    if !st.services.get(&unit_name(u)).is_some_and(|s| s.active) {
                        return CmdOutput::failed(
                            1,
                            format!("{} is not active, cannot reload.", unit_name(u)),
                        );
                    }
                }
                CmdOutput::ok("")
            }
            ("systemctl", ["enable" | "disable", units @ ..]) => {
                let on = args[0] == "enable";
                for u in units {
                    let s = st.services.entry(unit_name(u)).or_default();
                    s.enabled = on;
                    if flags.contains(&"--now") {
                        s.active = on;
                    }
                }
                CmdOutput::ok("")
            }
            ("systemctl", ["is-active", unit]) => match st.services.get(&unit_name(unit)) {
                Some(s) if s.active => CmdOutput::ok(if flags.contains(&"--quiet") {
                    ""
                } else {
                    "active\n"
                }),
                _ => CmdOutput {
                    code: 3,
                    stdout: if flags.contains(&"--quiet") {
                        String::new()
                    } else {
                        "inactive\n".into()
                    },
                    stderr: String::new(),
                },
            },
            ("systemctl", ["is-enabled", unit]) => match st.services.get(&unit_name(unit)) {
                Some(s) if s.enabled => CmdOutput::ok("enabled\n"),
                _ => CmdOutput {
                    code: 1,
                    stdout: "disabled\n".into(),
                    stderr: String::new(),
                },
            },
            ("apt-get" | "apt", ["install", pkgs @ ..]) => {
                st.packages.extend(pkgs.iter().map(|p| p.to_string()));
                CmdOutput::ok("")
            }
            ("apt-get" | "apt", ["remove" | "purge", pkgs @ ..]) => {
                for p in pkgs {
                    st.packages.remove(*p);
                }
                CmdOutput::ok("")
            }
            ("snap", ["install", name]) => {
                let channel = channel(&flags).unwrap_or_else(|| "latest/stable".into());
                st.snaps.entry(name.to_string()).or_insert(channel);
                CmdOutput::ok("")
            }
            ("snap", ["refresh", name]) => match st.snaps.get_mut(*name) {
                Some(c) => {
                    if let Some(ch) = channel(&flags) {
                        *c = ch;
                    }
                    CmdOutput::ok("")
                }
                None => CmdOutput::failed(1, format!("error: snap \"{name}\" is not installed")),
            },
            _ => CmdOutput::ok(""),
        }
    }
}

fn unit_name(u: &str) -> String {
    if u.contains('.') {
        u.to_string()
    } else {
        format!("{u}.service")
    }
}

fn channel(flags: &[&str]) -> Option<String> {
    flags
        .iter()
        .find_map(|f| f.strip_prefix("--channel=").map(String::from))
}

impl Machine for FakeMachine {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, MachineError> {
        let argv = cmd.argv();
        self.state.borrow_mut().commands.push(argv.clone());
        self.ran.borrow_mut().push(cmd.clone());
        let scripted = self
            .state
            .borrow_mut()
            .responders
            .iter_mut()
            .find(|r| {
                r.times != Some(0)
                    && argv.len() >= r.prefix.len()
                    && argv[..r.prefix.len()] == r.prefix[..]
            })
            .map(|r| {
                if let Some(n) = &mut r.times {
                    *n -= 1;
                }
                r.output.clone()
            });
        let out = scripted.unwrap_or_else(|| self.builtin(&argv));
        if out.success() || cmd.allow_failure {
            Ok(out)
        } else {
            Err(MachineError::from_output(cmd, &out))
        }
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, MachineError> {
        match self.state.borrow().files.get(path) {
            Some(f) if f.is_dir => Err(MachineError::File {
                path: path.into(),
                reason: "cannot read: is a directory".into(),
            }),
            Some(f) => Ok(Some(f.content.clone())),
            None => Ok(None),
        }
    }

    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        opts: &FileOptions,
    ) -> Result<bool, MachineError> {
        let mut st = self.state.borrow_mut();
        if st.files.get(path).is_some_and(|f| f.is_dir) {
            return Err(MachineError::File {
                path: path.into(),
                reason: "cannot write: is a directory".into(),
            });
        }
        let new = VFile {
            content: content.to_vec(),
            options: opts.clone(),
            is_dir: false,
        };
        if st.files.get(path) == Some(&new) {
            return Ok(false);
        }
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty() && *p != Path::new("/")) {
            st.files.entry(p.to_path_buf()).or_insert(VFile {
                content: Vec::new(),
                options: FileOptions::root(0o755),
                is_dir: true,
            });
            parent = p.parent();
        }
        st.files.insert(path.to_path_buf(), new);
        Ok(true)
    }

    fn remove_file(&self, path: &Path) -> Result<bool, MachineError> {
        Ok(self.state.borrow_mut().files.remove(path).is_some())
    }

    fn make_dir(&self, path: &Path, opts: &FileOptions) -> Result<bool, MachineError> {
        let mut st = self.state.borrow_mut();
        let new = VFile {
            content: Vec::new(),
            options: opts.clone(),
            is_dir: true,
        };
        if st.files.get(path) == Some(&new) {
            return Ok(false);
        }
        st.files.insert(path.to_path_buf(), new);
        Ok(true)
    }

    fn file_info(&self, path: &Path) -> Result<Option<FileInfo>, MachineError> {
        Ok(self.state.borrow().files.get(path).map(|f| FileInfo {
            options: f.options.clone(),
            is_dir: f.is_dir,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineExt;

    #[test]
    fn services_packages_snaps() {
        let m = FakeMachine::new(MachineState::default());
        assert!(!m.service_is_active("haproxy").unwrap());
        m.ensure_service("haproxy", false).unwrap();
        assert!(m.service_is_active("haproxy").unwrap());
        assert!(m.state.borrow().services["haproxy.service"].enabled);
        m.apt_install(&["haproxy", "keepalived"]).unwrap();
        assert!(m.state.borrow().packages.contains("keepalived"));
        assert!(
            m.snap_refresh("maas", "3.6/stable").is_err(),
            "refresh before install fails like snapd"
        );
        m.snap_install("maas", "3.5/stable").unwrap();
        m.snap_refresh("maas", "3.6/stable").unwrap();
        assert_eq!(m.state.borrow().snaps["maas"], "3.6/stable");
        m.retire_service("haproxy").unwrap();
        assert!(!m.service_is_active("haproxy").unwrap());
        let e = m
            .run(&Cmd::new("systemctl", ["reload", "haproxy"]))
            .unwrap_err();
        assert!(e.to_string().contains("not active, cannot reload"));
    }

    #[test]
    fn responders_override_and_commands_are_recorded() {
        let st = MachineState::default()
            .respond(&["ip", "-j", "addr"], CmdOutput::ok("[]"))
            .respond(
                &["systemctl", "start", "x"],
                CmdOutput::failed(1, "no such unit"),
            );
        let m = FakeMachine::new(st);
        assert_eq!(
            m.run(&Cmd::new("ip", ["-j", "addr", "show"]))
                .unwrap()
                .stdout,
            "[]"
        );
        assert!(m
            .service(crate::ServiceOp::Start, "x")
            .unwrap_err()
            .to_string()
            .contains("no such unit"));
        assert_eq!(m.ran.borrow().len(), 2);
    }

    #[test]
    fn a_responder_with_times_answers_that_many_runs_then_the_next_one_does() {
        let st = MachineState::default()
            .respond(&["etcdctl", "member", "add"], CmdOutput::ok("added"))
            .respond_times(
                &["etcdctl", "member", "add"],
                CmdOutput::failed(1, "unhealthy cluster"),
                2,
            );
        let m = FakeMachine::new(st);
        let add = || m.run(&Cmd::new("etcdctl", ["member", "add", "x"]));
        assert!(add().unwrap_err().to_string().contains("unhealthy cluster"));
        assert!(add().unwrap_err().to_string().contains("unhealthy cluster"));
        assert_eq!(add().unwrap().stdout, "added");
        assert_eq!(add().unwrap().stdout, "added");
    }

    #[test]
    fn stdin_user_and_env_are_recorded_apart_from_argv() {
        let m = FakeMachine::new(MachineState::default());
        m.run(&Cmd::new("maas-rack", ["register", "--url", "http://x/MAAS"]).stdin("s3cret"))
            .unwrap();
        m.run(
            &Cmd::new("psql", ["-c", "SELECT 1"])
                .user("postgres")
                .env("PGHOST", "/run/pg"),
        )
        .unwrap();
        let ran = m.ran.borrow();
        assert_eq!(
            ran[0].argv(),
            ["maas-rack", "register", "--url", "http://x/MAAS"]
        );
        assert_eq!(ran[0].stdin.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(ran[1].user.as_deref(), Some("postgres"));
        assert_eq!(ran[1].env, [("PGHOST".to_string(), "/run/pg".to_string())]);
        assert!(!m
            .state
            .borrow()
            .commands
            .concat()
            .iter()
            .any(|a| a.contains("s3cret")));
    }

    #[test]
    fn files_idempotent_with_parents() {
        let m = FakeMachine::new(MachineState::default());
        let p = Path::new("/etc/keepalived/keepalived.conf");
        assert!(m.write_file(p, b"x", &FileOptions::root(0o600)).unwrap());
        assert!(!m.write_file(p, b"x", &FileOptions::root(0o600)).unwrap());
        assert!(m.state.borrow().files[Path::new("/etc/keepalived")].is_dir);
        assert_eq!(m.file_info(p).unwrap().unwrap().options.mode, 0o600);
        assert!(m.remove_file(p).unwrap());
        assert_eq!(m.read_file(p).unwrap(), None);
    }
}
