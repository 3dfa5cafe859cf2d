//! Waiting stays bounded, cheap and interruptible (issue #11, items 1–3): no spinning, every attempt ends within
//! its time however the server behaves, and a signal ends the wait at once whatever the attempt is doing.

use crate::exec_and_pid1_tests;
use crate::require_root;
use crate::util::*;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn as_is(c: Command) -> Command {
    c
}

#[test]
fn zero_sleep_time_neither_spins_nor_ignores_sigterm() {
    // 0 is inside the documented range; so is 1e-9. Both are raised to the floor.
    let closed = Reserved::new();
    let url = format!("postgresql://a:b@127.0.0.1:{}/x", closed.port);
    for sleep in ["0", "1e-9"] {
        let stub = Stub::new();
        let mut c = stub.entrypoint(&["airflow", "scheduler"]);
        c.env("CONNECTION_CHECK_SLEEP_TIME", sleep)
            .env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", &url);
        let mut p = Proc::spawn(c);
        p.wait_stderr("waiting for the database", T);
        let before = cpu_seconds(p.pid());
        std::thread::sleep(Duration::from_secs(2));
        let used = cpu_seconds(p.pid()) - before;
        assert!(used < 0.2, "{sleep}: {used:.2} CPU-s in 2 s of waiting");
        let sent = Instant::now();
        kill(p.pid(), libc::SIGTERM);
        let status = p.wait(T);
        assert!(
            sent.elapsed() < Duration::from_millis(1500),
            "{sleep}: took {:?}",
            sent.elapsed()
        );
        assert_eq!(code(status), 143, "{sleep}: {}", p.stderr());
    }
}

#[test]
fn a_server_trickling_bytes_cannot_hold_an_attempt() {
    // Each read returns a byte, so per-read timeouts never fire: only the attempt's own deadline ends it.
    // PostgreSQL: the start of an ErrorResponse announcing 4 KiB; Redis: a reply line that never ends.
    let cases: [(&str, &'static [u8], u8); 2] = [
        (
            "postgresql://u:p@127.0.0.1:{port}/x",
            b"E\x00\x00\x10\x00S",
            b'x',
        ),
        ("redis://127.0.0.1:{port}/0", b"+PO", b'N'),
    ];
    for (url, first, then) in cases {
        let reserved = Reserved::new();
        let url = url.replace("{port}", &reserved.port.to_string());
        let _server = reserved.trickle(first, then);
        let stub = Stub::new();
        let start = Instant::now();
        let (rc, out) = run(
            &stub,
            &["airflow", "celery", "worker"],
            &[
                ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", &url),
                ("CONNECTION_CHECK_MAX_COUNT", "2"),
            ],
        );
        let took = start.elapsed();
        assert_eq!(rc, 1, "{url}: {out}");
        assert!(out.contains("after 2 attempts"), "{url}: {out}");
        // Two attempts of at most 2 s each, plus a pause.
        assert!(took < Duration::from_secs(6), "{url}: took {took:?}: {out}");
        assert!(stub.calls().is_empty());
    }
}

exec_and_pid1_tests!(
    sigterm_mid_attempt_ends_a_failover_list_of_silent_brokers_at_once,
    sigterm_mid_attempt_ends_a_failover_list_of_silent_brokers_at_once_as_pid1,
    sigterm_mid_attempt_ends_a_failover_list_of_silent_brokers_at_once_in
);

fn sigterm_mid_attempt_ends_a_failover_list_of_silent_brokers_at_once_in(inits: &[Init]) {
    // Twelve brokers that accept and never answer: one round of attempts takes 12 s or more.
    let silent: Vec<_> = (0..12).map(|_| Reserved::new()).collect();
    let url = silent
        .iter()
        .map(|r| format!("redis://127.0.0.1:{}/0", r.port))
        .collect::<Vec<_>>()
        .join(";");
    let _listening: Vec<_> = silent.into_iter().map(Reserved::silent).collect();
    sigterm_stops_start_up(
        inits,
        &[
            ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite:////tmp/x.db"),
            ("AIRFLOW__CELERY__BROKER_URL", &url),
        ],
        Until::After(Duration::from_millis(2500)),
        "SIGTERM while waiting for the broker",
        as_is,
    );
}

/// In a private mount namespace, a resolv.conf naming a DNS server that never answers.
fn with_silent_dns(c: Command) -> Command {
    let prog = c.get_program().to_owned();
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    let mut w = Command::new("unshare");
    w.args(["--mount", "--", "/bin/sh", "-c"])
        .arg("mount --bind \"$APRT_RESOLV\" /etc/resolv.conf && exec \"$@\"")
        .arg("sh")
        .arg(prog)
        .args(args);
    // Every command here starts from a cleared environment; get_envs lists what was set on top of it.
    let kept: Vec<_> = c
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect();
    w.env_clear().envs(kept);
    w
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn sigterm_ends_a_hanging_name_lookup_at_once() {
    require_root!();
    // A DNS server on a loopback address that receives queries and never answers (glibc retries for ~10 s).
    let dns = std::net::UdpSocket::bind("127.0.0.77:53").expect("bind 127.0.0.77:53");
    let dir = tempdir();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.77\noptions timeout:5 attempts:2\n",
    )
    .unwrap();
    let resolv = resolv.display().to_string();
    let env = [
        ("APRT_RESOLV", resolv.as_str()),
        (
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            "postgresql://u:p@aprt-no-such-host.example.com/x",
        ),
    ];
    sigterm_stops_start_up(
        &[Init::Exec, Init::Pid1],
        &env,
        Until::After(Duration::from_millis(1000)),
        "SIGTERM while waiting for the database",
        with_silent_dns,
    );
    // Each attempt is bounded too: two attempts give up in seconds, not 20.
    let stub = Stub::new();
    let mut c = stub.entrypoint(&["airflow", "scheduler"]);
    c.envs(env).env("CONNECTION_CHECK_MAX_COUNT", "2");
    let start = Instant::now();
    let out = with_silent_dns(c).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{err}");
    assert!(err.contains("after 2 attempts"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "took {:?}: {err}",
        start.elapsed()
    );
    drop(dns);
}

#[test]
fn only_a_postgresql_reply_is_a_ready_database() {
    // Issue #11 item 5: an HTTP server (or anything else that answers) on the port is not a database.
    let reserved = Reserved::new();
    let port = reserved.port;
    // Answers at once, whatever was sent (an HTTP server replies 400 to a StartupMessage).
    let _http = reserved.trickle(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        b' ',
    );
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "scheduler"],
        &[
            (
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                &format!("postgresql://u:p@127.0.0.1:{port}/x"),
            ),
            ("CONNECTION_CHECK_MAX_COUNT", "2"),
        ],
    );
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("after 2 attempts"), "{out}");
    assert!(
        out.trim_end().ends_with(": not a PostgreSQL reply"),
        "{out}"
    );
    assert!(stub.calls().is_empty(), "{:?}", stub.calls());
}
