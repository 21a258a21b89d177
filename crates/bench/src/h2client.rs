//! A minimal HTTPS client for the API benchmark: HTTP/2 over rustls with the admin client
//! certificate, one TLS connection per simulated client, requests multiplexed on it.
//!
//! kube-rs speaks only HTTP/1.1; kubectl and client-go negotiate HTTP/2 and keep the
//! connection open, so the benchmark measures the server the way those clients use it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The server's CA from its data directory.
fn roots(data_dir: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data_dir.join("pki").join("ca.crt"))? {
        roots.add(cert?)?;
    }
    Ok(roots)
}

/// TLS settings for talking to one fleetdb as its administrator.
#[derive(Clone)]
pub struct Credentials {
    config: Arc<rustls::ClientConfig>,
    address: std::net::SocketAddr,
    /// An `Authorization` header sent with every request (bearer tokens).
    authorization: Option<String>,
}

impl Credentials {
    /// Reads the CA and the admin certificate from a fleetdb data directory.
    pub fn from_data_dir(data_dir: &Path, address: std::net::SocketAddr) -> anyhow::Result<Self> {
        let pki = data_dir.join("pki");
        Self::from_pem(
            data_dir,
            address,
            &std::fs::read(pki.join("admin.crt"))?,
            &std::fs::read(pki.join("admin.key"))?,
        )
    }

    /// The same server with a bearer token and no client certificate (a joining agent).
    pub fn with_token(
        data_dir: &Path,
        address: std::net::SocketAddr,
        token: &str,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(data_dir)?)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            address,
            authorization: Some(format!("Bearer {token}")),
        })
    }

    /// The same server with a client certificate and key (PEM).
    pub fn from_pem(
        data_dir: &Path,
        address: std::net::SocketAddr,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(data_dir)?)
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            address,
            authorization: None,
        })
    }

    /// The same server as another user: a client certificate issued by the server's CA for
    /// `user` in `groups` (read from the data directory, as `fleetdb kubeconfig` issues
    /// them).
    pub fn for_user(
        data_dir: &Path,
        address: std::net::SocketAddr,
        user: &str,
        groups: &[&str],
    ) -> anyhow::Result<Self> {
        let kubeconfig = fleetdb_apiserver::pki::user_kubeconfig(
            &data_dir.join("pki"),
            "https://127.0.0.1",
            user,
            groups,
            fleetdb_apiserver::pki::CLIENT_CERTIFICATE_DAYS,
        )?
        .kubeconfig;
        let field = |name: &str| -> anyhow::Result<Vec<u8>> {
            let line = kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .context("a field of the kubeconfig")?;
            Ok(base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                line.trim(),
            )?)
        };
        Self::from_pem(
            data_dir,
            address,
            &field("client-certificate-data:")?,
            &field("client-key-data:")?,
        )
    }

    /// Opens a TLS connection without a client certificate and leaves it as it is (HTTP/1.1,
    /// nothing sent): what an idle or hostile client holds.
    pub async fn connect_anonymous(
        data_dir: &Path,
        address: std::net::SocketAddr,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(data_dir.join("pki").join("ca.crt"))? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok(connector
            .connect(ServerName::IpAddress(address.ip().into()), tcp)
            .await?)
    }

    /// Opens one HTTP/2 connection (TLS handshake with the client certificate).
    pub async fn connect(&self) -> anyhow::Result<H2> {
        let tcp = tokio::net::TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let name = ServerName::IpAddress(self.address.ip().into());
        let tls = connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            // client-go's HTTP/2 flow-control windows (golang.org/x/net/http2 transport).
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(1 << 30)
            .handshake(TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2 {
            send,
            authority: self.address.to_string(),
            authorization: self.authorization.clone(),
        })
    }
}

/// One HTTP/2 connection; clones share it (each request is its own stream).
#[derive(Clone)]
pub struct H2 {
    send: SendRequest<Full<Bytes>>,
    authority: String,
    authorization: Option<String>,
}

impl H2 {
    /// Starts a body-less request with an `Accept` header of its own.
    pub async fn start_accepting(
        &self,
        method: Method,
        path: &str,
        accept: &str,
    ) -> anyhow::Result<Response<Incoming>> {
        self.send(method, path, accept, None, Bytes::new()).await
    }

    /// Starts a request and returns the response head with its streaming body.
    pub async fn start(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        self.send(method, path, "application/json", content_type, body)
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .header("accept", accept);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let request = request.body(Full::new(body))?;
        let mut send = self.send.clone();
        send.ready().await?;
        Ok(send.send_request(request).await?)
    }

    /// One request, the whole response body read.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let response = self.start(method, path, content_type, body).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// A GET that must answer 200.
    pub async fn get(&self, path: &str) -> anyhow::Result<Bytes> {
        let (status, body) = self.call(Method::GET, path, None, Bytes::new()).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        );
        Ok(body)
    }
}
