//! What a pass did: counters, error lines on stderr (capped per pass), and the one summary line on stdout.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// More error lines than this per pass would only flood the sidecar's log; the count in the summary stays exact.
const MAX_ERROR_LINES: u64 = 20;

/// Error lines printed in this pass, by every walker together.
static PRINTED: AtomicU64 = AtomicU64::new(0);

/// A new pass may print its own error lines.
pub fn begin_pass() {
    PRINTED.store(0, Ordering::Relaxed);
}

#[derive(Debug, Default)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
    pub folders: u64,
    pub errors: u64,
    pub interrupted: bool,
}

impl Stats {
    /// Counts an error and prints it (up to the cap). `what` is e.g. "cannot remove".
    pub fn error(&mut self, what: &str, path: &[u8], errno: i32) {
        self.errors += 1;
        let printed = PRINTED.fetch_add(1, Ordering::Relaxed) + 1;
        if printed <= MAX_ERROR_LINES {
            let why = std::io::Error::from_raw_os_error(errno);
            eprintln!(
                "clean-airflow-logs: {what} {}: {why}",
                String::from_utf8_lossy(path)
            );
        } else if printed == MAX_ERROR_LINES + 1 {
            eprintln!("clean-airflow-logs: more errors in this pass; only counting them");
        }
    }

    /// Adds what another walker of the same pass counted.
    pub fn merge(&mut self, o: Stats) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.folders += o.folders;
        self.errors += o.errors;
        self.interrupted |= o.interrupted;
    }
}

/// One line per pass, `key=value` so log pipelines can parse it:
/// `clean-airflow-logs: pass files=12 bytes=3456 folders=3 errors=0 seconds=0.012 …`
pub fn pass_line(s: &Stats, seconds: f64, dry_run: bool, extra: &str) -> String {
    let mut line = format!(
        "clean-airflow-logs: pass files={} bytes={} folders={} errors={} seconds={seconds:.3}",
        s.files, s.bytes, s.folders, s.errors
    );
    if dry_run {
        line.push_str(" dry_run=yes");
    }
    if s.interrupted {
        line.push_str(" interrupted=yes");
    }
    line.push_str(extra);
    line
}

pub fn print(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not kill the groomer: the cleaning matters more than its log.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_has_every_counter() {
        let s = Stats {
            files: 3,
            bytes: 1024,
            folders: 2,
            errors: 1,
            interrupted: true,
        };
        let l = pass_line(&s, 0.5, true, " cap=met");
        assert_eq!(
            l,
            "clean-airflow-logs: pass files=3 bytes=1024 folders=2 errors=1 seconds=0.500 dry_run=yes interrupted=yes cap=met"
        );
        assert_eq!(l.lines().count(), 1);
    }

    #[test]
    fn errors_are_counted_beyond_the_printed_cap() {
        let mut s = Stats::default();
        for _ in 0..50 {
            s.error("cannot remove", b"/x", libc::ENOENT);
        }
        assert_eq!(s.errors, 50);
    }
}
