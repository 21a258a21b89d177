//! The agent's identity: its key (made on the host, never sent anywhere), the certificate
//! the server's CA signs for it, and how it gets and renews one — a certificate signing
//! request filed with the bootstrap token the first time, with its current certificate
//! afterwards, at 70–80 % of the certificate's life.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;

use crate::joining::HOST_SIGNER;
use crate::security::{HOST_PREFIX, HOSTS_GROUP};
use crate::write_private;

/// The file names in the agent's data directory: the certificate and its key together (one
/// file, replaced in one rename, so they always match).
const IDENTITY_FILE: &str = "host.pem";
/// A request waiting for approval: its name, then the key it was made with.
const PENDING_FILE: &str = "pending-request";
const PENDING_KEY_FILE: &str = "pending.key";
/// How often a pending request is looked at, at most.
const MAX_POLL: Duration = Duration::from_secs(5);

/// How the agent authenticates.
pub enum Credentials<'a> {
    Token(&'a str),
    Certificate { cert_pem: &'a str, key_pem: &'a str },
}

/// A kube-rs client for `server`, trusting only `ca_pem`.
pub async fn client(
    server: &str,
    ca_pem: &str,
    credentials: Credentials<'_>,
) -> anyhow::Result<kube::Client> {
    let user = match credentials {
        Credentials::Token(token) => json!({"token": token}),
        Credentials::Certificate { cert_pem, key_pem } => json!({
            "client-certificate-data": STANDARD.encode(cert_pem),
            "client-key-data": STANDARD.encode(key_pem),
        }),
    };
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fleetdb", "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": "agent", "user": user}],
        "contexts": [{"name": "agent", "context": {"cluster": "fleetdb", "user": "agent"}}],
        "current-context": "agent",
    });
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn requests(client: kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "certificates.k8s.io".into(),
        version: "v1".into(),
        api_version: "certificates.k8s.io/v1".into(),
        kind: "CertificateSigningRequest".into(),
        plural: "certificatesigningrequests".into(),
    };
    Api::all_with(client, &resource)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The validity of a PEM certificate: (not before, not after), Unix seconds.
pub fn validity(cert_pem: &str) -> Option<(i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The agent's key and certificate, kept in its data directory.
pub struct Identity {
    dir: PathBuf,
    pub host: String,
    pub key_pem: String,
    pub cert_pem: String,
}

impl Identity {
    /// The identity kept in `dir`, if there is one whose certificate has not expired.
    pub fn load(dir: &Path, host: &str) -> Option<Self> {
        let both = read(&dir.join(IDENTITY_FILE))?;
        let at = both.find("-----BEGIN PRIVATE KEY-----")?;
        let (cert_pem, key_pem) = (both[..at].to_owned(), both[at..].to_owned());
        let (_, not_after) = validity(&cert_pem)?;
        (not_after > now()).then(|| Self {
            dir: dir.to_owned(),
            host: host.to_owned(),
            key_pem,
            cert_pem,
        })
    }

    /// When to renew: at a point between 70 and 80 % of the certificate's life (random, so
    /// that hosts that joined together do not renew together).
    pub fn renew_at(&self) -> i64 {
        let (not_before, not_after) = validity(&self.cert_pem).unwrap_or((now(), now()));
        // The server backdates every certificate; its life starts when it was issued.
        let issued = (not_before + fleetdb_apiserver::pki::ISSUE_BACKDATE_SECONDS).min(not_after);
        let share = 0.7 + rand::random::<f64>() * 0.1;
        issued + ((not_after - issued) as f64 * share) as i64
    }

    pub fn credentials(&self) -> Credentials<'_> {
        Credentials::Certificate {
            cert_pem: &self.cert_pem,
            key_pem: &self.key_pem,
        }
    }
}

/// A new key and a request for `CN=fleetdb:host:<host>, O=fleetdb:hosts` (PEM).
fn new_request(host: &str) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, format!("{HOST_PREFIX}{host}"));
    name.push(rcgen::DnType::OrganizationName, HOSTS_GROUP);
    params.distinguished_name = name;
    let request = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), request.pem()?))
}

/// The annotation of a host certificate request that lists the provider ids the agent
/// read on its machine (or was configured with), comma separated: the approver compares
/// them with what a fetcher recorded for the Host.
pub const PROVIDER_IDS_ANNOTATION: &str = "agent.fleetdb.io/provider-ids";

/// Most provider ids a request claims.
const MAX_CLAIMS: usize = 4;

/// The ids this machine has at its provider: the configured one, the DMI serial number,
/// and the DMI asset tag when it holds an EC2 instance id (Nitro instances put it there).
pub fn provider_ids(configured: Option<&str>) -> Vec<String> {
    let read = |file: &str| {
        std::fs::read_to_string(Path::new("/sys/class/dmi/id").join(file))
            .ok()
            .map(|text| text.trim().to_owned())
    };
    let useful = |id: &String| {
        !id.is_empty()
            && id.len() <= 128
            && id.chars().all(|c| c.is_ascii_graphic())
            && !["None", "Not Specified", "Default string", "0"].contains(&id.as_str())
            && !id.contains(',')
    };
    let mut ids: Vec<String> = configured.map(str::to_owned).into_iter().collect();
    ids.extend(read("product_serial"));
    ids.extend(read("board_asset_tag").filter(|tag| tag.starts_with("i-")));
    ids.retain(useful);
    ids.dedup();
    ids.truncate(MAX_CLAIMS);
    ids
}

/// Files a request for a certificate (or finds the one filed before a restart) with
/// `client` and waits until it is issued; returns the certificate (PEM) and its key.
async fn obtain(
    dir: &Path,
    host: &str,
    client: kube::Client,
    claims: &[String],
) -> anyhow::Result<(String, String)> {
    let api = requests(client);
    let pending = read(&dir.join(PENDING_FILE));
    let key_pem = read(&dir.join(PENDING_KEY_FILE));
    let (name, key_pem) = match (pending, key_pem) {
        (Some(name), Some(key)) => (name.trim().to_owned(), key),
        _ => {
            let (key_pem, request_pem) = new_request(host)?;
            let suffix: u32 = rand::random();
            let name = format!("host-{host}-{suffix:08x}");
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "certificates.k8s.io/v1",
                "kind": "CertificateSigningRequest",
                "metadata": {
                    "name": name,
                    "annotations": {PROVIDER_IDS_ANNOTATION: claims.join(",")},
                },
                "spec": {
                    "request": STANDARD.encode(request_pem),
                    "signerName": HOST_SIGNER,
                    "usages": ["client auth", "digital signature"],
                },
            }))?;
            // The key first: a request whose key was lost could never be used.
            write_private(&dir.join(PENDING_KEY_FILE), &key_pem)?;
            api.create(&PostParams::default(), &object)
                .await
                .context("cannot file the certificate signing request")?;
            write_private(&dir.join(PENDING_FILE), &name)?;
            tracing::info!(request = %name, "filed a certificate signing request; waiting for approval");
            (name, key_pem)
        }
    };
    let mut wait = Duration::from_millis(250);
    loop {
        let object = match api.get(&name).await {
            Ok(object) => object,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                // Deleted (or never stored): file a new one.
                let _ = std::fs::remove_file(dir.join(PENDING_FILE));
                let _ = std::fs::remove_file(dir.join(PENDING_KEY_FILE));
                bail!("the certificate signing request {name} is gone; a new one will be filed");
            }
            Err(error) => return Err(error).context("cannot read the certificate signing request"),
        };
        let status = &object.data["status"];
        for condition in status["conditions"].as_array().into_iter().flatten() {
            if matches!(condition["type"].as_str(), Some("Denied" | "Failed")) {
                let _ = std::fs::remove_file(dir.join(PENDING_FILE));
                let _ = std::fs::remove_file(dir.join(PENDING_KEY_FILE));
                bail!(
                    "the certificate signing request {name} was {}: {}",
                    condition["type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_lowercase(),
                    condition["message"].as_str().unwrap_or_default()
                );
            }
        }
        if let Some(certificate) = status["certificate"].as_str().filter(|c| !c.is_empty()) {
            let cert_pem = String::from_utf8(STANDARD.decode(certificate)?)?;
            return Ok((cert_pem, key_pem));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_POLL);
    }
}

/// Joins with a bootstrap token: the certificate kept in `dir`, valid from now on.
pub async fn join(
    dir: &Path,
    host: &str,
    server: &str,
    ca_pem: &str,
    token: &str,
    claims: &[String],
) -> anyhow::Result<Identity> {
    let client = client(server, ca_pem, Credentials::Token(token)).await?;
    let (cert_pem, key_pem) = obtain(dir, host, client, claims).await?;
    store(dir, host, cert_pem, key_pem)
}

/// Renews the certificate with the current one; the new key and certificate replace the
/// old ones only once issued.
pub async fn renew(identity: &Identity, server: &str, ca_pem: &str) -> anyhow::Result<Identity> {
    let client = client(server, ca_pem, identity.credentials()).await?;
    let (cert_pem, key_pem) = obtain(&identity.dir, &identity.host, client, &[]).await?;
    store(&identity.dir, &identity.host, cert_pem, key_pem)
}

fn store(dir: &Path, host: &str, cert_pem: String, key_pem: String) -> anyhow::Result<Identity> {
    // One file, one rename: a crash leaves the old identity or the new one. The pending
    // request goes afterwards; found again after a crash, it answers with this certificate.
    write_private(&dir.join(IDENTITY_FILE), &format!("{cert_pem}{key_pem}"))?;
    let _ = std::fs::remove_file(dir.join(PENDING_FILE));
    let _ = std::fs::remove_file(dir.join(PENDING_KEY_FILE));
    Ok(Identity {
        dir: dir.to_owned(),
        host: host.to_owned(),
        key_pem,
        cert_pem,
    })
}
