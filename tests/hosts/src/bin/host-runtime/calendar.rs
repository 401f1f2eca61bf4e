//! Calendar events for timers' `OnCalendar=`, as systemd.time(7) "Calendar Events" defines
//! them: `[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [UTC]`, each date and time
//! component `*` or a comma-separated list of values, ranges `A..B` and repetitions `V/R`
//! (`A..B/R`), weekdays by name (abbreviated or not, `Mon..Fri`), the date defaulting to
//! `*-*-*`, the time to `00:00:00` and the seconds to `:00`, and the shorthands minutely,
//! hourly, daily, weekly, monthly, yearly, quarterly and semiannually (the table in the same
//! section). Times are UTC: hosts have no time zone of their own (systemd would use the local
//! zone, which on the machines Juju makes is UTC). Not supported, and refused with the reason:
//! other time zones, `~` (days from the end of a month) and fractional seconds.

/// The values one component allows; `None` is any.
type Set = Option<Vec<u32>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// 0 = Monday .. 6 = Sunday (systemd's order).
    weekdays: Set,
    years: Set,
    months: Set,
    days: Set,
    hours: Set,
    minutes: Set,
    seconds: Set,
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn weekday(w: &str) -> Option<u32> {
    let w = w.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == w || (w.len() == 3 && d.starts_with(&w)))
        .map(|i| i as u32)
}

/// `*`, or values: `V`, `A..B`, `V/R`, `A..B/R`, comma-separated.
fn component(text: &str, what: &str, min: u32, max: u32) -> Result<Set, String> {
    if text == "*" {
        return Ok(None);
    }
    if text.contains('~') {
        return Err(format!(
            "{what} {text:?}: '~' (from the end of the month) is not supported by the local model"
        ));
    }
    let num = |v: &str| -> Result<u32, String> {
        if v.contains('.') {
            return Err(format!(
                "{what} {v:?}: fractional values are not supported by the local model"
            ));
        }
        let n: u32 = v
            .parse()
            .map_err(|_| format!("{what} {v:?} is not a number"))?;
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{what} {n} is out of range {min}..{max}"))
        }
    };
    let mut out = Vec::new();
    for item in text.split(',') {
        let (range, rep) = match item.split_once('/') {
            Some((r, p)) => {
                let p: u32 =
                    p.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("{what} repetition {p:?} is not a positive number")
                    })?;
                (r, Some(p))
            }
            None => (item, None),
        };
        let (lo, hi) = match range.split_once("..") {
            Some((a, b)) => (num(a)?, num(b)?),
            // `*/R`: from the smallest value.
            None if range == "*" => (min, max),
            None => {
                let v = num(range)?;
                (v, if rep.is_some() { max } else { v })
            }
        };
        if lo > hi {
            return Err(format!("{what} range {range:?} runs backwards"));
        }
        out.extend((lo..=hi).step_by(rep.unwrap_or(1) as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

fn weekdays(text: &str) -> Result<Set, String> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let (a, b) = item.split_once("..").unwrap_or((item, item));
        let (lo, hi) = (
            weekday(a).ok_or_else(|| format!("{a:?} is not a weekday"))?,
            weekday(b).ok_or_else(|| format!("{b:?} is not a weekday"))?,
        );
        if lo > hi {
            return Err(format!("weekday range {item:?} runs backwards"));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

impl Calendar {
    pub fn parse(spec: &str) -> Result<Calendar, String> {
        let spec = spec.trim();
        let mut words: Vec<&str> = spec.split_whitespace().collect();
        if words.last().is_some_and(|w| w.eq_ignore_ascii_case("utc")) {
            words.pop();
        }
        let expanded = match words.as_slice() {
            [one] => match one.to_ascii_lowercase().as_str() {
                "minutely" => "*-*-* *:*:00",
                "hourly" => "*-*-* *:00:00",
                "daily" => "*-*-* 00:00:00",
                "monthly" => "*-*-01 00:00:00",
                "weekly" => "Mon *-*-* 00:00:00",
                "yearly" | "annually" => "*-01-01 00:00:00",
                "quarterly" => "*-01,04,07,10-01 00:00:00",
                "semiannually" => "*-01,07-01 00:00:00",
                _ => "",
            },
            _ => "",
        };
        if !expanded.is_empty() {
            words = expanded.split_whitespace().collect();
        }
        if words.is_empty() {
            return Err("empty calendar specification".into());
        }
        if let Some(last) = words.last() {
            if last.chars().any(|c| c.is_ascii_alphabetic())
                && words.len() > 1
                && weekday(last.split([',', '.']).next().unwrap_or("")).is_none()
            {
                return Err(format!(
                    "time zone {last:?}: only UTC is supported by the local model"
                ));
            }
        }
        let mut c = Calendar {
            weekdays: None,
            years: None,
            months: None,
            days: None,
            hours: Some(vec![0]),
            minutes: Some(vec![0]),
            seconds: Some(vec![0]),
        };
        let mut rest = words.as_slice();
        if let Some(first) = rest.first() {
            if first
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_alphabetic())
            {
                c.weekdays = weekdays(first)?;
                rest = &rest[1..];
            }
        }
        let mut date_seen = false;
        let mut time_seen = false;
        for w in rest {
            if w.contains(':') && !time_seen {
                time_seen = true;
                let parts: Vec<&str> = w.split(':').collect();
                if !(2..=3).contains(&parts.len()) {
                    return Err(format!("time {w:?}: expected HOUR:MINUTE[:SECOND]"));
                }
                c.hours = component(parts[0], "hour", 0, 23)?;
                c.minutes = component(parts[1], "minute", 0, 59)?;
                c.seconds = match parts.get(2) {
                    Some(s) => component(s, "second", 0, 59)?,
                    None => Some(vec![0]),
                };
            } else if w.contains('-') && !date_seen && !time_seen {
                date_seen = true;
                let parts: Vec<&str> = w.split('-').collect();
                let (y, m, d) = match parts.as_slice() {
                    [y, m, d] => (Some(*y), *m, *d),
                    [m, d] => (None, *m, *d),
                    _ => return Err(format!("date {w:?}: expected [YEAR-]MONTH-DAY")),
                };
                c.years = match y {
                    Some(y) => component(y, "year", 1970, 2199)?,
                    None => None,
                };
                c.months = component(m, "month", 1, 12)?;
                c.days = component(d, "day", 1, 31)?;
            } else {
                return Err(format!("{w:?} in {spec:?} is not a date, a time or UTC"));
            }
        }
        if !date_seen && !time_seen && c.weekdays.is_none() {
            return Err(format!("{spec:?} is not a calendar specification"));
        }
        Ok(c)
    }

    /// The first time strictly after `after` (seconds since the epoch) that matches, within
    /// the next eight years (enough for every combination but a weekday of a leap day).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let ok = |s: &Set, v: u32| s.as_ref().is_none_or(|l| l.contains(&v));
        let all = |s: &Set, max: u32, min: u32| -> Vec<u32> {
            s.clone().unwrap_or_else(|| (min..=max).collect())
        };
        let (hours, minutes, seconds) = (
            all(&self.hours, 23, 0),
            all(&self.minutes, 59, 0),
            all(&self.seconds, 59, 0),
        );
        let first_day = after.div_euclid(86_400);
        for day in first_day..first_day + 8 * 366 {
            let (y, m, d) = civil(day);
            // 1970-01-01 was a Thursday (3 when Monday is 0).
            let wd = (day + 3).rem_euclid(7) as u32;
            if !(ok(&self.years, y as u32)
                && ok(&self.months, m)
                && ok(&self.days, d)
                && ok(&self.weekdays, wd))
            {
                continue;
            }
            for h in &hours {
                for mi in &minutes {
                    for s in &seconds {
                        let t = day * 86_400 + i64::from(*h * 3600 + *mi * 60 + *s);
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
        }
        None
    }
}

/// (year, month, day) of a day since the epoch (Howard Hinnant's civil_from_days).
pub fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-07 13:20:00 UTC, a Monday.
    const T: i64 = 1_796_649_600;

    fn next(spec: &str, after: i64) -> i64 {
        Calendar::parse(spec).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn examples_of_systemd_time_7() {
        assert_eq!(civil(T / 86_400), (2026, 12, 7));
        assert_eq!(T % 86_400, 13 * 3600 + 20 * 60);
        // The next full minute, hour, day.
        assert_eq!(next("minutely", T), T + 60);
        assert_eq!(next("*:*:00", T), T + 60);
        assert_eq!(next("hourly", T), T + 40 * 60);
        assert_eq!(next("daily", T), T - (13 * 3600 + 20 * 60) + 86_400);
        // "Mon *-*-* 00:00:00": a Monday, so the next one is a week from midnight today.
        let midnight = T - (13 * 3600 + 20 * 60);
        assert_eq!(next("weekly", T), midnight + 7 * 86_400);
        assert_eq!(next("Tue,Sun *-*-* 02:00 UTC", T), midnight + 86_400 + 7200);
        assert_eq!(next("Sat..Sun 02:00", T), midnight + 5 * 86_400 + 7200);
        // Lists, repetition and ranges.
        assert_eq!(
            next("*-*-* 00,06,12,18:30:00 UTC", T),
            midnight + 18 * 3600 + 1800
        );
        assert_eq!(next("*:0/15", T), T + 10 * 60);
        assert_eq!(next("*-*-* 8..18/2:00", T), midnight + 14 * 3600);
        assert_eq!(next("*:*:*", T), T + 1);
        assert_eq!(next("*:*:0/5", T + 1), T + 5);
        // Dates: the year may be left out; monthly is the first at midnight.
        assert_eq!(next("monthly", T), 1_798_761_600); // 2027-01-01
        assert_eq!(next("12-25 06:00", T), midnight + 18 * 86_400 + 6 * 3600);
        assert_eq!(next("daily UTC", T), midnight + 86_400);
    }

    /// Seconds since the epoch of `YYYY-MM-DD HH:MM:SS` (UTC).
    fn epoch(date: &str, time: &str) -> i64 {
        let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
        let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
        let (y, m) = if d[1] <= 2 {
            (d[0] - 1, d[1] + 9)
        } else {
            (d[0], d[1] - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * m + 2) / 5 + d[2] - 1;
        (era * 146_097 + doe - 719_468) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]
    }

    /// The elapses real systemd computes (`systemd-analyze calendar --iterations --base-time`,
    /// systemd 250 and later), when it is on this machine.
    fn systemd_elapses(spec: &str, base: i64, n: usize) -> Option<Vec<i64>> {
        let out = std::process::Command::new("systemd-analyze")
            .args([
                "calendar",
                &format!("--iterations={n}"),
                &format!("--base-time=@{base}"),
                spec,
            ])
            .env("TZ", "UTC")
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "systemd-analyze calendar {spec:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("Next elapse:") || l.contains("Iter. #"))
                .map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    // ... : Mon 2026-12-07 13:30:00 UTC
                    let n = w.len();
                    epoch(w[n - 3], w[n - 2])
                })
                .collect(),
        )
    }

    #[test]
    fn elapses_match_real_systemds() {
        let specs = [
            "*-*-* 00,06,12,18:30:00 UTC",
            "Sun,Mon,Tue *-*-* 03:00:00 UTC",
            "*-01,02,03-01,15 01:15:00 UTC",
            "*-*-* *:*:00 UTC",
            "*-*-* *:05,25,45:00 UTC",
            "Sat..Sun 02:00",
            "*:0/15",
            "*-*-* 8..18/2:00",
            "weekly",
            "monthly",
            "quarterly",
            "*-02-29 12:00",
            "Fri *-*-13 00:00:00 UTC",
        ];
        if systemd_elapses("daily", T, 1).is_none() {
            eprintln!("SKIPPED: needs systemd-analyze with --base-time (systemd 250 or later)");
            return;
        }
        for spec in specs {
            let want = systemd_elapses(spec, T, 5).unwrap();
            assert_eq!(want.len(), 5, "{spec}");
            let c = Calendar::parse(spec).unwrap();
            let mut got = Vec::new();
            let mut after = T;
            for _ in 0..5 {
                after = c.next_after(after).unwrap();
                got.push(after);
            }
            assert_eq!(got, want, "{spec}");
        }
    }

    #[test]
    fn what_the_local_model_does_not_do_is_refused() {
        for (bad, why) in [
            ("*-*~01", "'~'"),
            ("*:*:0.5", "fractional"),
            ("daily Europe/Berlin", "only UTC"),
            ("*-13-01", "month 13"),
            ("Funday", "not a weekday"),
            ("", "empty"),
        ] {
            let e = Calendar::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(Calendar::parse("2027-02-29").unwrap().next_after(T), None);
    }
}
