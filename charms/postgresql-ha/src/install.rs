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

fn stamp(config: &Config) -> String {
    // The package list's version: a charm that installs more (pgbackrest) installs it on
    // units upgraded from one that did not.
    format!("patroni=={}\npackages=2\n", config.patroni_version)
}

/// Whether the install for this config is done.
pub fn installed(ctx: &Context, config: &Config) -> anyhow::Result<bool> {
    Ok(ctx
        .machine
        .read_to_string(Path::new(paths::INSTALL_STAMP))?
        .as_deref()
        == Some(stamp(config).as_str()))
}

/// Installs what is missing and returns the PostgreSQL major version.
pub fn ensure(ctx: &Context, config: &Config) -> anyhow::Result<u32> {
    let m = ctx.machine;
    if !installed(ctx, config)? {
        log::info!(
            "installing PostgreSQL, etcd and Patroni {}",
            config.patroni_version
        );
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
        m.write_file(
            Path::new(paths::INSTALL_STAMP),
            stamp(config).as_bytes(),
            &FileOptions::root(0o644),
        )?;
    }
    pg_version(ctx)?.ok_or_else(|| anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql"))
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
