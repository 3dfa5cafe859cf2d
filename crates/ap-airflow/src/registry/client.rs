//! A thin blocking client over the distribution API (`/v2/`), on ureq.
//!
//! Chosen over `oci-client` because that one needs tokio; everything here is sequential request/response.

use std::io::Read;

use crate::digest::sha256_digest;
use anyhow::{anyhow, bail, Context as _};
use ureq::http::{Method, Request};

use super::transport::{header, read_body, scope_of, short_error, Access, Counting};
pub use super::transport::{Client, Options};

/// Every manifest kind a tag may point at; copies keep the exact bytes and type, so digests stay equal.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// What a mount attempt did.
pub enum Mount {
    Mounted,
    /// The registry did not mount and opened an upload session instead.
    Upload(String),
}

/// `<url>; rel="next"` from a Link header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let url = url.trim();
        (is_next && url.starts_with('<') && url.ends_with('>'))
            .then(|| url[1..url.len() - 1].to_owned())
    })
}

impl Client {
    pub fn blob_exists(&mut self, repo: &str, digest: &str) -> anyhow::Result<bool> {
        let scopes = [scope_of(repo, Access::Pull)];
        let mut resp = self.send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            &scopes,
            &[],
            &[],
        )?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.unexpected(&format!("checking blob {digest} in {repo}"), &mut resp)),
        }
    }

    /// Cross-repository mount (`?mount=&from=`): the registry links a blob it already holds, no bytes sent.
    pub fn mount_blob(&mut self, repo: &str, digest: &str, from: &str) -> anyhow::Result<Mount> {
        let scopes = [scope_of(repo, Access::Push), scope_of(from, Access::Pull)];
        let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        let mut resp = self.send(Method::POST, &path, &scopes, &[], &[])?;
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(self.location(&resp, "mount")?)),
            _ => Err(self.unexpected(
                &format!("mounting {digest} from {from} into {repo}"),
                &mut resp,
            )),
        }
    }

    pub fn start_upload(&mut self, repo: &str) -> anyhow::Result<String> {
        let scopes = [scope_of(repo, Access::Push)];
        let mut resp = self.send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &scopes,
            &[],
            &[],
        )?;
        match resp.status().as_u16() {
            202 => self.location(&resp, "starting an upload"),
            _ => Err(self.unexpected(&format!("starting an upload to {repo}"), &mut resp)),
        }
    }

    /// Sends `data` as the streamed body of `req` with the push token, counting the bytes that went out (a
    /// streamed body is never retried, unlike `send`'s); `what` names the upload in the error.
    fn send_streamed(
        &mut self,
        repo: &str,
        req: ureq::http::request::Builder,
        data: &mut dyn Read,
        what: &str,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let scopes = [scope_of(repo, Access::Push)];
        let auth = self.authorization(&scopes, false)?;
        let mut req = req.header("content-type", "application/octet-stream");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let mut counted = Counting {
            inner: data,
            count: 0,
        };
        let result = self
            .agent
            .run(req.body(ureq::SendBody::from_reader(&mut counted))?);
        self.blob_bytes_sent += counted.count;
        result.map_err(|e| {
            anyhow!(
                "registry {} failed while {what}: {}",
                self.registry,
                short_error(&e)
            )
        })
    }

    /// Monolithic upload into a session opened by `start_upload` (one PUT with `?digest=`).
    pub fn finish_upload(
        &mut self,
        repo: &str,
        location: &str,
        digest: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> anyhow::Result<()> {
        let mut url = url::Url::parse(location)?;
        url.query_pairs_mut().append_pair("digest", digest);
        let req = Request::put(url.as_str()).header("content-length", size.to_string());
        let mut resp = self.send_streamed(
            repo,
            req,
            data,
            &format!("uploading blob {digest} to {repo}"),
        )?;
        match resp.status().as_u16() {
            201 => Ok(()),
            401 | 403 => self.check_auth(resp).map(|_| ()),
            _ => Err(self.unexpected(&format!("uploading blob {digest} to {repo}"), &mut resp)),
        }
    }

    /// Streams bytes of unknown length into an upload session (one chunked `PATCH`, as `docker push` sends a layer
    /// it compresses on the fly); returns the session's next location, for `close_upload`.
    pub fn patch_upload(
        &mut self,
        repo: &str,
        location: &str,
        data: &mut dyn Read,
    ) -> anyhow::Result<String> {
        let req = Request::patch(location);
        let mut resp =
            self.send_streamed(repo, req, data, &format!("streaming a layer to {repo}"))?;
        match resp.status().as_u16() {
            202 => self.location(&resp, "streaming a layer"),
            401 | 403 => self.check_auth(resp).map(|_| String::new()),
            _ => Err(self.unexpected(&format!("streaming a layer to {repo}"), &mut resp)),
        }
    }

    /// Ends an upload session whose bytes were all sent (`PUT ?digest=` with no body).
    pub fn close_upload(&mut self, repo: &str, location: &str, digest: &str) -> anyhow::Result<()> {
        let mut url = url::Url::parse(location)?;
        url.query_pairs_mut().append_pair("digest", digest);
        let scopes = [scope_of(repo, Access::Push)];
        let mut resp = self.send(Method::PUT, url.as_str(), &scopes, &[], &[])?;
        match resp.status().as_u16() {
            201 => Ok(()),
            _ => Err(self.unexpected(
                &format!("closing the upload of {digest} to {repo}"),
                &mut resp,
            )),
        }
    }

    /// A manifest by tag or digest, byte-for-byte, or None when absent.
    pub fn get_manifest(
        &mut self,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<Option<Manifest>> {
        let scopes = [scope_of(repo, Access::Pull)];
        let accept = [("accept", MANIFEST_TYPES.join(", "))];
        let mut resp = self.send(
            Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
            &scopes,
            &accept,
            &[],
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => {
                return Err(
                    self.unexpected(&format!("reading manifest {repo}:{reference}"), &mut resp)
                )
            }
        }
        let media_type = header(&resp, "content-type")
            .unwrap_or(MANIFEST_TYPES[0])
            .to_owned();
        let bytes = read_body(&mut resp, MAX_MANIFEST)?;
        let digest = sha256_digest(&bytes);
        if let Some(claimed) = header(&resp, "docker-content-digest") {
            if claimed != digest {
                bail!("registry {}: manifest {repo}:{reference} claims {claimed} but hashes to {digest}", self.registry);
            }
        }
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// A blob's bytes (at most `limit`), checked against its digest; None when absent.
    pub fn get_blob(
        &mut self,
        repo: &str,
        digest: &str,
        limit: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let scopes = [scope_of(repo, Access::Pull)];
        let mut resp = self.send(
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            &scopes,
            &[],
            &[],
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => {
                return Err(self.unexpected(&format!("reading blob {digest} of {repo}"), &mut resp))
            }
        }
        let bytes = read_body(&mut resp, limit)?;
        if sha256_digest(&bytes) != digest {
            bail!(
                "registry {}: blob {digest} of {repo} does not hash to its digest",
                self.registry
            );
        }
        Ok(Some(bytes))
    }

    /// The digest a tag points at, or None when the tag is absent.
    pub fn manifest_digest(
        &mut self,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<Option<String>> {
        let scopes = [scope_of(repo, Access::Pull)];
        let accept = [("accept", MANIFEST_TYPES.join(", "))];
        let mut resp = self.send(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/{reference}"),
            &scopes,
            &accept,
            &[],
        )?;
        match resp.status().as_u16() {
            200 => match header(&resp, "docker-content-digest") {
                Some(d) => Ok(Some(d.to_owned())),
                None => Ok(self.get_manifest(repo, reference)?.map(|m| m.digest)),
            },
            404 => Ok(None),
            _ => Err(self.unexpected(&format!("checking manifest {repo}:{reference}"), &mut resp)),
        }
    }

    /// Puts manifest bytes under a tag, unchanged, with their own media type.
    pub fn put_manifest(
        &mut self,
        repo: &str,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> anyhow::Result<String> {
        let scopes = [scope_of(repo, Access::Push)];
        let headers = [("content-type", media_type.to_owned())];
        let result = self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{tag}"),
            &scopes,
            &headers,
            bytes,
        );
        self.manifest_bytes_sent += bytes.len() as u64;
        let mut resp = result?;
        self.last_oci_subject = header(&resp, "oci-subject").map(String::from);
        match resp.status().as_u16() {
            201 => {
                let want = sha256_digest(bytes);
                match header(&resp, "docker-content-digest") {
                    Some(d) if d != want => bail!(
                        "registry {} stored {repo}:{tag} as {d}, expected {want}",
                        self.registry
                    ),
                    _ => Ok(want),
                }
            }
            _ => Err(self.unexpected(&format!("putting manifest {repo}:{tag}"), &mut resp)),
        }
    }

    /// Every tag of a repository (empty when the repository does not exist), following `Link` pagination.
    pub fn list_tags(&mut self, repo: &str) -> anyhow::Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let scopes = [scope_of(repo, Access::Pull)];
        let mut next = Some(match self.page_size {
            Some(n) => format!("/v2/{repo}/tags/list?n={n}"),
            None => format!("/v2/{repo}/tags/list"),
        });
        let mut tags = Vec::new();
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 100_000 {
                bail!(
                    "registry {}: tag list of {repo} does not end",
                    self.registry
                );
            }
            let mut resp = self.send(Method::GET, &path, &scopes, &[], &[])?;
            match resp.status().as_u16() {
                200 => {}
                404 if tags.is_empty() => return Ok(tags),
                _ => return Err(self.unexpected(&format!("listing tags of {repo}"), &mut resp)),
            }
            next = header(&resp, "link").and_then(next_link);
            let body = read_body(&mut resp, 64 << 20)?;
            let page: Page = serde_json::from_slice(&body).with_context(|| {
                format!("registry {}: malformed tag list of {repo}", self.registry)
            })?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pagination() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r/v2/a/tags/list?n=5&last=b>; rel=next"#).as_deref(),
            Some("https://r/v2/a/tags/list?n=5&last=b")
        );
        assert_eq!(
            next_link(r#"</p>; rel="prev", </n>; rel="next""#).as_deref(),
            Some("/n")
        );
        assert_eq!(next_link(r#"</p>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
