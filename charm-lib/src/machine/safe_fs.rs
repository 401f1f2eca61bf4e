//! How [`System`](super::System) reaches a path as root without being steered by a user who can
//! write one of its directories (postgres in `/var/lib/postgresql-ha`, maas in `/var/lib/maas`).
//!
//! Paths are opened one component at a time through directory handles (`openat` with
//! `O_NOFOLLOW`), so what is checked is what is used. A symbolic link in the way is followed
//! only when nobody but root (or this process's own user) could have put it there: the link and
//! the directory holding it are owned by them, and that directory is writable by nobody else
//! (or sticky, like `/tmp`: others cannot replace an entry they do not own). That keeps the
//! system's own links (`/var/run`, `/var/snap/<snap>/current`) usable, and refuses a link a
//! service account planted. A file is written as a new file (`O_CREAT|O_EXCL|O_NOFOLLOW`, a
//! random name) in the opened directory, owned and moded through its descriptor, then renamed
//! over the target: no existing inode is ever opened for writing, chowned or chmodded, so a hard
//! link or a file planted at a temporary name changes nothing. A target that exists and is not
//! a regular file (a link, a fifo, a device, a directory) is refused.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in one lookup at most (as the kernel's limit).
const MAX_LINKS: u32 = 40;

/// An open directory, and whether anyone but root or this process's user could change its
/// entries.
pub(super) struct Dir {
    fd: OwnedFd,
    /// Where it was reached, for messages.
    shown: PathBuf,
    trusted: bool,
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Nobody else can add, remove or rename its entries: owned by root or us, and writable by
/// nobody else, or sticky (then others can only remove what they own).
fn trusted_dir(st: &Stat) -> bool {
    let mode = st.st_mode;
    trusted_owner(st.st_uid) && (mode & 0o022 == 0 || mode & 0o1000 != 0)
}

/// What a file type is called in a message.
pub(super) fn kind(st: &Stat) -> &'static str {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a fifo",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

pub(super) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// One step of a path.
enum Step {
    Root,
    Up,
    Name(OsString),
}

fn steps(p: &Path) -> VecDeque<Step> {
    p.components()
        .filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => Some(Step::Root),
            Component::CurDir => None,
            Component::ParentDir => Some(Step::Up),
            Component::Normal(n) => Some(Step::Name(n.to_os_string())),
        })
        .collect()
}

const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Dir {
    fn open(base: impl rustix::fd::AsFd, name: &OsStr, shown: PathBuf) -> io::Result<Dir> {
        let fd = rfs::openat(base, name, DIR_FLAGS, Mode::empty())?;
        let st = rfs::fstat(&fd)?;
        Ok(Dir {
            fd,
            shown,
            trusted: trusted_dir(&st),
        })
    }

    fn root() -> io::Result<Dir> {
        Dir::open(rfs::CWD, OsStr::new("/"), PathBuf::from("/"))
    }

    fn cwd() -> io::Result<Dir> {
        Dir::open(rfs::CWD, OsStr::new("."), PathBuf::from("."))
    }

    /// Where `name` in this directory is, for messages.
    pub(super) fn show(&self, name: &OsStr) -> PathBuf {
        self.shown.join(name)
    }

    /// The entry `name` itself (a link is not followed), `None` if there is none.
    pub(super) fn entry(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The target of the link `name` (whose status is `st`), if it may be followed.
    fn link_target(&self, name: &OsStr, st: &Stat) -> io::Result<PathBuf> {
        if !(self.trusted && trusted_owner(st.st_uid)) {
            return Err(refused(format!(
                "{} is a symbolic link that a user other than root could have made (its directory or the link belongs to another user, or others can write the directory): not followed",
                self.show(name).display()
            )));
        }
        let target = rfs::readlinkat(&self.fd, name, Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// Reads the regular file `name` (never a link, never blocking on a fifo).
    pub(super) fn read(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rfs::fstat(&fd)?;
        if file_type(&st) != FileType::RegularFile {
            return Err(refused(format!(
                "{} is {}, not a regular file",
                self.show(name).display(),
                kind(&st)
            )));
        }
        let mut out = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Puts `content` at `name` as a new file owned `uid:gid` with `mode`: a temporary file
    /// created exclusively under a random name, renamed over `name`.
    pub(super) fn replace(
        &self,
        name: &OsStr,
        content: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> io::Result<()> {
        let mut attempts = 0;
        let (tmp, fd) = loop {
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".charm-tmp-{:016x}", random_u64()?));
            match rfs::openat(
                &self.fd,
                &tmp,
                OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                // No permissions for others until the mode is set: a secret is never briefly
                // readable.
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break (tmp, fd),
                Err(Errno::EXIST) if attempts < 8 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        };
        let write = || -> io::Result<()> {
            let mut f = std::fs::File::from(fd);
            f.write_all(content)?;
            rfs::fchown(
                &f,
                Some(rustix::fs::Uid::from_raw_unchecked(uid)),
                Some(rustix::fs::Gid::from_raw_unchecked(gid)),
            )?;
            // After fchown, which clears set-id bits.
            rfs::fchmod(&f, Mode::from_raw_mode(mode))?;
            f.sync_all()?;
            rfs::renameat(&self.fd, &tmp, &self.fd, name)?;
            Ok(())
        };
        write().inspect_err(|_| {
            let _ = rfs::unlinkat(&self.fd, &tmp, AtFlags::empty());
        })
    }

    /// Removes the file `name` (a link itself, never what it points to); whether it existed.
    pub(super) fn unlink(&self, name: &OsStr) -> io::Result<bool> {
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the directory `name` (0700 until the caller sets owner and mode); `false` when
    /// it already existed.
    pub(super) fn mkdir(&self, name: &OsStr) -> io::Result<bool> {
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the directory `name` for fchown/fchmod (never through a link).
    pub(super) fn open_subdir(&self, name: &OsStr) -> io::Result<(std::fs::File, Stat)> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rfs::fstat(&fd)?;
        Ok((std::fs::File::from(fd), st))
    }
}

fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
    Ok(u64::from_ne_bytes(b))
}

/// Walks `queue` from `cur`, each step a directory; a missing one is made (root-owned, 0755)
/// when `create`, else the answer is `None`.
fn walk(
    mut cur: Dir,
    mut queue: VecDeque<Step>,
    create: bool,
    links: &mut u32,
) -> io::Result<Option<Dir>> {
    // A directory made here and gone again before it could be opened, over and over, is
    // someone racing us: give up rather than loop.
    let mut made = 0;
    while let Some(step) = queue.pop_front() {
        let name = match step {
            Step::Root => {
                cur = Dir::root()?;
                continue;
            }
            Step::Up => {
                let shown = cur
                    .shown
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                // `..` is the opened directory's real parent, never a link.
                cur = Dir::open(&cur.fd, OsStr::new(".."), shown)?;
                continue;
            }
            Step::Name(n) => n,
        };
        match Dir::open(&cur.fd, &name, cur.show(&name)) {
            Ok(d) => {
                cur = d;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                if !create {
                    return Ok(None);
                }
                made += 1;
                if made > 64 {
                    return Err(refused(format!(
                        "{} keeps disappearing after it is created",
                        cur.show(&name).display()
                    )));
                }
                match rfs::mkdirat(&cur.fd, &name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                // Looked at again like any other step: whatever is there now.
                queue.push_front(Step::Name(name));
                continue;
            }
            Err(e)
                if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                    || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
        let st = cur.entry(&name)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} disappeared", cur.show(&name).display()),
            )
        })?;
        if file_type(&st) != FileType::Symlink {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "{} is {}, not a directory",
                    cur.show(&name).display(),
                    kind(&st)
                ),
            ));
        }
        let target = cur.link_target(&name, &st)?;
        *links = links
            .checked_sub(1)
            .ok_or_else(|| io::Error::from(Errno::LOOP))?;
        for s in steps(&target).into_iter().rev() {
            queue.push_front(s);
        }
    }
    Ok(Some(cur))
}

/// The directory holding `path`'s last component, opened safely, and that component. Missing
/// directories are created when `create` (else `None`).
pub(super) fn parent(path: &Path, create: bool) -> io::Result<Option<(Dir, OsString)>> {
    let mut q = steps(path);
    let Some(Step::Name(name)) = q.pop_back() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        ));
    };
    let start = if path.is_absolute() {
        Dir::root()?
    } else {
        Dir::cwd()?
    };
    let mut links = MAX_LINKS;
    Ok(walk(start, q, create, &mut links)?.map(|d| (d, name)))
}

/// What `path` names, found safely: its directory, its name there and its status (never a
/// link: a last component that is a link is followed only as [`walk`] follows one). `None`
/// when it does not exist.
pub(super) fn lookup(path: &Path) -> io::Result<Option<(Dir, OsString, Stat)>> {
    let Some((mut dir, mut name)) = parent(path, false)? else {
        return Ok(None);
    };
    let mut links = MAX_LINKS;
    loop {
        let Some(st) = dir.entry(&name)? else {
            return Ok(None);
        };
        if file_type(&st) != FileType::Symlink {
            return Ok(Some((dir, name, st)));
        }
        let target = dir.link_target(&name, &st)?;
        links = links
            .checked_sub(1)
            .ok_or_else(|| io::Error::from(Errno::LOOP))?;
        let mut q = steps(&target);
        let last = match q.pop_back() {
            Some(Step::Name(n)) => n,
            // A link to `/` or `..`: what it names is a directory; look at it as `.` there.
            Some(other) => {
                q.push_back(other);
                OsString::from(".")
            }
            None => OsString::from("."),
        };
        match walk(dir, q, false, &mut links)? {
            Some(d) => (dir, name) = (d, last),
            None => return Ok(None),
        }
    }
}
