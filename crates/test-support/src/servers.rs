//! Redis and PostgreSQL for tests, on loopback, in temp dirs.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, poll, run, tempdir};

/// A throw-away Redis on 127.0.0.1 with no persistence, its output in a log file, killed on drop.
pub struct Redis {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Redis {
    /// Starts `redis-server` on `port` and returns at once: it may not answer yet (what tests of waiting want).
    pub fn spawn(port: u16) -> Redis {
        let dir = tempdir("ts-redis-");
        let log = fs::File::create(dir.path().join("redis.log")).expect("create redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis.log"))
            .stderr(log)
            .spawn()
            .expect("run redis-server");
        Redis { child, dir, port }
    }

    /// On a free port, once it answers PING. A port can be taken between choosing and binding it: three tries.
    pub fn start() -> Redis {
        let mut log = String::new();
        for _ in 0..3 {
            let mut r = Redis::spawn(free_port());
            let up = poll(Duration::from_secs(10), Duration::from_millis(50), || {
                if let Ok(Some(_)) = r.child.try_wait() {
                    return Some(false);
                }
                redis_ping(r.port).then_some(true)
            });
            if up == Some(true) {
                return r;
            }
            log = r.log();
        }
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "Redis did not start:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }

    pub fn ping(&self) -> bool {
        redis_ping(self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a Redis on 127.0.0.1:`port` answers `PING` with `+PONG` (2 s at most).
pub fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// Debian's PostgreSQL 15 (scripts/setup-host installs it).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// `PG_BIN/program` run as the `postgres` user (needs root). setpriv execs it directly (runuser would fork), so a
/// spawned child's pid is the program's own.
pub fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(format!("{PG_BIN}/{program}"));
    c
}

/// A new cluster: a temp dir owned by `postgres` with the cluster in `data/`, made by `initdb -U postgres
/// --no-sync` and `args` (authentication, encoding). Returns the dir (deleted on drop) and the data folder.
pub fn initdb(args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir("ts-pg-");
    run(Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir.path()))
    .assert_success();
    let data = dir.path().join("data");
    run(as_postgres("initdb")
        .args(["-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .args(args))
    .assert_success();
    (dir, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_answers_ping_and_stops_on_drop() {
        let port;
        {
            let r = Redis::start();
            port = r.port;
            assert!(r.ping());
        }
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
