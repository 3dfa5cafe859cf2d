//! The harness itself: PostgreSQL and Redis guards, ports, polling. Only the PostgreSQL guard needs root; the
//! others run in a plain `cargo test` (Redis as in the runtime's tests).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::{free_port, percent, poll, Postgres, Redis};

#[test]
#[ignore = "needs root (runs PostgreSQL as postgres): scripts/test runs it"]
fn postgres_guard_serves_password_auth_on_loopback_and_cleans_up() {
    let port;
    {
        let pg = Postgres::start();
        port = pg.port;
        pg.create_db("airflow", "airflow", "p@ss/w:rd");
        assert_eq!(
            pg.sql("airflow", "SELECT current_database()").unwrap(),
            "airflow"
        );
        assert!(TcpStream::connect(("127.0.0.1", pg.port)).is_ok());
        let url = pg.url("postgresql", "airflow", "airflow", "p@ss/w:rd");
        assert_eq!(
            url,
            format!("postgresql://airflow:p%40ss%2Fw%3Ard@127.0.0.1:{port}/airflow")
        );
        // The password is really checked over TCP: a wrong one is refused, the right one accepted.
        let login = |pw: &str| {
            std::process::Command::new("psql")
                .env("PGPASSWORD", pw)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "airflow",
                    "-d",
                    "airflow",
                ])
                .args(["-X", "-A", "-t", "-c", "SELECT 1"])
                .output()
                .unwrap()
        };
        assert!(login("p@ss/w:rd").status.success());
        assert!(!login("wrong").status.success());
    }
    let closed = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    assert!(
        closed.is_some(),
        "PostgreSQL still listens on {port} after drop"
    );
}

#[test]
fn redis_guard_answers_ping_and_stops() {
    let port;
    {
        let r = Redis::start();
        port = r.port;
        assert!(r.ping());
    }
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn ports_are_distinct_and_polling_keeps_its_deadline() {
    let ports: std::collections::HashSet<u16> = (0..50).map(|_| free_port()).collect();
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
    assert_eq!(percent("a@b/c:d%e f"), "a%40b%2Fc%3Ad%25e%20f");
}
