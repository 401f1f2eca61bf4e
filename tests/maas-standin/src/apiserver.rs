//! MAAS's apiserver (3.5+): its own process (snap pebble service `apiserver`, `startup:
//! enabled` in snap/local/tree/usr/share/maas/pebble/layers/002-maas-region-layer.yaml; deb
//! debian/maas-region-api.maas-apiserver.service, which maas-regiond.service `Requires=`),
//! listening on two Unix sockets: the v3 API behind nginx's `location /MAAS/a/`
//! (`MAAS_APISERVER_HTTP_SOCKET_PATH`) and the internal API behind nginx's stream server on
//! 5242 (`MAAS_INTERNALAPISERVER_HTTP_SOCKET_PATH`; snap/local/tree/bin/run-apiserver).
//!
//! The stand-in answers every request 404 in the v3 API's error shape: no charm uses either API;
//! what matters is which process is behind which port.

use crate::http::{self, Handler, Response};
use crate::paths::Flavor;
use anyhow::{Context, Result};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

fn bind(path: &std::path::Path) -> Result<UnixListener> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

/// Runs the apiserver stand-in (process name `maas-apiserver`); never returns on success.
pub fn run(flavor: Flavor) -> Result<()> {
    crate::util::set_comm("maas-apiserver");
    let handler: Handler = Arc::new(|req| {
        Response::json(
            404,
            &serde_json::json!({"kind": "Error", "code": 404, "message": format!("Not Found: {}", req.path)}),
        )
    });
    let mut threads = vec![];
    for path in [
        flavor.apiserver_socket(),
        flavor.internal_apiserver_socket(),
    ] {
        let l = bind(&path)?;
        let h = handler.clone();
        threads.push(std::thread::spawn(move || http::serve_unix(l, h)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
