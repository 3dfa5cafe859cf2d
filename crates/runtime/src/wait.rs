//! Waiting for the database and the broker: probe, then sleep in `sigtimedwait` (so a SIGTERM ends the wait at
//! once and nothing spins), with a progress line at least every 10 s.

use crate::init::Signals;
use crate::probe::Outcome;
use crate::say;
use crate::url::Target;
use std::time::{Duration, Instant};

/// Pause between attempts when `CONNECTION_CHECK_SLEEP_TIME` is unset: short enough to notice readiness within
/// half a second, long enough that waiting costs nothing measurable.
pub const DEFAULT_SLEEP: Duration = Duration::from_millis(250);
pub const PROGRESS_EVERY: Duration = Duration::from_secs(9);

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `None`: wait forever (the seed's behaviour); `Some(n)`: give up after n failed attempts.
    pub max_count: Option<u32>,
    pub sleep: Duration,
}

impl Policy {
    /// From `CONNECTION_CHECK_MAX_COUNT` / `CONNECTION_CHECK_SLEEP_TIME`. `Ok(None)` means waiting is disabled.
    pub fn from_env(max: Option<&str>, sleep: Option<&str>) -> Result<Option<Policy>, String> {
        let max_count =
            match max.map(str::trim).filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => match s.parse::<u32>() {
                    Ok(0) => return Ok(None),
                    Ok(n) => Some(n),
                    Err(_) => return Err(
                        "CONNECTION_CHECK_MAX_COUNT must be a whole number (0 disables waiting)"
                            .into(),
                    ),
                },
            };
        let sleep = match sleep.map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_SLEEP,
            Some(s) => match s.parse::<f64>() {
                Ok(f) if f.is_finite() && (0.0..=3600.0).contains(&f) => Duration::from_secs_f64(f),
                _ => {
                    return Err(
                        "CONNECTION_CHECK_SLEEP_TIME must be a number of seconds from 0 to 3600"
                            .into(),
                    )
                }
            },
        };
        Ok(Some(Policy { max_count, sleep }))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    Ready,
    /// The one line to print before exiting non-zero.
    GaveUp(String),
    /// A terminating signal arrived while waiting.
    Interrupted(libc::c_int),
}

const STOP: &[libc::c_int] = &[libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP];

/// Sleep `d` unless a stopping signal arrives (other signals, e.g. SIGCHLD of a reaped orphan, are absorbed).
pub fn pause(sigs: &Signals, d: Duration) -> Option<libc::c_int> {
    let end = Instant::now() + d;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match sigs.wait(left) {
            Some(s) if STOP.contains(&s) => return Some(s),
            Some(libc::SIGCHLD) => {
                crate::init::reap(0, &Default::default());
            }
            _ => {}
        }
    }
}

/// Wait until any of `targets` is ready. `what` is "database"/"broker", `var` the variable they came from.
pub fn wait_for(
    what: &str,
    var: &str,
    targets: &[Target],
    policy: &Policy,
    sigs: &Signals,
    probe: &mut dyn FnMut(&Target) -> Outcome,
) -> Waited {
    let start = Instant::now();
    let mut last_line: Option<Instant> = None;
    let names = targets
        .iter()
        .map(|t| t.endpoint.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut reason = String::new();
        for t in targets {
            match probe(t) {
                Outcome::Ready => {
                    say!(
                        "{what} {t} is ready ({var}, after {:.1} s)",
                        start.elapsed().as_secs_f64()
                    );
                    return Waited::Ready;
                }
                Outcome::NotReady(r) => {
                    if reason.is_empty() {
                        reason = r
                    }
                }
            }
        }
        if policy.max_count.is_some_and(|m| attempt >= m) {
            return Waited::GaveUp(format!(
                "gave up waiting for the {what} at {names} ({var}) after {attempt} attempts in {:.1} s: {reason}",
                start.elapsed().as_secs_f64()
            ));
        }
        if last_line.is_none_or(|l| l.elapsed() >= PROGRESS_EVERY) {
            say!(
                "waiting for the {what} at {names} ({var}): {reason} ({:.0} s so far)",
                start.elapsed().as_secs_f64()
            );
            last_line = Some(Instant::now());
        }
        if let Some(sig) = pause(sigs, policy.sleep) {
            return Waited::Interrupted(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (
        Option<&'static str>,
        Option<&'static str>,
        std::result::Result<Option<Policy>, ()>,
    );

    #[test]
    fn policy_table() {
        let d = |ms| Duration::from_millis(ms);
        let cases: Vec<Case> = vec![
            (
                None,
                None,
                Ok(Some(Policy {
                    max_count: None,
                    sleep: DEFAULT_SLEEP,
                })),
            ),
            (Some("0"), None, Ok(None)),
            (Some("0"), Some("junk"), Ok(None)),
            (
                Some("20"),
                Some("3"),
                Ok(Some(Policy {
                    max_count: Some(20),
                    sleep: d(3000),
                })),
            ),
            (
                Some(" 5 "),
                Some("0.1"),
                Ok(Some(Policy {
                    max_count: Some(5),
                    sleep: d(100),
                })),
            ),
            (
                Some(""),
                Some(""),
                Ok(Some(Policy {
                    max_count: None,
                    sleep: DEFAULT_SLEEP,
                })),
            ),
            (Some("-1"), None, Err(())),
            (Some("x"), None, Err(())),
            (None, Some("-1"), Err(())),
            (None, Some("NaN"), Err(())),
            (None, Some("1e9"), Err(())),
        ];
        for (m, s, want) in cases {
            assert_eq!(Policy::from_env(m, s).map_err(|_| ()), want, "{m:?} {s:?}");
        }
    }
}
