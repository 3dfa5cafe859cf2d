//! What the workspace's test crates share (a dev-dependency of each, never published): free loopback ports,
//! polling with a deadline, temp dirs, commands whose failed assertions show what they printed, and Redis and
//! PostgreSQL on loopback.

mod command;
mod servers;

pub use command::{run, Ran, RunExt};
pub use servers::{as_postgres, initdb, redis_ping, Redis, PG_BIN};

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on (bound, then released), never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().unwrap().port();
        if given.insert(port) {
            return port;
        }
    }
}

/// Calls `f` every `every` until it returns `Some` or `timeout` passes (it is called once more at the deadline).
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Polls `f` every 10 ms until it returns `Some`; panics naming `what` after `limit`.
#[track_caller]
pub fn wait_for<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    match poll(limit, Duration::from_millis(10), f) {
        Some(v) => v,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A temp dir whose name starts with `prefix` (so a left-over one says which tests made it), removed on drop.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temp dir")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_polling_keeps_its_deadline() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        let t0 = Instant::now();
        assert_eq!(
            poll(
                Duration::from_millis(300),
                Duration::from_millis(50),
                || None::<()>
            ),
            None
        );
        assert!(t0.elapsed() < Duration::from_secs(2));
        let mut n = 0;
        assert_eq!(
            poll(Duration::from_secs(5), Duration::from_millis(1), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for nothing")]
    fn wait_for_names_what_it_waited_for() {
        wait_for("nothing", Duration::from_millis(50), || None::<()>);
    }

    #[test]
    fn temp_dirs_carry_their_prefix_and_go_on_drop() {
        let d = tempdir("ts-test-");
        let path = d.path().to_path_buf();
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("ts-test-"));
        drop(d);
        assert!(!path.exists());
    }
}
