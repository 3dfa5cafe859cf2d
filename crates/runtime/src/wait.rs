//! Waiting for the database and the broker: probe, then sleep in `sigtimedwait` (so a SIGTERM ends the wait at
//! once and nothing spins), with a progress line once 9 s ([`PROGRESS_EVERY`]) have passed since the last. Each
//! attempt runs in a helper thread while this one waits for it *or* a signal: a stopping signal ends the wait at
//! once, whatever the attempt is doing (a name lookup included), and an attempt that overruns
//! [`crate::probe::ATTEMPT`] is abandoned.

use crate::init::{Signals, Woke};
use crate::probe::Outcome;
use crate::say;
use crate::url::Target;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Pause between attempts when `CONNECTION_CHECK_SLEEP_TIME` is unset: short enough to notice readiness within
/// half a second, long enough that waiting costs nothing measurable.
pub const DEFAULT_SLEEP: Duration = Duration::from_millis(250);
/// The shortest pause between attempts: a smaller `CONNECTION_CHECK_SLEEP_TIME` (0 included) is raised to it,
/// so waiting never spins.
pub const MIN_SLEEP: Duration = Duration::from_millis(100);
/// Abandoned attempts (stuck in a name lookup) still running at most; beyond that an attempt is not started.
const MAX_STUCK: usize = 4;
pub const PROGRESS_EVERY: Duration = Duration::from_secs(9);

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `None`: wait forever (the seed's behaviour); `Some(n)`: give up after n failed attempts.
    pub max_count: Option<u32>,
    pub sleep: Duration,
}

/// A malformed `CONNECTION_CHECK_*` variable: the message printed before exiting, the parse error as the source.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("CONNECTION_CHECK_MAX_COUNT must be a whole number (0 disables waiting)")]
    MaxCount(#[source] std::num::ParseIntError),
    /// Not a number (the source), or one outside 0 to 3600 (no source).
    #[error("CONNECTION_CHECK_SLEEP_TIME must be a number of seconds from 0 to 3600")]
    SleepTime(#[source] Option<std::num::ParseFloatError>),
}

impl Policy {
    /// From `CONNECTION_CHECK_MAX_COUNT` / `CONNECTION_CHECK_SLEEP_TIME`. `Ok(None)` means waiting is disabled.
    pub fn from_env(max: Option<&str>, sleep: Option<&str>) -> Result<Option<Policy>, PolicyError> {
        let max_count = match max.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match s.parse::<u32>().map_err(PolicyError::MaxCount)? {
                0 => return Ok(None),
                n => Some(n),
            },
        };
        let sleep = match sleep.map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_SLEEP,
            Some(s) => match s.parse::<f64>() {
                Ok(f) if f.is_finite() && (0.0..=3600.0).contains(&f) => {
                    Duration::from_secs_f64(f).max(MIN_SLEEP)
                }
                Ok(_) => return Err(PolicyError::SleepTime(None)),
                Err(e) => return Err(PolicyError::SleepTime(Some(e))),
            },
        };
        Ok(Some(Policy { max_count, sleep }))
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    Done(Outcome),
    /// A stopping signal arrived during the attempt.
    Interrupted(libc::c_int),
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

/// Sleep `d` unless a stopping signal arrives (other signals, e.g. SIGCHLD of a reaped orphan, are absorbed). A
/// signal already pending is taken even when `d` is zero.
pub fn pause(sigs: &Signals, d: Duration) -> Option<libc::c_int> {
    let end = Instant::now() + d;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match sigs.wait(left) {
            Some(s) if STOP.contains(&s) => return Some(s),
            Some(libc::SIGCHLD) => {
                crate::init::reap(0, &Default::default());
            }
            _ => {}
        }
        if left.is_zero() {
            return None;
        }
    }
}

/// Attempts whose thread has not finished yet (normally 0; more while name lookups hang).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// One probe of `t` in a helper thread; this thread waits for its result or a signal. A stopping signal ends
/// it at once; an attempt that has not reported within [`crate::probe::ATTEMPT`] is abandoned
/// as timed out — its thread finishes on its own, and is never waited for.
pub fn attempt(sigs: &Signals, t: &Target) -> Probed {
    attempt_with(sigs, t, crate::probe::probe, crate::probe::ATTEMPT)
}

fn attempt_with(
    sigs: &Signals,
    t: &Target,
    probe: fn(&Target) -> Outcome,
    limit: Duration,
) -> Probed {
    if RUNNING.load(Ordering::SeqCst) >= MAX_STUCK {
        // Earlier lookups still hang: do not pile up threads; still notice signals.
        return match pause(sigs, Duration::ZERO) {
            Some(sig) => Probed::Interrupted(sig),
            None => Probed::Done(Outcome::NotReady("name resolution timed out".into())),
        };
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Probed::Done(probe(t));
    }
    // SAFETY: two fresh descriptors we own. The thread holds the write end: its closing wakes us.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (tx, rx) = std::sync::mpsc::channel();
    let target = t.clone();
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            let _ = tx.send(probe(&target));
            drop(write_end);
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        return Probed::Done(probe(t));
    }
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match sigs.wait_or_fd(read_end.as_raw_fd(), left) {
            Ok(Woke::Signal(s)) if STOP.contains(&s) => return Probed::Interrupted(s),
            Ok(Woke::Signal(libc::SIGCHLD)) => {
                crate::init::reap(0, &Default::default());
            }
            Ok(Woke::Signal(_)) => {}
            Ok(Woke::Fd) => {
                return Probed::Done(
                    rx.try_recv()
                        .unwrap_or_else(|_| Outcome::NotReady("the attempt failed".into())),
                )
            }
            Ok(Woke::Timeout) => return Probed::Done(Outcome::NotReady("timed out".into())),
            Err(_) => {
                // Cannot wait on both: wait for the result alone, still bounded.
                return Probed::Done(
                    rx.recv_timeout(left)
                        .unwrap_or_else(|_| Outcome::NotReady("timed out".into())),
                );
            }
        }
    }
}

/// The targets as the wait lines show them: the first few, then how many more (a long failover list, or long
/// host names, must not make every line huge).
fn shown_names(targets: &[Target]) -> String {
    const SHOWN: usize = 3;
    let mut names = targets
        .iter()
        .take(SHOWN)
        .map(|t| crate::log::clip(&t.endpoint.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    if targets.len() > SHOWN {
        names.push_str(&format!(" and {} more", targets.len() - SHOWN));
    }
    names
}

/// Wait until any of `targets` is ready. `what` is "database"/"broker", `var` the variable they came from.
pub fn wait_for(
    what: &str,
    var: &str,
    targets: &[Target],
    policy: &Policy,
    sigs: &Signals,
    probe: &mut dyn FnMut(&Target) -> Probed,
) -> Waited {
    let start = Instant::now();
    let mut last_line: Option<Instant> = None;
    let names = shown_names(targets);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut reason = String::new();
        for t in targets {
            match probe(t) {
                Probed::Interrupted(sig) => return Waited::Interrupted(sig),
                Probed::Done(Outcome::Ready) => {
                    say!(
                        "{what} {t} is ready ({var}, after {:.1} s)",
                        start.elapsed().as_secs_f64()
                    );
                    return Waited::Ready;
                }
                Probed::Done(Outcome::NotReady(r)) => {
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
    fn an_overrunning_attempt_is_abandoned_in_time() {
        let sigs = Signals::take_over().unwrap();
        let crate::url::Parsed::Targets(t) = crate::url::parse("redis://r").unwrap() else {
            panic!()
        };
        let slow: fn(&Target) -> Outcome = |_| {
            std::thread::sleep(Duration::from_secs(3));
            Outcome::Ready
        };
        let start = Instant::now();
        let got = attempt_with(&sigs, &t[0], slow, Duration::from_millis(200));
        assert_eq!(got, Probed::Done(Outcome::NotReady("timed out".into())));
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let quick: fn(&Target) -> Outcome = |_| Outcome::Ready;
        assert_eq!(
            attempt_with(&sigs, &t[0], quick, Duration::from_secs(2)),
            Probed::Done(Outcome::Ready)
        );
        sigs.restore().unwrap();
    }

    #[test]
    fn long_target_lists_are_cut() {
        let url = (1..=12)
            .map(|i| format!("redis://10.0.0.{i}:6379/0"))
            .collect::<Vec<_>>()
            .join(";");
        let crate::url::Parsed::Targets(t) = crate::url::parse(&url).unwrap() else {
            panic!()
        };
        assert_eq!(
            shown_names(&t),
            "10.0.0.1:6379, 10.0.0.2:6379, 10.0.0.3:6379 and 9 more"
        );
    }

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
            // Issue #11 item 1: 0 and tiny values are inside the range, but never spin.
            (
                None,
                Some("0"),
                Ok(Some(Policy {
                    max_count: None,
                    sleep: MIN_SLEEP,
                })),
            ),
            (
                None,
                Some("1e-9"),
                Ok(Some(Policy {
                    max_count: None,
                    sleep: MIN_SLEEP,
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

    #[test]
    fn a_malformed_variable_is_named_and_its_parse_error_kept() {
        use std::error::Error as _;
        let e = Policy::from_env(Some("x"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CONNECTION_CHECK_MAX_COUNT must be a whole number (0 disables waiting)"
        );
        assert!(e.source().is_some());
        let e = Policy::from_env(None, Some("soon")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CONNECTION_CHECK_SLEEP_TIME must be a number of seconds from 0 to 3600"
        );
        assert!(e.source().is_some());
        // A number, out of range: nothing failed to parse.
        assert!(Policy::from_env(None, Some("1e9"))
            .unwrap_err()
            .source()
            .is_none());
    }
}
