//! Backups of what a MAAS region keeps on disk and its database does not hold (README
//! "Backups" has the sources): the region's `maas_id`, the boot resources' `image-storage`
//! (MAAS 3.5 and later) and the operator's preseeds, in one tar in the `s3-parameters` bucket,
//! beside postgresql-ha's pgBackRest repository when both relate to the same provider.
//!
//! The objects: `<path>/maas-region/<backup-id>/region.tar` and, written last so that a
//! listed backup is a whole one, `<path>/maas-region/<backup-id>/manifest.json`. Not under
//! `<path>/backup/` as canonical/maas-charms' region charm puts them (`backups.py`,
//! `_run_backup`): pgBackRest keeps each stanza in `<path>/backup/<stanza>/` of the same
//! repository, and would find a region backup there. The backup id is the UTC time the backup
//! started, in that charm's form (`BACKUP_ID_FORMAT`, `%Y-%m-%dT%H:%M:%SZ`): the region cannot
//! see pgBackRest's labels, and postgresql-ha restores to any time its archived WAL covers, so
//! the time is the label that pairs the two. The database at that time names only boot
//! resource files a region had finished writing before it (MAAS records a file in
//! `BootResourceFileSync` once it is on disk), which the tar, taken after, holds.
//!
//! S3 is reached with s3cmd (Debian's and Ubuntu's package): pgBackRest stores only its own
//! repository, not arbitrary files. Its configuration, with the provider's keys, is a root 0600
//! file; no key is ever on a command line.
//!
//! Every object is encrypted on the unit before s3cmd uploads it, as postgresql-ha's pgBackRest
//! repository is: `gpg --symmetric --cipher-algo AES256` (Debian's gpg, OpenPGP's
//! authenticated SEIPD/MDC packets, so a changed object fails to decrypt rather than restoring
//! garbage) with the application's passphrase ([`PASSPHRASE`], a Juju secret the leader creates)
//! fed on gpg's stdin (`--passphrase-fd 0`): never in argv (`ps` shows argv to every user) nor
//! in a file gpg is pointed at. The hooks keep a copy in a root 0600 file ([`PASSPHRASE_FILE`])
//! because the scheduled backup runs outside any hook and cannot read the secret. Not s3cmd's
//! own `--encrypt`: it marks an object encrypted only in its `x-amz-meta-s3tools-gpgenc`
//! header (a copy of the bucket that drops metadata would restore ciphertext as a tar), cannot
//! decrypt what `s3cmd get <object> -` prints (`gpg_decrypt` is given the file name `-`), and
//! runs gpg with the obsolete `--no-use-agent`. The archive is `region.tar.gpg`; the manifest
//! keeps its name `manifest.json` (how a backup is found) and holds the ASCII-armoured
//! encryption of the JSON, which names the archive's encryption ([`Manifest::encryption`]).
//! Backups an earlier revision took unencrypted (plain JSON manifest, `region.tar`) still list
//! and restore.

use crate::config::InstallMethod;
use charm_lib::machine::CmdOutput;
use charm_lib::{Cmd, Context, Databag, FileOptions, Machine, MachineExt, Status};
use contracts::s3::{Repository, RepositoryState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The endpoint.
pub const ENDPOINT: &str = "s3-parameters";
/// The charm's backup configuration (root 0700).
pub const CONF_DIR: &str = "/etc/maas-region-backup";
/// s3cmd's configuration (root 0600: it holds the S3 secret key).
pub const S3CMD_CONF: &str = "/etc/maas-region-backup/s3cmd.cfg";
/// The endpoint's CA chain from the relation (public).
pub const S3_CA: &str = "/etc/maas-region-backup/s3-ca.pem";
/// What a scheduled backup needs to know that only a hook can read (root 0600, [`Job`]).
pub const JOB: &str = "/etc/maas-region-backup/job.json";
/// Where archives are written before they are uploaded and after they are downloaded (root
/// 0700): a backup needs as much free space as the files it holds.
pub const WORK_DIR: &str = "/var/lib/maas-region-backup";
/// The Debian package.
pub const S3CMD: &str = "s3cmd";
/// The Debian packages encryption needs: gpg, and gpg-agent, which gpg 2.1 and later ask for
/// the symmetric key (without it gpg exits 2).
pub const GPG_PACKAGES: [&str; 2] = ["gpg", "gpg-agent"];
/// The passphrase as the hooks last wrote it (root 0600), for the scheduled backup.
pub const PASSPHRASE_FILE: &str = "/etc/maas-region-backup/passphrase";
/// gpg's home (root 0700): keyrings and the agent's sockets of the charm's own gpg runs, not
/// root's `~/.gnupg` (the timer's service has no HOME).
pub const GNUPG_HOME: &str = "/var/lib/maas-region-backup/gnupg";
/// The manifest's [`Manifest::encryption`] of an encrypted backup.
pub const ENCRYPTION: &str = "gpg-aes256";
/// The encrypted archive's object name.
pub const ARCHIVE_ENCRYPTED: &str = "region.tar.gpg";
/// The first line of an ASCII-armoured OpenPGP message (RFC 4880 6.2): an encrypted manifest.
const ARMOR: &str = "-----BEGIN PGP MESSAGE-----";

/// The passphrase region backups are encrypted with: an application secret the leader creates
/// once and shares by id in the peer application databag (never the value), as postgresql-ha
/// keeps its repository's. Read with `--refresh`: set-backup-passphrase replaces it (a new
/// deployment restoring an older one's backups).
pub const PASSPHRASE: charm_lib::SharedSecret = charm_lib::SharedSecret::new(
    "maas-region-backup-passphrase",
    "backup-passphrase-secret",
    "maas-region: the passphrase region backups are encrypted with",
)
.refreshing();
/// The key of the passphrase in the secret (postgresql-ha's).
pub const PASSPHRASE_KEY: &str = "passphrase";

/// A new passphrase: 64 characters of [A-Za-z0-9] from /dev/urandom (381 bits), as
/// postgresql-ha's.
pub fn generate_passphrase() -> anyhow::Result<charm_lib::shared_secret::Content> {
    let p = charm_lib::random::alphanumeric(64)
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom: {e}"))?;
    Ok([(PASSPHRASE_KEY.to_string(), p)].into())
}

/// Whether `p` can be a passphrase (what set-backup-passphrase accepts; postgresql-ha's rule):
/// 16 characters or more, no white space (the file and gpg's stdin end it at a line break).
pub fn valid_passphrase(p: &str) -> bool {
    p.len() >= 16 && !p.chars().any(|c| c.is_whitespace() || c.is_control())
}
/// The folder of region backups under the relation's path.
pub const FOLDER: &str = "maas-region";
/// The archive's object name.
pub const ARCHIVE: &str = "region.tar";
/// The manifest's object name.
pub const MANIFEST: &str = "manifest.json";
/// The peer unit databag key each unit publishes its `maas_id` under, so that a backup names
/// every region (a restored deployment gives each unit one of them).
pub const MAAS_ID_KEY: &str = crate::peers::keys::MAAS_ID;

/// MAAS's data directory (`MAAS_DATA`, `get_maas_data_path` in src/provisioningserver/path.py;
/// the snap's run-regiond sets it to `$SNAP_COMMON/maas`).
pub fn maas_data(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::Snap => "/var/snap/maas/common/maas",
        InstallMethod::Deb => "/var/lib/maas",
    }
}

/// The region's system id (`MAAS_ID = FileBackedValue("maas_id")`,
/// src/provisioningserver/utils/env.py).
pub fn maas_id_file(m: InstallMethod) -> PathBuf {
    Path::new(maas_data(m)).join("maas_id")
}

/// Where the operator's preseeds are read from before MAAS's own (`PRESEED_TEMPLATE_LOCATIONS`:
/// src/maasserver/djangosettings/snap.py `$SNAP_DATA/preseeds`, settings.py
/// `/etc/maas/preseeds`).
pub fn preseeds_parent(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::Snap => "/var/snap/maas/current",
        InstallMethod::Deb => "/etc/maas",
    }
}

/// One thing a backup holds: its name in the archive, and the directory the name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The archive member (and file or directory name).
    pub name: &'static str,
    /// Its parent directory on this host.
    pub parent: &'static str,
}

/// What a region backup holds, where this packaging keeps it. Not in it: the shared secret
/// (the database's `rpc-shared` secret, written to the file by regiond at start-up:
/// src/maasserver/start_up.py `inner_start_up`), regiond.conf (the new deployment's database
/// and URL, written by `maas init`), the cluster certificates (in the database, written back
/// to disk at start-up when missing: `_create_cluster_certificate_if_necessary`).
pub fn items(m: InstallMethod) -> [Item; 3] {
    [
        Item {
            name: "maas_id",
            parent: maas_data(m),
        },
        // MAAS 3.5 and later (`get_bootresource_store_path`,
        // src/maasserver/utils/bootresource.py); 3.4 keeps boot resources in the database.
        Item {
            name: "image-storage",
            parent: maas_data(m),
        },
        Item {
            name: "preseeds",
            parent: preseeds_parent(m),
        },
    ]
}

/// The bucket and prefix of region backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Bucket.
    pub bucket: String,
    /// The relation's path, `/`-rooted or empty.
    pub path: String,
}

impl Target {
    /// Of a repository.
    pub fn of(r: &Repository) -> Target {
        Target {
            bucket: r.bucket.clone(),
            path: r.path.clone(),
        }
    }

    /// `s3://bucket/<path>/maas-region/` (with its trailing slash).
    pub fn folder(&self) -> String {
        format!("s3://{}{}/{FOLDER}/", self.bucket, self.path)
    }

    /// The URL of `object` in backup `id`.
    pub fn object(&self, id: &str, object: &str) -> String {
        format!("{}{id}/{object}", self.folder())
    }
}

/// What a backup is, as its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The backup id (the UTC time it started).
    pub id: String,
    /// The time to restore the database to with it, in postgresql-ha's `restore-to-time` form.
    #[serde(rename = "restore-to-time")]
    pub restore_to_time: String,
    /// When the archive was written (UTC).
    pub finished: String,
    /// The application and unit that took it.
    pub application: String,
    /// The unit.
    pub unit: String,
    /// snap or deb: a backup restores onto the same packaging.
    #[serde(rename = "install-method")]
    pub install_method: String,
    /// The snap channel the unit ran, when a snap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Every region's maas_id, by unit.
    pub regions: BTreeMap<String, String>,
    /// The archive's members.
    pub files: Vec<String>,
    /// The archive's size, bytes.
    pub size: u64,
    /// How the archive is encrypted: [`ENCRYPTION`], or none (a backup an earlier revision took).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

impl Manifest {
    /// The archive's object name.
    pub fn archive(&self) -> &'static str {
        if self.encryption.is_some() {
            ARCHIVE_ENCRYPTED
        } else {
            ARCHIVE
        }
    }
}

/// What a backup run needs: written by the hooks for the scheduled run ([`JOB`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Where to.
    pub target: Target,
    /// The packaging.
    #[serde(rename = "install-method")]
    pub install_method: String,
    /// The snap channel, when a snap.
    #[serde(default)]
    pub channel: Option<String>,
    /// The application.
    pub application: String,
    /// This unit.
    pub unit: String,
    /// Every region's maas_id, by unit, as the peers published them.
    pub regions: BTreeMap<String, String>,
    /// `backup-retention`: how many of this application's backups the leader keeps.
    #[serde(default = "default_retention")]
    pub retention: u32,
}

fn default_retention() -> u32 {
    crate::config::DEFAULT_BACKUP_RETENTION
}

/// `2026-12-07T07:30:00Z` → `2026-12-07 07:30:00+00` (postgresql-ha's restore-to-time).
pub fn restore_to_time(id: &str) -> String {
    format!("{}+00", id.trim_end_matches('Z').replacen('T', " ", 1))
}

/// Whether `id` has the form of a backup id (it goes into object names).
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit())
}

/// s3cmd's configuration for `repo` (S3/Config.py's keys): TLS only, the certificate and its
/// host name checked, path- or host-style as the provider says.
pub fn render_s3cmd(repo: &Repository) -> String {
    let endpoint = format!("{}:{}", repo.host, repo.port);
    let host_bucket = if repo.uri_style == "path" {
        endpoint.clone()
    } else {
        format!("%(bucket)s.{endpoint}")
    };
    let mut s = String::from(
        "# Rendered by the maas-region charm (s3-parameters); edits are overwritten.\n[default]\n",
    );
    let mut kv = |k: &str, v: &str| {
        s.push_str(&format!("{k} = {v}\n"));
    };
    kv("access_key", &repo.access_key);
    kv("secret_key", &repo.secret_key);
    kv("host_base", &endpoint);
    kv("host_bucket", &host_bucket);
    kv("bucket_location", &repo.region);
    kv("use_https", "True");
    kv("check_ssl_certificate", "True");
    kv("check_ssl_hostname", "True");
    if !repo.ca_chain.is_empty() {
        kv("ca_certs_file", S3_CA);
    }
    kv("signature_v2", "False");
    kv("progress_meter", "False");
    s
}

/// Why the provider's data cannot go into s3cmd's configuration: a line break would start
/// another setting.
fn unsafe_value(repo: &Repository) -> Option<&'static str> {
    [
        ("access-key", &repo.access_key),
        ("secret-key", &repo.secret_key),
        ("bucket", &repo.bucket),
        ("region", &repo.region),
        ("endpoint", &repo.host),
        ("path", &repo.path),
    ]
    .into_iter()
    .find(|(_, v)| v.contains(['\n', '\r']))
    .map(|(k, _)| k)
}

/// s3cmd with the charm's configuration.
pub fn s3cmd<I, S>(args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cmd = Cmd::new(S3CMD, ["--config", S3CMD_CONF, "--no-progress"]);
    cmd.args.extend(args.into_iter().map(Into::into));
    cmd.allow_failure()
}

/// The repository, as the relation gives it now.
pub fn repository(ctx: &Context) -> anyhow::Result<RepositoryState> {
    Ok(match ctx.model.relation(ENDPOINT)? {
        None => RepositoryState::NotRelated,
        Some(r) => {
            let state = contracts::s3::parse(&r.remote_app_data()?);
            match state {
                RepositoryState::Ready(repo) => match unsafe_value(&repo) {
                    Some(k) => RepositoryState::Invalid(format!("{k} holds a line break")),
                    None => RepositoryState::Ready(repo),
                },
                other => other,
            }
        }
    })
}

/// The repository, or why an action cannot use it (the relation or the keys it misses).
pub fn ready(ctx: &Context) -> anyhow::Result<Repository> {
    match repository(ctx)? {
        RepositoryState::Ready(r) => Ok(r),
        RepositoryState::NotRelated => anyhow::bail!(
            "no {ENDPOINT} relation: relate maas-region:{ENDPOINT} to an S3 provider (s3-integrator) first"
        ),
        RepositoryState::Waiting(why) | RepositoryState::Invalid(why) => {
            anyhow::bail!("{ENDPOINT}: {why}")
        }
    }
}

/// The last lines s3cmd (or tar) printed on failure, for an action's message.
pub fn failure(out: &charm_lib::CmdOutput) -> String {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" ");
    if tail.is_empty() {
        format!("exit status {}", out.code)
    } else {
        tail
    }
}

/// Runs `cmd`; its stdout, or an error naming `what` with the command's stderr.
fn must(m: &dyn Machine, cmd: &Cmd, what: &str) -> anyhow::Result<String> {
    let out = m.run(cmd)?;
    anyhow::ensure!(out.success(), "{what} failed: {}", failure(&out));
    Ok(out.stdout)
}

/// gpg with the passphrase on its stdin (`--passphrase-fd 0`; `--pinentry-mode loopback`, which
/// gpg 2.1 and later need to take it from there), in the charm's own home, caching nothing.
pub fn gpg<I, S>(passphrase: &str, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cmd = Cmd::new(
        "gpg",
        [
            "--batch",
            "--yes",
            "--no-tty",
            "--quiet",
            "--homedir",
            GNUPG_HOME,
            "--pinentry-mode",
            "loopback",
            "--no-symkey-cache",
            "--passphrase-fd",
            "0",
        ],
    );
    cmd.args.extend(args.into_iter().map(Into::into));
    cmd.stdin(format!("{passphrase}\n"))
        .sensitive(passphrase)
        .allow_failure()
}

/// Runs gpg commands in the charm's gpg home, then stops the gpg-agent they started: it would
/// outlive the hook or the timer's run.
fn with_gpg<T>(m: &dyn Machine, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    m.make_dir(Path::new(WORK_DIR), &FileOptions::root(0o700))?;
    m.make_dir(Path::new(GNUPG_HOME), &FileOptions::root(0o700))?;
    let result = f();
    m.run(&Cmd::new("gpgconf", ["--homedir", GNUPG_HOME, "--kill", "gpg-agent"]).allow_failure())?;
    result
}

/// Encrypts `input` into `output` (`armor`: as text).
fn encrypt(
    m: &dyn Machine,
    passphrase: &str,
    input: &str,
    output: &str,
    armor: bool,
) -> anyhow::Result<()> {
    let mut args = vec!["--symmetric", "--cipher-algo", "AES256"];
    if armor {
        args.push("--armor");
    }
    args.extend(["--output", output, input]);
    must(m, &gpg(passphrase, args), "encrypting")?;
    Ok(())
}

/// The passphrase the hooks wrote, if any.
pub fn passphrase(m: &dyn Machine) -> anyhow::Result<Option<String>> {
    Ok(m.read_to_string(Path::new(PASSPHRASE_FILE))?
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// Takes a backup: the items present into one tar, encrypted, uploaded with its encrypted
/// manifest. `now`: seconds since the epoch when it starts (the id).
pub fn create(m: &dyn Machine, job: &Job, now: i64) -> anyhow::Result<Manifest> {
    let method = InstallMethod::parse(&job.install_method)
        .ok_or_else(|| anyhow::anyhow!("install-method {:?} in {JOB}", job.install_method))?;
    anyhow::ensure!(
        m.file_info(&maas_id_file(method))?.is_some(),
        "nothing to back up yet: MAAS has not written {} (regiond writes it at its first start, once the unit is related to a database)",
        maas_id_file(method).display()
    );
    // Never an unencrypted upload: no passphrase, no backup.
    let pass = passphrase(m)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no backup passphrase on this unit yet ({PASSPHRASE_FILE}): the leader creates it once related to {ENDPOINT}, and every unit writes it at its next hook"
        )
    })?;
    let id = charm_lib::tls::format_utc(now);
    let mut tar = vec!["-cf".to_string(), format!("{WORK_DIR}/{id}.tar")];
    let mut files = Vec::new();
    for it in items(method) {
        if m.file_info(&Path::new(it.parent).join(it.name))?.is_some() {
            tar.extend(["-C".to_string(), it.parent.to_string(), it.name.to_string()]);
            files.push(it.name.to_string());
        }
    }
    m.make_dir(Path::new(WORK_DIR), &FileOptions::root(0o700))?;
    let archive = format!("{WORK_DIR}/{id}.tar");
    let sealed = format!("{archive}.gpg");
    let local = format!("{WORK_DIR}/{id}.{MANIFEST}");
    let local_sealed = format!("{local}.asc");
    let result = with_gpg(m, || -> anyhow::Result<Manifest> {
        must(m, &Cmd::new("tar", tar).allow_failure(), "tar")?;
        let size = must(
            m,
            &Cmd::new("stat", ["-c", "%s", &archive]).allow_failure(),
            "stat",
        )?
        .trim()
        .parse()
        .unwrap_or(0);
        encrypt(m, &pass, &archive, &sealed, false)?;
        m.remove_file(Path::new(&archive))?;
        must(
            m,
            &s3cmd([
                "put".to_string(),
                sealed.clone(),
                job.target.object(&id, ARCHIVE_ENCRYPTED),
            ]),
            "uploading the archive",
        )?;
        let manifest = Manifest {
            restore_to_time: restore_to_time(&id),
            id: id.clone(),
            finished: charm_lib::tls::format_utc(unix_now()),
            application: job.application.clone(),
            unit: job.unit.clone(),
            install_method: job.install_method.clone(),
            channel: job.channel.clone(),
            regions: job.regions.clone(),
            files,
            size,
            encryption: Some(ENCRYPTION.into()),
        };
        let text = serde_json::to_string_pretty(&manifest)?;
        m.write_file(
            Path::new(&local),
            text.as_bytes(),
            &FileOptions::root(0o600),
        )?;
        encrypt(m, &pass, &local, &local_sealed, true)?;
        m.remove_file(Path::new(&local))?;
        must(
            m,
            &s3cmd([
                "put".to_string(),
                local_sealed.clone(),
                job.target.object(&id, MANIFEST),
            ]),
            "uploading the manifest",
        )?;
        Ok(manifest)
    });
    for f in [&archive, &sealed, &local, &local_sealed] {
        m.remove_file(Path::new(f))?;
    }
    result
}

/// Leader, after a backup `kept` of `application` succeeded: deletes that application's oldest
/// backups beyond `retention` (each whole `<id>/` prefix), never `kept`. Backups of other
/// applications in the folder (a deployment restored from, whose passphrase may not be this
/// one), and backups whose manifest this passphrase cannot read, are not counted nor touched.
/// Returns the ids deleted, oldest first.
pub fn expire(
    m: &dyn Machine,
    target: &Target,
    application: &str,
    kept: &str,
    retention: u32,
) -> anyhow::Result<Vec<String>> {
    let pass = passphrase(m)?;
    let mine: Vec<String> = list(m, target, pass.as_deref())?
        .backups
        .into_iter()
        .filter(|mf| mf.application == application)
        .map(|mf| mf.id)
        .collect();
    let excess = mine.len().saturating_sub(retention.max(1) as usize);
    let doomed: Vec<String> = mine
        .into_iter()
        .take(excess)
        .filter(|id| id != kept)
        .collect();
    for id in &doomed {
        must(
            m,
            &s3cmd([
                "del".to_string(),
                "--recursive".into(),
                format!("{}{id}/", target.folder()),
            ]),
            &format!("deleting backup {id}"),
        )?;
    }
    Ok(doomed)
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The ids `s3cmd ls` shows under the folder (`DIR   s3://b/p/maas-region/<id>/` lines), oldest
/// first.
pub fn parse_ls(out: &str, target: &Target) -> Vec<String> {
    let folder = target.folder();
    let mut ids: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|u| u.strip_prefix(folder.as_str()))
        .map(|r| r.trim_end_matches('/').to_string())
        .filter(|id| valid_id(id))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A backup's manifest as this unit can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// There is none (a backup that did not finish).
    Missing,
    /// It is encrypted and this unit's passphrase does not open it (gpg's words).
    Sealed(String),
    /// It.
    Found(Box<Manifest>),
}

/// A backup's manifest: plain JSON (an earlier revision's), or armoured OpenPGP decrypted with
/// `pass`.
pub fn manifest(
    m: &dyn Machine,
    target: &Target,
    id: &str,
    pass: Option<&str>,
) -> anyhow::Result<Read> {
    let out = m.run(&s3cmd([
        "get".to_string(),
        target.object(id, MANIFEST),
        "-".into(),
    ]))?;
    if !out.success() {
        // s3cmd 2.x: "ERROR: S3 error: 404 (Not Found)" / "(NoSuchKey)".
        if out.stderr.contains("404") || out.stderr.contains("NoSuchKey") {
            return Ok(Read::Missing);
        }
        anyhow::bail!("reading the manifest of {id} failed: {}", failure(&out));
    }
    let json = if out.stdout.trim_start().starts_with(ARMOR) {
        let Some(pass) = pass else {
            return Ok(Read::Sealed("this unit has no backup passphrase".into()));
        };
        let local = format!("{WORK_DIR}/{id}.{MANIFEST}.asc");
        let opened = with_gpg(m, || {
            m.write_file(
                Path::new(&local),
                out.stdout.as_bytes(),
                &FileOptions::root(0o600),
            )?;
            Ok(m.run(&gpg(pass, ["--decrypt", "--output", "-", &local]))?)
        });
        m.remove_file(Path::new(&local))?;
        let opened = opened?;
        if !opened.success() {
            return Ok(Read::Sealed(failure(&CmdOutput {
                stdout: String::new(),
                ..opened
            })));
        }
        opened.stdout
    } else {
        out.stdout
    };
    let mf: Manifest = serde_json::from_str(&json)
        .map_err(|e| anyhow::anyhow!("the manifest of {id} is not a region backup's: {e}"))?;
    Ok(Read::Found(Box::new(mf)))
}

/// What the folder holds, as this unit can read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every whole backup whose manifest this unit read, oldest first.
    pub backups: Vec<Manifest>,
    /// The ids of backups encrypted with another passphrase.
    pub sealed: Vec<String>,
}

/// Every whole backup in the folder, oldest first, with `pass` opening the encrypted ones.
pub fn list(m: &dyn Machine, target: &Target, pass: Option<&str>) -> anyhow::Result<Listing> {
    let out = m.run(&s3cmd(["ls".to_string(), target.folder()]))?;
    anyhow::ensure!(
        out.success(),
        "listing {} failed: {}",
        target.folder(),
        failure(&out)
    );
    let mut all = Listing::default();
    for id in parse_ls(&out.stdout, target) {
        match manifest(m, target, &id, pass)? {
            Read::Found(mf) => all.backups.push(*mf),
            Read::Sealed(_) => all.sealed.push(id),
            Read::Missing => {}
        }
    }
    Ok(all)
}

/// Which region of `mf` a unit becomes: `wanted`, or the only one.
pub fn pick_region(mf: &Manifest, wanted: Option<&str>) -> Result<String, String> {
    let ids: Vec<&String> = mf.regions.values().collect();
    let listed = || {
        ids.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted.map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) if ids.iter().any(|i| *i == w) => Ok(w.to_string()),
        Some(w) => Err(format!(
            "maas-id {w:?} is not a region of backup {}: it names {}",
            mf.id,
            listed()
        )),
        None if ids.len() == 1 => Ok(ids[0].clone()),
        None if ids.is_empty() => Err(format!("backup {} names no region", mf.id)),
        None => Err(format!(
            "backup {} names {} regions ({}): give maas-id, a different one on each unit",
            mf.id,
            ids.len(),
            listed()
        )),
    }
}

/// Puts backup `mf`'s files in place on a fresh region, with `maas_id` as its system id;
/// `pass` decrypts its archive (the one that opened its manifest).
pub fn restore(
    m: &dyn Machine,
    target: &Target,
    mf: &Manifest,
    method: InstallMethod,
    maas_id: &str,
    pass: Option<&str>,
) -> anyhow::Result<()> {
    let pass = match mf.encryption.as_deref() {
        None => None,
        Some(ENCRYPTION) => Some(pass.ok_or_else(|| {
            anyhow::anyhow!("backup {} is encrypted and this unit has no backup passphrase", mf.id)
        })?),
        Some(other) => anyhow::bail!(
            "backup {} is encrypted as {other:?}, which this charm does not know (it writes {ENCRYPTION})",
            mf.id
        ),
    };
    m.make_dir(Path::new(WORK_DIR), &FileOptions::root(0o700))?;
    let archive = format!("{WORK_DIR}/{}.restore.tar", mf.id);
    let download = match pass {
        Some(_) => format!("{archive}.gpg"),
        None => archive.clone(),
    };
    let result = with_gpg(m, || -> anyhow::Result<()> {
        must(
            m,
            &s3cmd([
                "get".to_string(),
                "--force".into(),
                target.object(&mf.id, mf.archive()),
                download.clone(),
            ]),
            "downloading the archive",
        )?;
        if let Some(pass) = pass {
            must(
                m,
                &gpg(pass, ["--decrypt", "--output", &archive, &download]),
                "decrypting the archive",
            )?;
            m.remove_file(Path::new(&download))?;
        }
        for it in items(method) {
            if !mf.files.iter().any(|f| f == it.name) {
                continue;
            }
            // Over what the packaging put there (a fresh unit's sample preseeds, an empty
            // image-storage): the backup's files win, ownership and modes as they were.
            must(
                m,
                &Cmd::new(
                    "tar",
                    [
                        "-xf",
                        &archive,
                        "--same-owner",
                        "--same-permissions",
                        "-C",
                        it.parent,
                        it.name,
                    ],
                )
                .allow_failure(),
                "unpacking the archive",
            )?;
        }
        m.write_file(
            &maas_id_file(method),
            format!("{maas_id}\n").as_bytes(),
            &FileOptions::root(0o644),
        )?;
        Ok(())
    });
    m.remove_file(Path::new(&archive))?;
    m.remove_file(Path::new(&download))?;
    result
}

/// This unit's `maas_id` (what regiond wrote), if any.
pub fn own_maas_id(ctx: &Context, method: InstallMethod) -> anyhow::Result<Option<String>> {
    Ok(ctx
        .machine
        .read_to_string(&maas_id_file(method))?
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// Every region's `maas_id` by unit: this unit's from its file, the others' as they published
/// them in the peer relation.
pub fn regions(ctx: &Context, method: InstallMethod) -> anyhow::Result<BTreeMap<String, String>> {
    let mut regions: BTreeMap<String, String> = crate::relations::peers(&ctx.model)?
        .into_iter()
        .filter_map(|p| p.maas_id.map(|id| (p.unit, id)))
        .collect();
    if let Some(id) = own_maas_id(ctx, method)? {
        regions.insert(ctx.model.unit_name().to_string(), id);
    }
    Ok(regions)
}

/// What a backup of this unit takes, into `repo`.
pub fn job(ctx: &Context, cfg: &crate::config::Config, repo: &Repository) -> anyhow::Result<Job> {
    Ok(Job {
        target: Target::of(repo),
        install_method: cfg.install_method.as_str().to_string(),
        channel: (cfg.install_method == InstallMethod::Snap).then(|| cfg.channel.clone()),
        application: ctx.model.app_name().to_string(),
        unit: ctx.model.unit_name().to_string(),
        regions: regions(ctx, cfg.install_method)?,
        retention: cfg.backup_retention,
    })
}

/// The hook's part: this unit's `maas_id` published to its peers, the s3cmd configuration from
/// the relation (or none left behind), the scheduled backup on the leader. Returns the status
/// the relation or the schedule calls for, if any.
pub fn reconcile(ctx: &Context, cfg: &crate::config::Config) -> anyhow::Result<Option<Status>> {
    let m = ctx.machine;
    if let (Some(peers), Some(id)) = (
        ctx.model.relation(crate::relations::PEERS)?,
        own_maas_id(ctx, cfg.install_method)?,
    ) {
        // reconcile read this unit's databag before: it parses.
        let mine: crate::peers::UnitBag = peers.read_unit(ctx.model.unit_name())?;
        let new = crate::peers::UnitBag {
            maas_id: Some(id),
            ..mine.clone()
        };
        peers.set_my_unit_data(&crate::peers::changes(&mine, &new)?)?;
    }
    let leader = ctx.model.is_leader()?;
    if let (true, Some(rel)) = (leader, ctx.model.relation(ENDPOINT)?) {
        if rel
            .my_app_data()?
            .get(contracts::s3::BUCKET_KEY)
            .is_none_or(|b| b.is_empty())
        {
            rel.set_my_app_data(&Databag::from([(
                contracts::s3::BUCKET_KEY.to_string(),
                contracts::s3::requested_bucket(rel.id().id),
            )]))?;
        }
    }
    let repo = match repository(ctx)? {
        RepositoryState::Ready(r) => r,
        other => {
            // No stale credentials left on disk once the relation is gone or changing.
            for f in [S3CMD_CONF, S3_CA, JOB, PASSPHRASE_FILE] {
                m.remove_file(Path::new(f))?;
            }
            crate::backup_schedule::apply(ctx, None)?;
            return Ok(match other {
                RepositoryState::NotRelated if cfg.backup_schedule.is_some() => Some(Status::blocked(format!(
                    "backup-schedule is set but there is no backup bucket: relate {ENDPOINT} to an S3 provider, or empty backup-schedule"
                ))),
                RepositoryState::Waiting(why) => Some(Status::waiting(format!("{ENDPOINT}: {why}"))),
                RepositoryState::Invalid(why) => Some(Status::blocked(format!("{ENDPOINT}: {why}"))),
                _ => None,
            });
        }
    };
    let mut missing = false;
    for f in ["/usr/bin/s3cmd", "/usr/bin/gpg", "/usr/bin/gpg-agent"] {
        missing |= m.file_info(Path::new(f))?.is_none();
    }
    if missing {
        m.apt_install(&[S3CMD, GPG_PACKAGES[0], GPG_PACKAGES[1]])?;
    }
    m.make_dir(Path::new(CONF_DIR), &FileOptions::root(0o700))?;
    // The passphrase: created once by the leader, published to the peers by id.
    let shared = match ctx.model.relation(crate::relations::PEERS)? {
        Some(peers) => PASSPHRASE.ensure(&ctx.model, &peers, generate_passphrase)?,
        None => None,
    };
    match shared.and_then(|s| s.content.get(PASSPHRASE_KEY).cloned()) {
        Some(p) if valid_passphrase(&p) => {
            m.write_file(
                Path::new(PASSPHRASE_FILE),
                p.as_bytes(),
                &FileOptions::root(0o600),
            )?;
        }
        Some(_) => {
            return Ok(Some(Status::blocked(format!(
                "the backup passphrase secret ({}) holds no usable passphrase: run set-backup-passphrase on the leader",
                PASSPHRASE.label
            ))))
        }
        None => {
            m.remove_file(Path::new(PASSPHRASE_FILE))?;
            return Ok(Some(Status::waiting(format!(
                "{ENDPOINT}: waiting for the leader's backup passphrase"
            ))));
        }
    }
    m.write_file(
        Path::new(S3CMD_CONF),
        render_s3cmd(&repo).as_bytes(),
        &FileOptions::root(0o600),
    )?;
    if repo.ca_chain.is_empty() {
        m.remove_file(Path::new(S3_CA))?;
    } else {
        let pem = repo.ca_chain.join("\n") + "\n";
        m.write_file(Path::new(S3_CA), pem.as_bytes(), &FileOptions::root(0o644))?;
    }
    let job = job(ctx, cfg, &repo)?;
    m.write_file(
        Path::new(JOB),
        serde_json::to_string_pretty(&job)?.as_bytes(),
        &FileOptions::root(0o600),
    )?;
    let schedule = cfg.backup_schedule.as_ref().filter(|_| leader);
    crate::backup_schedule::apply(ctx, schedule)?;
    Ok(None)
}

/// The unit is removed: no timer runs a charm that is gone, no key is left on the machine.
pub fn retire(ctx: &Context) -> anyhow::Result<()> {
    crate::backup_schedule::apply(ctx, None)?;
    for f in [S3CMD_CONF, S3_CA, JOB, PASSPHRASE_FILE] {
        ctx.machine.remove_file(Path::new(f))?;
    }
    Ok(())
}

/// The job the hooks last wrote.
pub fn read_job(m: &dyn Machine) -> anyhow::Result<Job> {
    let text = m
        .read_to_string(Path::new(JOB))?
        .ok_or_else(|| anyhow::anyhow!("{JOB} is missing: is the unit related to {ENDPOINT}?"))?;
    Ok(serde_json::from_str(&text)?)
}

/// `dispatch region-backup`: the scheduled backup, run by the timer outside any hook.
pub fn run_scheduled() -> ! {
    let m = charm_lib::machine::System;
    // The timer runs on the leader only (crate::backup_schedule): it expires.
    let run = read_job(&m).and_then(|job| {
        let mf = create(&m, &job, unix_now())?;
        println!(
            "backup {} of {} ({} bytes): restore the database to {}",
            mf.id,
            mf.files.join(", "),
            mf.size,
            mf.restore_to_time
        );
        let gone =
            expire(&m, &job.target, &job.application, &mf.id, job.retention).map_err(|e| {
                anyhow::anyhow!(
                    "backup {} taken, but expiring older backups failed: {e:#}",
                    mf.id
                )
            })?;
        if !gone.is_empty() {
            println!(
                "deleted {} (backup-retention {})",
                gone.join(", "),
                job.retention
            );
        }
        Ok(())
    });
    let code = match run {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("scheduled region backup failed: {e:#}");
            1
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(style: &str, ca: bool) -> Repository {
        Repository {
            host: "s3.example.com".into(),
            port: 9443,
            bucket: "backups".into(),
            path: "/maas".into(),
            region: "eu-west-1".into(),
            uri_style: style.into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
            ca_chain: if ca { vec!["PEM".into()] } else { vec![] },
        }
    }

    #[test]
    fn s3cmd_config_is_tls_with_the_providers_style() {
        let c = render_s3cmd(&repo("path", true));
        for line in [
            "access_key = AK",
            "secret_key = SK",
            "host_base = s3.example.com:9443",
            "host_bucket = s3.example.com:9443",
            "bucket_location = eu-west-1",
            "use_https = True",
            "check_ssl_certificate = True",
            "ca_certs_file = /etc/maas-region-backup/s3-ca.pem",
        ] {
            assert!(c.lines().any(|l| l == line), "{line} missing in\n{c}");
        }
        let c = render_s3cmd(&repo("host", false));
        assert!(
            c.contains("host_bucket = %(bucket)s.s3.example.com:9443\n"),
            "{c}"
        );
        assert!(!c.contains("ca_certs_file"), "{c}");
        let mut r = repo("path", false);
        r.secret_key = "SK\nhost_base = evil".into();
        assert_eq!(unsafe_value(&r), Some("secret-key"));
    }

    #[test]
    fn objects_sit_beside_pgbackrests_not_inside_it() {
        let t = Target::of(&repo("path", false));
        assert_eq!(
            t.object("2026-12-07T07:30:00Z", ARCHIVE),
            "s3://backups/maas/maas-region/2026-12-07T07:30:00Z/region.tar"
        );
        let root = Target {
            bucket: "b".into(),
            path: String::new(),
        };
        assert_eq!(root.folder(), "s3://b/maas-region/");
    }

    #[test]
    fn ids_pair_with_a_database_time() {
        assert_eq!(
            restore_to_time("2026-12-07T07:30:00Z"),
            "2026-12-07 07:30:00+00"
        );
        assert!(valid_id("2026-12-07T07:30:00Z"));
        assert!(!valid_id("2026-12-07T07:30:00"));
        assert!(!valid_id("../../etc/passwdZZZZZ"));
        let t = Target {
            bucket: "b".into(),
            path: "/p".into(),
        };
        let ls = "                          DIR  s3://b/p/maas-region/2026-12-07T08:00:00Z/\n                          DIR  s3://b/p/maas-region/2026-12-07T07:30:00Z/\n                          DIR  s3://b/p/maas-region/junk/\n";
        assert_eq!(
            parse_ls(ls, &t),
            ["2026-12-07T07:30:00Z", "2026-12-07T08:00:00Z"]
        );
    }

    #[test]
    fn a_unit_takes_the_region_named_or_the_only_one() {
        let mut mf = Manifest {
            id: "2026-12-07T07:30:00Z".into(),
            restore_to_time: String::new(),
            finished: String::new(),
            application: "maas-region".into(),
            unit: "maas-region/0".into(),
            install_method: "snap".into(),
            channel: None,
            regions: BTreeMap::from([("maas-region/0".to_string(), "abc123".to_string())]),
            files: vec![],
            size: 0,
            encryption: None,
        };
        assert_eq!(pick_region(&mf, None).unwrap(), "abc123");
        assert_eq!(pick_region(&mf, Some("abc123")).unwrap(), "abc123");
        assert!(pick_region(&mf, Some("zzz"))
            .unwrap_err()
            .contains("not a region of backup"));
        mf.regions.insert("maas-region/1".into(), "def456".into());
        let e = pick_region(&mf, None).unwrap_err();
        assert!(
            e.contains("give maas-id") && e.contains("abc123, def456"),
            "{e}"
        );
    }
}
