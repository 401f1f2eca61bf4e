//! Where this application's files live on the host. Everything is named after the Juju
//! application, so two keepalived-vip applications on one host never share a file, a process
//! or a pid file (keepalived deletes its pid files when it exits).

/// The packaged keepalived binary.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// The distribution's own service, which starts on install on Ubuntu and is disabled here.
pub const DISTRO_SERVICE: &str = "keepalived";
/// The host-wide record of which unit uses which interface and virtual router id.
pub const CLAIMS: &str = "/var/lib/keepalived-vip/claims.json";

/// The paths and service name of one application on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The Juju application name.
    pub app: String,
}

impl Paths {
    /// The paths of `app`.
    pub fn new(app: &str) -> Paths {
        Paths {
            app: app.to_string(),
        }
    }

    /// `/etc/keepalived/keepalived-<app>.conf` (0600: it holds the VRRP password).
    pub fn conf(&self) -> String {
        format!("/etc/keepalived/keepalived-{}.conf", self.app)
    }

    /// Where a new configuration is checked with `keepalived -t` before it replaces `conf`.
    pub fn conf_candidate(&self) -> String {
        format!("/etc/keepalived/.keepalived-{}.conf.new", self.app)
    }

    /// The script keepalived runs on a VRRP state change (root, 0755: keepalived's script
    /// security refuses a script a non-root user could change).
    pub fn notify_script(&self) -> String {
        format!("/etc/keepalived/keepalived-{}-notify.sh", self.app)
    }

    /// The systemd service, `keepalived-<app>`.
    pub fn service(&self) -> String {
        format!("keepalived-{}", self.app)
    }

    /// Its unit file.
    pub fn unit_file(&self) -> String {
        format!("/etc/systemd/system/keepalived-{}.service", self.app)
    }

    /// keepalived's main pid file.
    pub fn pid(&self) -> String {
        format!("/run/keepalived-{}.pid", self.app)
    }

    /// keepalived's VRRP child pid file.
    pub fn vrrp_pid(&self) -> String {
        format!("/run/keepalived-{}-vrrp.pid", self.app)
    }

    /// The VIP-state exporter's service, `keepalived-vip-metrics-<app>` (see `metrics`).
    pub fn metrics_service(&self) -> String {
        format!("keepalived-vip-metrics-{}", self.app)
    }

    /// Its unit file.
    pub fn metrics_unit_file(&self) -> String {
        format!(
            "/etc/systemd/system/keepalived-vip-metrics-{}.service",
            self.app
        )
    }

    /// The sysctl drop-in letting services bind the VIP before this host holds it.
    pub fn sysctl(&self) -> String {
        format!("/etc/sysctl.d/60-keepalived-vip-{}.conf", self.app)
    }
}
