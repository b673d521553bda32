//! The API client that the CLI and the agent use (reqwest, rustls on ring).

pub mod release;

use std::path::Path;

use anyhow::{Context, bail};
use arca_keys::SignedEnvelope;
use base64::Engine as _;
use reqwest::StatusCode;

use crate::model::api::{
    ArtifactInfo, ErrorBody, PromoteRequest, PromoteResponse, PushQuery, PushResponse,
    STATEMENT_HEADER, TrustChangeResponse, UploadQuery, UploadResponse,
};
use crate::model::{ArtifactName, Version};

/// A client of one arca server.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Installs ring as rustls' crypto provider (once per process).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How long a read may bring nothing: `ARCA_HTTP_TIMEOUT` (humantime, e.g. `30s`), default 2 min.
fn read_timeout() -> anyhow::Result<std::time::Duration> {
    match std::env::var("ARCA_HTTP_TIMEOUT") {
        Ok(v) => humantime::parse_duration(&v)
            .with_context(|| format!("ARCA_HTTP_TIMEOUT={v:?} is not a duration (e.g. 30s)")),
        Err(_) => Ok(std::time::Duration::from_secs(120)),
    }
}

/// A CA certificate given with `--ca-cert`, trusted by every client this process builds.
static CA_CERT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Trusts the CA certificate (PEM) at `path` in every HTTP client built from now on, in
/// addition to the system's roots. The first call wins.
pub fn trust_ca(path: &std::path::Path) {
    let _ = CA_CERT.set(path.to_path_buf());
}

/// The extra CA to trust: `--ca-cert`, else `ARCA_CA_CERT`, else none (system roots only).
fn extra_ca() -> anyhow::Result<Option<reqwest::Certificate>> {
    let path = match CA_CERT.get() {
        Some(p) => p.clone(),
        None => match std::env::var_os("ARCA_CA_CERT") {
            Some(p) if !p.is_empty() => p.into(),
            _ => return Ok(None),
        },
    };
    let pem = std::fs::read(&path)
        .with_context(|| format!("reading the CA certificate {}", path.display()))?;
    let cert = reqwest::Certificate::from_pem(&pem)
        .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
    Ok(Some(cert))
}

/// The client certificate and key given with `--client-cert` and `--client-key`, presented by
/// every client this process builds.
static CLIENT_CERT: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)> =
    std::sync::OnceLock::new();

/// Presents the client certificate `cert` (PEM chain, leaf first) with its private key `key`
/// (PEM) to HTTPS servers, from every HTTP client built from now on. The first call wins.
pub fn use_client_cert(cert: &Path, key: &Path) {
    let _ = CLIENT_CERT.set((cert.to_path_buf(), key.to_path_buf()));
}

/// The client certificate's files: `--client-cert`/`--client-key`, else `ARCA_CLIENT_CERT`/
/// `ARCA_CLIENT_KEY` (both or neither), else none.
fn client_cert_files() -> anyhow::Result<Option<(std::path::PathBuf, std::path::PathBuf)>> {
    if let Some(files) = CLIENT_CERT.get() {
        return Ok(Some(files.clone()));
    }
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match (var("ARCA_CLIENT_CERT"), var("ARCA_CLIENT_KEY")) {
        (Some(c), Some(k)) => Ok(Some((c.into(), k.into()))),
        (None, None) => Ok(None),
        (Some(_), None) => bail!("ARCA_CLIENT_CERT is set without ARCA_CLIENT_KEY: set both"),
        (None, Some(_)) => bail!("ARCA_CLIENT_KEY is set without ARCA_CLIENT_CERT: set both"),
    }
}

/// The client identity to present, read and checked from its files (a certificate, and a
/// key that belongs to it), each error naming the file.
fn client_identity() -> anyhow::Result<Option<reqwest::Identity>> {
    use rustls::pki_types::pem::PemObject as _;
    let Some((cert, key)) = client_cert_files()? else {
        return Ok(None);
    };
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
        .with_context(|| format!("reading the client certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "no certificate in the client certificate {}",
            cert.display()
        );
    }
    let der = rustls::pki_types::PrivateKeyDer::from_pem_file(&key)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .with_context(|| format!("unsupported client key {}", key.display()))?;
    rustls::sign::CertifiedKey::new(chain, signing)
        .keys_match()
        .with_context(|| {
            format!(
                "the client key {} does not match {}",
                key.display(),
                cert.display()
            )
        })?;
    // reqwest takes both in one PEM buffer.
    let mut pem = std::fs::read(&cert)
        .with_context(|| format!("reading the client certificate {}", cert.display()))?;
    pem.push(b'\n');
    pem.extend(
        std::fs::read(&key).with_context(|| format!("reading the client key {}", key.display()))?,
    );
    let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
        format!(
            "{} and {} are not a usable client certificate and key",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Some(identity))
}

/// Whether clients present a client certificate (`--client-cert` or `ARCA_CLIENT_CERT`): then
/// a request that needs a token is sent without one when none is given (reports: the
/// server takes the agent id from the certificate).
pub fn has_client_cert() -> bool {
    matches!(client_cert_files(), Ok(Some(_)))
}

/// An HTTP client with arca's user agent, trusting the system's roots and the extra CA of
/// `--ca-cert` / `ARCA_CA_CERT`, presenting the client certificate of `--client-cert` /
/// `ARCA_CLIENT_CERT` if any. It offers HTTP/2 and HTTP/1.1 by ALPN over TLS.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    install_crypto();
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = extra_ca()? {
        builder = builder.add_root_certificate(ca);
    }
    if let Some(identity) = client_identity()? {
        builder = builder.identity(identity);
    }
    builder
        .user_agent(concat!("arca/", env!("CARGO_PKG_VERSION")))
        // Drop idle connections before servers do (actix-web closes them after 5 s): reusing
        // one the server is closing fails the request ("connection closed before message
        // completed"), which a slow step between two requests (an unpack, a health check)
        // would otherwise hit now and then.
        .pool_idle_timeout(std::time::Duration::from_secs(3))
        // A server that stops answering must not hang a deploy agent forever: give up on a
        // connection attempt after 15 s and on a read that brings nothing for
        // ARCA_HTTP_TIMEOUT (default 2 minutes; per read, so large transfers are not cut off).
        .connect_timeout(std::time::Duration::from_secs(15))
        .read_timeout(read_timeout()?)
        .build()
        .context("building the HTTP client")
}

/// A server URL as users write it, made whole: `host:port` gets `http://`, trailing slashes
/// go. Anything but an http(s) URL without a query is refused, naming what was given.
pub fn server_url(given: &str) -> anyhow::Result<String> {
    let trimmed = given.trim().trim_end_matches('/');
    let full = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let url = url::Url::parse(&full).with_context(|| {
        format!("server URL {given:?} is not a URL (e.g. http://127.0.0.1:8480)")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("server URL {given:?}: use http://HOST:PORT or https://HOST:PORT");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("server URL {given:?}: a query or fragment has no place in it");
    }
    Ok(full)
}

impl ApiClient {
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<Self> {
        Ok(ApiClient {
            base: server_url(server)?,
            token,
            http: http_client()?,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The request with the token; without one, as it is if a client certificate is presented
    /// (the server decides what the certificate alone allows: an agent's reports).
    fn authed(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::RequestBuilder> {
        match self.token.as_deref() {
            Some(token) => Ok(req.bearer_auth(token)),
            None if has_client_cert() => Ok(req),
            None => Err(MissingToken.into()),
        }
    }

    /// A streaming request body for `file`; `progress` sees every byte sent.
    async fn file_body(
        file: &Path,
        progress: Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<(reqwest::Body, u64)> {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let len = f.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20);
        let stream = futures::StreamExt::inspect(stream, move |chunk| {
            if let (Some(p), Ok(c)) = (&progress, chunk) {
                p.inc(c.len() as u64);
            }
        });
        Ok((reqwest::Body::wrap_stream(stream), len))
    }

    /// Stages `len` bytes of `body` for `name@version` (step one of a push).
    pub async fn upload(
        &self,
        body: reqwest::Body,
        len: u64,
        q: &UploadQuery,
    ) -> anyhow::Result<UploadResponse> {
        let req = self
            .http
            .post(self.url("/api/v1/uploads"))
            .query(q)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let resp = self
            .authed(req)?
            .send()
            .await
            .context("sending the upload")?;
        decode(resp).await
    }

    /// Pushes with a build statement: the bytes are `file` (one request), or a staged upload
    /// named in `q.upload` (then `file` is `None` and the body is empty).
    pub async fn push(
        &self,
        file: Option<&Path>,
        q: &PushQuery,
        statement: &[u8],
        progress: Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<PushResponse> {
        let (body, len) = match file {
            Some(f) => Self::file_body(f, progress).await?,
            None => (reqwest::Body::from(Vec::new()), 0),
        };
        let req = self
            .http
            .post(self.url("/api/v1/artifacts"))
            .query(q)
            .header(
                STATEMENT_HEADER,
                base64::engine::general_purpose::STANDARD.encode(statement),
            )
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let resp = self.authed(req)?.send().await.context("sending the push")?;
        decode(resp).await
    }

    /// The artifact `name@version`, if it exists.
    pub async fn artifact(
        &self,
        name: &ArtifactName,
        version: &Version,
    ) -> anyhow::Result<Option<ArtifactInfo>> {
        let resp = self
            .http
            .get(self.url("/api/v1/artifacts"))
            .query(&[("name", name.as_str()), ("version", version.as_str())])
            .send()
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        decode(resp).await.map(Some)
    }

    /// The current trust document.
    pub async fn trust(&self) -> anyhow::Result<SignedEnvelope> {
        let resp = self.http.get(self.url("/api/v1/trust")).send().await?;
        let bytes = check(resp).await?.bytes().await?;
        Ok(SignedEnvelope::from_slice(&bytes)?)
    }

    /// Trust document version `v`, or `None` if the server has no such version.
    pub async fn trust_version(&self, v: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let resp = self
            .http
            .get(self.url(&format!("/api/v1/trust/{v}")))
            .send()
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(check(resp).await?.bytes().await?.to_vec()))
    }

    /// Submits a signed trust document.
    pub async fn submit_trust(&self, env: &SignedEnvelope) -> anyhow::Result<TrustChangeResponse> {
        let req = self
            .http
            .post(self.url("/api/v1/trust"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(env.to_bytes());
        decode(self.authed(req)?.send().await?).await
    }

    /// A statement envelope by its SHA-256 (the bytes are checked against it).
    pub async fn statement(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .http
            .get(self.url(&format!("/api/v1/statements/{sha256}")))
            .send()
            .await?;
        let bytes = check(resp).await?.bytes().await?.to_vec();
        if crate::tuf::metadata::sha256_hex(&bytes) != sha256 {
            bail!("statement {sha256}: the server sent other bytes");
        }
        Ok(bytes)
    }
}

impl ApiClient {
    /// POSTs JSON with the token and decodes the JSON answer.
    pub async fn post_json<B: serde::Serialize + ?Sized, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<R> {
        let req = self.http.post(self.url(path)).json(body);
        decode(self.authed(req)?.send().await?).await
    }

    /// DELETEs with the token and decodes the JSON answer.
    pub async fn delete_json<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<R> {
        let req = self.http.delete(self.url(path));
        decode(self.authed(req)?.send().await?).await
    }

    /// GETs and decodes a JSON answer.
    pub async fn get_json<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<R> {
        decode(self.http.get(self.url(path)).query(query).send().await?).await
    }

    /// GETs with the token and decodes a JSON answer.
    pub async fn get_json_authed<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<R> {
        let req = self.http.get(self.url(path)).query(query);
        decode(self.authed(req)?.send().await?).await
    }

    /// GETs a text answer.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(check(self.http.get(self.url(path)).send().await?)
            .await?
            .text()
            .await?)
    }

    /// Asks for a promotion (or its dry run). A refusal by the channel's policy is not an
    /// error but [`Promotion::Refused`], with the decision that lists every rule; any other
    /// non-2xx answer is a [`ServerAnswer`]. A promotion always needs a token.
    pub async fn promote(&self, req: &PromoteRequest) -> anyhow::Result<Promotion> {
        let Some(token) = self.token.as_deref() else {
            return Err(MissingToken.into());
        };
        let resp = self
            .http
            .post(self.url("/api/v1/promotions"))
            .json(req)
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Promotion::Done(
                resp.json().await.context("decoding the server's answer")?,
            ));
        }
        let text = resp.text().await.unwrap_or_default();
        if status == StatusCode::FORBIDDEN
            && let Ok(body) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(d) = body.get("decision")
        {
            let decision = serde_json::from_value(d.clone())?;
            return Ok(Promotion::Refused { body, decision });
        }
        Err(answer_of(status, &text).into())
    }

    /// Uploads a statement envelope.
    pub async fn add_statement(
        &self,
        envelope: &[u8],
    ) -> anyhow::Result<crate::model::api::StatementResponse> {
        let req = self
            .http
            .post(self.url("/api/v1/statements"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(envelope.to_vec());
        decode(self.authed(req)?.send().await?).await
    }
}

/// What the server answered a promotion.
#[derive(Debug)]
pub enum Promotion {
    /// Promoted, evaluated (a dry run), or already current: the decision is in the answer.
    Done(PromoteResponse),
    /// Refused by the channel's policy (403 `policy_refused`): the whole answer, and the
    /// decision that lists every rule.
    Refused {
        body: serde_json::Value,
        decision: crate::policy::Decision,
    },
}

/// A non-2xx answer from the server, with its code and message. What it means for the user
/// (and the CLI's exit status) follows from the status: a 4xx is a refusal of this request, a
/// 5xx a failure of the server.
#[derive(Debug, thiserror::Error)]
#[error("{} ({status} {code}): {message}", self.kind().describe())]
pub struct ServerAnswer {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// What a user can do about an error whose text (as the CLI prints it) shows a common
/// misconfiguration the error itself does not name: a server certificate this client does not
/// trust (a private CA, or `arca init --tls`'s self-signed certificate), an `https://` address
/// for a server that speaks plain HTTP, or the reverse, or an address where nothing listens.
pub fn hint(message: &str) -> Option<&'static str> {
    if message.contains("invalid peer certificate") {
        Some(
            "the server's TLS certificate is not trusted here: give the certificate of the CA \
             that issued it with --ca-cert FILE or ARCA_CA_CERT",
        )
    } else if message.contains("InvalidContentType") || message.contains("corrupt message") {
        Some("the server does not speak TLS: is the address http:// rather than https://?")
    } else if message.contains("Connection refused") {
        Some("nothing listens there: is the server running, and are --server / ARCA_SERVER right?")
    } else if message.contains("invalid HTTP version parsed") {
        Some("the server's answer is not HTTP: if it speaks TLS, the address is https://")
    } else {
        None
    }
}

/// What went wrong, as the CLI reports it (exit status, the JSON error's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The request was refused: a policy rule, a conflict, invalid input, a failed check.
    Refused,
    /// What the request names does not exist.
    NotFound,
    /// No token, a bad token, or a token whose role may not do this.
    Auth,
    /// The server failed, or could not be reached.
    Unavailable,
}

impl FailureKind {
    /// The CLI's exit status for this kind of failure (docs/cli.md, "Exit status").
    pub fn exit_code(self) -> i32 {
        match self {
            FailureKind::Refused => 1,
            FailureKind::NotFound => 3,
            FailureKind::Auth => 4,
            FailureKind::Unavailable => 5,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::NotFound => "not found",
            FailureKind::Auth => "not allowed",
            FailureKind::Unavailable => "server failure",
        }
    }

    /// The kind of failure behind an error: what the server answered, whether it could be
    /// reached, or (anything else) a refusal or failed check on this side.
    pub fn of(e: &anyhow::Error) -> FailureKind {
        for cause in e.chain() {
            if let Some(a) = cause.downcast_ref::<ServerAnswer>() {
                return a.kind();
            }
            if cause.downcast_ref::<MissingToken>().is_some() {
                return FailureKind::Auth;
            }
            if cause.downcast_ref::<reqwest::Error>().is_some() {
                return FailureKind::Unavailable;
            }
        }
        FailureKind::Refused
    }

    /// The code a `--json` error carries when the server gave none.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::NotFound => "not_found",
            FailureKind::Auth => "unauthorized",
            FailureKind::Unavailable => "unavailable",
        }
    }
}

impl ServerAnswer {
    pub fn kind(&self) -> FailureKind {
        match self.status {
            401 => FailureKind::Auth,
            403 if self.code.starts_with("token") || self.code == "agent_identity" => {
                FailureKind::Auth
            }
            404 => FailureKind::NotFound,
            500.. => FailureKind::Unavailable,
            _ => FailureKind::Refused,
        }
    }
}

/// A command that needs a token was given none.
#[derive(Debug, thiserror::Error)]
#[error("this command needs a token: pass --token or set ARCA_TOKEN")]
pub struct MissingToken;

/// Turns a non-2xx answer into a [`ServerAnswer`] naming the server's code and message.
async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    Err(answer(resp).await.into())
}

/// The error a non-2xx answer stands for.
pub async fn answer(resp: reqwest::Response) -> ServerAnswer {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    answer_of(status, &text)
}

/// The error a non-2xx answer of `status` with body `text` stands for.
fn answer_of(status: StatusCode, text: &str) -> ServerAnswer {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(b) => ServerAnswer {
            status: status.as_u16(),
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => ServerAnswer {
            status: status.as_u16(),
            code: "http".to_owned(),
            message: format!(
                "the server answered HTTP {status} without an error body{}",
                if status.is_server_error() {
                    " (a proxy in between, or an overloaded server?)"
                } else {
                    ""
                }
            ),
        },
    }
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
    let resp = check(resp).await?;
    resp.json().await.context("decoding the server's answer")
}
