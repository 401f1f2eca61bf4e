//! A `log` backend that sends records to `juju-log`, with levels mapped.
//!
//! `log` allows one global logger per process, but tests run many hooks on many threads. So
//! the global logger forwards each record to a sink set per thread for the duration of a
//! hook: `juju-log` in production, the testing model's log list in tests.

use crate::tools::LogLevel;
use std::cell::RefCell;
use std::sync::Once;

type Sink = Box<dyn Fn(LogLevel, &str)>;

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

struct Forwarder;

impl log::Log for Forwarder {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let message = record.args().to_string();
        SINK.with(|s| {
            // A record logged while the sink itself runs (say, from inside a tool call) would
            // re-enter the RefCell; such records are dropped rather than deadlock.
            if let Ok(sink) = s.try_borrow() {
                if let Some(f) = sink.as_ref() {
                    f(juju_level(record.level()), &message);
                }
            }
        });
    }

    fn flush(&self) {}
}

/// Maps a `log` level to a `juju-log` level.
pub fn juju_level(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warning,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Trace => LogLevel::Trace,
    }
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another logger may already be installed by the embedding program; then ours is not.
        if log::set_logger(&Forwarder).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
}

/// Runs `f` with `log::` records on this thread going to `sink`.
pub fn with_sink<R>(sink: Sink, f: impl FnOnce() -> R) -> R {
    install();
    let previous = SINK.with(|s| s.replace(Some(sink)));
    let out = f();
    SINK.with(|s| *s.borrow_mut() = previous);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn records_reach_the_sink_with_mapped_levels() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s2 = seen.clone();
        with_sink(
            Box::new(move |l, m| s2.borrow_mut().push((l, m.to_string()))),
            || {
                log::warn!("disk {}% full", 91);
                log::error!("boom");
                log::info!("hello");
            },
        );
        log::info!("after the hook: dropped");
        assert_eq!(
            *seen.borrow(),
            vec![
                (LogLevel::Warning, "disk 91% full".into()),
                (LogLevel::Error, "boom".into()),
                (LogLevel::Info, "hello".into())
            ]
        );
    }
}
