//! The server's own public-key infrastructure, created on first start.
//!
//! In `DATA_DIR/pki/`: a CA (ECDSA P-256, 10 years), a server certificate signed by it (SANs for
//! `localhost`, `127.0.0.1`, `::1` and the listen host), and an administrator client
//! certificate (`CN=fleetdb-admin`, `O=system:masters`). `DATA_DIR/admin.kubeconfig` embeds the
//! CA and the administrator's certificate and key. Later starts reuse everything; the server
//! certificate is re-issued when the listen host is not among its SANs or it is close to expiry.
//! Private keys are written with mode 0600.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Name of the administrator identity in the generated certificate and kubeconfig.
pub const ADMIN_USER: &str = "fleetdb-admin";
/// Group of the administrator identity: bypasses authorization, as in Kubernetes.
pub const ADMIN_GROUP: &str = "system:masters";

const CA_VALIDITY: Duration = Duration::days(3650);
/// Lifetime of the server's and the administrator's certificates (renewed at start-up
/// within [`RENEW_BEFORE`] of the end).
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Default lifetime of a certificate `fleetdb kubeconfig` issues for a person or a tool.
pub const CLIENT_CERTIFICATE_DAYS: u32 = 365;
/// Longest lifetime `fleetdb kubeconfig` issues a certificate for.
pub const MAX_CLIENT_CERTIFICATE_DAYS: u32 = 366;
/// Every certificate is valid from this long before it is issued, so that a client whose
/// clock is a little ahead can use it at once. Revocation reads the time of issue back as
/// `notBefore + ISSUE_BACKDATE_SECONDS`.
pub const ISSUE_BACKDATE_SECONDS: i64 = 300;
/// Leaf certificates closer than this to expiry are re-issued at start.
const RENEW_BEFORE: Duration = Duration::days(30);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate error: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{path} does not hold a usable certificate: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// PEM-encoded material the server needs.
pub struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// The administrator kubeconfig that was written.
    pub admin_kubeconfig: PathBuf,
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    // Write a temporary file and rename it, so a crash never leaves half a key.
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&temporary)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

fn leaf_params(common_name: &str, organizations: &[&str], lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    for organization in organizations {
        name.push(DnType::OrganizationName, *organization);
    }
    params.distinguished_name = name;
    // Whole seconds: the time of issue is read back from notBefore.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    params.not_before = now - Duration::seconds(ISSUE_BACKDATE_SECONDS);
    params.not_after = now + lifetime;
    // A random serial, which `fleetdb revoke --serial` names.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
}

/// The SANs the server certificate needs for the hosts clients reach it by (every replica's,
/// when replicas share the PKI).
fn server_names(hosts: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for host in hosts {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let unspecified = host
            .parse::<IpAddr>()
            .map(|ip| ip.is_unspecified())
            .unwrap_or(false);
        if !host.is_empty() && !unspecified && !names.iter().any(|n| n == host) {
            names.push(host.to_owned());
        }
    }
    names
}

/// Whether the certificate `pem` was signed by the CA certificate `ca_pem`.
fn issued_by(pem: &str, ca_pem: &str) -> bool {
    let parse = |text: &str| {
        x509_parser::pem::parse_x509_pem(text.as_bytes())
            .ok()
            .map(|(_, p)| p)
    };
    let (Some(leaf), Some(ca)) = (parse(pem), parse(ca_pem)) else {
        return false;
    };
    let (Ok(leaf), Ok(ca)) = (leaf.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// Refuses a certificate of the PKI directory that its CA did not issue: a replaced CA
/// would otherwise leave a server certificate no client trusts and a kubeconfig that fails
/// with a TLS error far from the cause.
fn check_issuer(path: &Path, pem: &str, ca_pem: &str, dir: &Path) -> Result<(), PkiError> {
    if issued_by(pem, ca_pem) {
        return Ok(());
    }
    Err(PkiError::Invalid {
        path: path.to_owned(),
        reason: format!(
            "was not issued by the certificate authority {} (was the CA replaced?): put back the CA it came from, or remove server.crt, server.key, admin.crt and admin.key from {} so that this CA issues new ones",
            dir.join("ca.crt").display(),
            dir.display()
        ),
    })
}

/// Whether an existing certificate still serves: not near expiry and, for the server, naming
/// every host it must.
fn still_good(pem: &str, required_names: &[String]) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let not_after = cert.validity().not_after.timestamp();
    if not_after < (OffsetDateTime::now_utc() + RENEW_BEFORE).unix_timestamp() {
        return false;
    }
    if required_names.is_empty() {
        return true;
    }
    let mut present = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    present.push((*dns).to_owned())
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                        _ => None,
                    };
                    present.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    required_names.iter().all(|n| present.contains(n))
}

/// Loads or creates the PKI in `dir` (replicas that share it share one identity), issuing a
/// server certificate that names every host in `hosts`, and writes the administrator
/// kubeconfig for a server reachable at `server_url` to `admin_kubeconfig`.
pub fn ensure(
    dir: &Path,
    admin_kubeconfig: &Path,
    hosts: &[String],
    server_url: &str,
) -> Result<Pki, PkiError> {
    let dir = dir.to_owned();
    std::fs::create_dir_all(&dir).map_err(|source| PkiError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");

    let (ca_cert_pem, ca_key) = match (read(&ca_cert_path)?, read(&ca_key_path)?) {
        (Some(cert), Some(key)) => {
            let key = KeyPair::from_pem(&key)?;
            (cert, key)
        }
        _ => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            name.push(DnType::CommonName, "fleetdb-ca");
            params.distinguished_name = name;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::minutes(5);
            params.not_after = now + CA_VALIDITY;
            let cert = params.self_signed(&key)?;
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&ca_cert_path, &cert.pem(), false)?;
            tracing::info!(path = %ca_cert_path.display(), "created a new certificate authority");
            (cert.pem(), key)
        }
    };
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key).map_err(|_| PkiError::Invalid {
            path: ca_cert_path.clone(),
            reason: "cannot be parsed as a CA certificate".into(),
        })?;

    // Server certificate.
    let names = server_names(hosts);
    let server_cert_path = dir.join("server.crt");
    let server_key_path = dir.join("server.key");
    let admin_cert_path = dir.join("admin.crt");
    for path in [&server_cert_path, &admin_cert_path] {
        if let Some(pem) = read(path)? {
            check_issuer(path, &pem, &ca_cert_pem, &dir)?;
        }
    }
    let (server_cert_pem, server_key_pem) =
        match (read(&server_cert_path)?, read(&server_key_path)?) {
            (Some(cert), Some(key)) if still_good(&cert, &names) => (cert, key),
            _ => {
                let key = KeyPair::generate()?;
                let mut params = leaf_params("fleetdb-apiserver", &[], LEAF_VALIDITY);
                params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.subject_alt_names = names
                    .iter()
                    .map(|name| match name.parse::<IpAddr>() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => name.clone().try_into().map(SanType::DnsName),
                    })
                    .collect::<Result<_, _>>()?;
                let cert = params.signed_by(&key, &issuer)?;
                write(&server_key_path, &key.serialize_pem(), true)?;
                write(&server_cert_path, &cert.pem(), false)?;
                tracing::info!(names = ?names, "issued the server certificate");
                (cert.pem(), key.serialize_pem())
            }
        };

    // Administrator client certificate.
    let admin_key_path = dir.join("admin.key");
    let (admin_cert_pem, admin_key_pem) = match (read(&admin_cert_path)?, read(&admin_key_path)?) {
        (Some(cert), Some(key)) if still_good(&cert, &[]) => (cert, key),
        _ => {
            let (cert, key) =
                issue_client_certificate(&issuer, ADMIN_USER, &[ADMIN_GROUP], LEAF_VALIDITY)?;
            write(&admin_key_path, &key, true)?;
            write(&admin_cert_path, &cert, false)?;
            (cert, key)
        }
    };

    let admin_kubeconfig = admin_kubeconfig.to_owned();
    write(
        &admin_kubeconfig,
        &kubeconfig(
            server_url,
            &ca_cert_pem,
            ADMIN_USER,
            &admin_cert_pem,
            &admin_key_pem,
        ),
        true,
    )?;
    Ok(Pki {
        ca_cert_pem,
        server_cert_pem,
        server_key_pem,
        admin_kubeconfig,
    })
}

/// A kubeconfig issued for a new identity, and what to know of its certificate.
pub struct Issued {
    pub kubeconfig: String,
    /// The certificate's serial number (lower-case hex), which `fleetdb revoke --serial`
    /// takes.
    pub serial: String,
    /// When the certificate expires (RFC 3339).
    pub expires: String,
}

/// Writes a kubeconfig for a new identity (`CN=user`, `O=group`) with a client certificate
/// signed by the CA in the PKI directory `dir`, for tools that run elsewhere (fetchers at
/// the edge).
pub fn user_kubeconfig(
    dir: &Path,
    server_url: &str,
    user: &str,
    groups: &[&str],
    days: u32,
) -> Result<Issued, PkiError> {
    let ca_cert_path = dir.join("ca.crt");
    let (Some(ca_cert_pem), Some(ca_key_pem)) = (read(&ca_cert_path)?, read(&dir.join("ca.key"))?)
    else {
        return Err(PkiError::Invalid {
            path: ca_cert_path,
            reason:
                "no certificate authority here: run `fleetdb serve` with this data directory once"
                    .into(),
        });
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key).map_err(|_| PkiError::Invalid {
            path: ca_cert_path.clone(),
            reason: "cannot be parsed as a CA certificate".into(),
        })?;
    let days = days.clamp(1, MAX_CLIENT_CERTIFICATE_DAYS);
    let (cert, key) =
        issue_client_certificate(&issuer, user, groups, Duration::days(i64::from(days)))?;
    let (serial, expires) = x509_parser::pem::parse_x509_pem(cert.as_bytes())
        .ok()
        .and_then(|(_, pem)| {
            let parsed = pem.parse_x509().ok()?;
            let expires =
                OffsetDateTime::from_unix_timestamp(parsed.validity().not_after.timestamp())
                    .ok()?
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()?;
            Some((serial_hex(parsed.raw_serial()), expires))
        })
        .unwrap_or_default();
    Ok(Issued {
        kubeconfig: kubeconfig(server_url, &ca_cert_pem, user, &cert, &key),
        serial,
        expires,
    })
}

/// The certificate authority, loaded to sign approved certificate requests.
pub struct Authority {
    cert_pem: String,
    key: KeyPair,
}

impl Authority {
    /// Loads the CA of the PKI directory `dir` (written by [`ensure`]).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join("ca.crt");
        let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&dir.join("ca.key"))?)
        else {
            return Err(PkiError::Invalid {
                path: cert_path,
                reason: "no certificate authority here".into(),
            });
        };
        let key = KeyPair::from_pem(&key_pem)?;
        Issuer::from_ca_cert_pem(&cert_pem, &key).map_err(|_| PkiError::Invalid {
            path: cert_path,
            reason: "cannot be parsed as a CA certificate".into(),
        })?;
        Ok(Self { cert_pem, key })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs the public key of a PKCS #10 request (DER) into a client certificate for
    /// `CN=user`, one `O` per group, valid for `lifetime`. Nothing else of the request is
    /// used: its subject, extensions and alternative names are the caller's to check, and
    /// the certificate carries only what this function sets.
    pub fn sign_request(
        &self,
        request_der: &[u8],
        user: &str,
        groups: &[&str],
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let der = rustls_pki_types::CertificateSigningRequestDer::from(request_der.to_vec());
        let mut request = rcgen::CertificateSigningRequestParams::from_der(&der)?;
        let mut params = leaf_params(user, groups, lifetime);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        request.params = params;
        Ok(request.signed_by(&issuer)?.pem())
    }
}

/// The subject of a PKCS #10 request (DER): its common name and organizations.
pub fn request_subject(request_der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, request) =
        <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(request_der)
            .ok()?;
    request.verify_signature().ok()?;
    let subject = &request.certification_request_info.subject;
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((common_name, organizations))
}

/// Issues a client certificate (`CN=user`, one `O` per group) signed by the CA, valid for
/// `lifetime`: (cert PEM, key PEM).
pub fn issue_client_certificate(
    issuer: &Issuer<'_, &KeyPair>,
    user: &str,
    groups: &[&str],
    lifetime: Duration,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = leaf_params(user, groups, lifetime);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A kubeconfig with embedded credentials for one user of one server.
pub fn kubeconfig(
    server_url: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fleetdb
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: fleetdb
  context:
    cluster: fleetdb
    user: {user}
    namespace: default
current-context: fleetdb
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// A serial number as revocations name it: lower-case hex, no leading zero bytes.
pub fn serial_hex(bytes: &[u8]) -> String {
    let significant = bytes
        .iter()
        .position(|b| *b != 0)
        .map_or(&bytes[bytes.len().saturating_sub(1)..], |start| {
            &bytes[start..]
        });
    significant.iter().map(|b| format!("{b:02x}")).collect()
}

/// A serial number as a person may write it (`0A:1B`, `0x0a1b`, `0A1B`), in the form
/// [`serial_hex`] gives; `None` if it is not hex.
pub fn normalize_serial(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 80 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes: Vec<u8> = (0..padded.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
        .collect();
    Some(serial_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn start(dir: &Path, names: &[&str]) -> Result<Pki, PkiError> {
        ensure(
            &dir.join("pki"),
            &dir.join("admin.kubeconfig"),
            &hosts(names),
            &format!("https://{}:6443", names[0]),
        )
    }

    #[test]
    fn first_start_creates_and_later_starts_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let first = start(dir.path(), &["127.0.0.1"]).unwrap();
        let second = start(dir.path(), &["127.0.0.1"]).unwrap();
        assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
        assert_eq!(first.server_cert_pem, second.server_cert_pem);
        let kubeconfig = std::fs::read_to_string(&first.admin_kubeconfig).unwrap();
        assert!(kubeconfig.contains("client-certificate-data: "));
        assert!(kubeconfig.contains("server: https://127.0.0.1:6443"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pki/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private keys are private");
    }

    #[test]
    fn a_new_listen_host_reissues_only_the_server_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = start(dir.path(), &["127.0.0.1"]).unwrap();
        let moved = start(dir.path(), &["fleet.example.com", "10.0.0.2"]).unwrap();
        assert_eq!(first.ca_cert_pem, moved.ca_cert_pem);
        assert_ne!(first.server_cert_pem, moved.server_cert_pem);
        assert!(still_good(
            &moved.server_cert_pem,
            &server_names(&hosts(&["fleet.example.com", "10.0.0.2"]))
        ));
        assert!(issued_by(&moved.server_cert_pem, &moved.ca_cert_pem));
    }

    #[test]
    fn certificates_of_another_authority_are_refused_with_the_reason() {
        let one = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        start(one.path(), &["127.0.0.1"]).unwrap();
        start(other.path(), &["127.0.0.1"]).unwrap();
        // The CA of `one` copied over `other`'s, its server and admin certificates kept.
        for file in ["ca.crt", "ca.key"] {
            std::fs::copy(
                one.path().join("pki").join(file),
                other.path().join("pki").join(file),
            )
            .unwrap();
        }
        let Err(refused) = start(other.path(), &["127.0.0.1"]) else {
            panic!("certificates of another CA were accepted");
        };
        let message = refused.to_string();
        assert!(
            message.contains("was not issued by the certificate authority"),
            "{message}"
        );
        assert!(message.contains("remove server.crt"), "{message}");
        // With only the CA copied, a replica issues its own certificates from it.
        let fresh = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(fresh.path().join("pki")).unwrap();
        for file in ["ca.crt", "ca.key"] {
            std::fs::copy(
                one.path().join("pki").join(file),
                fresh.path().join("pki").join(file),
            )
            .unwrap();
        }
        let replica = start(fresh.path(), &["127.0.0.1"]).unwrap();
        let original = start(one.path(), &["127.0.0.1"]).unwrap();
        assert_eq!(replica.ca_cert_pem, original.ca_cert_pem);
        assert!(issued_by(&replica.server_cert_pem, &original.ca_cert_pem));
    }

    #[test]
    fn serials_are_written_one_way() {
        assert_eq!(serial_hex(&[0, 0x0a, 0x1b]), "0a1b");
        assert_eq!(serial_hex(&[0]), "00");
        assert_eq!(normalize_serial("0A:1B").as_deref(), Some("0a1b"));
        assert_eq!(normalize_serial("0x00a1b").as_deref(), Some("0a1b"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
    }
}
