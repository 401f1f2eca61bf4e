//! The production [`Machine`]: real commands and the real filesystem. Charms run as root and
//! write into directories service accounts own, so every file primitive goes through
//! `safe_fs` (directory handles, no link a non-root user could have made is followed, new
//! files only, owner and mode set on the descriptor).

use super::{safe_fs, Cmd, CmdOutput, FileInfo, FileOptions, Machine, MachineError};
use rustix::fs::FileType;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
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
    if let Ok(n) = name.parse::<u32>() {
        // -1 means "leave as is" to chown.
        return (n != u32::MAX).then_some(n);
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
        let found = safe_fs::lookup(path).map_err(|e| file_err(path, "cannot read", e))?;
        let Some((dir, name, st)) = found else {
            return Ok(None);
        };
        if safe_fs::file_type(&st) == FileType::Directory {
            return Err(file_err(path, "cannot read", "is a directory"));
        }
        dir.read(&name)
            .map(Some)
            .map_err(|e| file_err(path, "cannot read", e))
    }

    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        opts: &FileOptions,
    ) -> Result<bool, MachineError> {
        let (uid, gid) = ids(path, opts)?;
        let (dir, name) = safe_fs::parent(path, true)
            .map_err(|e| file_err(path, "cannot write", e))?
            .expect("missing directories are created");
        let existing = dir
            .entry(&name)
            .map_err(|e| file_err(path, "cannot write", e))?;
        if let Some(st) = existing {
            if safe_fs::file_type(&st) != FileType::RegularFile {
                return Err(file_err(
                    path,
                    "cannot write",
                    format!(
                        "it is {}, not a regular file: not replaced",
                        safe_fs::kind(&st)
                    ),
                ));
            }
            let same_meta =
                st.st_uid == uid && st.st_gid == gid && st.st_mode & 0o7777 == opts.mode;
            if same_meta && dir.read(&name).is_ok_and(|old| old == content) {
                return Ok(false);
            }
        }
        dir.replace(&name, content, uid, gid, opts.mode)
            .map_err(|e| file_err(path, "cannot write", e))?;
        Ok(true)
    }

    fn remove_file(&self, path: &Path) -> Result<bool, MachineError> {
        let found = safe_fs::parent(path, false).map_err(|e| file_err(path, "cannot remove", e))?;
        let Some((dir, name)) = found else {
            return Ok(false);
        };
        dir.unlink(&name)
            .map_err(|e| file_err(path, "cannot remove", e))
    }

    fn make_dir(&self, path: &Path, opts: &FileOptions) -> Result<bool, MachineError> {
        let (uid, gid) = ids(path, opts)?;
        let err = |e| file_err(path, "cannot create directory", e);
        let (parent, name) = safe_fs::parent(path, true)
            .map_err(err)?
            .expect("missing directories are created");
        let created = match parent.entry(&name).map_err(err)? {
            None => parent.mkdir(&name).map_err(err)?,
            Some(st) if safe_fs::file_type(&st) == FileType::Directory => false,
            Some(st) => {
                return Err(file_err(
                    path,
                    "cannot create directory",
                    format!(
                        "it is {}, not a directory: not replaced",
                        safe_fs::kind(&st)
                    ),
                ))
            }
        };
        // Opened without following a link: the owner and mode are set on what was checked.
        let (d, st) = parent.open_subdir(&name).map_err(err)?;
        let mut changed = created;
        if st.st_uid != uid || st.st_gid != gid {
            std::os::unix::fs::fchown(&d, Some(uid), Some(gid))
                .map_err(|e| file_err(path, "cannot chown", e))?;
            changed = true;
        }
        // After fchown, which clears set-id bits; a new directory is 0700 until here.
        if created || st.st_mode & 0o7777 != opts.mode {
            d.set_permissions(fs::Permissions::from_mode(opts.mode))
                .map_err(|e| file_err(path, "cannot chmod", e))?;
            changed = true;
        }
        Ok(changed)
    }

    fn file_info(&self, path: &Path) -> Result<Option<FileInfo>, MachineError> {
        let found = safe_fs::lookup(path).map_err(|e| file_err(path, "cannot stat", e))?;
        Ok(found.map(|(_, _, st)| FileInfo {
            options: FileOptions {
                owner: lookup_name("/etc/passwd", st.st_uid),
                group: lookup_name("/etc/group", st.st_gid),
                mode: st.st_mode & 0o7777,
            },
            is_dir: safe_fs::file_type(&st) == FileType::Directory,
        }))
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
        let opts = mine(0o640);
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
            System.write_file(&p, b"a=2\n", &mine(0o600)).unwrap(),
            "mode change is a change"
        );
        let leftovers: Vec<_> = fs::read_dir(d.join("sub")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left");
        fs::remove_dir_all(&d).unwrap();
    }

    /// Owner and group of this process, as names, and FileOptions for them.
    fn mine(mode: u32) -> FileOptions {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        FileOptions::new(
            &lookup_name("/etc/passwd", uid),
            &lookup_name("/etc/group", gid),
            mode,
        )
    }

    /// A directory a service account can write, as `/var/lib/postgresql-ha` is postgres's:
    /// given to `nobody` when the tests run as root, else writable by everyone.
    fn service_dir(d: &Path) {
        fs::create_dir_all(d).unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        } else {
            fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
        }
    }

    /// A link the service account planted (its own, when the tests run as root).
    fn plant_link(target: &Path, at: &Path) {
        std::os::unix::fs::symlink(target, at).unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::lchown(at, Some(65534), Some(65534)).unwrap();
        }
    }

    /// `scratch/outside/victim` ("original", 0644) and a service directory `scratch/svc`.
    fn victim_and_service_dir(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let d = scratch(name);
        let outside = d.join("outside");
        fs::create_dir_all(&outside).unwrap();
        let victim = outside.join("victim");
        fs::write(&victim, "original").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let svc = d.join("svc");
        service_dir(&svc);
        (victim, svc)
    }

    fn is_link(p: &Path) -> bool {
        fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
    }

    fn mode_of(p: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_link_or_fifo_planted_at_the_target_is_refused() {
        // Arrange: the service account replaced its config file by a link to a file outside.
        let (victim, svc) = victim_and_service_dir("target-link");
        let conf = svc.join("conf");
        plant_link(&victim, &conf);
        // Act + Assert: nothing is written, read, chowned or chmodded through it.
        let e = System.write_file(&conf, b"new", &mine(0o600)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
        assert_eq!(mode_of(&victim), 0o644);
        assert!(
            is_link(&conf),
            "the planted link is left for a person to look at"
        );
        let e = System.read_file(&conf).unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        assert!(System.file_info(&conf).is_err());
        let dir_link = svc.join("datadir");
        plant_link(victim.parent().unwrap(), &dir_link);
        let e = System
            .make_dir(&dir_link, &FileOptions::new("root", "root", 0o777))
            .unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(mode_of(victim.parent().unwrap()), 0o755);
        // Removing the link removes the link only.
        assert!(System.remove_file(&conf).unwrap());
        assert!(!is_link(&conf));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "original");

        // A fifo: refused at once, and reading it does not wait for a writer.
        let fifo = svc.join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap();
        let e = System.write_file(&fifo, b"new", &mine(0o600)).unwrap_err();
        assert!(e.to_string().contains("a fifo, not a regular file"), "{e}");
        let e = System.read_file(&fifo).unwrap_err();
        assert!(e.to_string().contains("a fifo"), "{e}");
        fs::remove_dir_all(svc.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_link_at_the_old_temporary_name_or_a_hard_link_changes_nothing_outside() {
        // Arrange: the name the old write_file used for its temporary file (predictable: the
        // pid), planted as a link to a file outside; and the target a hard link to another.
        let (victim, svc) = victim_and_service_dir("tmp-link");
        let conf = svc.join("conf");
        let old_tmp = svc.join(format!(".conf.charm-tmp-{}", std::process::id()));
        plant_link(&victim, &old_tmp);
        let other = victim.with_file_name("other");
        fs::write(&other, "other").unwrap();
        let hard = svc.join("hard");
        fs::hard_link(&other, &hard).unwrap();
        // Act.
        assert!(System.write_file(&conf, b"new", &mine(0o600)).unwrap());
        assert!(System.write_file(&hard, b"new", &mine(0o600)).unwrap());
        // Assert: new files in the service directory; nothing outside changed.
        assert_eq!(fs::read_to_string(&conf).unwrap(), "new");
        assert_eq!(mode_of(&conf), 0o600);
        assert!(!is_link(&conf));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
        assert_eq!(mode_of(&victim), 0o644);
        assert!(is_link(&old_tmp), "the planted name was not used");
        assert_eq!(fs::read_to_string(&hard).unwrap(), "new");
        assert_eq!(fs::read_to_string(&other).unwrap(), "other");
        assert_eq!(mode_of(&other), 0o644);
        let names: Vec<String> = fs::read_dir(&svc)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
        fs::remove_dir_all(svc.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_linked_directory_in_a_service_directory_is_not_followed() {
        // Arrange: the service account made `sub` a link to a directory outside.
        let (victim, svc) = victim_and_service_dir("parent-link");
        let outside = victim.parent().unwrap();
        let sub = svc.join("sub");
        plant_link(outside, &sub);
        // Act + Assert: no write, directory, removal, read or stat goes through it.
        let refused = |e: MachineError| {
            assert!(e.to_string().contains("not followed"), "{e}");
        };
        refused(
            System
                .write_file(&sub.join("conf"), b"new", &mine(0o600))
                .unwrap_err(),
        );
        refused(
            System
                .write_file(&sub.join("victim"), b"new", &mine(0o600))
                .unwrap_err(),
        );
        refused(
            System
                .make_dir(&sub.join("d/e"), &FileOptions::root(0o755))
                .unwrap_err(),
        );
        refused(System.remove_file(&sub.join("victim")).unwrap_err());
        refused(System.read_file(&sub.join("victim")).unwrap_err());
        refused(System.file_info(&sub.join("victim")).unwrap_err());
        assert!(!outside.join("conf").exists());
        assert!(!outside.join("d").exists());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
        assert_eq!(mode_of(&victim), 0o644);
        fs::remove_dir_all(svc.parent().unwrap()).unwrap();
    }

    #[test]
    fn links_only_root_could_have_made_are_followed() {
        // Arrange: a directory only this process's user (root on a unit) can write, with a link
        // in it, as /var/run or /var/snap/maas/current.
        let d = scratch("trusted-link");
        let real = d.join("real");
        fs::create_dir_all(&real).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("real", d.join("current")).unwrap();
        std::os::unix::fs::symlink(real.join("conf"), d.join("conf-link")).unwrap();
        // Act.
        let via = d.join("current/conf");
        assert!(System.write_file(&via, b"a=1\n", &mine(0o640)).unwrap());
        // Assert: through the link, into the real directory; read and stat follow it too, but
        // a link is never replaced as a target.
        assert_eq!(fs::read_to_string(real.join("conf")).unwrap(), "a=1\n");
        assert_eq!(
            System.read_file(&d.join("conf-link")).unwrap().unwrap(),
            b"a=1\n"
        );
        assert_eq!(System.file_info(&via).unwrap().unwrap().options.mode, 0o640);
        assert!(System
            .write_file(&d.join("conf-link"), b"x", &mine(0o640))
            .is_err());
        assert!(System
            .make_dir(&d.join("current/sub"), &mine(0o750))
            .unwrap());
        assert_eq!(mode_of(&real.join("sub")), 0o750);
        assert!(!System
            .make_dir(&d.join("current/sub"), &mine(0o750))
            .unwrap());
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
