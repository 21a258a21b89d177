//! TLS with client certificates: verified against the server's CA during the handshake; a
//! client may also connect without one (it is then anonymous, and the pipeline lets it reach
//! only the public paths). Who a certificate names is the pipeline's business
//! (`pipeline::authn`).
//!
//! The cipher suite is chosen as Go's servers (kube-apiserver among them) choose it: by the
//! server's order, AES-128-GCM first, unless the client lists ChaCha20-Poly1305 first —
//! the sign of a client without AES instructions — in which case the client's order wins.
//! OpenSSL's clients (curl, Python's `kubernetes`) and rustls's list AES-256-GCM first;
//! honouring that cost this server about a quarter more time in AES-GCM on large lists
//! (about 4 % of its CPU; docs/BENCHMARKS.md) for no security a 128-bit key lacks.

use std::sync::Arc;

use rustls::server::{ClientHello, WebPkiClientVerifier};
use rustls::{CipherSuite, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// The server's TLS configurations: one per way of choosing the cipher suite (see the
/// module documentation), otherwise the same.
#[derive(Clone)]
pub struct ServerTls {
    server_order: Arc<ServerConfig>,
    client_order: Arc<ServerConfig>,
}

impl ServerTls {
    /// The configuration for a client that sent `hello`.
    pub fn for_client(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        let prefers_chacha = hello.cipher_suites().first().is_some_and(|suite| {
            matches!(
                suite,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            )
        });
        if prefers_chacha {
            self.client_order.clone()
        } else {
            self.server_order.clone()
        }
    }
}

/// Builds the server's TLS configurations: HTTP/2 and HTTP/1.1 by ALPN, client certificates
/// verified against `ca_pem` but optional.
pub fn server_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<ServerTls, String> {
    let mut config = server_config(ca_pem, cert_pem, key_pem)?;
    let client_order = Arc::new(config.clone());
    config.ignore_client_order = true;
    Ok(ServerTls {
        server_order: Arc::new(config),
        client_order,
    })
}

/// The ring provider's cipher suites, AES-128-GCM before AES-256-GCM before
/// ChaCha20-Poly1305 within each TLS version (the provider's own order puts AES-256 first).
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    let rank = |suite: &rustls::SupportedCipherSuite| {
        let version = u8::from(suite.version().version != rustls::ProtocolVersion::TLSv1_3);
        let cipher = match suite.suite() {
            CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
            _ => 2,
        };
        (version, cipher)
    };
    provider.cipher_suites.sort_by_key(rank);
    provider
}

/// One TLS configuration (see [`server_tls`]), honouring the client's order of suites.
fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("bad CA certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("cannot build the client verifier: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad server certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("bad server key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::ring::cipher_suite as suites;

    /// Handshakes, in memory, a client offering `offered` (in its order of preference) with
    /// the server, and returns the suite they agreed on.
    async fn negotiated(offered: &[rustls::SupportedCipherSuite]) -> CipherSuite {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::ensure(
            &dir.path().join("pki"),
            &dir.path().join("admin.kubeconfig"),
            &["127.0.0.1".to_owned()],
            "https://127.0.0.1:6443",
        )
        .unwrap();
        let tls = server_tls(&pki.ca_cert_pem, &pki.server_cert_pem, &pki.server_key_pem).unwrap();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: offered.to_vec(),
            ..rustls::crypto::ring::default_provider()
        };
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            crate::http::server::handshake(&tls, server_end)
                .await
                .map(|stream| {
                    stream
                        .get_ref()
                        .1
                        .negotiated_cipher_suite()
                        .unwrap()
                        .suite()
                })
        });
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let _client = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, client_end)
            .await
            .unwrap();
        server.await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn the_server_picks_aes_128_unless_the_client_prefers_chacha() {
        let (aes128, aes256, chacha) = (
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS13_AES_256_GCM_SHA384,
            suites::TLS13_CHACHA20_POLY1305_SHA256,
        );
        // What OpenSSL and rustls clients send: AES-256 first.
        assert_eq!(
            negotiated(&[aes256, chacha, aes128]).await,
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // A client without AES instructions puts ChaCha20 first, and gets it.
        assert_eq!(
            negotiated(&[chacha, aes128, aes256]).await,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        // A client that offers only AES-256 still connects.
        assert_eq!(
            negotiated(&[aes256]).await,
            CipherSuite::TLS13_AES_256_GCM_SHA384
        );
    }
}
