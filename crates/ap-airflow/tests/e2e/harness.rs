//! The harness itself: the PostgreSQL guard (it needs root) and URL encoding. Ports, polling and Redis are
//! test-support's, tested there.

use std::net::TcpStream;
use std::time::Duration;

use test_support::RunExt;

use crate::util::{percent, poll, Postgres};

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
                .ran()
        };
        login("p@ss/w:rd").assert_success();
        let wrong = login("wrong");
        assert!(!wrong.status.success(), "{wrong}");
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

/// The userinfo of the URLs the tests give Airflow.
#[test]
fn percent_encodes_everything_but_unreserved_characters() {
    assert_eq!(percent("a@b/c:d%e f"), "a%40b%2Fc%3Ad%25e%20f");
}
