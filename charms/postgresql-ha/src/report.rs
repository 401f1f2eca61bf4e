//! The statuses a step of the reconcile found, handed back to its caller as a value.
//!
//! `Context::status` needs `&mut Context`, while the steps read the model through `&Context`
//! and hold relations borrowed from it; returning what they found lets the reconcile hand it
//! all to the Context once the relations are gone, with no collector passed down the calls.
//!
//! A step that fails returns its error, not what it found before failing: a failed hook sets
//! no status at all, and an action that fails reports the error to its caller.

use charm_lib::Status;

/// Statuses in the order they were found: the unit's status is the first of the highest
/// priority, so the order is kept when reports are merged.
#[derive(Debug, Default)]
#[must_use = "a status that is not reported changes what the unit shows"]
pub struct Report(Vec<Status>);

/// A step's value with what it reported.
pub type Reported<T> = (T, Report);

impl Report {
    /// A report of one status.
    pub fn of(status: Status) -> Report {
        Report(vec![status])
    }

    /// Adds a status after the ones found so far.
    pub fn add(&mut self, status: Status) {
        self.0.push(status);
    }

    /// Adds what another step reported, after the ones found so far.
    pub fn merge(&mut self, other: Report) {
        self.0.extend(other.0);
    }

    /// Keeps what a step reported and gives back its value.
    pub fn take<T>(&mut self, (value, report): Reported<T>) -> T {
        self.merge(report);
        value
    }

    /// This report with a step's value, as the step returns it.
    pub fn with<T>(self, value: T) -> Reported<T> {
        (value, self)
    }

    /// The statuses, in the order they were found.
    pub fn into_statuses(self) -> Vec<Status> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_reports_keep_the_order_the_statuses_were_found_in() {
        let mut r = Report::of(Status::waiting("a"));
        let v = r.take(Report::of(Status::waiting("b")).with(7));
        r.add(Status::waiting("c"));
        assert_eq!(v, 7);
        let messages: Vec<String> = r.into_statuses().into_iter().map(|s| s.message).collect();
        assert_eq!(messages, ["a", "b", "c"]);
    }
}
