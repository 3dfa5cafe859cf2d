//! Shared helpers: the built binaries, temp dirs, polling, processes in fresh PID namespaces, real servers.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::{as_postgres, initdb};
pub use test_support::{free_port, wait_for, Redis, RunExt};

pub const ENTRYPOINT: &str = env!("CARGO_BIN_EXE_entrypoint");
pub const TINI: &str = env!("CARGO_BIN_EXE_tini");

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Tests that need root (namespaces, setuid, other users) are `#[ignore = "needs root…"]`, which `scripts/test`
/// runs as root (`--ignored`); run without root they fail here, never pass without testing anything.
#[macro_export]
macro_rules! require_root {
    () => {
        assert!(
            $crate::util::is_root(),
            "needs root: run it as root (scripts/test does, with --ignored)"
        );
    };
}

/// Environment that keeps the entrypoint's identity as it is: as root it "steps down" to root, as anyone else
/// that uid is declared the Airflow uid (no arbitrary-uid warning in the output under test).
pub fn same_user() -> [(&'static str, String); 2] {
    [
        ("ASTRONOMER_USER", "root".to_string()),
        // SAFETY: getuid has no preconditions and cannot fail.
        ("ASTRONOMER_UID", unsafe { libc::getuid() }.to_string()),
    ]
}

/// A temp dir readable by every user (tests switch users).
pub fn tempdir() -> tempfile::TempDir {
    let d = test_support::tempdir("aprt-");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Write an executable script. A child process writes it: a descriptor open for writing in this (threaded) test
/// process would be inherited by whatever another test forks at that moment, and exec'ing the script while such
/// a child still holds it fails with ETXTBSY ("Text file busy").
pub fn write_exe(path: &Path, text: &str) {
    let mut c = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "writing {}", path.display());
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Lines of a file, once it contains at least `n` of them.
pub fn lines_at_least(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    wait_for(&format!("{n} lines in {}", path.display()), limit, || {
        let l: Vec<String> = read(path).lines().map(str::to_string).collect();
        (l.len() >= n).then_some(l)
    })
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    wait_for("process exit", limit, || child.try_wait().unwrap())
}

/// A process with its stdout/stderr captured in files we can poll, killed (with its group) on drop.
pub struct Proc {
    pub child: Child,
    pub err: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let dir = tempdir();
        let err = dir.path().join("stderr");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err).unwrap());
        let child = cmd.spawn().unwrap();
        Proc {
            child,
            err,
            _dir: dir,
        }
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn stderr(&self) -> String {
        read(&self.err)
    }
    pub fn wait_stderr(&self, needle: &str, limit: Duration) {
        wait_for(&format!("{needle:?} on stderr"), limit, || {
            self.stderr().contains(needle).then_some(())
        });
    }
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        wait_timeout(&mut self.child, limit)
    }
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    /// Under `unshare --fork`, the namespace's PID 1 as seen from here: unshare's only child.
    pub fn ns_init(&self) -> i32 {
        let pid = self.pid();
        wait_for("the namespace's PID 1", Duration::from_secs(5), || {
            read(Path::new(&format!("/proc/{pid}/task/{pid}/children")))
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill takes no pointers.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// `unshare --pid --fork --mount-proc -- prog args…`: prog is PID 1 of a fresh PID namespace.
pub fn pid1(prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc", "--", prog])
        .args(args);
    c
}

pub fn code(s: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

/// An `airflow` stub on PATH that records `args|AIRFLOW__CORE__EXECUTOR` per call, and fails (exit 3, with a
/// message on stderr) for calls whose arguments start with `$STUB_FAIL` (only the first `$STUB_FAIL_TIMES` of
/// them when that is set). `users create` also records the two lines
/// it reads from stdin (its password prompts) and whether it has a controlling terminal.
pub struct Stub {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Stub {
    pub fn new() -> Stub {
        let dir = tempdir();
        let log = dir.path().join("calls.log");
        write_exe(
            &dir.path().join("airflow"),
            &format!(
                "#!/bin/sh\n\
                 echo \"$*|$AIRFLOW__CORE__EXECUTOR\" >> {log}\n\
                 case \"$*\" in \"users create\"*)\n\
                   IFS= read -r p1 || true; IFS= read -r p2 || true\n\
                   echo \"$p1|$p2|$(if (exec 3</dev/tty) 2>/dev/null; then echo tty; else echo no-tty; fi)\" >> {stdin};;\n\
                 esac\n\
                 case \"$*\" in \"${{STUB_FAIL:-#none#}}\"*)\n\
                   n=$(cat {failed} 2>/dev/null || echo 0)\n\
                   if [ -z \"$STUB_FAIL_TIMES\" ] || [ \"$n\" -lt \"$STUB_FAIL_TIMES\" ]; then\n\
                     echo $((n + 1)) > {failed}; echo \"stub: $1 is failing on purpose\" >&2; exit 3\n\
                   fi;;\n\
                 esac\n\
                 exit 0\n",
                log = log.display(),
                stdin = dir.path().join("stdin.log").display(),
                failed = dir.path().join("failed.count").display()
            ),
        );
        Stub { dir, log }
    }
    pub fn path(&self) -> String {
        format!(
            "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            self.dir.path().display()
        )
    }
    pub fn calls(&self) -> Vec<String> {
        read(&self.log).lines().map(str::to_string).collect()
    }
    /// What each `users create` read from its stdin (two lines, `|`-joined) and whether it had a terminal.
    pub fn stdin(&self) -> Vec<String> {
        read(&self.dir.path().join("stdin.log"))
            .lines()
            .map(str::to_string)
            .collect()
    }
    /// Another recording program next to `airflow` (e.g. `python`): logs `NAME args|AIRFLOW__CORE__EXECUTOR`.
    pub fn add_program(&self, name: &str) {
        write_exe(
            &self.dir.path().join(name),
            &format!(
                "#!/bin/sh\necho \"{name} $*|$AIRFLOW__CORE__EXECUTOR\" >> {}\n",
                self.log.display()
            ),
        );
    }
    /// The entrypoint with a clean environment: this stub on PATH, running as root without stepping down.
    pub fn entrypoint(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ENTRYPOINT);
        c.args(args)
            .env_clear()
            .env("PATH", self.path())
            .envs(same_user())
            .env("HOME", "/root");
        c
    }
}

/// Run the entrypoint with `stub` and extra `env` to the end: its exit code and its stdout then stderr.
pub fn run(stub: &Stub, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = stub.entrypoint(args);
    c.envs(env.iter().copied());
    let out = c.output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (code(out.status), text)
}

/// A loopback port bound but not listening: nobody else can take it, and connecting is refused until [`serve`].
///
/// [`serve`]: Reserved::serve
pub struct Reserved {
    fd: OwnedFd,
    pub port: u16,
}

impl Reserved {
    pub fn new() -> Reserved {
        // SAFETY: plain socket calls on a fresh descriptor we own; the address structs are fully initialised.
        unsafe {
            let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let sa = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(
                libc::bind(raw, sa, len),
                0,
                "bind: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::getsockname(raw, sa, &mut len), 0);
            Reserved {
                fd,
                port: u16::from_be(addr.sin_port),
            }
        }
    }

    /// Start listening now: a tiny server that answers every connection with `reply` (after reading the request
    /// head, which it records) and closes it; stopped on drop.
    pub fn serve(self, reply: &'static [u8]) -> Http {
        // SAFETY: listen on the socket `self.fd` owns; no pointers.
        assert_eq!(unsafe { libc::listen(self.fd.as_raw_fd(), 16) }, 0);
        let listener = TcpListener::from(self.fd);
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let mut conn = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = conn.write_all(reply);
            }
        });
        Http {
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Reserved {
    /// Listen, but never accept: connections complete in the kernel's backlog and then nothing is ever said.
    pub fn silent(self) -> TcpListener {
        // SAFETY: listen on the socket `self.fd` owns; no pointers.
        assert_eq!(unsafe { libc::listen(self.fd.as_raw_fd(), 64) }, 0);
        TcpListener::from(self.fd)
    }

    /// A server that answers every connection with `first`, then one byte of `then` every 100 ms, forever: each
    /// read a client makes returns something, so only a deadline on the whole exchange ends it.
    pub fn trickle(self, first: &'static [u8], then: u8) -> Http {
        // SAFETY: listen on the socket `self.fd` owns; no pointers.
        assert_eq!(unsafe { libc::listen(self.fd.as_raw_fd(), 16) }, 0);
        let listener = TcpListener::from(self.fd);
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<std::net::TcpStream> = Vec::new();
            let mut last = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((mut c, _)) = listener.accept() {
                    let _ = c.write_all(first);
                    conns.push(c);
                }
                if last.elapsed() >= Duration::from_millis(100) {
                    conns.retain_mut(|c| c.write_all(&[then]).is_ok());
                    last = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Http {
            requests: Arc::new(Mutex::new(Vec::new())),
            stop,
            thread: Some(thread),
        }
    }
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf takes no pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11] + f[12]) / ticks
}

/// See [`Reserved::serve`].
pub struct Http {
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Http {
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A PostgreSQL cluster in a temp dir (initdb'd once per test), server on a loopback port, stopped on drop.
pub struct Postgres {
    pub data: PathBuf,
    server: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn init(port: u16) -> Postgres {
        let (dir, data) = initdb(&["-A", "trust"]);
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(conf, "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off", data.display()).unwrap();
        Postgres {
            data,
            server: None,
            _dir: dir,
        }
    }

    /// Make the next start a standby that answers 57P03 until promoted.
    pub fn as_standby(&self) {
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        writeln!(conf, "hot_standby = off").unwrap();
        fs::write(self.data.join("standby.signal"), "").unwrap();
        std::os::unix::fs::chown(
            self.data.join("standby.signal"),
            Some(uid_of("postgres")),
            None,
        )
        .unwrap();
    }

    pub fn start(&mut self) {
        let child = as_postgres("postgres")
            .arg("-D")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
    }

    pub fn promote(&self) {
        let out = as_postgres("pg_ctl")
            .args(["promote", "-w", "-D"])
            .arg(&self.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(c) = &mut self.server {
            // SIGQUIT: immediate shutdown, the server's children go with it.
            // SAFETY: kill takes no pointers; the server may already be gone.
            unsafe { libc::kill(c.id() as i32, libc::SIGQUIT) };
            let _ = c.wait();
        }
    }
}

pub fn uid_of(user: &str) -> u32 {
    let text = read(Path::new("/etc/passwd"));
    let users = airflow_runtime::passwd::parse_passwd(&text);
    users
        .iter()
        .find(|u| u.name == user)
        .unwrap_or_else(|| panic!("no user {user}"))
        .uid
}

/// When [`sigterm_stops_start_up`] sends its SIGTERM.
pub enum Until<'a> {
    /// Once the entrypoint has said this on stderr.
    Said(&'a str),
    /// After this long (the entrypoint is inside something that says nothing).
    After(Duration),
}

/// Two tests from `fn body(inits: &[Init])`: `exec` starts the entrypoint directly, `pid1` as PID 1 of a new PID
/// namespace (needs root, so `#[ignore]`d: scripts/test runs it as root).
#[macro_export]
macro_rules! exec_and_pid1_tests {
    ($exec:ident, $pid1:ident, $body:ident) => {
        #[test]
        fn $exec() {
            $body(&[$crate::util::Init::Exec]);
        }

        #[test]
        #[ignore = "needs root: scripts/test runs it as root"]
        fn $pid1() {
            $crate::require_root!();
            $body(&[$crate::util::Init::Pid1]);
        }
    };
}

/// How [`sigterm_stops_start_up`] starts the entrypoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Directly, as a child of the test.
    Exec,
    /// As PID 1 of a new PID namespace (needs root: the test is `#[ignore = "needs root…"]`).
    Pid1,
}

/// Starts `airflow scheduler` with `env` in each of `inits`, sends SIGTERM at `until`: the entrypoint must exit
/// 143 within 1.5 s, saying `said`, without running the command.
pub fn sigterm_stops_start_up(
    inits: &[Init],
    env: &[(&str, &str)],
    until: Until,
    said: &str,
    wrap: fn(Command) -> Command,
) {
    let stub = Stub::new();
    let cmds = inits.iter().map(|init| match init {
        Init::Exec => ("exec", stub.entrypoint(&["airflow", "scheduler"])),
        Init::Pid1 => {
            require_root!();
            let mut c = pid1(ENTRYPOINT, &["airflow", "scheduler"]);
            c.env_clear().env("PATH", stub.path()).envs(same_user());
            ("pid1", c)
        }
    });
    for (mode, mut c) in cmds {
        c.envs(env.iter().copied());
        let mut p = Proc::spawn(wrap(c));
        match until {
            Until::Said(text) => p.wait_stderr(text, Duration::from_secs(20)),
            Until::After(settle) => {
                std::thread::sleep(settle);
                assert!(p.running(), "{mode}: ended early: {}", p.stderr());
            }
        }
        let target = if mode == "pid1" { p.ns_init() } else { p.pid() };
        let sent = Instant::now();
        kill(target, libc::SIGTERM);
        let status = p.wait(Duration::from_secs(20));
        assert!(
            sent.elapsed() < Duration::from_millis(1500),
            "{mode}: took {:?} to stop: {}",
            sent.elapsed(),
            p.stderr()
        );
        assert_eq!(code(status), 143, "{mode}: {}", p.stderr());
        assert!(p.stderr().contains(said), "{mode}: {}", p.stderr());
        assert!(stub.calls().is_empty(), "{mode}: {:?}", stub.calls());
    }
}
