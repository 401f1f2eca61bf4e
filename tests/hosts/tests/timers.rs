//! Timers under the host's systemctl (systemd.timer(5), OnCalendar= as systemd.time(7) reads
//! it): a started timer starts its service at each calendar elapse and no other time, stopping
//! it stops the elapses, and an enabled timer (WantedBy=timers.target) is back after a boot.

mod common;
use common::*;

/// Appends the second it ran at; a run is quick, so every elapse is one line.
const SERVICE: &str = "[Unit]
Description=stamp
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'date +%%s >> /var/lib/stamps'
";

/// Every third second of the minute (0, 3, 6, ...).
const TIMER: &str = "[Unit]
Description=stamp every 3 s
[Timer]
OnCalendar=*-*-* *:*:0/3 UTC
[Install]
WantedBy=timers.target
";

fn stamps(h: &hosts::Host) -> Vec<i64> {
    sh(h, "cat /var/lib/stamps 2>/dev/null || true")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_timer_starts_its_service_at_each_calendar_elapse_and_comes_back_after_a_boot() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("htmr1", 55, None);
    let a = t.add("cron");
    write(&a, "/etc/systemd/system/stamp.service", SERVICE);
    write(&a, "/etc/systemd/system/stamp.timer", TIMER);
    sh(
        &a,
        "systemctl daemon-reload && systemctl enable --now stamp.timer",
    );
    assert_eq!(sh(&a, "systemctl is-active stamp.timer"), "active");
    assert_eq!(sh(&a, "systemctl is-enabled stamp.timer"), "enabled");
    assert!(a
        .path("/etc/systemd/system/timers.target.wants/stamp.timer")
        .symlink_metadata()
        .is_ok());
    let next = sh(
        &a,
        "systemctl show -p NextElapseUSecRealtime --value stamp.timer",
    );
    let next: i64 = next
        .trim_start_matches('@')
        .parse()
        .unwrap_or_else(|_| panic!("next elapse {next:?}"));
    assert_eq!(next % 3, 0, "the next elapse is a multiple of 3 s: {next}");

    // Act: three elapses.
    let runs = wait_for(30, "three runs of stamp.service", || {
        let s = stamps(&a);
        (s.len() >= 3).then_some(s)
    });
    // Assert: one run per elapse, each at a multiple of three seconds (or in the second after
    // it, on a loaded machine: the service's process starts after the elapse).
    for w in runs.windows(2) {
        assert!(w[1] >= w[0] + 2, "one run per elapse: {runs:?}");
    }
    assert!(
        runs.iter().all(|s| s % 3 != 2),
        "runs only at the calendar's seconds: {runs:?}"
    );
    let last = sh(&a, "systemctl show -p LastTriggerUSec --value stamp.timer");
    assert!(last.starts_with('@'), "{last}");

    // Stopped, it elapses no more (two elapses' worth of waiting, a bounded wait on a
    // deadline rather than a fixed sleep: the check is that nothing happens).
    sh(&a, "systemctl stop stamp.timer");
    assert_eq!(
        sh(&a, "systemctl is-active stamp.timer || true"),
        "inactive"
    );
    let before = stamps(&a).len();
    let quiet_until = std::time::Instant::now() + std::time::Duration::from_secs(7);
    while std::time::Instant::now() < quiet_until {
        assert_eq!(
            stamps(&a).len(),
            before,
            "a stopped timer started its service"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // Enabled, it is back after a power cut and a boot.
    a.stop().unwrap();
    a.start().unwrap();
    assert_eq!(sh(&a, "systemctl is-system-running --wait"), "running");
    assert_eq!(sh(&a, "systemctl is-active stamp.timer"), "active");
    wait_for(20, "a run after the boot", || {
        (stamps(&a).len() > before).then_some(())
    });

    // A timer whose service cannot be loaded is refused, as timer.c timer_start does.
    write(
        &a,
        "/etc/systemd/system/orphan.timer",
        "[Timer]\nOnCalendar=minutely\n",
    );
    assert_ne!(
        code(
            &a,
            "systemctl daemon-reload && systemctl start orphan.timer"
        ),
        0
    );
    t.destroy();
}
