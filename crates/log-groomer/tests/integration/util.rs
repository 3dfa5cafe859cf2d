//! Small helpers: trees with past mtimes, running the binary, reading its output as it comes.

use std::ffi::CString;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use test_support::{Ran, RunExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_clean-airflow-logs");
pub const DAY: i64 = 86_400;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sets a path's mtime `age` seconds in the past, without following symlinks.
pub fn set_age(path: &Path, age: i64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: now() - age,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: the path is a CString and `times` a local array of the two timespecs utimensat reads; both outlive
    // the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Writes `rel` under `root` with `len` bytes, `age` seconds old.
pub fn file(root: &Path, rel: &str, len: usize, age: i64) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, vec![b'x'; len]).unwrap();
    set_age(&p, age);
    p
}

/// An Airflow task log path.
pub fn task_log(dag: &str, run: &str, task: &str, attempt: u32) -> String {
    format!("dag_id={dag}/run_id={run}/task_id={task}/attempt={attempt}.log")
}

pub fn tempdir() -> tempfile::TempDir {
    test_support::tempdir("cal-test-")
}

/// The groomer with `args`, run to its end; a failed `assert_*` on it shows its output.
pub fn run(args: &[&str]) -> Ran {
    Command::new(BIN)
        .args(args)
        .env_remove("AIRFLOW_HOME")
        .ran()
}

/// `sh -c script sh args…` in a private mount namespace (`unshare`, needs root): what it mounts vanishes with it.
pub fn in_private_mount_namespace(script: &str, args: &[&OsStr]) -> Ran {
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args)
        .ran()
}

/// The `pass …` summary line, checked to exist.
pub fn pass_line(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find(|l| l.contains(": pass "))
        .unwrap_or_else(|| panic!("no pass line in {stdout}"))
        .to_string()
}

/// `files=12` → 12.
pub fn field(line: &str, key: &str) -> u64 {
    let pre = format!("{key}=");
    let v = line
        .split(' ')
        .find_map(|w| w.strip_prefix(&pre))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    v.parse().unwrap()
}

/// A running groomer whose stdout lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

pub fn spawn(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(vec![]));
    let (mut err, sink) = (child.stderr.take().unwrap(), stderr.clone());
    let stderr_reader = std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = err.read(&mut buf) {
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let out = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running {
        child,
        lines,
        seen: vec![],
        stderr,
        stderr_reader: Some(stderr_reader),
    }
}

impl Running {
    /// Waits (up to 60 s) for a line containing `needle`, returning it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:?}", self.seen),
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill takes no pointers.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for exit, returning the status and how long it took.
    pub fn exit_within(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, start.elapsed());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("still running after {limit:?}; saw {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for exit (as [`Running::exit_within`]) and checks the exit code: a wrong one panics showing the status,
    /// every stdout line and stderr. Returns how long it took.
    #[track_caller]
    pub fn exits_with(&mut self, code: i32, limit: Duration) -> Duration {
        let (status, took) = self.exit_within(limit);
        if status.code() != Some(code) {
            self.rest();
            panic!(
                "expected exit code {code}, got {status}\n--- stdout\n{}\n--- stderr\n{}",
                self.seen.join("\n"),
                self.stderr().trim_end()
            );
        }
        took
    }

    /// Everything written to stderr so far; all of it once the process has exited.
    pub fn stderr(&mut self) -> String {
        if self.child.try_wait().unwrap().is_some() {
            if let Some(reader) = self.stderr_reader.take() {
                reader.join().unwrap();
            }
        }
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Every remaining line, once the process has exited.
    pub fn rest(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        self.seen.clone()
    }
}

/// Every path under `root`, relative, sorted.
pub fn listing(root: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                go(base, &p, out);
            }
        }
    }
    let mut out = vec![];
    go(root, root, &mut out);
    out.sort();
    out
}

/// A tree of `n` expired task logs, spread like Airflow's layout.
pub fn big_tree(root: &Path, n: usize) {
    for i in 0..n {
        let rel = task_log(
            &format!("dag{}", i / 2000),
            &format!("run{}", i / 20 % 100),
            "t",
            (i % 20) as u32 + 1,
        );
        let p = root.join(rel);
        if i % 20 == 0 {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        std::fs::write(&p, b"log\n").unwrap();
        set_age(&p, 30 * DAY);
    }
}
