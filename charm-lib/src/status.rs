//! Layer 4: collect-status. Handlers report what they see; one place picks the winner and
//! calls `status-set` once per hook, so no handler's Active overwrites another's Blocked.

use std::fmt;

/// Workload status kinds, in Juju's priority order (highest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusKind {
    /// Set by Juju on a failed hook; a charm cannot set it, but it outranks everything.
    Error,
    /// Needs a human.
    Blocked,
    /// Working on it.
    Maintenance,
    /// Waiting for something outside this unit.
    Waiting,
    /// Doing its job.
    Active,
    /// Nothing known.
    Unknown,
}

impl StatusKind {
    /// Higher wins: error > blocked > maintenance > waiting > active > unknown.
    pub fn priority(self) -> u8 {
        match self {
            StatusKind::Error => 5,
            StatusKind::Blocked => 4,
            StatusKind::Maintenance => 3,
            StatusKind::Waiting => 2,
            StatusKind::Active => 1,
            StatusKind::Unknown => 0,
        }
    }

    /// The name `status-set` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Error => "error",
            StatusKind::Blocked => "blocked",
            StatusKind::Maintenance => "maintenance",
            StatusKind::Waiting => "waiting",
            StatusKind::Active => "active",
            StatusKind::Unknown => "unknown",
        }
    }

    /// Parses a name as `status-get` prints it.
    pub fn parse(s: &str) -> Option<StatusKind> {
        [
            StatusKind::Error,
            StatusKind::Blocked,
            StatusKind::Maintenance,
            StatusKind::Waiting,
            StatusKind::Active,
            StatusKind::Unknown,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A status and its message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Status {
    /// The kind.
    pub kind: StatusKind,
    /// The message shown by `juju status`.
    pub message: String,
}

impl Status {
    /// Active with a message.
    pub fn active(message: impl Into<String>) -> Status {
        Status {
            kind: StatusKind::Active,
            message: message.into(),
        }
    }
    /// Blocked: a human must act; the message says what to do.
    pub fn blocked(message: impl Into<String>) -> Status {
        Status {
            kind: StatusKind::Blocked,
            message: message.into(),
        }
    }
    /// Maintenance: the unit is busy.
    pub fn maintenance(message: impl Into<String>) -> Status {
        Status {
            kind: StatusKind::Maintenance,
            message: message.into(),
        }
    }
    /// Waiting for something outside this unit.
    pub fn waiting(message: impl Into<String>) -> Status {
        Status {
            kind: StatusKind::Waiting,
            message: message.into(),
        }
    }
    /// Unknown, the status of a fresh unit.
    pub fn unknown() -> Status {
        Status {
            kind: StatusKind::Unknown,
            message: String::new(),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            write!(f, "{}: {}", self.kind.as_str(), self.message)
        }
    }
}

/// The statuses reported during one hook.
#[derive(Debug, Default, Clone)]
pub struct StatusCollector {
    unit: Vec<Status>,
    app: Vec<Status>,
}

impl StatusCollector {
    /// Reports a unit status.
    pub fn unit(&mut self, status: Status) {
        self.unit.push(status);
    }

    /// Reports an application status (only the leader's is set).
    pub fn app(&mut self, status: Status) {
        self.app.push(status);
    }

    /// The unit status to set, if any was reported.
    pub fn unit_winner(&self) -> Option<&Status> {
        winner(&self.unit)
    }

    /// The application status to set, if any was reported.
    pub fn app_winner(&self) -> Option<&Status> {
        winner(&self.app)
    }
}

/// The highest-priority status; among equals, the first reported.
pub fn winner(statuses: &[Status]) -> Option<&Status> {
    statuses
        .iter()
        .fold(None, |best: Option<&Status>, s| match best {
            Some(b) if b.kind.priority() >= s.kind.priority() => Some(b),
            _ => Some(s),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_order() {
        let all = [
            Status::active("a"),
            Status::waiting("w"),
            Status {
                kind: StatusKind::Unknown,
                message: "u".into(),
            },
            Status::maintenance("m"),
            Status::blocked("b"),
        ];
        assert_eq!(winner(&all).unwrap().kind, StatusKind::Blocked);
        assert_eq!(winner(&all[..2]).unwrap().kind, StatusKind::Waiting);
        assert_eq!(winner(&all[..4]).unwrap().kind, StatusKind::Maintenance);
        let with_error = [
            Status::blocked("b"),
            Status {
                kind: StatusKind::Error,
                message: "e".into(),
            },
        ];
        assert_eq!(winner(&with_error).unwrap().kind, StatusKind::Error);
        assert!(winner(&[]).is_none());
    }

    #[test]
    fn first_of_equals_wins() {
        let s = [
            Status::blocked("first"),
            Status::blocked("second"),
            Status::active("x"),
        ];
        assert_eq!(winner(&s).unwrap().message, "first");
    }

    #[test]
    fn collector_keeps_unit_and_app_apart() {
        let mut c = StatusCollector::default();
        c.unit(Status::active("ok"));
        c.app(Status::blocked("set vip"));
        c.unit(Status::waiting("db"));
        assert_eq!(c.unit_winner(), Some(&Status::waiting("db")));
        assert_eq!(c.app_winner(), Some(&Status::blocked("set vip")));
    }

    #[test]
    fn names_round_trip() {
        for k in [
            StatusKind::Error,
            StatusKind::Blocked,
            StatusKind::Maintenance,
            StatusKind::Waiting,
            StatusKind::Active,
            StatusKind::Unknown,
        ] {
            assert_eq!(StatusKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(StatusKind::parse("fine"), None);
    }
}
