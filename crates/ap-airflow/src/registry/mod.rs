//! Registry side of publishing: references, credentials and a distribution-API client.

pub mod auth;
pub mod client;
pub mod reference;
pub mod transport;

pub use client::{Client, Options};
pub use reference::Repository;

/// Registry connection flags shared by `publish` and `next-build`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Trust this CA certificate (PEM) for registry TLS, on top of the system bundle (SSL_CERT_FILE honoured).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_cert: Vec<std::path::PathBuf>,
    /// Talk plain HTTP to every registry (loopback registries fall back to it by themselves).
    #[arg(long)]
    pub insecure_http: bool,
    /// Page size for tag listing (`n`); the registry's default when unset.
    #[arg(long, value_name = "N", hide = true)]
    pub page_size: Option<u32>,
}

impl RegistryArgs {
    pub fn options(&self) -> Options {
        Options {
            ca_certs: self.ca_cert.clone(),
            insecure_http: self.insecure_http,
            page_size: self.page_size,
        }
    }
}

/// Build numbers N of `<airflow>-<N>-<distro><suffix>` tags.
pub fn builds_in<'a>(
    tags: impl IntoIterator<Item = &'a String>,
    airflow: &str,
    distro: &str,
    suffix: &str,
) -> Vec<u32> {
    let prefix = format!("{airflow}-");
    let tail = format!("-{distro}{suffix}");
    tags.into_iter()
        .filter_map(|t| {
            let n = t.strip_prefix(&prefix)?.strip_suffix(&tail)?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_match_exactly_one_flavour() {
        let tags: Vec<String> = [
            "2.10.5-1-bookworm",
            "2.10.5-12-bookworm",
            "2.10.5-3-bookworm-onbuild",
            "2.10.5-bookworm",
            "2.10.5-x-bookworm",
            "2.10.50-9-bookworm",
            "2.10.5-2-bullseye",
        ]
        .map(String::from)
        .to_vec();
        let mut base = super::builds_in(&tags, "2.10.5", "bookworm", "");
        base.sort();
        assert_eq!(base, [1, 12]);
        assert_eq!(
            super::builds_in(&tags, "2.10.5", "bookworm", "-onbuild"),
            [3]
        );
    }
}
