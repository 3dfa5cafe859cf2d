//! Retention arithmetic.
//!
//! The seed used `find -mtime +N`: a file's age is floored to whole days and must be *greater* than N, so with
//! N = 15 a file goes once it is 16 days old. We keep that exactly for a whole number of units, and apply the same
//! idea at one-second resolution for fractional values. Every retention is reduced to one number, the minimum age in
//! whole seconds at which a file is expired, so the per-file test is a single comparison.

use std::fmt;

pub const MINUTE: u64 = 60;
pub const HOUR: u64 = 3600;
pub const DAY: u64 = 86_400;

/// The size cap never shortens the retention below this: files younger than an hour may still be written to.
pub const CAP_FLOOR: u64 = HOUR;

/// Longest retention accepted (100 years): larger values are surely typos, and this keeps the arithmetic far from
/// overflow.
const MAX_SECS: f64 = 100.0 * 366.0 * DAY as f64;

/// A retention as given (for messages) and as applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The text the user gave, e.g. `15`, `0.5`, `90m`.
    pub spec: String,
    /// A file whose age is at least this many seconds is expired.
    pub min_age: u64,
}

impl Retention {
    /// Parses a number of days (`15`, `0.5`).
    pub fn days(text: &str) -> Result<Retention, String> {
        Retention::parse(text, DAY)
    }

    /// Parses a number of minutes (`90`, `1.5`).
    pub fn minutes(text: &str) -> Result<Retention, String> {
        Retention::parse(text, MINUTE)
    }

    /// Parses a number N of `unit`s, optionally fractional; no unit suffix is accepted (is `6M` six months or six
    /// minutes?), the unit is the flag's or the variable's.
    ///
    /// - A whole number N: expired when `floor(age / unit) > N` (find's `-mtime +N`, `-mmin +N`), i.e. when
    ///   `age >= (N + 1) * unit`.
    /// - A fractional N: expired when `floor(age in seconds) > N * unit`, i.e. `age >= floor(N * unit) + 1` s.
    fn parse(text: &str, unit: u64) -> Result<Retention, String> {
        let t = text.trim();
        let name = if unit == DAY { "days" } else { "minutes" };
        let digits = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let suffix = t[digits..].trim_start();
        if digits > 0 && suffix.starts_with(char::is_alphabetic) {
            let e_g = if unit == DAY {
                "15 or 0.5 (for minutes use --retention-minutes)"
            } else {
                "90 or 1.5"
            };
            return Err(format!(
                "no unit suffix is accepted ('{suffix}'): give a number of {name}, e.g. {e_g}"
            ));
        }
        let bad = || format!("expected a number of {name}, optionally fractional, e.g. 15 or 0.5");
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        let value: f64 = t.parse().map_err(|_| bad())?;
        let secs = value * unit as f64;
        if secs > MAX_SECS {
            return Err("longer than 100 years".to_string());
        }
        let min_age = if value.fract() == 0.0 {
            (value as u64 + 1) * unit
        } else {
            secs.floor() as u64 + 1
        };
        Ok(Retention {
            spec: format!("{t} {name}"),
            min_age,
        })
    }

    pub fn from_min_age(min_age: u64) -> Retention {
        Retention {
            spec: human(min_age),
            min_age,
        }
    }

    /// Is a file with this mtime expired at `now`? Ages are compared at nanosecond precision, so "at least N+1 days
    /// old" is exact; a file from the future is never expired.
    pub fn expired(&self, now: Timestamp, mtime: Timestamp) -> bool {
        now.nanos() - mtime.nanos() >= self.min_age as i128 * 1_000_000_000
    }

    /// The next shorter retention tried by the size cap: a day shorter while above a day, then an hour shorter,
    /// never below [`CAP_FLOOR`]. `None` once at the floor.
    pub fn shorter(min_age: u64) -> Option<u64> {
        if min_age <= CAP_FLOOR {
            return None;
        }
        let step = if min_age > DAY { DAY } else { HOUR };
        Some(min_age.saturating_sub(step).max(CAP_FLOOR))
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (files at least {} old)",
            self.spec,
            human(self.min_age)
        )
    }
}

/// `16d`, `23h`, `91m`, `43201s`: the largest unit that divides exactly.
pub fn human(secs: u64) -> String {
    for (unit, suffix) in [(DAY, "d"), (HOUR, "h"), (MINUTE, "m")] {
        if secs >= unit && secs % unit == 0 {
            return format!("{}{suffix}", secs / unit);
        }
    }
    format!("{secs}s")
}

/// Seconds and nanoseconds since the epoch, as in `struct timespec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    pub secs: i64,
    pub nsecs: i64,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        Timestamp {
            secs: ts.tv_sec,
            nsecs: ts.tv_nsec,
        }
    }

    fn nanos(self) -> i128 {
        self.secs as i128 * 1_000_000_000 + self.nsecs as i128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp {
        secs: 1_800_000_000,
        nsecs: 500_000_000,
    };

    fn aged(secs: i64) -> Timestamp {
        Timestamp {
            secs: NOW.secs - secs,
            nsecs: NOW.nsecs,
        }
    }

    #[test]
    fn whole_days_follow_find_mtime() {
        let r = Retention::days("15").unwrap();
        assert_eq!(r.min_age, 16 * DAY);
        assert!(
            !r.expired(NOW, aged(15 * DAY as i64)),
            "exactly N days is kept"
        );
        assert!(
            !r.expired(NOW, aged(15 * DAY as i64 + 1)),
            "N days + 1 s floors to N: kept"
        );
        assert!(
            !r.expired(NOW, aged(16 * DAY as i64 - 1)),
            "one second short of N+1 days: kept"
        );
        assert!(r.expired(NOW, aged(16 * DAY as i64)), "N+1 days: expired");
        assert!(r.expired(NOW, aged(400 * DAY as i64)));
    }

    #[test]
    fn nanoseconds_count_at_the_boundary() {
        let r = Retention::days("1").unwrap();
        let just_short = Timestamp {
            secs: NOW.secs - 2 * DAY as i64,
            nsecs: NOW.nsecs + 1,
        };
        assert!(!r.expired(NOW, just_short));
        let exact = Timestamp {
            secs: NOW.secs - 2 * DAY as i64,
            nsecs: NOW.nsecs,
        };
        assert!(r.expired(NOW, exact));
    }

    #[test]
    fn zero_days_means_older_than_a_day() {
        let r = Retention::days("0").unwrap();
        assert!(!r.expired(NOW, aged(DAY as i64 - 1)));
        assert!(r.expired(NOW, aged(DAY as i64)));
    }

    #[test]
    fn future_files_are_kept() {
        let r = Retention::days("0.00001").unwrap();
        assert_eq!(r.min_age, 1);
        assert!(!r.expired(NOW, aged(-3600)));
        assert!(!r.expired(NOW, NOW));
        assert!(r.expired(NOW, aged(1)));
    }

    #[test]
    fn fractional_days_compare_whole_seconds() {
        let r = Retention::days("0.5").unwrap();
        assert_eq!(r.min_age, 43_201);
        assert!(!r.expired(NOW, aged(43_200)), "exactly half a day is kept");
        assert!(r.expired(NOW, aged(43_201)));
        assert_eq!(Retention::days("1.5").unwrap().min_age, 129_601);
        // An integral value written with a fraction is the whole-number rule.
        assert_eq!(Retention::days("2.0").unwrap().min_age, 3 * DAY);
    }

    #[test]
    fn minutes_follow_find_mmin() {
        let r = Retention::minutes("90").unwrap();
        assert_eq!(r.min_age, 91 * 60, "like find -mmin +90");
        assert!(!r.expired(NOW, aged(90 * 60 + 59)));
        assert!(r.expired(NOW, aged(91 * 60)));
        assert_eq!(r.spec, "90 minutes");
        assert_eq!(Retention::minutes("0").unwrap().min_age, 60);
        assert_eq!(Retention::minutes("1.5").unwrap().min_age, 91);
        assert_eq!(Retention::days(" 7 ").unwrap().min_age, 8 * DAY);
        assert_eq!(Retention::days("7").unwrap().spec, "7 days");
    }

    #[test]
    fn unit_suffixes_are_refused() {
        // `6M`: six months or six minutes? Neither: the unit is the flag's.
        for (bad, suffix) in [
            ("6M", "'M'"),
            ("6m", "'m'"),
            ("90m", "'m'"),
            ("12h", "'h'"),
            ("2d", "'d'"),
            ("5w", "'w'"),
            ("1y", "'y'"),
            ("15 days", "'days'"),
            ("0.5D", "'D'"),
        ] {
            let e = Retention::days(bad).unwrap_err();
            assert!(
                e.contains("no unit suffix") && e.contains(suffix),
                "{bad}: {e}"
            );
            assert!(e.contains("--retention-minutes"), "{e}");
            let e = Retention::minutes(bad).unwrap_err();
            assert!(e.contains("number of minutes"), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "x",
            "-1",
            "1e3",
            "inf",
            "NaN",
            "1.2.3",
            "m",
            "99999999999",
            "1,5",
            "..",
            ".",
        ] {
            assert!(Retention::days(bad).is_err(), "{bad:?} accepted");
            assert!(Retention::minutes(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cap_steps_go_by_days_then_hours_to_the_floor() {
        let mut steps = vec![];
        let mut t = 3 * DAY;
        while let Some(next) = Retention::shorter(t) {
            steps.push(next);
            t = next;
        }
        assert_eq!(steps[0], 2 * DAY);
        assert_eq!(steps[1], DAY);
        assert_eq!(steps[2], 23 * HOUR);
        assert_eq!(*steps.last().unwrap(), CAP_FLOOR);
        assert_eq!(steps.len(), 2 + 23);
        assert_eq!(Retention::shorter(91 * MINUTE), Some(CAP_FLOOR));
        assert_eq!(Retention::shorter(CAP_FLOOR), None);
        assert_eq!(Retention::shorter(60), None);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(16 * DAY), "16d");
        assert_eq!(human(13 * HOUR), "13h");
        assert_eq!(human(91 * 60), "91m");
        assert_eq!(human(43_201), "43201s");
    }
}
