//! "Is the server ready?" — one short, protocol-level question per attempt.
//!
//! An open port is not readiness: PostgreSQL accepts connections long before it accepts sessions. So each
//! protocol gets the cheapest exchange that proves the server itself is answering.

use crate::url::{Endpoint, Protocol, Target};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// At most this long to connect to one address.
pub const TIMEOUT: Duration = Duration::from_millis(1000);
/// A whole attempt at one target — resolving its name, connecting, the exchange — ends within this, however the
/// server behaves (a byte now and then does not keep it alive): [`crate::wait::attempt`] abandons it then.
pub const ATTEMPT: Duration = Duration::from_millis(2000);
/// The probe's own deadline: a little before [`ATTEMPT`], so that it reports in time.
const PROBE_DEADLINE: Duration = Duration::from_millis(1800);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    /// Reachable or not, not ready yet; the reason is safe to print.
    NotReady(String),
}

trait Conn: Read + Write {
    fn set_timeouts(&self, d: Duration) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Conn for UnixStream {
    fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

/// The end of an attempt: every blocking call gets only what is left of it.
#[derive(Clone, Copy)]
struct Deadline(Instant);

impl Deadline {
    fn left(&self) -> io::Result<Duration> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

fn connect(ep: &Endpoint, dl: Deadline) -> Result<Box<dyn Conn>, String> {
    match ep {
        Endpoint::Tcp { host, port } => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {}", short(&e)))?
                .collect();
            let mut last = String::from("no address");
            for a in addrs {
                let Ok(left) = dl.left() else {
                    return Err("timed out".into());
                };
                match TcpStream::connect_timeout(&a, left.min(TIMEOUT)) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Box::new(s));
                    }
                    Err(e) => last = short(&e),
                }
            }
            Err(last)
        }
        Endpoint::Unix(p) => Ok(Box::new(UnixStream::connect(p).map_err(|e| short(&e))?)),
    }
}

fn short(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::NotFound => "no such socket".into(),
        io::ErrorKind::UnexpectedEof => "connection closed".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    }
}

/// One attempt at `t`, over within [`ATTEMPT`] (name resolution aside: [`crate::wait::attempt`] runs this in a
/// thread it can abandon).
pub fn probe(t: &Target) -> Outcome {
    let dl = Deadline(Instant::now() + PROBE_DEADLINE);
    let mut c = match connect(&t.endpoint, dl) {
        Ok(c) => c,
        Err(e) => return Outcome::NotReady(e),
    };
    let r = match t.protocol {
        // https, rediss, amqps (TLS: this crate speaks none), mssql, unknown schemes: the connect is the check.
        Protocol::Tcp => Ok(Outcome::Ready),
        Protocol::Postgres => postgres(c.as_mut(), t, dl),
        Protocol::Mysql => mysql(c.as_mut(), dl),
        Protocol::Redis => redis(c.as_mut(), dl),
        Protocol::Amqp => amqp(c.as_mut(), dl),
        Protocol::Http => http(c.as_mut(), t, dl),
    };
    r.unwrap_or_else(|e| Outcome::NotReady(short(&e)))
}

fn send(c: &mut dyn Conn, data: &[u8], dl: Deadline) -> io::Result<()> {
    c.set_timeouts(dl.left()?)?;
    c.write_all(data)
}

/// Read into `buf` until `done` says the reply is complete, the buffer is full, the peer closes, or the
/// deadline passes (an error: whatever trickled in until then is no answer).
fn receive(
    c: &mut dyn Conn,
    buf: &mut [u8],
    dl: Deadline,
    done: impl Fn(&[u8]) -> bool,
) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() && !done(&buf[..n]) {
        c.set_timeouts(dl.left()?)?;
        match c.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The v3 StartupMessage. A PostgreSQL reply means a backend got as far as authentication (ready), except
/// SQLSTATE 57P03 "cannot connect now" (starting up, shutting down, in recovery with hot standby off).
pub fn postgres_startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

/// Longest reply we look at; an ErrorResponse to a StartupMessage is a few hundred bytes.
const PG_REPLY_MAX: usize = 1024;

/// The length a reply announces (type byte, then a big-endian length counting itself), once 5 bytes are in.
fn pg_len(reply: &[u8]) -> Option<usize> {
    reply
        .get(1..5)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Whether `reply` holds a whole message (or as much of it as we read).
fn pg_complete(reply: &[u8]) -> bool {
    match (reply.first(), pg_len(reply)) {
        // An impossible length is no PostgreSQL either.
        (Some(b'R' | b'E' | b'v'), Some(len)) if !(4..=64 * 1024).contains(&len) => true,
        (Some(b'R' | b'E' | b'v'), Some(len)) => reply.len() >= (len + 1).min(PG_REPLY_MAX),
        // Anything else is not PostgreSQL: no need to wait for more.
        (Some(t), _) => !matches!(t, b'R' | b'E' | b'v'),
        (None, _) => false,
    }
}

/// Classify the server's first reply to a StartupMessage. Only a well-formed PostgreSQL message counts: an
/// authentication request (`R` with a known method), an ErrorResponse (`E`) carrying a SQLSTATE, or a
/// NegotiateProtocolVersion (`v`). Anything else — an HTTP server, garbage, a truncated message — is not a
/// database.
pub fn postgres_reply(reply: &[u8]) -> Outcome {
    let not_pg = || Outcome::NotReady("not a PostgreSQL reply".into());
    let Some(&kind) = reply.first() else {
        return Outcome::NotReady("connection closed".into());
    };
    let Some(len) = pg_len(reply) else {
        return not_pg();
    };
    let body = &reply[5..reply.len().min(len + 1)];
    match kind {
        // AuthenticationOk/KerberosV5/CleartextPassword/MD5/GSS/GSSContinue/SSPI/SASL/SASLContinue/SASLFinal.
        b'R' if (8..=PG_REPLY_MAX).contains(&len) && body.len() >= 4 => {
            match u32::from_be_bytes([body[0], body[1], body[2], body[3]]) {
                0 | 2 | 3 | 5 | 7 | 8 | 9 | 10 | 11 | 12 => Outcome::Ready,
                _ => not_pg(),
            }
        }
        b'v' if (12..=PG_REPLY_MAX).contains(&len) && body.len() >= 8 => Outcome::Ready,
        // Fields: a type byte then a NUL-terminated string, repeated; the SQLSTATE is field C, five characters.
        b'E' if (5..=64 * 1024).contains(&len) => {
            let code = body
                .split(|&b| b == 0)
                .find(|f| f.first() == Some(&b'C'))
                .map(|f| &f[1..])
                .filter(|c| c.len() == 5 && c.iter().all(u8::is_ascii_alphanumeric));
            match code {
                Some(b"57P03") => {
                    Outcome::NotReady("the database system is starting up (57P03)".into())
                }
                Some(_) => Outcome::Ready,
                None => not_pg(),
            }
        }
        _ => not_pg(),
    }
}

fn postgres(c: &mut dyn Conn, t: &Target, dl: Deadline) -> io::Result<Outcome> {
    let user = t.user.as_deref().unwrap_or("postgres");
    let db = t.database.as_deref().unwrap_or(user);
    send(c, &postgres_startup(user, db), dl)?;
    let mut buf = [0u8; PG_REPLY_MAX];
    let n = receive(c, &mut buf, dl, pg_complete)?;
    let out = postgres_reply(&buf[..n]);
    // A polite Terminate so a trust-auth server does not log an unexpected EOF.
    if out == Outcome::Ready {
        let _ = send(c, &[b'X', 0, 0, 0, 4], dl);
    }
    Ok(out)
}

/// MySQL speaks first: a packet whose payload starts with protocol version 10 (or an error packet such as
/// "too many connections", which still proves the server is up).
pub fn mysql_greeting(buf: &[u8]) -> Outcome {
    match buf.get(4) {
        Some(10) | Some(0xff) => Outcome::Ready,
        Some(_) => Outcome::NotReady("unexpected MySQL greeting".into()),
        None => Outcome::NotReady("connection closed".into()),
    }
}

fn mysql(c: &mut dyn Conn, dl: Deadline) -> io::Result<Outcome> {
    let mut buf = [0u8; 5];
    let n = receive(c, &mut buf, dl, |_| false)?;
    Ok(mysql_greeting(&buf[..n]))
}

/// Redis PING: `+PONG`, or an error such as `-NOAUTH`/`-ERR`/`-WRONGPASS` (the server is answering) is up;
/// `-LOADING` (dataset still loading) and `-BUSY` are not.
pub fn redis_reply(line: &[u8]) -> Outcome {
    let s = String::from_utf8_lossy(line);
    if s.starts_with("-LOADING") || s.starts_with("-BUSY") {
        Outcome::NotReady(format!(
            "redis answered {}",
            s.split_whitespace().next().unwrap_or("")
        ))
    } else if s.starts_with('+') || s.starts_with('-') {
        Outcome::Ready
    } else if s.is_empty() {
        Outcome::NotReady("connection closed".into())
    } else {
        Outcome::NotReady("unexpected reply to PING".into())
    }
}

fn redis(c: &mut dyn Conn, dl: Deadline) -> io::Result<Outcome> {
    send(c, b"PING\r\n", dl)?;
    let mut buf = [0u8; 256];
    let n = receive(c, &mut buf, dl, |b| b.contains(&b'\n'))?;
    Ok(redis_reply(&buf[..n]))
}

/// AMQP 0-9-1: after our protocol header the broker sends Connection.Start (a method frame, type 1) or, if it
/// dislikes the version, its own protocol header. Either way a broker is answering.
pub fn amqp_reply(buf: &[u8]) -> Outcome {
    if buf.first() == Some(&1) || buf.starts_with(b"AMQP") {
        Outcome::Ready
    } else if buf.is_empty() {
        Outcome::NotReady("connection closed".into())
    } else {
        Outcome::NotReady("unexpected AMQP reply".into())
    }
}

fn amqp(c: &mut dyn Conn, dl: Deadline) -> io::Result<Outcome> {
    send(c, b"AMQP\x00\x00\x09\x01", dl)?;
    let mut buf = [0u8; 8];
    let n = receive(c, &mut buf, dl, |b| !b.is_empty())?;
    Ok(amqp_reply(&buf[..n]))
}

/// The smallest HTTP request: HTTP/1.0 (the server closes after replying), a Host header, nothing else.
pub fn http_request(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A status line `HTTP/1.x NNN` is an answer whatever the status (a 404 or 401 still proves the server is up and
/// speaking HTTP); anything else, a truncated line included, is not.
pub fn http_reply(buf: &[u8]) -> Outcome {
    let status_line = buf.len() >= 12
        && buf.starts_with(b"HTTP/1.")
        && buf[7].is_ascii_digit()
        && buf[8] == b' '
        && buf[9..12].iter().all(u8::is_ascii_digit);
    if status_line {
        Outcome::Ready
    } else if buf.is_empty() {
        Outcome::NotReady("connection closed".into())
    } else {
        Outcome::NotReady("not an HTTP reply".into())
    }
}

fn http(c: &mut dyn Conn, t: &Target, dl: Deadline) -> io::Result<Outcome> {
    let path = t.http_path.as_deref().unwrap_or("/");
    send(c, &http_request(path, &t.endpoint.to_string()), dl)?;
    let mut buf = [0u8; 12];
    let n = receive(c, &mut buf, dl, |_| false)?;
    Ok(http_reply(&buf[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str) -> Vec<u8> {
        let mut fields = b"SFATAL\0".to_vec();
        fields.extend(format!("C{code}\0Msystem says no\0\0").bytes());
        let mut m = vec![b'E'];
        m.extend(((fields.len() + 4) as u32).to_be_bytes());
        m.extend(fields);
        m
    }

    #[test]
    fn postgres_replies() {
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (vec![b'R', 0, 0, 0, 12, 0, 0, 0, 5], true),
            (err("57P03"), false),
            (err("28P01"), true),
            (err("3D000"), true),
            (err("53300"), true),
            (vec![b'v', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0], true),
            (vec![], false),
            // Issue #11 item 5: only a real PostgreSQL reply counts, not any byte on the port.
            (b"E".to_vec(), false),
            (b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), false),
            (b"SSH-2.0-OpenSSH_9.2\r\n".to_vec(), false),
            (b"+PONG\r\n".to_vec(), false),
            (b"\x00\x00\x00\x00".to_vec(), false),
            (vec![b'R', 0, 0, 0, 8, 0, 0, 0, 99], false),
            (vec![b'R', 0xff, 0, 0, 8, 0, 0, 0, 0], false),
            (vec![b'R', 0, 0, 0, 8], false),
            (b"E\x00\x00\x00\x10no fields here".to_vec(), false),
            (b"Egarbage garbage garbage".to_vec(), false),
        ];
        for (reply, ready) in cases {
            assert_eq!(postgres_reply(&reply) == Outcome::Ready, ready, "{reply:?}");
        }
    }

    #[test]
    fn postgres_startup_layout() {
        let m = postgres_startup("u", "d");
        assert_eq!(
            u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[4..8], &[0, 3, 0, 0]);
        assert!(m.ends_with(b"user\0u\0database\0d\0\0"));
    }

    #[test]
    fn other_replies() {
        assert_eq!(redis_reply(b"+PONG\r\n"), Outcome::Ready);
        assert_eq!(
            redis_reply(b"-NOAUTH Authentication required.\r\n"),
            Outcome::Ready
        );
        assert_eq!(redis_reply(b"-ERR unknown\r\n"), Outcome::Ready);
        assert!(matches!(
            redis_reply(b"-LOADING Redis is loading\r\n"),
            Outcome::NotReady(_)
        ));
        assert!(matches!(redis_reply(b""), Outcome::NotReady(_)));
        assert!(matches!(redis_reply(b"HTTP/1.1"), Outcome::NotReady(_)));
        assert_eq!(mysql_greeting(&[74, 0, 0, 0, 10]), Outcome::Ready);
        assert_eq!(mysql_greeting(&[23, 0, 0, 0, 0xff]), Outcome::Ready);
        assert!(matches!(mysql_greeting(&[1, 0]), Outcome::NotReady(_)));
        assert_eq!(amqp_reply(&[1, 0, 0, 0, 0, 1, 0xf4, 0]), Outcome::Ready);
        assert_eq!(amqp_reply(b"AMQP\x00\x00\x09\x01"), Outcome::Ready);
        assert!(matches!(amqp_reply(b""), Outcome::NotReady(_)));
    }

    #[test]
    fn http_replies() {
        let cases: &[(&[u8], bool)] = &[
            (b"HTTP/1.1 200 OK\r\n", true),
            (b"HTTP/1.0 404 Not Found\r\n", true),
            (b"HTTP/1.1 401", true),
            (b"HTTP/1.1 503 Service Unavailable", true),
            (b"HTTP/1.1 20", false),
            (b"HTTP/2 200 OK\r\n", false),
            (b"HTTP/1.1 abc x\r\n", false),
            (b"SSH-2.0-OpenSSH_9.2\r\n", false),
            (b"+PONG\r\n", false),
            (b"", false),
        ];
        for (reply, ready) in cases {
            assert_eq!(
                http_reply(reply) == Outcome::Ready,
                *ready,
                "{}",
                String::from_utf8_lossy(reply)
            );
        }
        assert_eq!(
            http_reply(b"garbage garbage"),
            Outcome::NotReady("not an HTTP reply".into())
        );
        assert_eq!(
            http_request("/execution/", "api:8080"),
            b"GET /execution/ HTTP/1.0\r\nHost: api:8080\r\nConnection: close\r\n\r\n"
        );
    }
}
