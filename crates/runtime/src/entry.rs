//! `/entrypoint`: identity, start-up work, then the command (supervised when PID 1, exec'd otherwise).

use crate::airflow;
use crate::init::{self, Command, Config, Signals};
use crate::log::clip;
use crate::passwd::{self, Account};
use crate::privilege::{self, Plan};
use crate::syscall::{Real, Syscall};
use crate::url::{self, Parsed};
use crate::wait::{self, Policy};
use crate::{say, warn};
use std::env;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Exit status for bad input: malformed URL, invalid setting, no command, unknown user.
pub const EXIT_CONFIG: i32 = 2;
/// Exit status for a failed start-up (gave up waiting, privilege error).
pub const EXIT_STARTUP: i32 = 1;

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

/// Start-up ended early: print nothing more, exit with this status.
struct Stop(i32);

pub fn main() -> i32 {
    crate::log::configure("entrypoint", 1);
    // A setuid copy drops privileges before it looks at anything the caller controls.
    let via_setuid = privilege::running_setuid(&Real);
    if via_setuid {
        if let Err(e) = setuid_step_down() {
            say!("refusing to step down: {e}");
            return EXIT_STARTUP;
        }
    }
    let verbosity = var("TINI_VERBOSITY")
        .map(|v| v.trim().parse().unwrap_or(1))
        .unwrap_or(1);
    crate::log::configure("entrypoint", verbosity);
    let sigs = match Signals::take_over() {
        Ok(s) => s,
        Err(e) => {
            say!("{e}");
            return EXIT_STARTUP;
        }
    };
    let argv: Vec<OsString> = env::args_os().skip(1).collect();
    let cmd = match Command::new(&argv) {
        Ok(c) => c,
        Err(e) => {
            say!("{e} (usage: /entrypoint COMMAND [ARGS...])");
            return EXIT_CONFIG;
        }
    };
    if !via_setuid {
        if let Err(Stop(code)) = establish_identity(&argv, &sigs) {
            return code;
        }
    }
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Err(Stop(code)) = start_up(&words, &sigs) {
        return code;
    }
    if init::is_pid1() {
        let cfg = Config {
            kill_process_group: env::var_os("TINI_KILL_PROCESS_GROUP").is_some(),
            ..Config::default()
        };
        match init::spawn(&cmd, &sigs) {
            Ok(child) => init::supervise(child, &cfg, &sigs),
            Err(e) => {
                say!("{e}");
                EXIT_STARTUP
            }
        }
    } else {
        if let Err(e) = sigs.restore() {
            say!("cannot restore the signal mask and handlers before exec: {e}");
            return EXIT_STARTUP;
        }
        cmd.exec()
    }
}

fn set_identity_env(acc: &Account) {
    env::set_var("HOME", &acc.user.home);
    env::set_var("USER", &acc.user.name);
    env::set_var("LOGNAME", &acc.user.name);
}

/// The setuid copy's whole job before it becomes a normal entrypoint: drop to the fixed target.
fn setuid_step_down() -> Result<(), privilege::Error> {
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| privilege::Error::Io("/proc/self/exe".into(), e))?;
    let target = privilege::setuid_target(&exe)?;
    let (users, groups) = passwd::load(Path::new(passwd::PASSWD), Path::new(passwd::GROUP))
        .map_err(|e| privilege::Error::Io(passwd::PASSWD.into(), e))?;
    let acc = privilege::resolve_unprivileged(&target, &users, &groups)?;
    privilege::step_down(&Real, &acc)?;
    set_identity_env(&acc);
    env::remove_var(privilege::TRIED_ENV);
    Ok(())
}

fn establish_identity(argv: &[OsString], sigs: &Signals) -> Result<(), Stop> {
    let sys = Real;
    let uid = sys.getuid();
    let astronomer_uid = match var("ASTRONOMER_UID").map(|v| v.trim().parse::<u32>()) {
        None => 50000,
        Some(Ok(u)) => u,
        Some(Err(_)) => {
            say!("ASTRONOMER_UID must be a numeric uid");
            return Err(Stop(EXIT_CONFIG));
        }
    };
    let user = var("ASTRONOMER_USER").unwrap_or_else(|| "astro".into());
    let copy = PathBuf::from(
        var(privilege::STEPDOWN_ENV).unwrap_or_else(|| privilege::STEPDOWN_PATH.into()),
    );
    let executable = std::ffi::CString::new(copy.as_os_str().as_encoded_bytes())
        // SAFETY: the pointer comes from a CString that outlives the call; access only reads the path.
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
        .unwrap_or(false);
    let inputs = privilege::Inputs {
        uid,
        astronomer_uid,
        astronomer_user: &user,
        setuid_copy: executable.then_some(copy),
        already_tried: env::var_os(privilege::TRIED_ENV).is_some(),
    };
    match privilege::plan(&inputs) {
        Plan::Keep => Ok(()),
        Plan::StepDown(spec) => {
            let (users, groups) = passwd::load(Path::new(passwd::PASSWD), Path::new(passwd::GROUP))
                .map_err(|e| {
                    say!("cannot read {}: {e}", passwd::PASSWD);
                    Stop(EXIT_STARTUP)
                })?;
            let Some(acc) = passwd::resolve(&spec, &users, &groups) else {
                say!(
                    "ASTRONOMER_USER={}: no such user in {}",
                    clip(&spec),
                    passwd::PASSWD
                );
                return Err(Stop(EXIT_CONFIG));
            };
            privilege::step_down(&sys, &acc).map_err(|e| {
                say!("cannot step down to {}: {e}", clip(&spec));
                Stop(EXIT_STARTUP)
            })?;
            set_identity_env(&acc);
            Ok(())
        }
        Plan::ExecSetuid(path) => {
            env::set_var(privilege::TRIED_ENV, "1");
            let _ = sigs.restore();
            let err = std::process::Command::new(&path)
                .arg0("/entrypoint")
                .args(argv)
                .exec();
            say!("cannot run the step-down program {}: {err}", path.display());
            Err(Stop(EXIT_STARTUP))
        }
        Plan::Arbitrary => {
            env::remove_var(privilege::TRIED_ENV);
            make_usable(uid, sys.getgid(), astronomer_uid, &user);
            Ok(())
        }
    }
}

fn writable_dir(p: &str) -> bool {
    Path::new(p).is_dir()
        && std::ffi::CString::new(p)
            // SAFETY: the pointer comes from a CString that outlives the call; access only reads the path.
            .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0)
            .unwrap_or(false)
}

/// OpenShift-style arbitrary UID: keep it, give it a name and a writable HOME, warn once, never fail.
fn make_usable(uid: u32, gid: u32, astronomer_uid: u32, astronomer_user: &str) {
    let users = std::fs::read_to_string(passwd::PASSWD)
        .map(|t| passwd::parse_passwd(&t))
        .unwrap_or_default();
    let fallback = var("AIRFLOW_HOME")
        .filter(|h| writable_dir(h))
        .unwrap_or_else(|| "/tmp".into());
    let entry = passwd::by_uid(uid, &users).cloned();
    let mut note = String::new();
    let name = match &entry {
        Some(u) => u.name.clone(),
        None => {
            note = match privilege::arbitrary_passwd_line(uid, gid, &fallback) {
                // AIRFLOW_HOME with a ':' or a control character: it must not reach the file.
                None => format!(
                    "; no entry added to {} (the home folder holds ':' or a control character)",
                    passwd::PASSWD
                ),
                Some(line) => {
                    let appended = std::fs::OpenOptions::new()
                        .append(true)
                        .open(passwd::PASSWD)
                        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
                    if appended.is_ok() {
                        format!("; added astro-{uid} to {}", passwd::PASSWD)
                    } else {
                        format!("; no entry in {} (not writable)", passwd::PASSWD)
                    }
                }
            };
            format!("astro-{uid}")
        }
    };
    let home_now = var("HOME");
    let home = match (&home_now, &entry) {
        (Some(h), _) if writable_dir(h) => h.clone(),
        (_, Some(u)) if writable_dir(&u.home) => u.home.clone(),
        _ => fallback,
    };
    env::set_var("HOME", &home);
    env::set_var("USER", &name);
    env::set_var("LOGNAME", &name);
    warn!(
        "running as uid {uid}, which is neither root nor {} (ASTRONOMER_UID={astronomer_uid}); \
         keeping it with HOME={}{note}",
        clip(astronomer_user),
        clip(&home)
    );
}

/// Most a `…_CMD` may print: a URL or a password, never megabytes.
const CMD_OUTPUT_MAX: usize = 64 * 1024;

/// Run `sh -c <cmd>` for a `…_CMD` variable and take its stdout. The value is what the command printed by the time
/// the shell exits: a process it left in the background holding stdout (`echo URL; sleep 30 &`) does not hold up
/// start-up. While it runs, signals are forwarded to its process group; SIGTERM, SIGINT, SIGQUIT or SIGHUP stop
/// start-up at once with 128+N (the group gets the signal, then SIGKILL if the shell has not exited within 1 s).
fn run_cmd_var(name: &str, cmd: &str, sigs: &Signals) -> Result<String, Stop> {
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    // std resets the mask to empty; hand the command the mask and dispositions we were started with instead.
    let original = *sigs;
    // SAFETY: only async-signal-safe calls (sigprocmask, sigaction) run between fork and exec.
    unsafe {
        c.pre_exec(move || original.restore());
    }
    let mut child = c.spawn().map_err(|e| {
        say!("{name}: cannot run /bin/sh: {e}");
        Stop(EXIT_STARTUP)
    })?;
    let pid = child.id() as libc::pid_t;
    let pipe = child.stdout.take().expect("stdout is piped");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&pipe);
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut out = Vec::new();
    let mut open = true;
    let group = Config {
        kill_process_group: true,
        ..Config::default()
    };
    let code = loop {
        let woke = if open {
            sigs.wait_or_fd(fd, std::time::Duration::from_secs(1))
                .unwrap_or(init::Woke::Timeout)
        } else {
            match sigs.wait(std::time::Duration::from_secs(1)) {
                Some(s) => init::Woke::Signal(s),
                None => init::Woke::Timeout,
            }
        };
        match woke {
            init::Woke::Fd => open = drain(fd, &mut out),
            init::Woke::Signal(libc::SIGCHLD) | init::Woke::Timeout => {}
            init::Woke::Signal(sig) => {
                init::forward(sig, pid, true);
                if matches!(
                    sig,
                    libc::SIGTERM | libc::SIGINT | libc::SIGQUIT | libc::SIGHUP
                ) {
                    stop_group(pid, sigs);
                    say!("{} while running {name}; stopping", init::signal_name(sig));
                    return Err(Stop(128 + sig));
                }
            }
        }
        if let Some(code) = init::reap(pid, &group) {
            // Whatever it wrote before exiting is in the pipe; anything later is not waited for.
            if open {
                drain(fd, &mut out);
            }
            break code;
        }
        if out.len() > CMD_OUTPUT_MAX {
            stop_group(pid, sigs);
            say!(
                "{name} printed more than {} KiB; stopping",
                CMD_OUTPUT_MAX / 1024
            );
            return Err(Stop(EXIT_CONFIG));
        }
    };
    if code != 0 {
        say!("{name} failed with exit status {code}");
        return Err(Stop(EXIT_STARTUP));
    }
    if out.len() > CMD_OUTPUT_MAX {
        say!("{name} printed more than {} KiB", CMD_OUTPUT_MAX / 1024);
        return Err(Stop(EXIT_CONFIG));
    }
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// Read what the non-blocking `fd` holds now (at most a little past [`CMD_OUTPUT_MAX`]); false at end of file.
fn drain(fd: std::os::fd::RawFd, out: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        if out.len() > CMD_OUTPUT_MAX {
            return true;
        }
        // SAFETY: reading into a local buffer of that size.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return false,
            n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
            _ => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                // Nothing more for now; still open.
                Some(libc::EAGAIN) => return true,
                _ => return false,
            },
        }
    }
}

/// Stop a `_CMD`'s process group: it has had the signal; SIGKILL unless the shell exits within 1 s.
fn stop_group(pid: libc::pid_t, sigs: &Signals) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let cfg = Config::default();
    while std::time::Instant::now() < end {
        if init::reap(pid, &cfg).is_some() {
            break;
        }
        sigs.wait(std::time::Duration::from_millis(50));
    }
    // SAFETY: a signal to the group we created; harmless if it is gone.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    init::reap(pid, &cfg);
}

/// The first set variable among `names`, then their `_CMD` forms.
fn connection(names: &[&str], sigs: &Signals) -> Result<Option<(String, String)>, Stop> {
    for n in names {
        if let Some(v) = var(n) {
            return Ok(Some((n.to_string(), v)));
        }
    }
    for n in names {
        let c = format!("{n}_CMD");
        if let Some(cmd) = var(&c) {
            return Ok(Some((c.clone(), run_cmd_var(&c, &cmd, sigs)?)));
        }
    }
    Ok(None)
}

fn wait_for(what: &str, names: &[&str], policy: &Policy, sigs: &Signals) -> Result<(), Stop> {
    let Some((name, value)) = connection(names, sigs)? else {
        return Ok(());
    };
    match url::parse(&value) {
        Ok(Parsed::Local(_)) => Ok(()),
        Ok(Parsed::Targets(targets)) => wait_on(what, &name, &targets, policy, sigs),
        Err(e) => Err(bad_url(&name, e)),
    }
}

/// One line naming the variable and the problem, never the value.
fn bad_url(name: &str, e: url::UrlError) -> Stop {
    say!("{name} is not a valid connection URL: {e}");
    Stop(EXIT_CONFIG)
}

fn wait_on(
    what: &str,
    name: &str,
    targets: &[url::Target],
    policy: &Policy,
    sigs: &Signals,
) -> Result<(), Stop> {
    match wait::wait_for(what, name, targets, policy, sigs, &mut |t| {
        wait::attempt(sigs, t)
    }) {
        wait::Waited::Ready => Ok(()),
        wait::Waited::GaveUp(line) => {
            say!("{line}");
            Err(Stop(EXIT_STARTUP))
        }
        wait::Waited::Interrupted(sig) => {
            say!(
                "{} while waiting for the {what}; stopping",
                init::signal_name(sig)
            );
            Err(Stop(128 + sig))
        }
    }
}

/// Run one start-up command as a supervised child; any failure stops start-up.
fn task(argv: &[String], label: &str, sigs: &Signals) -> Result<(), Stop> {
    match run_task(argv, label, sigs)? {
        0 => Ok(()),
        code => Err(task_failed(label, code)),
    }
}

/// One start-up command as a supervised child: its exit status (128+N when a signal ended it).
fn run_task(argv: &[String], label: &str, sigs: &Signals) -> Result<i32, Stop> {
    let os: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let cmd = Command::new(&os).map_err(|e| {
        say!("{label}: {e}");
        Stop(EXIT_CONFIG)
    })?;
    say!("running {label}");
    Ok(match init::spawn(&cmd, sigs) {
        Ok(child) => init::supervise(child, &Config::default(), sigs),
        Err(e) => {
            say!("{label}: {e}");
            EXIT_STARTUP
        }
    })
}

fn task_failed(label: &str, code: i32) -> Stop {
    say!("{label} failed with exit status {code}; not starting the command (see its output above)");
    Stop(code)
}

/// Pauses before a start-up task that lost a race is tried again. Two `airflow sync-perm` at once (the Helm chart's
/// create-user job beside a starting web server) race on FAB's permission rows, and two `airflow db migrate` at
/// once (several containers with `_AIRFLOW_DB_MIGRATE`) on FAB's tables, which Airflow's migration lock does not
/// cover: the loser fails on a duplicate key or table. What it wanted exists once the winner has committed, so a
/// later try succeeds; a real failure fails three times.
const RETRY_AFTER: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(4)];

/// [`task`], tried again after [`RETRY_AFTER`] when it ends with an ordinary failure (`why` says why it may have).
fn task_retried(argv: &[String], label: &str, why: &str, sigs: &Signals) -> Result<(), Stop> {
    for pause in RETRY_AFTER {
        match run_task(argv, label, sigs)? {
            0 => return Ok(()),
            // An ordinary failure (an exception exits 1); not a signal, not a missing program.
            code @ 1..=125 => {
                say!(
                    "{label} failed with exit status {code}; {why}: trying again in {} s",
                    pause.as_secs()
                );
                pause_interruptibly(pause, sigs)?;
            }
            code => return Err(task_failed(label, code)),
        }
    }
    task(argv, label, sigs)
}

/// Sleeps for `pause`, but a stop signal (TERM, INT, QUIT, HUP) ends start-up at once with 128+N.
fn pause_interruptibly(pause: Duration, sigs: &Signals) -> Result<(), Stop> {
    let deadline = Instant::now() + pause;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(sig) = sigs.wait(left) {
            if matches!(
                sig,
                libc::SIGTERM | libc::SIGINT | libc::SIGQUIT | libc::SIGHUP
            ) {
                say!("{} during start-up; stopping", init::signal_name(sig));
                return Err(Stop(128 + sig));
            }
        }
    }
    Ok(())
}

/// [`task`], with `input` written to the command's stdin, in a session of its own: with no controlling terminal,
/// a prompt (Python's getpass) reads stdin instead of waiting at the container's terminal.
fn task_fed(argv: &[String], label: &str, input: &[u8], sigs: &Signals) -> Result<(), Stop> {
    say!("running {label}");
    let mut c = std::process::Command::new(&argv[0]);
    c.args(&argv[1..]).stdin(Stdio::piped());
    let original = *sigs;
    // SAFETY: only async-signal-safe calls (setsid, sigprocmask, sigaction) run between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            original.restore()
        });
    }
    let mut child = c.spawn().map_err(|e| {
        say!("{label}: {e}");
        Stop(EXIT_STARTUP)
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A few bytes: the pipe takes them at once. Closing it is the end of the answers.
        let _ = std::io::Write::write_all(&mut stdin, input);
    }
    let code = init::supervise(child.id() as libc::pid_t, &Config::default(), sigs);
    if code != 0 {
        say!("{label} failed with exit status {code}; not starting the command (see its output above)");
        return Err(Stop(code));
    }
    Ok(())
}

fn start_up(words: &[String], sigs: &Signals) -> Result<(), Stop> {
    if let Some(e) = airflow::executor_shim(
        var("EXECUTOR").as_deref(),
        var(airflow::EXECUTOR_VAR).as_deref(),
    ) {
        env::set_var(airflow::EXECUTOR_VAR, e);
    }
    let kind = airflow::classify(words);
    let (version, auth_manager, executor) = (
        var(airflow::VERSION_VAR),
        var(airflow::AUTH_MANAGER_VAR),
        var(airflow::EXECUTOR_VAR),
    );
    let plan = airflow::plan(
        &kind,
        &airflow::Settings {
            airflow_version: version.as_deref(),
            auth_manager: auth_manager.as_deref(),
            executor: executor.as_deref(),
            jwt_secret_set: airflow::JWT_SECRET_VARS.iter().any(|n| var(n).is_some()),
            migrate: airflow::truthy(
                var("_AIRFLOW_DB_MIGRATE")
                    .or_else(|| var("_AIRFLOW_DB_UPGRADE"))
                    .as_deref(),
            ),
            user_create: airflow::truthy(var("_AIRFLOW_WWW_USER_CREATE").as_deref()),
        },
    );
    let policy = Policy::from_env(
        var("CONNECTION_CHECK_MAX_COUNT").as_deref(),
        var("CONNECTION_CHECK_SLEEP_TIME").as_deref(),
    )
    .map_err(|e| {
        say!("{e}");
        Stop(EXIT_CONFIG)
    })?;
    // Parsed now, so a malformed URL stops start-up before anything runs; waited for after the start-up tasks.
    let execution_api = match (&policy, plan.wait_execution_api) {
        (Some(_), true) => var(airflow::EXECUTION_API_VAR)
            .map(|v| url::parse_http(&v).map_err(|e| bad_url(airflow::EXECUTION_API_VAR, e)))
            .transpose()?,
        _ => None,
    };
    if plan.jwt_warning {
        warn!(
            "{} is not set (nor {} or {}): all components of one Airflow 3 deployment (api-server, scheduler, \
             dag-processor, triggerer, workers) must share the same JWT secret, otherwise tasks fail with \
             authentication errors between workers and the API server; set the same value in every container",
            airflow::JWT_SECRET_VARS[0],
            airflow::JWT_SECRET_VARS[1],
            airflow::JWT_SECRET_VARS[2]
        );
    }
    if plan.user_needs_fab {
        warn!(
            "_AIRFLOW_WWW_USER_CREATE is set, but creating a user needs the FAB auth manager and {} is {}: no \
             user is created; with the Simple auth manager set AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS (e.g. \
             admin:admin) instead, or use FAB ({})",
            airflow::AUTH_MANAGER_VAR,
            clip(auth_manager.as_deref().unwrap_or_default()),
            airflow::FAB_AUTH_MANAGER
        );
    }
    // Resolved before anything runs, so a missing password stops start-up before the database is touched.
    let user = if plan.create_user {
        Some(user_create_command(sigs)?)
    } else {
        None
    };
    if let Some(policy) = &policy {
        if plan.wait_db {
            wait_for(
                "database",
                &[
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                    "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
                ],
                policy,
                sigs,
            )?;
        }
        if plan.wait_broker {
            wait_for("broker", &["AIRFLOW__CELERY__BROKER_URL"], policy, sigs)?;
        }
    }
    if plan.migrate {
        task_retried(
            &["airflow".into(), "db".into(), "migrate".into()],
            "airflow db migrate",
            "another migration may be running at the same time",
            sigs,
        )?;
    }
    // The image does not sync FAB permissions per webserver worker, so the roles exist only after
    // sync-perm: it must run before a user is given one, and once before every webserver or api-server.
    if plan.sync_perm {
        task_retried(
            &["airflow".into(), "sync-perm".into()],
            "airflow sync-perm",
            "another sync-perm may be writing the same permissions",
            sigs,
        )?;
    }
    if let Some((argv, label, password)) = &user {
        task_fed(argv, label, password, sigs)?;
    }
    // Last: the API server may itself be waiting for the migration above.
    if let (Some(policy), Some(target)) = (&policy, execution_api) {
        wait_on(
            "execution API server",
            airflow::EXECUTION_API_VAR,
            &[target],
            policy,
            sigs,
        )?;
    }
    Ok(())
}

/// `airflow users create …` from the `_AIRFLOW_WWW_USER_*` variables, the label that hides the password, and what
/// to write to its stdin: the password is never an argument (arguments are world-readable in /proc while the
/// command runs), it answers the command's two password prompts.
fn user_create_command(sigs: &Signals) -> Result<(Vec<String>, String, Vec<u8>), Stop> {
    let username = var("_AIRFLOW_WWW_USER_USERNAME").unwrap_or_else(|| "admin".into());
    let password = match (
        var("_AIRFLOW_WWW_USER_PASSWORD"),
        var("_AIRFLOW_WWW_USER_PASSWORD_CMD"),
    ) {
        (Some(p), _) => p,
        (None, Some(c)) => run_cmd_var("_AIRFLOW_WWW_USER_PASSWORD_CMD", &c, sigs)?,
        (None, None) => {
            say!("_AIRFLOW_WWW_USER_CREATE is set but neither _AIRFLOW_WWW_USER_PASSWORD nor _AIRFLOW_WWW_USER_PASSWORD_CMD is");
            return Err(Stop(EXIT_CONFIG));
        }
    };
    if password.contains(['\n', '\r']) {
        say!("the _AIRFLOW_WWW_USER_PASSWORD value holds a line break, which airflow users create cannot read from its password prompt");
        return Err(Stop(EXIT_CONFIG));
    }
    let field =
        |n: &str, d: &str| var(&format!("_AIRFLOW_WWW_USER_{n}")).unwrap_or_else(|| d.into());
    let argv = vec![
        "airflow".into(),
        "users".into(),
        "create".into(),
        "--username".into(),
        username.clone(),
        "--firstname".into(),
        field("FIRSTNAME", "Airflow"),
        "--lastname".into(),
        field("LASTNAME", "Admin"),
        "--email".into(),
        field("EMAIL", "airflowadmin@example.com"),
        "--role".into(),
        field("ROLE", "Admin"),
    ];
    let label = format!(
        "airflow users create --username {} (password not shown)",
        clip(&username)
    );
    // Without --password, `users create` asks for it twice (getpass); with no terminal it reads stdin.
    let input = format!("{password}\n{password}\n").into_bytes();
    Ok((argv, label, input))
}
