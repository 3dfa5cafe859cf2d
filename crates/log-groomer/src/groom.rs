//! One pass as the user sees it: the walk, then, if a size cap is set and still exceeded, a second walk with the
//! shortest retention (from the steps of [`Retention::shorter`]) that brings the folder under the cap.

use crate::age::{human, Retention, Timestamp};
use crate::config::{Cap, Config};
use crate::report::{self, Stats};
use crate::walk::{self, Missing, Params, Pattern, Survey};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

/// Runs a pass and returns its summary line.
pub fn pass(cfg: &Config, pattern: &Pattern) -> Result<String, Missing> {
    let started = Instant::now();
    report::begin_pass();
    let now = Timestamp::now();
    let mut stats = Stats::default();
    let mut survey = cfg
        .cap
        .map(|c| Survey::new(matches!(c, Cap::Bytes(_)), cfg.retention.min_age));
    let mut params = Params {
        pattern,
        retention: &cfg.retention,
        now,
        dry_run: cfg.dry_run,
        verbose: cfg.verbose,
        jobs: cfg.jobs,
        survey: survey.as_mut(),
    };
    walk::pass(&cfg.directory, &mut params, &mut stats)?;
    let mut extra = String::new();
    if let (Some(cap), Some(survey)) = (cfg.cap, survey) {
        if !stats.interrupted {
            extra = enforce_cap(cfg, pattern, cap, &survey, now, &mut stats);
        }
    }
    let line = report::pass_line(&stats, started.elapsed().as_secs_f64(), cfg.dry_run, &extra);
    Ok(line)
}

/// The surveyed sizes tell how much each shorter retention would free, so the step that fits is known without
/// walking once per step.
fn enforce_cap(
    cfg: &Config,
    pattern: &Pattern,
    cap: Cap,
    s: &Survey,
    now: Timestamp,
    stats: &mut Stats,
) -> String {
    let (usage, limit) = match cap {
        Cap::Bytes(limit) => (s.kept_bytes, limit),
        Cap::Percent(p) => match fs_usage(cfg) {
            // In a dry run nothing was freed yet: count what would have been.
            Some((used, size)) => {
                let used = if cfg.dry_run {
                    used.saturating_sub(stats.bytes)
                } else {
                    used
                };
                (used, (size as f64 * p / 100.0) as u64)
            }
            None => return " cap=unknown".to_string(),
        },
    };
    if usage <= limit {
        return " cap=ok".to_string();
    }
    let Some(&floor) = s.steps.last() else {
        return format!(" cap=unmet retention={}", human(cfg.retention.min_age));
    };
    let excess = usage - limit;
    let mut freed = 0;
    let mut step = None;
    for (i, f) in s.freed.iter().enumerate() {
        freed += f;
        if freed >= excess {
            step = Some(s.steps[i]);
            break;
        }
    }
    let (min_age, verdict) = match step {
        Some(t) => (t, "shortened"),
        None => (floor, "unmet"),
    };
    let retention = Retention::from_min_age(min_age);
    let mut params = Params {
        pattern,
        retention: &retention,
        now,
        dry_run: cfg.dry_run,
        verbose: cfg.verbose,
        jobs: cfg.jobs,
        survey: None,
    };
    // A dry run removed nothing, and the shorter retention expires a superset of what the first walk listed: its
    // count replaces the first walk's instead of adding to it.
    if cfg.dry_run {
        *stats = Stats::default();
    }
    // The folder vanishing between the two walks is no error: there is nothing left to cap.
    let _ = walk::pass(&cfg.directory, &mut params, stats);
    format!(" cap={verdict} retention={}", human(min_age))
}

/// Used bytes of the folder's file system and its size, from statvfs: `df`'s Used and 1K-blocks columns, the
/// official chart's measure (blocks reserved for root count in the size, not as used).
fn fs_usage(cfg: &Config) -> Option<(u64, u64)> {
    let path = std::ffi::CString::new(cfg.directory.as_os_str().as_bytes()).ok()?;
    // SAFETY: all zeroes is a valid value of this plain C struct.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs with a valid path into our buffer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut vfs) } != 0 {
        return None;
    }
    let frsize = vfs.f_frsize as u64;
    let size = vfs.f_blocks as u64 * frsize;
    let used = (vfs.f_blocks as u64).saturating_sub(vfs.f_bfree as u64) * frsize;
    Some((used, size))
}
