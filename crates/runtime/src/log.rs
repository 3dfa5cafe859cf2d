//! tini-style log lines: `[WARN  tini (42)] message`.
//!
//! FATAL and WARN go to stderr, INFO and below to stdout, exactly as tini does, so log scrapers that know tini
//! keep working.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

static VERBOSITY: AtomicU8 = AtomicU8::new(1);
static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Set the program name shown in log lines and the verbosity (tini's default is 1).
pub fn configure(name: &'static str, verbosity: u8) {
    let _ = NAME.set(name);
    VERBOSITY.store(verbosity, Ordering::Relaxed);
}

pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

pub fn name() -> &'static str {
    NAME.get().copied().unwrap_or("tini")
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Fatal = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

pub fn emit(level: Level, args: fmt::Arguments) {
    if level != Level::Fatal && (level as u8) > verbosity() {
        return;
    }
    let tag = match level {
        Level::Fatal => "FATAL",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    };
    let line = format!("[{tag} {} ({})] {args}\n", name(), std::process::id());
    // One write per line so lines from several processes do not interleave.
    if level <= Level::Warn {
        let _ = std::io::stderr().write_all(line.as_bytes());
    } else {
        let mut out = std::io::stdout();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

#[macro_export]
macro_rules! fatal { ($($a:tt)*) => { $crate::log::emit($crate::log::Level::Fatal, format_args!($($a)*)) } }
#[macro_export]
macro_rules! warn { ($($a:tt)*) => { $crate::log::emit($crate::log::Level::Warn, format_args!($($a)*)) } }
#[macro_export]
macro_rules! info { ($($a:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($a)*)) } }
#[macro_export]
macro_rules! debug { ($($a:tt)*) => { $crate::log::emit($crate::log::Level::Debug, format_args!($($a)*)) } }
#[macro_export]
macro_rules! trace { ($($a:tt)*) => { $crate::log::emit($crate::log::Level::Trace, format_args!($($a)*)) } }

/// A plain status line of the entrypoint (not tini-formatted): `entrypoint: message` on stderr.
pub fn say(args: fmt::Arguments) {
    let line = format!("{}: {args}\n", name());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! say { ($($a:tt)*) => { $crate::log::say(format_args!($($a)*)) } }

/// Longest piece of a caller's value echoed in a line (a user name, a path, a host list).
pub const CLIP: usize = 80;

/// `s` as it may appear in a log line: control characters escaped (a newline cannot forge a line, an escape
/// sequence cannot repaint the terminal), and at most [`CLIP`] characters, with `…` when cut.
pub fn clip(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == CLIP {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn clipping() {
        assert_eq!(super::clip("astro"), "astro");
        assert_eq!(super::clip("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        let long = super::clip(&"x".repeat(100_000));
        assert_eq!(long.chars().count(), super::CLIP + 1);
        assert!(long.ends_with('…'));
    }
}
