//! Installing PostgreSQL, etcd and Patroni, once per Patroni version.

use crate::config::Config;
use crate::paths;
use charm_lib::{Cmd, Context, FileOptions, MachineExt};
use std::path::Path;

/// The PostgreSQL major installed under /usr/lib/postgresql (the highest if several).
pub fn pg_version(ctx: &Context) -> anyhow::Result<Option<u32>> {
    for v in (10..=30).rev() {
        if ctx
            .machine
            .file_info(Path::new(&format!("/usr/lib/postgresql/{v}/bin/postgres")))?
            .is_some()
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The server's full version (`15.14`), as `postgres -V` prints it (`postgres (PostgreSQL) 15.14
/// (Debian 15.14-0+deb12u1)`), which is what Charmed PostgreSQL gives `database` clients (the
/// second word of `SELECT version()`); the major alone if the binary says something else.
pub fn full_version(ctx: &Context, major: u32) -> anyhow::Result<String> {
    let bin = format!("/usr/lib/postgresql/{major}/bin/postgres");
    let cmd = Cmd::new(&bin, ["-V"]).allow_failure();
    let out = ctx.machine.run(&cmd)?;
    Ok(parse_full_version(&out.stdout, major))
}

/// See [`full_version`].
pub fn parse_full_version(text: &str, major: u32) -> String {
    let mut words = text.split_whitespace();
    let found = words
        .by_ref()
        .find(|w| *w == "(PostgreSQL)")
        .and_then(|_| words.next())
        .filter(|v| {
            (v.starts_with(&format!("{major}.")) || *v == major.to_string())
                && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        });
    found.map_or_else(|| major.to_string(), str::to_string)
}

/// The package list's version: a charm that installs more (pgbackrest) installs it on units
/// upgraded from one that did not.
const PACKAGES: &str = "packages=2";

/// What the install stamp records: the Patroni version in the virtualenv (`None` before the
/// first pip install) and whether the package list is this charm's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// `patroni==<version>`.
    pub patroni: Option<String>,
    /// The `packages=` line is [`PACKAGES`].
    pub packages: bool,
}

impl Stamp {
    /// Reads the stamp's text (`patroni==4.1.5\npackages=2\n`; charms before the package list
    /// had a version wrote the first line only).
    pub fn parse(text: &str) -> Stamp {
        let mut s = Stamp::default();
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("patroni==").filter(|v| !v.is_empty()) {
                s.patroni = Some(v.to_string());
            } else if line == PACKAGES {
                s.packages = true;
            }
        }
        s
    }

    fn text(&self) -> String {
        format!(
            "patroni=={}\n{}\n",
            self.patroni.as_deref().unwrap_or(""),
            if self.packages {
                PACKAGES
            } else {
                "packages=0"
            }
        )
    }
}

/// The install stamp on this host.
pub fn stamp(ctx: &Context) -> anyhow::Result<Stamp> {
    Ok(ctx
        .machine
        .read_to_string(Path::new(paths::INSTALL_STAMP))?
        .map(|t| Stamp::parse(&t))
        .unwrap_or_default())
}

fn write_stamp(ctx: &Context, s: &Stamp) -> anyhow::Result<()> {
    ctx.machine.write_file(
        Path::new(paths::INSTALL_STAMP),
        s.text().as_bytes(),
        &FileOptions::root(0o644),
    )?;
    Ok(())
}

/// Installs what is missing and returns the PostgreSQL major version. A new `patroni-version`
/// goes into the virtualenv here only while Patroni does not run on this unit: a running
/// Patroni's would be replaced under it, so the rolling upgrade ([`crate::upgrade`]) installs
/// it in this unit's turn and restarts Patroni right after.
pub fn ensure(ctx: &Context, config: &Config) -> anyhow::Result<u32> {
    let m = ctx.machine;
    let mut st = stamp(ctx)?;
    if !st.packages {
        log::info!("installing PostgreSQL, etcd, pgBackRest and the exporter");
        // Before the package: no default cluster to fight the charm's over port 5432.
        m.write_file(
            Path::new(paths::CREATECLUSTER_CONF),
            b"# postgresql-ha: Patroni creates the cluster\ncreate_main_cluster = false\n",
            &FileOptions::root(0o644),
        )?;
        m.apt_install(&[
            "postgresql",
            "postgresql-contrib",
            "etcd-server",
            "etcd-client",
            "pgbackrest",
            "prometheus-postgres-exporter",
            "python3-venv",
            "curl",
        ])?;
        // The package starts its exporter on every address with no settings; on loopback
        // at once, before any other hook.
        if m.write_file(
            Path::new(paths::EXPORTER_DEFAULTS),
            crate::render::exporter_defaults().as_bytes(),
            &FileOptions::root(0o644),
        )? {
            m.service(charm_lib::ServiceOp::Restart, paths::EXPORTER_SERVICE)?;
        }
        let v = pg_version(ctx)?.ok_or_else(|| anyhow::anyhow!("the postgresql package is installed but no /usr/lib/postgresql/<major>/bin/postgres exists"))?;
        for svc in [
            "postgresql".to_string(),
            format!("postgresql@{v}-main"),
            "etcd".to_string(),
        ] {
            m.retire_service(&svc)?;
        }
        // A default cluster made before this charm (e.g. the package was already installed)
        // must never start again and take port 5432.
        let start_conf = format!("/etc/postgresql/{v}/main/start.conf");
        if m.file_info(Path::new(&start_conf))?.is_some() {
            m.write_file(Path::new(&start_conf), b"# postgresql-ha: this default cluster is not used; Patroni runs PostgreSQL\nmanual\n", &FileOptions::new("postgres", "postgres", 0o644))?;
            m.run(
                &Cmd::new("pg_ctlcluster", [v.to_string().as_str(), "main", "stop"])
                    .allow_failure(),
            )?;
        }
        st.packages = true;
        write_stamp(ctx, &st)?;
    }
    let differs = st.patroni.as_deref() != Some(config.patroni_version.as_str());
    if differs && (st.patroni.is_none() || !m.service_is_active(paths::PATRONI_SERVICE)?) {
        install_patroni(ctx, config)?;
    }
    pg_version(ctx)?.ok_or_else(|| anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql"))
}

/// pip-installs `patroni-version` into the virtualenv (made if missing) and records it.
pub fn install_patroni(ctx: &Context, config: &Config) -> anyhow::Result<()> {
    let m = ctx.machine;
    log::info!("installing Patroni {}", config.patroni_version);
    if m.file_info(Path::new(&format!("{}/bin/python3", paths::VENV)))?
        .is_none()
    {
        m.run(&Cmd::new("/usr/bin/python3", ["-m", "venv", paths::VENV]))?;
    }
    let mut pip = Cmd::new(
        &format!("{}/bin/pip", paths::VENV),
        ["install", "--disable-pip-version-check", "-q"],
    );
    match wheelhouse(ctx)? {
        Some(dir) => pip
            .args
            .extend(["--no-index".into(), "--find-links".into(), dir]),
        None if !config.pip_index_url.trim().is_empty() => pip
            .args
            .extend(["--index-url".into(), config.pip_index_url.trim().into()]),
        None => {}
    }
    pip.args.extend([
        format!("patroni[etcd3]=={}", config.patroni_version),
        "psycopg2-binary".into(),
    ]);
    m.run(&pip)?;
    let mut st = stamp(ctx)?;
    st.patroni = Some(config.patroni_version.clone());
    write_stamp(ctx, &st)
}

/// The unpacked wheelhouse resource, if one is attached and usable.
fn wheelhouse(ctx: &Context) -> anyhow::Result<Option<String>> {
    let path = match ctx.tools().resource_get("wheelhouse") {
        Ok(p) => p,
        Err(e) => {
            log::info!("no wheelhouse resource ({e}); installing Patroni from the package index");
            return Ok(None);
        }
    };
    ctx.machine
        .make_dir(Path::new(paths::WHEELHOUSE_DIR), &FileOptions::root(0o755))?;
    let out = ctx.machine.run(
        &Cmd::new(
            "tar",
            [
                "-xzf".to_string(),
                path.to_string_lossy().into_owned(),
                "-C".into(),
                paths::WHEELHOUSE_DIR.into(),
            ],
        )
        .allow_failure(),
    )?;
    if !out.success() {
        log::warn!("the wheelhouse resource could not be unpacked ({}); installing Patroni from the package index", out.stderr.trim());
        return Ok(None);
    }
    // Tarballs often hold one top directory; pip needs the directory with the wheels.
    let find = ctx.machine.run(
        &Cmd::new(
            "find",
            [paths::WHEELHOUSE_DIR, "-name", "*.whl", "-printf", "%h\\n"],
        )
        .allow_failure(),
    )?;
    let dir = find
        .stdout
        .lines()
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| paths::WHEELHOUSE_DIR.to_string());
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::parse_full_version;

    #[test]
    fn the_full_version_is_postgres_own_word_for_it() {
        assert_eq!(
            parse_full_version("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n", 15),
            "15.14"
        );
        assert_eq!(
            parse_full_version("postgres (PostgreSQL) 16.6\n", 16),
            "16.6"
        );
        // Another major's binary, or nothing usable: the major we know.
        assert_eq!(parse_full_version("postgres (PostgreSQL) 14.2\n", 15), "15");
        assert_eq!(parse_full_version("", 15), "15");
        assert_eq!(
            parse_full_version("postgres (PostgreSQL) 15.x;rm\n", 15),
            "15"
        );
    }
}
