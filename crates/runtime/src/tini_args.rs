//! tini's command line, parsed by hand with getopt's rules (`+hsp:vwgle:`: options stop at the first
//! non-option, `--` ends them, flags cluster as in `-vvg`, option arguments attach as in `-e1` or follow).

use crate::init::{parse_signal, Config};
use std::ffi::OsString;

pub const VERSION: &str = concat!(
    "tini version 0.19.0 - airflow-runtime ",
    env!("CARGO_PKG_VERSION")
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run {
        cfg: Config,
        verbosity: u8,
        argv: Vec<OsString>,
    },
    /// Print to stdout, exit 0.
    Help,
    Version,
    License,
    /// Print the message (if any) and the usage to stderr, exit 1.
    Usage(Option<String>),
    /// A FATAL line, then usage to stderr, exit 1.
    Fatal(String),
}

pub fn usage(name: &str) -> String {
    format!(
        "{name} ({VERSION})\n\
Usage: {name} [OPTIONS] PROGRAM -- [ARGS] | --version\n\n\
Execute a program under the supervision of a valid init process ({name})\n\n\
Command line options:\n\n\
  --version: Show version and exit.\n\
  -h: Show this help message and exit.\n\
  -s: Register as a process subreaper (requires Linux >= 3.4).\n\
  -p SIGNAL: Trigger SIGNAL when parent dies, e.g. \"-p SIGKILL\".\n\
  -v: Generate more verbose output. Repeat up to 3 times.\n\
  -w: Print a warning when processes are getting reaped.\n\
  -g: Send signals to the child's process group.\n\
  -e EXIT_CODE: Remap EXIT_CODE (from 0 to 255) to 0.\n\
  -l: Show license and exit.\n\n\
Environment variables:\n\n\
  TINI_SUBREAPER: Register as a process subreaper (requires Linux >= 3.4).\n\
  TINI_VERBOSITY: Set the verbosity level (default: 1).\n\
  TINI_KILL_PROCESS_GROUP: Send signals to the child's process group.\n\n"
    )
}

pub const LICENSE: &str = "airflow-runtime tini: a tini-compatible init, part of ap-airflow.\n\
Licensed under the Apache License, Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0).\n\
Command line and behaviour follow tini by Thomas Orozco (MIT License).\n";

/// Parse `args` (without argv[0]); `env` looks up TINI_* variables. `prog` is argv[0] for getopt's messages.
pub fn parse(prog: &str, args: &[OsString], env: &dyn Fn(&str) -> Option<String>) -> Action {
    if args.len() == 1 && args[0] == "--version" {
        return Action::Version;
    }
    let mut cfg = Config::default();
    let mut verbosity: u32 = 1;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let flags: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < flags.len() {
            let f = flags[j];
            match f {
                'h' => return Action::Help,
                'l' => return Action::License,
                's' => cfg.subreaper = true,
                'v' => verbosity += 1,
                'w' => cfg.warn_on_reap = true,
                'g' => cfg.kill_process_group = true,
                'p' | 'e' => {
                    // The rest of this word, or the next word, is the argument.
                    let rest: String = flags[j + 1..].iter().collect();
                    let val = if !rest.is_empty() {
                        rest
                    } else if i + 1 < args.len() {
                        i += 1;
                        args[i].to_string_lossy().into_owned()
                    } else {
                        return Action::Usage(Some(format!(
                            "{prog}: option requires an argument -- '{f}'"
                        )));
                    };
                    if f == 'p' {
                        match parse_signal(&val) {
                            Some(s) => cfg.parent_death_signal = Some(s),
                            None => {
                                return Action::Fatal(format!("Not a valid option for -p: {val}"))
                            }
                        }
                    } else {
                        match val.parse::<u8>() {
                            Ok(c) => {
                                if !cfg.expect.contains(&c) {
                                    cfg.expect.push(c)
                                }
                            }
                            Err(_) => {
                                return Action::Fatal(format!("Not a valid option for -e: {val}"))
                            }
                        }
                    }
                    j = flags.len();
                    continue;
                }
                other => {
                    return Action::Usage(Some(format!("{prog}: invalid option -- '{other}'")))
                }
            }
            j += 1;
        }
        i += 1;
    }
    // tini reads the environment after the flags; TINI_VERBOSITY overrides -v.
    if env("TINI_SUBREAPER").is_some() {
        cfg.subreaper = true;
    }
    if env("TINI_KILL_PROCESS_GROUP").is_some() {
        cfg.kill_process_group = true;
    }
    if let Some(v) = env("TINI_VERBOSITY") {
        verbosity = atoi(&v);
    }
    let argv = args[i..].to_vec();
    if argv.is_empty() {
        return Action::Usage(None);
    }
    Action::Run {
        cfg,
        verbosity: verbosity.min(255) as u8,
        argv,
    }
}

/// C's atoi: leading digits, anything else is 0.
fn atoi(s: &str) -> u32 {
    let d: String = s
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    d.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        Action,
    );

    fn run(args: &[&str], env: &[(&str, &str)]) -> Action {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse("tini", &args, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn cfg(subreaper: bool, group: bool, pdeath: Option<i32>, warn: bool, expect: &[u8]) -> Config {
        Config {
            subreaper,
            kill_process_group: group,
            parent_death_signal: pdeath,
            warn_on_reap: warn,
            expect: expect.to_vec(),
        }
    }

    fn ok(c: Config, v: u8, argv: &[&str]) -> Action {
        Action::Run {
            cfg: c,
            verbosity: v,
            argv: argv.iter().map(OsString::from).collect(),
        }
    }

    #[test]
    fn table() {
        let none = cfg(false, false, None, false, &[]);
        let cases: Vec<Case> = vec![
            (&["true"], &[], ok(none.clone(), 1, &["true"])),
            (
                &["--", "true", "-s"],
                &[],
                ok(none.clone(), 1, &["true", "-s"]),
            ),
            (
                &["-s", "-g", "--", "true"],
                &[],
                ok(cfg(true, true, None, false, &[]), 1, &["true"]),
            ),
            (
                &["-sgw", "true"],
                &[],
                ok(cfg(true, true, None, true, &[]), 1, &["true"]),
            ),
            (&["-vvv", "true"], &[], ok(none.clone(), 4, &["true"])),
            (
                &["-e", "143", "-e1", "-e", "143", "x"],
                &[],
                ok(cfg(false, false, None, false, &[143, 1]), 1, &["x"]),
            ),
            (
                &["-p", "SIGKILL", "x"],
                &[],
                ok(cfg(false, false, Some(9), false, &[]), 1, &["x"]),
            ),
            (
                &["-pSIGTERM", "x"],
                &[],
                ok(cfg(false, false, Some(15), false, &[]), 1, &["x"]),
            ),
            (
                &["-ge", "2", "x", "-v"],
                &[],
                ok(cfg(false, true, None, false, &[2]), 1, &["x", "-v"]),
            ),
            (&["x", "--"], &[], ok(none.clone(), 1, &["x", "--"])),
            (&["-", "x"], &[], ok(none.clone(), 1, &["-", "x"])),
            (
                &["true"],
                &[("TINI_SUBREAPER", "")],
                ok(cfg(true, false, None, false, &[]), 1, &["true"]),
            ),
            (
                &["true"],
                &[("TINI_KILL_PROCESS_GROUP", "0")],
                ok(cfg(false, true, None, false, &[]), 1, &["true"]),
            ),
            (
                &["-v", "true"],
                &[("TINI_VERBOSITY", "0")],
                ok(none.clone(), 0, &["true"]),
            ),
            (
                &["true"],
                &[("TINI_VERBOSITY", "3x")],
                ok(none.clone(), 3, &["true"]),
            ),
            (&["--version"], &[], Action::Version),
            (
                &["--version", "x"],
                &[],
                Action::Usage(Some("tini: invalid option -- '-'".into())),
            ),
            (&["-h", "true"], &[], Action::Help),
            (&["-l"], &[], Action::License),
            (&[], &[], Action::Usage(None)),
            (&["-s"], &[], Action::Usage(None)),
            (&["--"], &[], Action::Usage(None)),
            (
                &["-x", "true"],
                &[],
                Action::Usage(Some("tini: invalid option -- 'x'".into())),
            ),
            (
                &["-e"],
                &[],
                Action::Usage(Some("tini: option requires an argument -- 'e'".into())),
            ),
            (
                &["-e", "256", "x"],
                &[],
                Action::Fatal("Not a valid option for -e: 256".into()),
            ),
            (
                &["-e", "-1", "x"],
                &[],
                Action::Fatal("Not a valid option for -e: -1".into()),
            ),
            (
                &["-e", "abc", "x"],
                &[],
                Action::Fatal("Not a valid option for -e: abc".into()),
            ),
            (
                &["-p", "SIGNOPE", "x"],
                &[],
                Action::Fatal("Not a valid option for -p: SIGNOPE".into()),
            ),
        ];
        for (args, env, want) in cases {
            assert_eq!(run(args, env), want, "{args:?} {env:?}");
        }
    }
}
