//! Connection URLs of SQLAlchemy and Celery, parsed for the one thing the entrypoint needs: where to knock.
//!
//! Nothing here ever formats userinfo: [`Target`]'s `Display` shows scheme and host:port only, and errors name
//! the problem, never the text.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Mysql,
    Redis,
    Amqp,
    /// Plain HTTP (the Airflow 3 execution API): any status line is an answer.
    Http,
    /// TLS-only or unknown protocols: a TCP connect is all we check.
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme without driver, e.g. `postgresql` for `postgresql+psycopg2`.
    pub scheme: String,
    pub protocol: Protocol,
    pub endpoint: Endpoint,
    /// Percent-decoded user name (PostgreSQL's startup message needs one); never displayed.
    pub user: Option<String>,
    pub database: Option<String>,
    /// HTTP only: the request target (path and query, as written; `/` when the URL has none); never displayed.
    pub http_path: Option<String>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at {}", self.scheme, self.endpoint)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// sqlite, filesystem, memory… : nothing to wait for.
    Local(String),
    /// Any one reachable target is enough (failover lists, sentinels, multi-host libpq).
    Targets(Vec<Target>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the value is empty")]
    Empty,
    #[error("no scheme (expected something like postgresql://host/db)")]
    NoScheme,
    #[error("invalid scheme")]
    BadScheme,
    #[error("invalid port (must be a number from 1 to 65535)")]
    BadPort,
    #[error("unterminated or invalid IPv6 literal")]
    BadIpv6,
    #[error("an IPv6 address must be in brackets, e.g. [::1]:5432")]
    BareIpv6,
    #[error("no port given and no default port for scheme {0}")]
    NoDefaultPort(String),
    #[error("invalid host")]
    BadHost,
    #[error("not an http:// or https:// URL")]
    NotHttp,
    #[error("invalid path (spaces or control characters)")]
    BadPath,
    #[error("the host (or socket path) holds a control character")]
    ControlChar,
    #[error("the host is longer than 253 characters (or the socket path than 107 bytes)")]
    LongHost,
    #[error("the port list does not match the host list (give one port, or one per host)")]
    PortCount,
}

/// Schemes with nothing on the network to wait for.
const LOCAL: &[&str] = &["sqlite", "file", "filesystem", "memory", "sqs"];

fn scheme_info(base: &str) -> Option<(Protocol, u16)> {
    Some(match base {
        "postgres" | "postgresql" | "pgsql" => (Protocol::Postgres, 5432),
        "mysql" | "mariadb" => (Protocol::Mysql, 3306),
        "mssql" => (Protocol::Tcp, 1433),
        "redis" => (Protocol::Redis, 6379),
        "rediss" => (Protocol::Tcp, 6380),
        "sentinel" => (Protocol::Redis, 26379),
        "amqp" | "pyamqp" | "librabbitmq" => (Protocol::Amqp, 5672),
        "amqps" => (Protocol::Tcp, 5671),
        _ => return None,
    })
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Parse one value; `;` separates a failover list (Celery), each element a full URL.
pub fn parse(value: &str) -> Result<Parsed, UrlError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(UrlError::Empty);
    }
    let mut targets = Vec::new();
    let mut local = None;
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match parse_one(part)? {
            Parsed::Local(s) => local = Some(s),
            Parsed::Targets(t) => targets.extend(t),
        }
    }
    match (targets.is_empty(), local) {
        (true, Some(s)) => Ok(Parsed::Local(s)),
        (true, None) => Err(UrlError::Empty),
        (false, _) => Ok(Parsed::Targets(targets)),
    }
}

fn parse_port(s: &str) -> Result<u16, UrlError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(UrlError::BadPort);
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::BadPort),
        Ok(p) => Ok(p),
    }
}

/// Split `host[:port]` / `[v6][:port]` into host and optional port.
fn split_host_port(hp: &str) -> Result<(String, Option<u16>), UrlError> {
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']').ok_or(UrlError::BadIpv6)?;
        let host = &rest[..end];
        let addr = host.split('%').next().unwrap_or("");
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError::BadIpv6);
        }
        let after = &rest[end + 1..];
        let port = match after {
            "" | ":" => None,
            a => Some(parse_port(a.strip_prefix(':').ok_or(UrlError::BadIpv6)?)?),
        };
        // A zone id is percent-encoded in URLs (fe80::1%25eth0).
        return Ok((percent_decode(host), port));
    }
    match hp.matches(':').count() {
        0 => Ok((percent_decode(hp), None)),
        1 => {
            let (h, p) = hp.split_once(':').unwrap_or((hp, ""));
            Ok((
                percent_decode(h),
                if p.is_empty() {
                    None
                } else {
                    Some(parse_port(p)?)
                },
            ))
        }
        _ => Err(UrlError::BareIpv6),
    }
}

fn valid_host(h: &str) -> bool {
    !h.chars()
        .any(|c| c.is_whitespace() || matches!(c, '@' | '/' | '\\' | '?' | '#' | '[' | ']'))
}

fn parse_one(url: &str) -> Result<Parsed, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NoScheme)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(if scheme.is_empty() {
            UrlError::NoScheme
        } else {
            UrlError::BadScheme
        });
    }
    // Celery result-backend prefixes: db+postgresql://, sqla+postgresql://.
    let scheme = scheme
        .strip_prefix("db+")
        .or_else(|| scheme.strip_prefix("sqla+"))
        .unwrap_or(&scheme);
    let (base, driver) = scheme.split_once('+').unwrap_or((scheme, ""));
    if LOCAL.contains(&base) {
        return Ok(Parsed::Local(base.to_string()));
    }
    // Redis over a unix socket: redis+socket:///run/redis.sock, unix:///run/redis.sock, socket://…
    if (base == "redis" && driver == "socket") || base == "unix" || base == "socket" {
        let path = rest.split(['?', '#']).next().unwrap_or("");
        if !path.starts_with('/') {
            return Err(UrlError::BadHost);
        }
        let path = PathBuf::from(percent_decode(path));
        check_socket(&path)?;
        return Ok(Parsed::Targets(vec![Target {
            scheme: "redis".into(),
            protocol: Protocol::Redis,
            endpoint: Endpoint::Unix(path),
            user: None,
            database: None,
            http_path: None,
        }]));
    }
    let info = scheme_info(base);

    let (userinfo, after_user) = split_userinfo(rest);
    let hp_end = after_user.find(['/', '?', '#']).unwrap_or(after_user.len());
    let hostport = &after_user[..hp_end];
    let tail = &after_user[hp_end..];
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, q.split('#').next().unwrap_or("")),
        None => (tail.split('#').next().unwrap_or(""), ""),
    };
    let database = path
        .strip_prefix('/')
        .filter(|d| !d.is_empty())
        .map(percent_decode);
    let user = userinfo
        .map(|u| percent_decode(u.split(':').next().unwrap_or("")))
        .filter(|u| !u.is_empty());

    // libpq: a comma-separated list of hosts, each with its own port (postgresql://h1:5432,h2:5433/db).
    let mut hosts: Vec<(String, Option<u16>)> = if hostport.is_empty() {
        vec![(String::new(), None)]
    } else {
        hostport
            .split(',')
            .map(split_host_port)
            .collect::<Result<_, _>>()?
    };
    let mut socket: Option<PathBuf> = None;
    let mut query_hosts: Vec<(String, Option<u16>)> = Vec::new();
    let mut ports: Vec<Option<u16>> = Vec::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(v);
        match k {
            // psycopg2 (SQLAlchemy): host=H or host=H:P, repeatable; libpq: host=a,b. A leading / is a socket
            // directory.
            "host" if !v.is_empty() => {
                for h in v.split(',') {
                    query_hosts.push(if h.starts_with('/') || h.is_empty() {
                        (h.to_string(), None)
                    } else {
                        query_host(h)?
                    });
                }
            }
            // libpq: one port for every host, or one per host (an empty one is the default).
            "port" if !v.is_empty() => {
                for p in v.split(',') {
                    ports.push(if p.is_empty() {
                        None
                    } else {
                        Some(parse_port(p)?)
                    });
                }
            }
            "unix_socket" | "unix_sock" if v.starts_with('/') => socket = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    if !query_hosts.is_empty() {
        hosts = query_hosts;
    }
    match ports.len() {
        0 => {}
        1 => hosts.iter_mut().for_each(|h| h.1 = h.1.or(ports[0])),
        n if n == hosts.len() => hosts
            .iter_mut()
            .zip(&ports)
            .for_each(|(h, p)| h.1 = h.1.or(*p)),
        _ => return Err(UrlError::PortCount),
    }
    for (h, _) in &hosts {
        check_host(h)?;
    }
    let (protocol, default_port) = match info {
        Some(i) => i,
        None => match hosts.iter().find_map(|h| h.1) {
            Some(p) => (Protocol::Tcp, p),
            None => return Err(UrlError::NoDefaultPort(base.to_string())),
        },
    };
    let mk = |endpoint| Target {
        scheme: base.to_string(),
        protocol,
        endpoint,
        user: user.clone(),
        database: database.clone(),
        http_path: None,
    };
    if let Some(path) = socket {
        check_socket(&path)?;
        return Ok(Parsed::Targets(vec![mk(Endpoint::Unix(path))]));
    }
    let mut targets = Vec::new();
    for (host, port) in hosts {
        let port = port.unwrap_or(default_port);
        // libpq: a host that is a directory (or, for PostgreSQL, no host at all) is a Unix socket.
        let dir = if host.starts_with('/') {
            Some(PathBuf::from(&host))
        } else if host.is_empty() && protocol == Protocol::Postgres {
            Some(PathBuf::from("/var/run/postgresql"))
        } else {
            None
        };
        let endpoint = match dir {
            Some(d) if protocol == Protocol::Postgres => {
                Endpoint::Unix(d.join(format!(".s.PGSQL.{port}")))
            }
            Some(d) => Endpoint::Unix(d),
            None if host.is_empty() => Endpoint::Tcp {
                host: "localhost".into(),
                port,
            },
            None => Endpoint::Tcp { host, port },
        };
        if let Endpoint::Unix(p) = &endpoint {
            check_socket(p)?;
        }
        targets.push(mk(endpoint));
    }
    Ok(Parsed::Targets(targets))
}

/// Split off the userinfo as SQLAlchemy does — `user[:password]@`, the user name without `:` or `/`, the
/// password anything (`?`, `/`, `:` included) — with one extension: a raw `@` in the password, so the userinfo
/// ends at the last `@` before the query (a `?` starts the query only after the password's first `@`).
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let Some(k) = rest.find([':', '/', '@']) else {
        return (None, rest);
    };
    let at = match rest.as_bytes()[k] {
        b'@' => Some(k),
        b':' => rest[k..].find('@').map(|first| {
            let first = k + first;
            let query = rest[first..].find('?').map_or(rest.len(), |q| first + q);
            rest[..query].rfind('@').unwrap_or(first)
        }),
        _ => None,
    };
    match at {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    }
}

/// One `host=` value of psycopg2 (`H`, `H:P`, `[v6]:P`) or libpq (a bare IPv6 address).
fn query_host(h: &str) -> Result<(String, Option<u16>), UrlError> {
    if h.starts_with('[') || h.matches(':').count() <= 1 {
        split_host_port(h)
    } else {
        let addr = h.split('%').next().unwrap_or("");
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| UrlError::BareIpv6)?;
        Ok((h.to_string(), None))
    }
}

/// The longest host name DNS allows.
pub const MAX_HOST: usize = 253;

fn check_host(h: &str) -> Result<(), UrlError> {
    if h.starts_with('/') {
        return check_socket(Path::new(h));
    }
    if h.len() > MAX_HOST {
        return Err(UrlError::LongHost);
    }
    if h.chars().any(char::is_control) {
        return Err(UrlError::ControlChar);
    }
    if valid_host(h) {
        Ok(())
    } else {
        Err(UrlError::BadHost)
    }
}

/// A Unix socket path must fit `sun_path` (108 bytes with its NUL) and hold no control character.
fn check_socket(p: &Path) -> Result<(), UrlError> {
    let s = p.as_os_str().as_encoded_bytes();
    if s.len() > 107 {
        return Err(UrlError::LongHost);
    }
    if s.iter().any(|c| c.is_ascii_control()) || p.to_string_lossy().chars().any(char::is_control) {
        return Err(UrlError::ControlChar);
    }
    Ok(())
}

/// Parse an `http://` or `https://` URL (Airflow 3's `[core] execution_api_server_url`). Userinfo is skipped
/// (never sent, never shown), the host is after the last `@` before the query, as for [`parse`]. `https` gets
/// [`Protocol::Tcp`]: without TLS a connect is all that can be checked.
pub fn parse_http(value: &str) -> Result<Target, UrlError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(UrlError::Empty);
    }
    let (scheme, rest) = value.split_once("://").ok_or(UrlError::NoScheme)?;
    let scheme = scheme.to_ascii_lowercase();
    let (protocol, default_port) = match scheme.as_str() {
        "http" => (Protocol::Http, 80),
        "https" => (Protocol::Tcp, 443),
        _ => return Err(UrlError::NotHttp),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let before_query = rest.split('?').next().unwrap_or(rest);
    let after_user = match before_query.rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let hp_end = after_user.find(['/', '?']).unwrap_or(after_user.len());
    let (host, port) = split_host_port(&after_user[..hp_end])?;
    if host.is_empty() || host.starts_with('/') {
        return Err(UrlError::BadHost);
    }
    check_host(&host)?;
    let path = match &after_user[hp_end..] {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::BadPath);
    }
    Ok(Target {
        scheme,
        protocol,
        endpoint: Endpoint::Tcp {
            host,
            port: port.unwrap_or(default_port),
        },
        user: None,
        database: None,
        http_path: Some(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Vec<String> {
        match parse(s).unwrap_or_else(|e| panic!("{s}: {e}")) {
            Parsed::Targets(t) => t.iter().map(|t| t.to_string()).collect(),
            Parsed::Local(l) => vec![format!("local {l}")],
        }
    }

    #[test]
    fn forms() {
        let cases: &[(&str, &[&str])] = &[
            ("postgresql://u:p@db/airflow", &["postgresql at db:5432"]),
            (
                "postgresql+psycopg2://u:p@db:6543/airflow",
                &["postgresql at db:6543"],
            ),
            ("postgres://db", &["postgres at db:5432"]),
            ("postgresql://u:p@ss@db:5433/x", &["postgresql at db:5433"]),
            ("postgresql://u:p@ss/w:rd@db/x", &["postgresql at db:5432"]),
            (
                "postgresql://u:p%40ss%2Fw@db.example.com/x?sslmode=require",
                &["postgresql at db.example.com:5432"],
            ),
            (
                "postgresql://u:p@[::1]:5434/x",
                &["postgresql at [::1]:5434"],
            ),
            (
                "postgresql://u@[fe80::1%25eth0]/x",
                &["postgresql at [fe80::1%eth0]:5432"],
            ),
            (
                "postgresql://u@[2001:db8::2]/x",
                &["postgresql at [2001:db8::2]:5432"],
            ),
            (
                "postgresql://u:p@/airflow?host=/var/run/pg",
                &["postgresql at unix:/var/run/pg/.s.PGSQL.5432"],
            ),
            (
                "postgresql://u:p@/airflow?host=/tmp&port=6000",
                &["postgresql at unix:/tmp/.s.PGSQL.6000"],
            ),
            (
                "postgresql://u@%2Fsock/db",
                &["postgresql at unix:/sock/.s.PGSQL.5432"],
            ),
            (
                "postgresql:///airflow",
                &["postgresql at unix:/var/run/postgresql/.s.PGSQL.5432"],
            ),
            (
                "postgresql://u@/db?host=a,b&port=7000",
                &["postgresql at a:7000", "postgresql at b:7000"],
            ),
            ("mysql://u:p@mysql/airflow", &["mysql at mysql:3306"]),
            (
                "mysql+mysqldb://u:p@mysql:3307/airflow?charset=utf8",
                &["mysql at mysql:3307"],
            ),
            (
                "mysql+pymysql://u@localhost/a?unix_socket=/run/mysqld/mysqld.sock",
                &["mysql at unix:/run/mysqld/mysqld.sock"],
            ),
            (
                "mssql+pyodbc://u:p@sql/airflow?driver=ODBC",
                &["mssql at sql:1433"],
            ),
            ("redis://redis:6379/0", &["redis at redis:6379"]),
            ("redis://:secret@redis/1", &["redis at redis:6379"]),
            ("redis://redis", &["redis at redis:6379"]),
            ("rediss://redis", &["rediss at redis:6380"]),
            (
                "redis+socket:///run/redis.sock",
                &["redis at unix:/run/redis.sock"],
            ),
            (
                "unix:///run/redis.sock?db=1",
                &["redis at unix:/run/redis.sock"],
            ),
            ("amqp://guest:guest@rabbit//", &["amqp at rabbit:5672"]),
            (
                "pyamqp://guest@rabbit:5673/vhost",
                &["pyamqp at rabbit:5673"],
            ),
            ("amqps://rabbit", &["amqps at rabbit:5671"]),
            (
                "sentinel://:pw@s1:26379;sentinel://:pw@s2:26380",
                &["sentinel at s1:26379", "sentinel at s2:26380"],
            ),
            ("sentinel://s1", &["sentinel at s1:26379"]),
            (
                "amqp://a//;amqp://b:5673//",
                &["amqp at a:5672", "amqp at b:5673"],
            ),
            ("db+postgresql://u:p@db/x", &["postgresql at db:5432"]),
            ("sqla+postgresql://db/x", &["postgresql at db:5432"]),
            (
                "cockroachdb://u@crdb:26257/x",
                &["cockroachdb at crdb:26257"],
            ),
            ("  postgresql://db  ", &["postgresql at db:5432"]),
            ("POSTGRESQL://DB", &["postgresql at DB:5432"]),
            // Issue #11 item 6: psycopg2's host=H:P, one or several; libpq's host and port lists.
            (
                "postgresql+psycopg2://u:p@/airflow?host=db1:5433",
                &["postgresql at db1:5433"],
            ),
            (
                "postgresql+psycopg2://u:p@/airflow?host=HostA:6001&host=HostB&host=HostC",
                &[
                    "postgresql at HostA:6001",
                    "postgresql at HostB:5432",
                    "postgresql at HostC:5432",
                ],
            ),
            (
                "postgresql://u@/db?host=a,b&port=7001,7002",
                &["postgresql at a:7001", "postgresql at b:7002"],
            ),
            (
                "postgresql://u@/db?host=a,b&port=,7002",
                &["postgresql at a:5432", "postgresql at b:7002"],
            ),
            (
                "postgresql://u@/db?host=/tmp,db2&port=6000",
                &[
                    "postgresql at unix:/tmp/.s.PGSQL.6000",
                    "postgresql at db2:6000",
                ],
            ),
            ("postgresql://u@/db?host=::1", &["postgresql at [::1]:5432"]),
            (
                "postgresql://u:p@h1:5432,h2:5433/db",
                &["postgresql at h1:5432", "postgresql at h2:5433"],
            ),
            (
                "postgresql://u:p@h1,[::1]:6000/db",
                &["postgresql at h1:5432", "postgresql at [::1]:6000"],
            ),
            // A raw ? (or / or :) in the password, as SQLAlchemy parses it.
            (
                "postgresql://airflow:ZQX?pw@127.0.0.1/airflow",
                &["postgresql at 127.0.0.1:5432"],
            ),
            (
                "postgresql://airflow:a/b:c?d@db:6432/airflow?sslmode=disable",
                &["postgresql at db:6432"],
            ),
            // An @ in the query is not the end of the userinfo.
            (
                "postgresql://u:p@h/db?application_name=me@x",
                &["postgresql at h:5432"],
            ),
            ("sqlite:////usr/local/airflow/airflow.db", &["local sqlite"]),
            ("sqlite://", &["local sqlite"]),
            ("filesystem://", &["local filesystem"]),
            ("memory://", &["local memory"]),
            ("sqs://", &["local sqs"]),
        ];
        for (url, want) in cases {
            assert_eq!(tcp(url), *want, "{url}");
        }
    }

    #[test]
    fn details() {
        let Parsed::Targets(t) = parse("postgresql://us%20er:p@ss@db/air%2Fflow").unwrap() else {
            panic!()
        };
        assert_eq!(t[0].user.as_deref(), Some("us er"));
        assert_eq!(t[0].database.as_deref(), Some("air/flow"));
        assert_eq!(t[0].protocol, Protocol::Postgres);
        let Parsed::Targets(t) = parse("redis://r").unwrap() else {
            panic!()
        };
        assert_eq!(
            (t[0].user.as_deref(), t[0].protocol),
            (None, Protocol::Redis)
        );
    }

    #[test]
    fn garbage() {
        let cases: &[(&str, UrlError)] = &[
            ("", UrlError::Empty),
            ("   ", UrlError::Empty),
            (";", UrlError::Empty),
            ("db:5432", UrlError::NoScheme),
            ("postgresql:/db", UrlError::NoScheme),
            ("://db", UrlError::NoScheme),
            ("1pg://db", UrlError::BadScheme),
            ("pg sql://db", UrlError::BadScheme),
            ("postgresql://db:port/x", UrlError::BadPort),
            ("postgresql://db:0/x", UrlError::BadPort),
            ("postgresql://db:65536/x", UrlError::BadPort),
            ("postgresql://db:-1/x", UrlError::BadPort),
            ("postgresql://[::1/x", UrlError::BadIpv6),
            ("postgresql://[zz::1]/x", UrlError::BadIpv6),
            ("postgresql://[::1]5432/x", UrlError::BadIpv6),
            ("postgresql://::1:5432/x", UrlError::BareIpv6),
            ("weird://host/x", UrlError::NoDefaultPort("weird".into())),
            ("redis+socket://relative.sock", UrlError::BadHost),
            ("postgresql://u:p@db/x;mysql://h:bad", UrlError::BadPort),
            (
                "postgresql://u@/db?host=a,b,c&port=1,2",
                UrlError::PortCount,
            ),
            ("postgresql://u@/db?host=a:x", UrlError::BadPort),
            ("postgresql://u@/db?host=1:2:3", UrlError::BareIpv6),
            // Issue #11 item 7: control characters are refused, long names too (they would be echoed).
            ("postgresql://u:p@db%00x/db", UrlError::ControlChar),
            ("postgresql://u:p@db%0Aevil/db", UrlError::ControlChar),
            ("postgresql://u@/db?host=db%00", UrlError::ControlChar),
            ("redis+socket:///run/re%01dis.sock", UrlError::ControlChar),
        ];
        for (url, want) in cases {
            assert_eq!(parse(url).as_ref().err(), Some(want), "{url}");
        }
        let long = format!("postgresql://u:p@{}/db", "h".repeat(MAX_HOST + 1));
        assert_eq!(parse(&long), Err(UrlError::LongHost));
        assert!(parse(&format!("postgresql://u:p@{}/db", "h".repeat(MAX_HOST))).is_ok());
        let long = format!("postgresql://u@/db?host=/{}", "d".repeat(200));
        assert_eq!(parse(&long), Err(UrlError::LongHost));
        assert_eq!(
            parse_http(&format!("http://{}/x", "a".repeat(1 << 20))),
            Err(UrlError::LongHost)
        );
        assert_eq!(parse_http("http://a%00b/x"), Err(UrlError::ControlChar));
    }

    #[test]
    fn display_never_shows_userinfo() {
        for url in [
            "postgresql://alice:s3cr3t@db/x",
            "postgresql://alice:s3cr3t?pw@127.0.0.1/x",
            "postgresql://alice:s3cr3t?pw@127.0.0.1:5432,10.0.0.2:5432/x",
            "redis://:s3cr3t@r/0",
            "amqp://alice:s3cr3t@q//",
        ] {
            let Parsed::Targets(t) = parse(url).unwrap() else {
                panic!()
            };
            let shown = format!("{} {:?}", t[0], t[0].endpoint);
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("alice"),
                "{shown}"
            );
        }
        for url in [
            "postgresql://alice:s3cr3t@db:bad/x",
            "postgresql//alice:s3cr3t@db",
        ] {
            assert!(!parse(url).unwrap_err().to_string().contains("s3cr3t"));
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%2f%zz%4"), "a@b/%zz%4");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn http_forms() {
        // (value, shown, protocol, request path)
        let cases: &[(&str, &str, Protocol, &str)] = &[
            (
                "http://api-server:8080/execution/",
                "http at api-server:8080",
                Protocol::Http,
                "/execution/",
            ),
            ("http://api", "http at api:80", Protocol::Http, "/"),
            (
                "HTTP://Api:9/x?y=1#frag",
                "http at Api:9",
                Protocol::Http,
                "/x?y=1",
            ),
            ("http://h?x", "http at h:80", Protocol::Http, "/?x"),
            (
                "http://u:p@ss/w@[::1]:8080/execution/",
                "http at [::1]:8080",
                Protocol::Http,
                "/execution/",
            ),
            (
                " https://api.example.com/execution/ ",
                "https at api.example.com:443",
                Protocol::Tcp,
                "/execution/",
            ),
        ];
        for (value, shown, protocol, path) in cases {
            let t = parse_http(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(
                (t.to_string().as_str(), t.protocol, t.http_path.as_deref()),
                (*shown, *protocol, Some(*path)),
                "{value}"
            );
            assert_eq!((t.user, t.database), (None, None));
        }
        let bad: &[(&str, UrlError)] = &[
            ("", UrlError::Empty),
            ("api:8080/execution/", UrlError::NoScheme),
            ("ftp://api/", UrlError::NotHttp),
            ("postgresql://db/x", UrlError::NotHttp),
            ("http://api:x/", UrlError::BadPort),
            ("http:///execution/", UrlError::BadHost),
            ("http://u:s3cret@/x", UrlError::BadHost),
            ("http://::1/x", UrlError::BareIpv6),
            ("http://api/a b", UrlError::BadPath),
        ];
        for (value, want) in bad {
            assert_eq!(parse_http(value).as_ref().err(), Some(want), "{value}");
        }
        // The generic parser still knows no http (a database URL of http:// is the same error as before).
        assert_eq!(
            parse("http://api/x"),
            Err(UrlError::NoDefaultPort("http".into()))
        );
    }
}
