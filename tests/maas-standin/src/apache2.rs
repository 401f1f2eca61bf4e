//! The deb `maas-region-api` package's apache2: port 80 forwards to regiond's 5240, which is why
//! the seed stops and disables apache2 before haproxy takes port 80.

use anyhow::{Context, Result};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Forwards `listen` to `target` forever (test override of the port: `MAAS_STANDIN_APACHE_PORT`).
pub fn run() -> Result<()> {
    crate::util::set_comm("apache2");
    let port: u16 = std::env::var("MAAS_STANDIN_APACHE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(80);
    let target_port = crate::regiond::ports()[0];
    let listener = TcpListener::bind(("0.0.0.0", port))
        .with_context(|| format!("apache2: binding port {port}"))?;
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        std::thread::spawn(move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], target_port));
            let Ok(upstream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                return;
            };
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                return;
            };
            std::thread::spawn(move || pump(c2, upstream));
            pump(u2, client);
        });
    }
    Ok(())
}
