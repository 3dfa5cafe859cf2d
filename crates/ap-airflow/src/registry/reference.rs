//! Repository references: `quay.io/astronomer/ap-airflow`, `127.0.0.1:5000/x/y`, `astronomerinc/ap-airflow`.
//!
//! Docker's rules: the first path component names a registry when it contains `.` or `:` or is `localhost`;
//! otherwise the repository is on Docker Hub (`docker.io`), and a one-component name gets `library/`.

use std::fmt;
use std::net::IpAddr;

/// Docker Hub's name in references and config.json, and the host that actually serves its API.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// `host[:port]` as written (Docker Hub normalised to `docker.io`).
    pub registry: String,
    /// The repository path inside the registry, e.g. `astronomer/ap-airflow`.
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed repository reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Repository {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        if input.contains("://") {
            return Err(err("give host/path without a scheme"));
        }
        if input.contains('@') {
            return Err(err("a repository, not a digest reference"));
        }
        let (registry, path) = match input.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), input.to_owned()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
            _ => registry,
        };
        validate_host(&registry).map_err(|r| err(&r))?;
        // The last component may not carry a tag: publish decides the tags itself.
        if let Some(last) = path.rsplit('/').next() {
            if last.contains(':') {
                return Err(err("give the repository without a tag"));
            }
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(err(&format!(
                    "path component {component:?} must be lowercase letters and digits, separated by . _ __ or -"
                )));
            }
        }
        let name = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if name.len() > 255 {
            return Err(err("longer than 255 characters"));
        }
        Ok(Repository { registry, name })
    }

    /// The host:port the distribution API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// True for 127.0.0.0/8, ::1 and localhost: Docker allows plain HTTP there.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// `host`, `host:port`, `[v6]:port` → the host part without brackets.
pub fn host_only(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

pub fn is_loopback_host(registry: &str) -> bool {
    let host = host_only(registry);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn validate_host(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed [ in registry host".to_string())?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        (h, after.strip_prefix(':'))
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    // A bracketed IPv6 address was checked above; otherwise DNS labels of letters, digits and inner hyphens,
    // joined by single dots (so `..`, `.`, `-x` or `a..b` are no registry host).
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let name_ok = registry.starts_with('[') || (host.len() <= 253 && host.split('.').all(label));
    if host.is_empty() || !name_ok {
        return Err(format!("registry host {host:?} is not a host name"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
            return Err(format!("registry port {p:?} is not a port number"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution spec's path component.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str, registry: &str, name: &str) {
        let r = Repository::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(
            (r.registry.as_str(), r.name.as_str()),
            (registry, name),
            "{input}"
        );
    }

    #[test]
    fn parses_the_references_docker_understands() {
        ok(
            "quay.io/astronomer/ap-airflow",
            "quay.io",
            "astronomer/ap-airflow",
        );
        ok(
            "docker.io/astronomerinc/ap-airflow",
            "docker.io",
            "astronomerinc/ap-airflow",
        );
        ok(
            "astronomerinc/ap-airflow",
            "docker.io",
            "astronomerinc/ap-airflow",
        );
        ok(
            "index.docker.io/astronomerinc/ap-airflow",
            "docker.io",
            "astronomerinc/ap-airflow",
        );
        ok("ubuntu", "docker.io", "library/ubuntu");
        ok(
            "127.0.0.1:5000/astronomer/ap-airflow",
            "127.0.0.1:5000",
            "astronomer/ap-airflow",
        );
        ok("localhost/a", "localhost", "a");
        ok(
            "[::1]:5000/a/b_c__d.e-f--g",
            "[::1]:5000",
            "a/b_c__d.e-f--g",
        );
    }

    #[test]
    fn rejects_malformed_references_with_a_reason() {
        for (input, want) in [
            ("", "empty"),
            ("https://quay.io/a", "scheme"),
            ("quay.io/Astronomer/a", "lowercase"),
            ("quay.io/a//b", "lowercase"),
            ("quay.io/a/b-", "lowercase"),
            ("quay.io/a/b:1.0", "without a tag"),
            ("quay.io:0/a", "port"),
            ("quay.io:http/a", "port"),
            ("a@sha256:00", "digest"),
            ("[zz]:5000/a", "IPv6"),
            ("qu ay.io/a", "host"),
            // Issue #11 item 15: path-like first components are no registry host.
            ("../x", "host"),
            ("./x", "host"),
            ("../../tmp/x", "host"),
            ("a..b/x", "host"),
            (".quay.io/a", "host"),
            ("quay.io./a", "host"),
            ("-quay.io/a", "host"),
            ("quay-.io/a", "host"),
        ] {
            let e = Repository::parse(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
            assert!(e.starts_with("malformed repository reference"), "{e}");
        }
    }

    #[test]
    fn loopback_registries() {
        for r in ["127.0.0.1:5000", "127.1.2.3", "localhost:80", "[::1]:5000"] {
            assert!(is_loopback_host(r), "{r}");
        }
        for r in [
            "quay.io",
            "10.0.0.1:5000",
            "docker.io",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(r), "{r}");
        }
    }

    #[test]
    fn tags() {
        assert!(valid_tag("2.10.5-1-bookworm-onbuild"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag("a/b"));
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
