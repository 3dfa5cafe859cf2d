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
