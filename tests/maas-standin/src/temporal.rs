//! Temporal's server (MAAS 3.5+): its own process, listening on 5271 on every address.
//!
//! Where MAAS does it (canonical/maas 3.6): the snap's pebble service `temporal`
//! (snap/local/tree/usr/share/maas/pebble/layers/002-maas-region-layer.yaml, `startup:
//! disabled`, run-temporal: `temporal-server -e production -r $SNAP_DATA/temporal/ ... start`)
//! and the deb's maas-temporal.service (debian/maas-region-api.maas-temporal.service,
//! `ConditionPathIsDirectory=/var/lib/maas/temporal`, no `Restart=`); regiond renders
//! production.yaml into that directory (`RegionTemporalService._configure`,
//! src/maasserver/regiondservices/temporal.py; the frontend's `bindOnIP: "0.0.0.0"`, `grpcPort:
//! 5271` in src/maasserver/templates/temporal/production.yaml.template) and its service monitor
//! starts it (src/maasserver/service_monitor.py `TemporalService`, an `AlwaysOnService`). Once
//! started it does not depend on regiond's process: killing regiond leaves 5271 open.
//!
//! The stand-in accepts TCP connections and holds them until the peer closes; it speaks no gRPC.

use crate::paths::Flavor;
use anyhow::{Context, Result};
use std::io::Read;
use std::net::TcpListener;

/// The configuration regiond renders before the service may start.
pub fn config(flavor: Flavor) -> std::path::PathBuf {
    flavor.temporal_dir().join("production.yaml")
}

/// Port 5271 (test override: the third of `MAAS_STANDIN_PORTS`).
pub fn port() -> u16 {
    crate::regiond::ports()[2]
}

/// Writes production.yaml as `RegionTemporalService._configure` does (the parts that tell
/// where the frontend listens), 0600.
pub fn render(flavor: Flavor, broadcast: &str) -> Result<()> {
    std::fs::create_dir_all(flavor.temporal_dir())?;
    let bind = std::env::var("MAAS_STANDIN_BIND").unwrap_or_else(|_| "0.0.0.0".into());
    let text = format!(
        "# MAAS stand-in: src/maasserver/templates/temporal/production.yaml.template (listeners only)\n\
         global:\n  membership:\n    broadcastAddress: \"{broadcast}\"\n\
         services:\n  frontend:\n    rpc:\n      grpcPort: {}\n      bindOnIP: \"{bind}\"\n",
        port()
    );
    crate::util::write_file(&config(flavor), text.as_bytes(), 0o600, None)
}

/// Runs the Temporal stand-in (process name `temporal-server`): never returns unless the
/// configuration is missing or the port cannot be bound.
pub fn run(flavor: Flavor) -> Result<()> {
    crate::util::set_comm("temporal-server");
    let conf = std::fs::read_to_string(config(flavor))
        .with_context(|| format!("temporal-server: reading {}", config(flavor).display()))?;
    let field = |k: &str| {
        conf.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let port: u16 = field("grpcPort:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(port);
    let bind = field("bindOnIP:").unwrap_or_else(|| "0.0.0.0".into());
    let l = TcpListener::bind((bind.as_str(), port))
        .with_context(|| format!("temporal-server: binding {bind}:{port}"))?;
    eprintln!("temporal-server: frontend on {bind}:{port}");
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
    Ok(())
}
