//! What a pass did: counters, error lines on stderr (capped per pass), and the one summary line on stdout.

use std::borrow::Cow;
use std::fmt::Write as _;
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
            eprintln!("clean-airflow-logs: {what} {}: {why}", escape(path));
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

/// A path (or any name) as it goes into one output line. A file name may hold any byte but `/` and NUL, so a name
/// with a newline could forge whole log lines, and control characters could rewrite a terminal. Printable text,
/// including non-ASCII UTF-8, stays as it is; a backslash is doubled; `\n`, `\r`, `\t` and other control characters
/// (C0, DEL, C1), the Unicode line and paragraph separators and the bidirectional controls become escapes
/// (`\n`, `\x1b`, `\u{2028}`); bytes that are not UTF-8 become `\xNN`.
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    let plain = |b: &u8| (0x20..0x7f).contains(b) && *b != b'\\';
    if bytes.iter().all(plain) {
        // The usual case: printable ASCII, borrowed as it is.
        return Cow::Borrowed(std::str::from_utf8(bytes).expect("ASCII"));
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
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
    fn names_are_escaped_onto_one_line() {
        assert!(matches!(escape(b"/a/b c=1.log"), Cow::Borrowed(_)));
        assert_eq!(
            escape(b"/logs/d\xc3\xa9j\xc3\xa0 vu.log"),
            "/logs/d\u{e9}j\u{e0} vu.log"
        );
        assert_eq!(
            escape(b"x\nclean-airflow-logs: pass files=9\r\t\x1b[2J"),
            "x\\nclean-airflow-logs: pass files=9\\r\\t\\x1b[2J"
        );
        assert_eq!(
            escape(b"a\\nb"),
            "a\\\\nb",
            "a literal backslash-n stays distinguishable"
        );
        assert_eq!(escape(b"\x7f\xc2\x85"), "\\x7f\\x85", "DEL and C1 NEL");
        assert_eq!(escape(b"\xff\xfe.log"), "\\xff\\xfe.log", "not UTF-8");
        assert_eq!(
            escape("a\u{2028}b\u{202e}c".as_bytes()),
            "a\\u{2028}b\\u{202e}c"
        );
        for nasty in [
            &b"\n"[..],
            b"\r",
            b"\x0b",
            b"\x0c",
            b"\xc2\x85",
            "\u{2028}".as_bytes(),
        ] {
            assert_eq!(escape(nasty).lines().count(), 1, "{nasty:?}");
        }
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
