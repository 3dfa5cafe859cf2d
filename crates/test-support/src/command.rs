//! Running a command to its end and asserting on how it ended, as ripgrep's tests do: an assertion that fails
//! prints the command, its status, its stdout and its stderr, not just "assertion failed".

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::process::{Command, Output};

/// A finished command: what ran, and its [`Output`] (`status`, `stdout`, `stderr`, reached through `Deref`).
/// `Display` and `Debug` both show all of it as text, so `assert!(…, "{out:?}")` says why too.
pub struct Ran {
    pub command: String,
    pub output: Output,
}

/// Runs `cmd` to its end with stdout and stderr captured (as [`Command::output`]); panics if it cannot start.
#[track_caller]
pub fn run(cmd: &mut Command) -> Ran {
    let command = format!("{cmd:?}");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    Ran { command, output }
}

/// `cmd.ran()`: [`run`] as a method, in place of `cmd.output().unwrap()`.
pub trait RunExt {
    fn ran(&mut self) -> Ran;
}

impl RunExt for Command {
    #[track_caller]
    fn ran(&mut self) -> Ran {
        run(self)
    }
}

impl Ran {
    pub fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.output.stdout)
    }

    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.output.stderr)
    }

    /// The exit code; `None` when a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Panics, showing everything, unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Ran {
        assert!(self.output.status.success(), "expected success\n{self}");
        self
    }

    /// Panics, showing everything, unless it exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Ran {
        assert_eq!(self.code(), Some(code), "expected exit code {code}\n{self}");
        self
    }
}

impl Deref for Ran {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.output
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "status: {}", self.output.status)?;
        writeln!(f, "--- stdout\n{}", self.stdout_text().trim_end())?;
        write!(f, "--- stderr\n{}", self.stderr_text().trim_end())
    }
}

impl fmt::Debug for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_assertion_shows_command_status_and_both_streams() {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .ran();
        out.assert_code(3);
        assert_eq!(out.status.code(), Some(3), "Deref to the Output");
        let shown = std::panic::catch_unwind(|| {
            out.assert_success();
        })
        .unwrap_err();
        let msg = shown.downcast_ref::<String>().unwrap();
        for part in [
            "expected success",
            "command: \"sh\" \"-c\" \"echo out; echo err >&2; exit 3\"",
            "status: exit status: 3",
            "--- stdout\nout",
            "--- stderr\nerr",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
    }
}
