//! The PID-1 supervisor shared by `tini` and `/entrypoint`, modelled on tini: block every catchable signal,
//! wait for them with `sigtimedwait` (so no handler, no self-pipe, no busy loop), forward each to the child,
//! reap every zombie, exit with the child's status.
//!
//! The child is created with a raw `clone` + `execvp` on purpose: `std::process::Command` resets the signal mask
//! to empty, and we must hand the child the mask and SIGTTIN/SIGTTOU dispositions *we* were started with.

use crate::{debug, fatal, info, trace, warn};
use std::ffi::{CString, OsString};
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// Signals that are never blocked: they report faults in this process itself (and job control, which tini
/// handles by ignoring instead).
const UNBLOCKED: &[libc::c_int] = &[
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// How the init was configured (tini's flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub subreaper: bool,
    pub kill_process_group: bool,
    pub parent_death_signal: Option<libc::c_int>,
    pub warn_on_reap: bool,
    /// Exit codes remapped to 0 (`-e`).
    pub expect: Vec<u8>,
}

/// The signal state we started with (handed back to children) and the set we wait on. Plain data, so a copy
/// can move into a `pre_exec` closure.
#[derive(Clone, Copy)]
pub struct Signals {
    waited: libc::sigset_t,
    original_mask: libc::sigset_t,
    ttin: libc::sigaction,
    ttou: libc::sigaction,
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Signals {
    /// Block all catchable signals (remembering the original mask) and ignore SIGTTIN/SIGTTOU, so that
    /// `tcsetpgrp` from a background group does not stop us.
    pub fn take_over() -> io::Result<Signals> {
        // SAFETY: sigset_t and sigaction are plain C structs for which all zeroes is valid; every pointer passed is
        // to a local that outlives its call.
        unsafe {
            let mut waited = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            let mut original_mask = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            libc::sigfillset(&mut waited);
            for &s in UNBLOCKED {
                libc::sigdelset(&mut waited, s);
            }
            if libc::sigprocmask(libc::SIG_SETMASK, &waited, &mut original_mask) != 0 {
                return Err(os_err("sigprocmask"));
            }
            let mut ign: libc::sigaction = MaybeUninit::zeroed().assume_init();
            ign.sa_sigaction = libc::SIG_IGN;
            let mut ttin: libc::sigaction = MaybeUninit::zeroed().assume_init();
            let mut ttou: libc::sigaction = MaybeUninit::zeroed().assume_init();
            if libc::sigaction(libc::SIGTTIN, &ign, &mut ttin) != 0
                || libc::sigaction(libc::SIGTTOU, &ign, &mut ttou) != 0
            {
                return Err(os_err("sigaction"));
            }
            Ok(Signals {
                waited,
                original_mask,
                ttin,
                ttou,
            })
        }
    }

    /// Undo [`Signals::take_over`] (in a child before exec, or before the entrypoint execs its command).
    ///
    /// Runs in `pre_exec` closures, between fork and exec of a possibly multi-threaded process, so it must not
    /// allocate: its errors are bare errno values (`io::Error::last_os_error` holds no heap data), which is all
    /// `Command::spawn` passes back from the child anyway.
    pub fn restore(&self) -> io::Result<()> {
        // SAFETY: the set and actions were filled by `take_over` and live in `self`; a null old-value pointer is
        // allowed.
        unsafe {
            if libc::sigprocmask(libc::SIG_SETMASK, &self.original_mask, std::ptr::null_mut()) != 0
                || libc::sigaction(libc::SIGTTIN, &self.ttin, std::ptr::null_mut()) != 0
                || libc::sigaction(libc::SIGTTOU, &self.ttou, std::ptr::null_mut()) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Wait up to `timeout` for one blocked signal; `None` on timeout.
    pub fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: the set is ours and initialised; `info` and `ts` are locals that outlive the call.
        let sig = unsafe { libc::sigtimedwait(&self.waited, info.as_mut_ptr(), &ts) };
        (sig > 0).then_some(sig)
    }

    /// Wait up to `timeout` for one blocked signal or for `fd` to become readable (or hung up), whichever comes
    /// first. The signals stay blocked; a `signalfd` reads them, so a pending one is taken at once.
    pub fn wait_or_fd(&self, fd: std::os::fd::RawFd, timeout: Duration) -> io::Result<Woke> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: -1 asks for a new descriptor; the set is ours and initialised.
        let raw =
            unsafe { libc::signalfd(-1, &self.waited, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if raw < 0 {
            return Err(os_err("signalfd"));
        }
        // SAFETY: a fresh descriptor we own.
        let sfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let end = std::time::Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let mut fds = [
                libc::pollfd {
                    fd: sfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Rounded up, so a wait never ends before its time and never spins on a sub-millisecond rest.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
            // SAFETY: `fds` is a local array of exactly the 2 pollfds passed.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if rc < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(os_err("poll"));
            }
            if fds[0].revents & libc::POLLIN != 0 {
                let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                // SAFETY: reads at most `size` bytes into `info`, which is that size; the descriptor is open (owned
                // by `sfd`).
                let n = unsafe { libc::read(sfd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
                if n == size as isize {
                    // SAFETY: the kernel filled the whole struct.
                    return Ok(Woke::Signal(
                        unsafe { info.assume_init() }.ssi_signo as libc::c_int,
                    ));
                }
                continue;
            }
            if fds[1].revents != 0 {
                return Ok(Woke::Fd);
            }
            if rc == 0 && left.is_zero() {
                return Ok(Woke::Timeout);
            }
        }
    }
}

/// What ended [`Signals::wait_or_fd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    Signal(libc::c_int),
    Fd,
    Timeout,
}

pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// tini's reaper check: warn when orphans will not be re-parented to us.
pub fn reaper_check() {
    if is_pid1() {
        return;
    }
    let mut bit: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one c_int through the pointer, into the local `bit`.
    if unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut bit as *mut libc::c_int) } != 0 {
        debug!(
            "Failed to read child subreaper attribute: {}",
            io::Error::last_os_error()
        );
    } else if bit == 1 {
        return;
    }
    warn!(
        "{} is not running as PID 1 and isn't registered as a child subreaper.\n\
         Zombie processes will not be re-parented to {}, so zombie reaping won't work.\n\
         To fix the problem, use the -s option or set the environment variable TINI_SUBREAPER to register {} as a \
         child subreaper, or run {} as PID 1.",
        title(),
        title(),
        title(),
        title()
    );
}

fn title() -> String {
    let n = crate::log::name();
    let mut c = n.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Why `-s` or `-p` could not be applied. The messages are tini's; the OS error is the source (and, as in tini,
/// part of the one line printed).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("PR_SET_CHILD_SUBREAPER is unavailable on this platform. Are you using Linux >= 3.4?")]
    SubreaperUnavailable(#[source] io::Error),
    #[error("Failed to register as child subreaper: {0}")]
    Subreaper(#[source] io::Error),
    #[error("Failed to set up parent death signal: {0}")]
    ParentDeathSignal(#[source] io::Error),
}

/// Apply `-s` and `-p`.
pub fn apply(cfg: &Config) -> Result<(), ApplyError> {
    if cfg.subreaper
        // SAFETY: PR_SET_CHILD_SUBREAPER takes a plain integer, no pointers.
        && unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) } != 0
    {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EINVAL) {
            ApplyError::SubreaperUnavailable(e)
        } else {
            ApplyError::Subreaper(e)
        });
    }
    if cfg.subreaper {
        trace!("Registered as child subreaper");
    }
    if let Some(sig) = cfg.parent_death_signal {
        // SAFETY: PR_SET_PDEATHSIG takes a plain signal number, no pointers.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) } != 0 {
            return Err(ApplyError::ParentDeathSignal(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// A command ready for `execvp` (converted before fork, so the child allocates nothing it does not have to).
pub struct Command {
    args: Vec<CString>,
}

impl Command {
    pub fn new(argv: &[OsString]) -> Result<Command, String> {
        if argv.is_empty() {
            return Err("no command given".into());
        }
        let args = argv
            .iter()
            .map(|a| {
                CString::new(a.as_bytes()).map_err(|_| "argument contains a NUL byte".to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Command { args })
    }

    pub fn program(&self) -> String {
        self.args[0].to_string_lossy().into_owned()
    }

    /// `execvp`; only returns on failure, with tini's exit status for it (127 not found, 126 not executable).
    pub fn exec(&self) -> i32 {
        let mut ptrs: Vec<*const libc::c_char> = self.args.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: `ptrs` points into `self.args` (CStrings alive across the call) and ends with a null, as execvp
        // requires.
        unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
        let e = io::Error::last_os_error();
        let status = match e.raw_os_error() {
            Some(libc::ENOENT) => 127,
            Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) | Some(libc::EPERM) => {
                126
            }
            _ => 1,
        };
        fatal!("exec {} failed: {}", self.program(), strerror(&e));
        status
    }
}

/// The C library's message for an error, without Rust's " (os error N)" suffix (tini's wording).
pub fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

/// Formats into a fixed stack buffer: the child below shares our memory until it execs and must not allocate
/// (another thread may hold the allocator's lock, and whatever it allocated would leak into our heap). Everything
/// the child formats goes through here with [`Errno`] and [`Lossy`], which write without allocating; the test
/// `child_lines_do_not_allocate` checks it with a counting allocator.
struct StackBuf {
    buf: [u8; 768],
    len: usize,
}

impl StackBuf {
    fn new() -> StackBuf {
        StackBuf {
            buf: [0; 768],
            len: 0,
        }
    }
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// An errno value as the C library describes it (for the errors the child can meet), else `errno N`; formats
/// without allocating, unlike `strerror` and `io::Error`'s Display.
#[derive(Clone, Copy)]
struct Errno(libc::c_int);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text = match self.0 {
            libc::EPERM => "Operation not permitted",
            libc::ENOENT => "No such file or directory",
            libc::ESRCH => "No such process",
            libc::EINTR => "Interrupted system call",
            libc::EIO => "Input/output error",
            libc::ENXIO => "No such device or address",
            libc::E2BIG => "Argument list too long",
            libc::ENOEXEC => "Exec format error",
            libc::EBADF => "Bad file descriptor",
            libc::EAGAIN => "Resource temporarily unavailable",
            libc::ENOMEM => "Cannot allocate memory",
            libc::EACCES => "Permission denied",
            libc::EFAULT => "Bad address",
            libc::ENOTDIR => "Not a directory",
            libc::EISDIR => "Is a directory",
            libc::EINVAL => "Invalid argument",
            libc::ENFILE => "Too many open files in system",
            libc::EMFILE => "Too many open files",
            libc::ENOTTY => "Inappropriate ioctl for device",
            libc::ETXTBSY => "Text file busy",
            libc::ENAMETOOLONG => "File name too long",
            libc::ELOOP => "Too many levels of symbolic links",
            libc::ELIBBAD => "Accessing a corrupted shared library",
            _ => return write!(f, "errno {}", self.0),
        };
        f.write_str(text)
    }
}

/// Bytes shown as UTF-8, invalid sequences as U+FFFD, without allocating (unlike `to_string_lossy`).
struct Lossy<'a>(&'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// A child's log line in `b` (same format as [`crate::log`]).
fn child_line(b: &mut StackBuf, tag: &str, args: fmt::Arguments) {
    let _ = fmt::write(
        b,
        // SAFETY: getpid has no preconditions and is async-signal-safe (this runs in the vfork child).
        format_args!("[{tag} {} ({})] {args}\n", crate::log::name(), unsafe {
            libc::getpid()
        }),
    );
}

/// A log line from the child, without allocating.
fn child_log(tag: &str, args: fmt::Arguments) {
    let mut b = StackBuf::new();
    child_line(&mut b, tag, args);
    // Like crate::log: FATAL and WARN on stderr, the rest on stdout.
    let fd = if tag == "FATAL" || tag == "WARN " {
        libc::STDERR_FILENO
    } else {
        libc::STDOUT_FILENO
    };
    // SAFETY: writes the first `b.len` bytes of `b.buf`, all within the buffer; write is async-signal-safe.
    unsafe { libc::write(fd, b.buf.as_ptr().cast(), b.len) };
}

/// The calling thread's errno, read without building an `io::Error`.
fn errno() -> libc::c_int {
    // SAFETY: __errno_location always returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// What the child needs; everything is prepared before the clone.
struct ChildCtx<'a> {
    argv: Vec<*const libc::c_char>,
    program: &'a std::ffi::CStr,
    sigs: &'a Signals,
}

/// The child: own process group, the terminal's foreground if any, original signal state, exec. It runs on the
/// parent's memory (CLONE_VM): nothing here may allocate (see [`StackBuf`]).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's ChildCtx, alive because the parent is suspended (CLONE_VFORK).
    let ctx = unsafe { &*(arg as *const ChildCtx) };
    // SAFETY: we are the vfork child on the parent's memory: only async-signal-safe calls (setpgid, getpgrp,
    // tcsetpgrp, sigprocmask, sigaction, execvp, write, _exit) and formatting into a stack buffer, no allocation;
    // the signal state and the null-terminated argv are in `ctx`, which the suspended parent keeps alive.
    unsafe {
        if libc::setpgid(0, 0) < 0 {
            child_log("FATAL", format_args!("setpgid failed: {}", Errno(errno())));
            libc::_exit(1);
        }
        if libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp()) != 0 {
            match errno() {
                libc::ENOTTY | libc::ENXIO | libc::EBADF => {
                    if crate::log::verbosity() > 2 {
                        child_log(
                            "DEBUG",
                            format_args!("tcsetpgrp failed: no tty (ok to proceed)"),
                        );
                    }
                }
                e => {
                    child_log("FATAL", format_args!("tcsetpgrp failed: {}", Errno(e)));
                    libc::_exit(1);
                }
            }
        }
        let s = ctx.sigs;
        if libc::sigprocmask(libc::SIG_SETMASK, &s.original_mask, std::ptr::null_mut()) != 0
            || libc::sigaction(libc::SIGTTIN, &s.ttin, std::ptr::null_mut()) != 0
            || libc::sigaction(libc::SIGTTOU, &s.ttou, std::ptr::null_mut()) != 0
        {
            child_log(
                "FATAL",
                format_args!("restoring signals failed: {}", Errno(errno())),
            );
            libc::_exit(1);
        }
        libc::execvp(ctx.argv[0], ctx.argv.as_ptr());
        let e = errno();
        child_log(
            "FATAL",
            format_args!(
                "exec {} failed: {}",
                Lossy(ctx.program.to_bytes()),
                Errno(e)
            ),
        );
        libc::_exit(exec_status(e));
    }
}

/// tini's exit status for a failed exec: 127 not found, 126 not executable.
fn exec_status(e: libc::c_int) -> i32 {
    match e {
        libc::ENOENT => 127,
        libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::EPERM => 126,
        _ => 1,
    }
}

/// Start `cmd` as our child. `clone(CLONE_VM | CLONE_VFORK)` on a private stack, as posix_spawn does: no page
/// tables to copy, so starting the child costs less than tini's fork. All signals are blocked in us already,
/// so no handler can run on the shared memory before the child execs.
pub fn spawn(cmd: &Command, sigs: &Signals) -> io::Result<libc::pid_t> {
    const STACK: usize = 64 * 1024;
    let mut stack = vec![0u8; STACK];
    let mut argv: Vec<*const libc::c_char> = cmd.args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let ctx = ChildCtx {
        argv,
        program: &cmd.args[0],
        sigs,
    };
    // The stack grows down; hand clone its 16-byte-aligned top.
    let top = ((stack.as_mut_ptr() as usize + STACK) & !15) as *mut libc::c_void;
    // SAFETY: `top` is the 16-byte-aligned top of `stack`, and `ctx` is on our stack: both outlive the child's use,
    // since CLONE_VFORK suspends us until it execs or exits; `child_main` only makes async-signal-safe calls and
    // does not allocate.
    let pid = unsafe {
        libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &ctx as *const ChildCtx as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(os_err("fork failed"));
    }
    info!("Spawned child process '{}' with pid '{pid}'", cmd.program());
    Ok(pid)
}

/// Status as a shell would report it: code, or 128+N for a signal.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Reap every zombie there is; returns the main child's exit code once it is among them.
pub fn reap(child: libc::pid_t, cfg: &Config) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a local the kernel writes into.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            trace!("No child to reap");
            break;
        }
        if pid < 0 {
            trace!("No child to wait");
            break;
        }
        debug!("Reaped child with pid: '{pid}'");
        if pid == child {
            let mut code = exit_code(status);
            if libc::WIFSIGNALED(status) {
                info!(
                    "Main child exited with signal (with signal '{}')",
                    strsignal(libc::WTERMSIG(status))
                );
            } else {
                info!("Main child exited normally (with status '{code}')");
            }
            code %= 256;
            if cfg.expect.contains(&(code as u8)) {
                code = 0;
            }
            result = Some(code);
        } else if cfg.warn_on_reap {
            warn!("Reaped zombie process with pid={pid}");
        }
    }
    result
}

/// Forward `sig` to the child (or its group). Returns false if the child was gone.
pub fn forward(sig: libc::c_int, child: libc::pid_t, group: bool) -> bool {
    let target = if group { -child } else { child };
    // SAFETY: kill takes no pointers; a pid that is gone only gives ESRCH.
    if unsafe { libc::kill(target, sig) } != 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            warn!("Child was dead when forwarding signal");
            return false;
        }
        fatal!(
            "Unexpected error when forwarding signal: {}",
            io::Error::last_os_error()
        );
    } else {
        debug!("Passed on signal: '{}'", strsignal(sig));
    }
    true
}

/// tini's main loop: wake at least once a second, forward, reap, return the child's (remapped) exit code.
pub fn supervise(child: libc::pid_t, cfg: &Config, sigs: &Signals) -> i32 {
    supervise_noting(child, cfg, sigs, |_| {})
}

/// [`supervise`], telling `forwarded` of each signal passed on (start-up work stops on some of them).
pub fn supervise_noting(
    child: libc::pid_t,
    cfg: &Config,
    sigs: &Signals,
    mut forwarded: impl FnMut(libc::c_int),
) -> i32 {
    loop {
        match sigs.wait(Duration::from_secs(1)) {
            Some(libc::SIGCHLD) => debug!("Received SIGCHLD"),
            Some(sig) => {
                forward(sig, child, cfg.kill_process_group);
                forwarded(sig);
            }
            None => {}
        }
        if let Some(code) = reap(child, cfg) {
            trace!("Exiting: child has exited");
            return code;
        }
    }
}

const NAMES: &[(&str, libc::c_int)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGIOT", libc::SIGIOT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

/// `SIGTERM`, `TERM`, or a number (tini accepts the `SIG…` names; the rest is leniency).
pub fn parse_signal(s: &str) -> Option<libc::c_int> {
    if let Ok(n) = s.parse::<libc::c_int>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    NAMES.iter().find(|(n, _)| *n == full).map(|&(_, s)| s)
}

/// The C library's description ("Terminated"), as tini prints it.
pub fn strsignal(sig: libc::c_int) -> String {
    // SAFETY: strsignal accepts any number; a null result is checked below.
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return signal_name(sig);
    }
    // SAFETY: `p` is non-null and points at the C library's NUL-terminated text, copied out at once.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

pub fn signal_name(sig: libc::c_int) -> String {
    NAMES
        .iter()
        .find(|(_, s)| *s == sig)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("signal {sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name() {
        for (s, want) in [
            ("SIGKILL", Some(9)),
            ("KILL", Some(9)),
            ("sigterm", Some(15)),
            ("10", Some(10)),
            ("0", None),
            ("65", None),
            ("SIGNOPE", None),
            ("", None),
        ] {
            assert_eq!(parse_signal(s), want, "{s}");
        }
        assert_eq!(signal_name(15), "SIGTERM");
    }

    /// Counts this thread's allocations (tests run in parallel threads).
    struct Counting;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call goes unchanged to the System allocator, which upholds GlobalAlloc's contract; the counting
    // only touches a thread-local Cell.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            std::alloc::System.alloc(l)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
            std::alloc::System.dealloc(p, l)
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    #[test]
    fn child_lines_do_not_allocate() {
        // Issue #11 item 10: the vfork child formatted errors with strerror()/io::Error, which allocate.
        crate::log::configure("tini", 1);
        let program = std::ffi::CString::new(b"/no/such/\xffprogram".to_vec()).unwrap();
        let before = ALLOCATIONS.with(|c| c.get());
        let mut lens = 0;
        for e in [libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::EPERM, 4095] {
            let mut b = StackBuf::new();
            child_line(
                &mut b,
                "FATAL",
                format_args!("exec {} failed: {}", Lossy(program.to_bytes()), Errno(e)),
            );
            child_line(
                &mut b,
                "FATAL",
                format_args!("setpgid failed: {}", Errno(e)),
            );
            lens += b.len;
        }
        let after = ALLOCATIONS.with(|c| c.get());
        assert_eq!(after - before, 0, "the child's log lines allocated");
        assert!(lens > 0);
        // And the text is the C library's.
        let mut b = StackBuf::new();
        child_line(
            &mut b,
            "FATAL",
            format_args!("exec {} failed: {}", Lossy(b"x"), Errno(libc::ENOENT)),
        );
        let line = std::str::from_utf8(&b.buf[..b.len]).unwrap();
        assert!(
            line.ends_with("] exec x failed: No such file or directory\n"),
            "{line}"
        );
        assert_eq!(exec_status(libc::ENOENT), 127);
        assert_eq!(exec_status(libc::EACCES), 126);
    }

    #[test]
    fn errno_texts_match_the_c_library() {
        for e in [
            libc::EPERM,
            libc::ENOENT,
            libc::EACCES,
            libc::ENOEXEC,
            libc::ENOTTY,
            libc::ETXTBSY,
            libc::ELOOP,
            libc::E2BIG,
        ] {
            assert_eq!(
                Errno(e).to_string(),
                strerror(&io::Error::from_raw_os_error(e))
            );
        }
        assert_eq!(Errno(4095).to_string(), "errno 4095");
    }

    #[test]
    fn statuses() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137);
        assert_eq!(exit_code(15), 143);
    }
}
