//! A tini-compatible init (`/usr/bin/tini`): same flags, environment, messages and exit codes.
#![no_main]

use airflow_runtime::tini_args::{self, Action};
use airflow_runtime::{fatal, init, log};
use std::io::Write;

// `no_main`: skip std's start-up (it would ignore SIGPIPE, which children would then inherit) and start fast.
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let mut args = std::env::args_os();
    let prog = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tini".into());
    let args: Vec<_> = args.collect();
    log::configure("tini", 1);
    let (cfg, verbosity, argv) = match tini_args::parse(&prog, &args, &|k| std::env::var(k).ok()) {
        Action::Run {
            cfg,
            verbosity,
            argv,
        } => (cfg, verbosity, argv),
        Action::Help => return out(&tini_args::usage(&prog), 0),
        Action::Version => return out(&format!("{}\n", tini_args::VERSION), 0),
        Action::License => return out(tini_args::LICENSE, 0),
        Action::Usage(msg) => {
            return err(
                &(msg.map(|m| m + "\n").unwrap_or_default() + &tini_args::usage(&prog)),
                1,
            )
        }
        Action::Fatal(msg) => {
            fatal!("{msg}");
            return err(&tini_args::usage(&prog), 1);
        }
    };
    log::configure("tini", verbosity);
    let cmd = match init::Command::new(&argv) {
        Ok(c) => c,
        Err(e) => {
            fatal!("{e}");
            return 1;
        }
    };
    let sigs = match init::Signals::take_over() {
        Ok(s) => s,
        Err(e) => {
            fatal!("{e}");
            return 1;
        }
    };
    if let Err(e) = init::apply(&cfg) {
        fatal!("{e}");
        return 1;
    }
    init::reaper_check();
    match init::spawn(&cmd, &sigs) {
        Ok(child) => init::supervise(child, &cfg, &sigs),
        Err(e) => {
            fatal!("{e}");
            1
        }
    }
}

fn out(s: &str, code: i32) -> i32 {
    let _ = std::io::stdout().write_all(s.as_bytes());
    let _ = std::io::stdout().flush();
    code
}

fn err(s: &str, code: i32) -> i32 {
    let _ = std::io::stderr().write_all(s.as_bytes());
    code
}

#[cfg(panic = "abort")]
#[path = "../unwind_stubs.rs"]
mod unwind_stubs;
