//! `clean-airflow-logs`: the log groomer sidecar. See docs/log-groomer.md.

#![warn(clippy::undocumented_unsafe_blocks)]

mod age;
mod config;
mod groom;
mod report;
mod schedule;
mod signals;
mod walk;

use config::Exit;
use std::os::unix::ffi::OsStrExt;
use std::process::exit;

fn main() {
    let cfg = match config::from_env_and_args(std::env::args_os(), |k| std::env::var(k).ok()) {
        Ok(cfg) => cfg,
        Err(Exit::Info(text)) => {
            print!("{text}");
            exit(0);
        }
        Err(Exit::Usage(line)) => {
            eprintln!("{line}");
            exit(2);
        }
    };
    signals::install();
    let pattern = walk::Pattern::new(&cfg.pattern);
    // Escaped: a folder or pattern given with a newline must not forge a log line.
    let dir = report::escape(cfg.directory.as_os_str().as_bytes());
    let mode = if cfg.once {
        "once".to_string()
    } else {
        format!("every {} s (UTC-aligned)", cfg.every)
    };
    let dry = if cfg.dry_run { ", dry run" } else { "" };
    let cap = cfg
        .cap
        .map(|c| format!(", capped at {c}"))
        .unwrap_or_default();
    let pat = report::escape(cfg.pattern.to_bytes());
    report::print(&format!(
        "clean-airflow-logs: {pat} in {dir}, retention {}, {mode}{cap}{dry}",
        cfg.retention
    ));
    let mut waiting = false;
    while !signals::stopping() {
        // Checked again before every pass: the folder may have appeared since, as a symlink to `/`, say.
        if let Err(line) = config::refuse_system_folder(&cfg.directory) {
            eprintln!("{line}");
            exit(2);
        }
        let line = match groom::pass(&cfg, &pattern) {
            Ok(line) => line,
            Err(walk::Missing) if cfg.once => {
                // A one-off run (cron, a CronJob) has nothing to wait for: no folder, no logs to clean.
                report::print(&format!(
                    "clean-airflow-logs: {dir} does not exist: nothing to do"
                ));
                break;
            }
            Err(walk::Missing) => {
                // The sidecar may start before anything created the folder: wait for it, checking every second.
                if !waiting {
                    report::print(&format!("clean-airflow-logs: waiting for {dir} to exist"));
                    waiting = true;
                }
                signals::sleep_until(age::Timestamp::now().secs + 1);
                continue;
            }
        };
        waiting = false;
        if cfg.once || signals::stopping() {
            report::print(&line);
            break;
        }
        let next = schedule::next_boundary(age::Timestamp::now().secs, cfg.every);
        report::print(&format!("{line} next={}", schedule::utc(next)));
        signals::sleep_until(next);
    }
    if signals::stopping() {
        report::print("clean-airflow-logs: stopping on signal");
    }
}
