//! Cron schedules for systemd timers: the five fields of crontab(5), in UTC, or one of its
//! `@daily`-style shorthands, turned into systemd.time(7)'s calendar events
//! (`[WEEKDAY] YEAR-MONTH-DAY HOUR:MINUTE:SECOND [TIMEZONE]`, each component `*` or a
//! comma-separated list of values), so a timer fires exactly when cron would. Cron is the form
//! operators already write for backups; systemd runs it. Where the two disagree the schedule is
//! refused rather than silently reinterpreted: crontab(5) runs a job when *either* a restricted
//! day of month or a restricted day of week matches, a calendar event only when both do.
//! Used by postgresql-ha's and maas-region's `backup-schedule`.

use std::fmt::Write as _;

/// What a schedule option expects, for a Blocked status.
pub const EXPECTED: &str = "expected a cron schedule \"MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK\" in UTC (e.g. \"0 2 * * *\" daily at 02:00, \"30 */6 * * *\" every 6 hours, \"0 3 * * sun\" on Sundays), @hourly, @daily, @weekly, @monthly or @yearly, or empty for no scheduled backups";

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// A parsed schedule: the values each field allows (sorted, deduplicated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Vec<u32>,
    months: Vec<u32>,
    /// 0 = Sunday, as cron counts.
    weekdays: Vec<u32>,
}

/// Parses the option; `Ok(None)` when empty (no scheduled backups). The error says what is
/// wrong, without the option's name or the expected form (the caller adds both).
pub fn parse(text: &str) -> Result<Option<Schedule>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // crontab(5): the nicknames and the lines they stand for.
    let expanded = match text.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        t if t.starts_with('@') => return Err(format!("{text:?} is not a cron nickname")),
        _ => text.to_string(),
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("{text:?} has {} fields, not 5", fields.len()));
    }
    let minutes = field(fields[0], "minute", 0, 59, &[])?;
    let hours = field(fields[1], "hour", 0, 23, &[])?;
    let days = field(fields[2], "day of month", 1, 31, &[])?;
    let months = field(fields[3], "month", 1, 12, &MONTHS)?;
    let dow_names = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    // crontab(5): 0 and 7 are both Sunday.
    let mut weekdays: Vec<u32> = field(fields[4], "day of week", 0, 7, &dow_names)?
        .into_iter()
        .map(|d| d % 7)
        .collect();
    weekdays.sort_unstable();
    weekdays.dedup();
    if days.len() < 31 && weekdays.len() < 7 {
        return Err(format!(
            "{text:?} restricts both the day of month and the day of week: cron runs when either matches, systemd only when both do; give one of them as *"
        ));
    }
    let s = Schedule {
        minutes,
        hours,
        days,
        months,
        weekdays,
    };
    if s.max_interval().is_none() {
        return Err(format!(
            "{text:?} never fires (no such day in those months)"
        ));
    }
    Ok(Some(s))
}

/// One field: comma-separated items, each `*`, `N` or `N-M`, optionally `/STEP`
/// (crontab(5); `N/STEP` is N to the field's maximum, as Vixie cron reads it). `names` are
/// the field's names from its minimum, lowercase.
fn field(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let value = |v: &str| -> Result<u32, String> {
        let lower = v.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(min + i as u32);
        }
        let n: u32 = v
            .parse()
            .map_err(|_| format!("{what} {v:?} is not a number"))?;
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{what} {n} is out of range {min}-{max}"))
        }
    };
    let mut out = Vec::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what} step {s:?} is not a positive number"))?;
                (r, Some(s))
            }
            None => (item, None),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None => {
                    let a = value(r)?;
                    (a, if step.is_some() { max } else { a })
                }
            },
        };
        if lo > hi {
            return Err(format!("{what} range {range:?} runs backwards"));
        }
        out.extend((lo..=hi).step_by(step.unwrap_or(1) as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `*` for every value of a field, else the list.
fn component(values: &[u32], all: usize, fmt: impl Fn(u32) -> String) -> String {
    if values.len() == all {
        "*".into()
    } else {
        values.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(",")
    }
}

impl Schedule {
    /// The systemd calendar event (systemd.time(7), "Calendar Events") that fires when cron
    /// would, in UTC.
    pub fn on_calendar(&self) -> String {
        let mut s = String::new();
        if self.weekdays.len() < 7 {
            s.push_str(&component(&self.weekdays, 7, |d| {
                WEEKDAYS[d as usize].to_string()
            }));
            s.push(' ');
        }
        let two = |v: u32| format!("{v:02}");
        let _ = write!(
            s,
            "*-{}-{} {}:{}:00 UTC",
            component(&self.months, 12, two),
            component(&self.days, 31, two),
            component(&self.hours, 24, two),
            component(&self.minutes, 60, two),
        );
        s
    }

    /// The longest time between two consecutive runs, in seconds, over eight years from
    /// 2024-01-01 (two leap days, and every weekday of every month many times over); `None`
    /// when it runs less than twice in them. The backup-age alert allows this much.
    pub fn max_interval(&self) -> Option<i64> {
        // 2024-01-01 (a Monday), days since the epoch.
        const START: i64 = 19_723;
        const DAYS: i64 = 2_923;
        // The runs within a day are the same on every day that runs.
        let mut within: Vec<i64> = Vec::new();
        for h in &self.hours {
            for m in &self.minutes {
                within.push(i64::from(*h) * 3600 + i64::from(*m) * 60);
            }
        }
        let inner = within.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let (first_in_day, last_in_day) = (*within.first()?, *within.last()?);
        let mut last_day: Option<i64> = None;
        let mut runs = 0usize;
        let mut gap = inner;
        for day in START..START + DAYS {
            let (_, m, d) = civil(day);
            // 1970-01-01 was a Thursday.
            let wd = ((day + 4).rem_euclid(7)) as u32;
            if !(self.months.contains(&m) && self.days.contains(&d) && self.weekdays.contains(&wd))
            {
                continue;
            }
            if let Some(l) = last_day {
                gap = gap.max((day - l) * 86_400 + first_in_day - last_in_day);
            }
            last_day = Some(day);
            runs += within.len();
        }
        (runs >= 2).then_some(gap)
    }
}

/// (year, month, day) of a day since the epoch (Howard Hinnant's civil_from_days).
fn civil(z: i64) -> (i64, u32, u32) {
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

    /// Seconds since the epoch of `YYYY-MM-DD` `HH:MM:SS` (UTC), as systemd-analyze prints them.
    fn epoch_of(date: &str, time: &str) -> Option<i64> {
        let d: Vec<i64> = date
            .split('-')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let t: Vec<i64> = time
            .split(':')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let (y, m) = if d[1] <= 2 {
            (d[0] - 1, d[1] + 9)
        } else {
            (d[0], d[1] - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + d[2] - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        Some(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
    }

    fn cal(t: &str) -> String {
        parse(t).unwrap().unwrap().on_calendar()
    }

    #[test]
    fn cron_lines_become_calendar_events() {
        assert_eq!(cal("0 2 * * *"), "*-*-* 02:00:00 UTC");
        assert_eq!(cal("30 */6 * * *"), "*-*-* 00,06,12,18:30:00 UTC");
        assert_eq!(cal("* * * * *"), "*-*-* *:*:00 UTC");
        assert_eq!(cal("0 3 * * sun"), "Sun *-*-* 03:00:00 UTC");
        assert_eq!(cal("0 3 * * 7,1-2"), "Sun,Mon,Tue *-*-* 03:00:00 UTC");
        assert_eq!(cal("15 1 1,15 jan-mar *"), "*-01,02,03-01,15 01:15:00 UTC");
        assert_eq!(cal("@weekly"), "Sun *-*-* 00:00:00 UTC");
        assert_eq!(cal("@daily"), "*-*-* 00:00:00 UTC");
        assert_eq!(cal("5/20 * * * *"), "*-*-* *:05,25,45:00 UTC");
        assert_eq!(parse("  "), Ok(None));
    }

    /// The next `n` minutes after `base` that crontab(5) runs the schedule at, day by day
    /// (with `*` in the day of month or the day of week, as `parse` requires).
    fn cron_runs(s: &Schedule, base: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut day = base.div_euclid(86_400);
        while out.len() < n {
            let (_, m, d) = civil(day);
            let wd = ((day + 4).rem_euclid(7)) as u32;
            if s.days.contains(&d) && s.months.contains(&m) && s.weekdays.contains(&wd) {
                for h in &s.hours {
                    for mi in &s.minutes {
                        let t = day * 86_400 + i64::from(h * 3600 + mi * 60);
                        if t > base && out.len() < n {
                            out.push(t);
                        }
                    }
                }
            }
            day += 1;
        }
        out
    }

    /// What real systemd makes of the calendar event the charm writes: its next `n` elapses
    /// after `base` (`systemd-analyze calendar`, systemd 250 and later), when it is here.
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
            return None;
        }
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("Next elapse:") || l.contains("Iter. #"))
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    let n = w.len();
                    epoch_of(w[n - 3], w[n - 2])
                })
                .collect(),
        )
    }

    #[test]
    fn systemd_runs_the_calendar_event_when_cron_would_run_the_line() {
        // 2026-12-07 13:20:00 UTC, a Monday.
        let base = 1_796_649_600;
        if systemd_elapses("daily", base, 1).is_none() {
            eprintln!("SKIPPED: needs systemd-analyze with --base-time (systemd 250 or later)");
            return;
        }
        for line in [
            "0 2 * * *",
            "30 */6 * * *",
            "*/20 * * * *",
            "0 3 * * sun",
            "0 3 * * 7,1-2",
            "15 1 1,15 jan-mar *",
            "0 0 29 2 *",
            "0 22 * * 1-5",
            "@weekly",
            "@monthly",
        ] {
            let s = parse(line).unwrap().unwrap();
            let cal = s.on_calendar();
            let systemd = systemd_elapses(&cal, base, 6)
                .unwrap_or_else(|| panic!("systemd refuses {cal:?} (from {line:?})"));
            assert_eq!(systemd, cron_runs(&s, base, 6), "{line} -> {cal}");
        }
    }

    #[test]
    fn what_cron_and_systemd_disagree_on_or_cannot_run_is_refused() {
        for (bad, why) in [
            ("0 2 * *", "4 fields"),
            ("60 2 * * *", "minute 60 is out of range 0-59"),
            ("0 2 1 * mon", "both the day of month and the day of week"),
            ("0 2 * * 8", "day of week 8"),
            ("*/0 * * * *", "step"),
            ("0 5-2 * * *", "backwards"),
            ("0 0 30 feb *", "never fires"),
            ("@reboot", "not a cron nickname"),
            ("0 2 * * funday", "not a number"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_longest_gap_is_what_the_schedule_promises() {
        let gap = |t: &str| parse(t).unwrap().unwrap().max_interval().unwrap();
        assert_eq!(gap("* * * * *"), 60);
        assert_eq!(gap("0 2 * * *"), 86_400);
        assert_eq!(gap("30 */6 * * *"), 6 * 3600);
        // 23:00 then 01:00 the next day, then 22 hours.
        assert_eq!(gap("0 1,23 * * *"), 22 * 3600);
        assert_eq!(gap("@weekly"), 7 * 86_400);
        // August 31st to October 31st (September has 30 days).
        assert_eq!(gap("0 0 31 * *"), 61 * 86_400);
        // Leap days only: four years.
        assert_eq!(gap("0 0 29 2 *"), 1_461 * 86_400);
    }
}
