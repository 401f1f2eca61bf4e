//! The production [`Machine`]: real commands and the real filesystem.

use super::{Cmd, CmdOutput, FileInfo, FileOptions, Machine, MachineError};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// The host this process runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

fn file_err(path: &Path, what: &str, e: impl std::fmt::Display) -> MachineError {
    MachineError::File {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    }
}

/// Looks a name up in `/etc/passwd` or `/etc/group` (field 3 is the id in both).
fn lookup_id(db: &str, name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let text = fs::read_to_string(db).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// The name of an id in `/etc/passwd` or `/etc/group`, or the number as text.
fn lookup_name(db: &str, id: u32) -> String {
    fs::read_to_string(db)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(id)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

fn ids(path: &Path, opts: &FileOptions) -> Result<(u32, u32), MachineError> {
    let uid = lookup_id("/etc/passwd", &opts.owner).ok_or_else(|| {
        file_err(
            path,
            "cannot set owner",
            format!("no user {:?}", opts.owner),
        )
    })?;
    let gid = lookup_id("/etc/group", &opts.group).ok_or_else(|| {
        file_err(
            path,
            "cannot set group",
            format!("no group {:?}", opts.group),
        )
    })?;
    Ok((uid, gid))
}

impl Machine for System {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, MachineError> {
        let mut c = match &cmd.user {
            Some(u) if u != "root" => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", &cmd.program]);
                c
            }
            _ => Command::new(&cmd.program),
        };
        c.args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &cmd.cwd {
            c.current_dir(d);
        }
        let spawn_err = |e: std::io::Error| MachineError::Spawn {
            command: cmd.to_string(),
            reason: e.to_string(),
        };
        let mut child = c.spawn().map_err(spawn_err)?;
        if let Some(input) = &cmd.stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            // A command may exit without reading its input; that is its answer, not our error.
            let _ = pipe.write_all(input);
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        let result = CmdOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if result.success() || cmd.allow_failure {
            Ok(result)
        } else {
            Err(MachineError::from_output(cmd, &result))
        }
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, MachineError> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(file_err(path, "cannot read", e)),
        }
    }

    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        opts: &FileOptions,
    ) -> Result<bool, MachineError> {
        let (uid, gid) = ids(path, opts)?;
        if let Ok(meta) = fs::metadata(path) {
            let same_meta =
                meta.uid() == uid && meta.gid() == gid && meta.mode() & 0o7777 == opts.mode;
            if same_meta && fs::read(path).map(|old| old == content).unwrap_or(false) {
                return Ok(false);
            }
        }
        let dir = path
            .parent()
            .ok_or_else(|| file_err(path, "cannot write", "no parent directory"))?;
        fs::create_dir_all(dir).map_err(|e| file_err(dir, "cannot create directory", e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.charm-tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            // Created with no permissions for others, so a secret is never briefly world-readable.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(content)?;
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            f.set_permissions(fs::Permissions::from_mode(opts.mode))?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            file_err(path, "cannot write", e)
        })?;
        Ok(true)
    }

    fn remove_file(&self, path: &Path) -> Result<bool, MachineError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(file_err(path, "cannot remove", e)),
        }
    }

    fn make_dir(&self, path: &Path, opts: &FileOptions) -> Result<bool, MachineError> {
        let (uid, gid) = ids(path, opts)?;
        let existed = path.is_dir();
        fs::create_dir_all(path).map_err(|e| file_err(path, "cannot create directory", e))?;
        let meta = fs::metadata(path).map_err(|e| file_err(path, "cannot stat", e))?;
        let mut changed = !existed;
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| file_err(path, "cannot chown", e))?;
            changed = true;
        }
        if meta.mode() & 0o7777 != opts.mode {
            fs::set_permissions(path, fs::Permissions::from_mode(opts.mode))
                .map_err(|e| file_err(path, "cannot chmod", e))?;
            changed = true;
        }
        Ok(changed)
    }

    fn file_info(&self, path: &Path) -> Result<Option<FileInfo>, MachineError> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(FileInfo {
                options: FileOptions {
                    owner: lookup_name("/etc/passwd", m.uid()),
                    group: lookup_name("/etc/group", m.gid()),
                    mode: m.mode() & 0o7777,
                },
                is_dir: m.is_dir(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(file_err(path, "cannot stat", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("charm-lib-system-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn write_is_atomic_idempotent_and_sets_mode() {
        let d = scratch("write");
        let p = d.join("sub/conf");
        let me = lookup_name(
            "/etc/passwd",
            fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0),
        );
        let grp = lookup_name(
            "/etc/group",
            fs::metadata("/proc/self").map(|m| m.gid()).unwrap_or(0),
        );
        let opts = FileOptions::new(&me, &grp, 0o640);
        assert!(System.write_file(&p, b"a=1\n", &opts).unwrap());
        assert!(
            !System.write_file(&p, b"a=1\n", &opts).unwrap(),
            "same content and mode: no change"
        );
        assert!(System.write_file(&p, b"a=2\n", &opts).unwrap());
        let info = System.file_info(&p).unwrap().unwrap();
        assert_eq!(info.options.mode, 0o640);
        assert_eq!(System.read_file(&p).unwrap().unwrap(), b"a=2\n");
        assert!(
            System
                .write_file(&p, b"a=2\n", &FileOptions::new(&me, &grp, 0o600))
                .unwrap(),
            "mode change is a change"
        );
        let leftovers: Vec<_> = fs::read_dir(d.join("sub")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unknown_owner_is_a_clear_error() {
        let d = scratch("owner");
        let e = System
            .write_file(
                &d.join("x"),
                b"",
                &FileOptions::new("no-such-user-xyz", "root", 0o644),
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("no user \"no-such-user-xyz\""),
            "{e}"
        );
    }

    #[test]
    fn failed_command_carries_stderr() {
        let e = System
            .run(&Cmd::new("sh", ["-c", "echo oops >&2; exit 3"]))
            .unwrap_err();
        assert_eq!(
            e,
            MachineError::Command {
                command: "sh -c \"echo oops >&2; exit 3\"".into(),
                code: 3,
                stderr: "oops".into()
            }
        );
        let out = System
            .run(&Cmd::new("sh", ["-c", "exit 3"]).allow_failure())
            .unwrap();
        assert_eq!(out.code, 3);
        let e = System
            .run(&Cmd::new("charm-lib-no-such-program", Vec::<String>::new()))
            .unwrap_err();
        assert!(matches!(e, MachineError::Spawn { .. }));
    }

    #[test]
    fn missing_files() {
        let d = scratch("missing");
        assert_eq!(System.read_file(&d.join("nope")).unwrap(), None);
        assert!(!System.remove_file(&d.join("nope")).unwrap());
        assert_eq!(System.file_info(&d.join("nope")).unwrap(), None);
    }
}
