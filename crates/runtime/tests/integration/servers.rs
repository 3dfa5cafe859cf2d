//! The MySQL and AMQP readiness probes against real servers from Debian's packages (`mariadb-server`,
//! `rabbitmq-server`), each started on free loopback ports in a temp dir: not ready while down, ready once up,
//! an authentication error still counts as up (the server answered), and the entrypoint waits for each.

use crate::require_root;
use crate::util::*;
use airflow_runtime::probe::{probe, Outcome};
use airflow_runtime::url::{parse, Parsed, Target};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Server start-up (RabbitMQ boots an Erlang VM: several seconds on a loaded machine).
const START: Duration = Duration::from_secs(90);

fn targets(url: &str) -> Vec<Target> {
    match parse(url).unwrap() {
        Parsed::Targets(t) => t,
        Parsed::Local(_) => panic!("{url} parsed as local"),
    }
}

fn probe_url(url: &str) -> Outcome {
    probe(&targets(url)[0])
}

fn uid_gid(user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let f: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == user)
        .unwrap_or_else(|| {
            panic!("no user {user}: apt-get install mariadb-server (scripts/setup-host)")
        });
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn chown_tree(dir: &Path, user: &str) {
    let (uid, gid) = uid_gid(user);
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "chown {}", dir.display());
}

/// A MariaDB server of the test's own: `mariadb-install-db` into a temp dir, then `mariadbd` on `port`.
struct Mariadb {
    dir: tempfile::TempDir,
    port: u16,
    server: RefCell<Option<Child>>,
}

impl Mariadb {
    fn init(port: u16) -> Mariadb {
        let dir = tempdir();
        chown_tree(dir.path(), "mysql");
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=mysql", "--skip-test-db"])
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .output()
            .expect("mariadb-install-db (apt-get install mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mariadb {
            dir,
            port,
            server: RefCell::new(None),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    fn start(&self) {
        let d = self.dir.path();
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=mysql", "--bind-address=127.0.0.1"])
            .args([
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        *self.server.borrow_mut() = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// SIGTERM, up to 30 s for a clean shutdown, then SIGKILL; never panics (it runs in Drop).
fn stop(server: &mut Option<Child>) {
    let Some(mut c) = server.take() else { return };
    kill(c.id() as i32, libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        stop(self.server.get_mut());
    }
}

/// A RabbitMQ node of the test's own: its own node name, ports, cookie and data in a temp dir.
struct Rabbit {
    dir: tempfile::TempDir,
    port: u16,
    /// The node's own epmd (Erlang's port mapper), on a free port so no other node or test shares it.
    epmd: u16,
    server: RefCell<Option<Child>>,
}

impl Rabbit {
    fn new(port: u16) -> Rabbit {
        Rabbit {
            dir: tempdir(),
            port,
            epmd: free_port(),
            server: RefCell::new(None),
        }
    }

    fn start(&self) {
        let d = self.dir.path();
        let dist = free_port();
        std::fs::write(d.join("enabled_plugins"), "[].\n").unwrap();
        let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", d)
            .env(
                "RABBITMQ_NODENAME",
                format!("ap-test-{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("none"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server (apt-get install rabbitmq-server)");
        *self.server.borrow_mut() = Some(child);
    }

    fn log(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.dir.path().join("log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        all
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        stop(self.server.get_mut());
        let _ = Command::new("epmd")
            .arg("-kill")
            .env("ERL_EPMD_PORT", self.epmd.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The entrypoint runs `argv` with `env`; it must wait while the server is down and start the stub once the
/// server answers.
fn entrypoint_waits_then_runs(
    argv: &[&str],
    env: &[(&str, String)],
    waiting_for: &str,
    start: impl FnOnce(),
    is_up: impl Fn() -> bool,
    log: impl Fn() -> String,
) {
    let stub = Stub::new();
    let mut p = Proc::spawn({
        let mut c = stub.entrypoint(argv);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    });
    p.wait_stderr(waiting_for, START);
    assert!(
        p.running() && stub.calls().is_empty(),
        "proceeded with the server down: {}",
        p.stderr()
    );
    start();
    wait_for("the server to answer", START, || is_up().then_some(()));
    wait_for("the command to start", START, || {
        (!stub.calls().is_empty()).then_some(())
    });
    let st = p.wait(START);
    assert_eq!(code(st), 0, "{}\n--- server log\n{}", p.stderr(), log());
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn mysql_probe_against_a_real_mariadb_down_up_auth_error_and_socket() {
    require_root!();
    let port = free_port();
    let db = Mariadb::init(port);
    // No such user and a wrong password: the server's greeting comes before authentication, so it is up.
    let url = format!("mysql+mysqldb://airflow:wrong-pass@127.0.0.1:{port}/airflow");
    assert!(
        matches!(probe_url(&url), Outcome::NotReady(_)),
        "ready with no server"
    );
    entrypoint_waits_then_runs(
        &["airflow", "scheduler"],
        &[("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", url.clone())],
        &format!("waiting for the database at 127.0.0.1:{port}"),
        || db.start(),
        || probe_url(&url) == Outcome::Ready,
        || db.log(),
    );
    // The same server through its Unix socket (`?unix_socket=`, as mysqlclient takes it).
    let socket_url = format!(
        "mysql+mysqldb://airflow:pw@localhost/airflow?unix_socket={}",
        db.socket().display()
    );
    let t = targets(&socket_url);
    assert_eq!(probe(&t[0]), Outcome::Ready, "{t:?}\n{}", db.log());
    // A socket path where no server listens is not ready.
    let gone = socket_url.replace("mysqld.sock", "nothing.sock");
    assert!(matches!(probe_url(&gone), Outcome::NotReady(_)));
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn amqp_probe_against_a_real_rabbitmq_down_up_and_auth_error() {
    require_root!();
    let port = free_port();
    let rabbit = Rabbit::new(port);
    // guest may only log in from localhost, and this password is wrong anyway: the handshake still answers.
    let url = format!("amqp://airflow:wrong-pass@127.0.0.1:{port}//");
    assert!(
        matches!(probe_url(&url), Outcome::NotReady(_)),
        "ready with no server"
    );
    entrypoint_waits_then_runs(
        &["airflow", "celery", "worker"],
        &[("AIRFLOW__CELERY__BROKER_URL", url.clone())],
        &format!("waiting for the broker at 127.0.0.1:{port}"),
        || rabbit.start(),
        || probe_url(&url) == Outcome::Ready,
        || rabbit.log(),
    );
    // Celery's pyamqp:// spelling reaches the same server.
    let pyamqp = url.replace("amqp://", "pyamqp://");
    assert_eq!(probe_url(&pyamqp), Outcome::Ready);
}
