//! A process named `named`: keepalived's VIP check (`killall -0 named`) looks for it while the
//! region is up. It does nothing else (no DNS is served).

/// Runs forever as `named`.
pub fn run() -> anyhow::Result<()> {
    crate::util::set_comm("named");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
