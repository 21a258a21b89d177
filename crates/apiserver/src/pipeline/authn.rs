//! Authentication: who a request comes from. Today, by client certificate (verified by the
//! TLS layer against the server's CA): user = subject CN, groups = every subject O, plus
//! `system:authenticated`. The identity is read once per connection.

use rustls_pki_types::CertificateDer;

use crate::api::Identity;

/// The identity a verified client certificate carries.
pub fn from_certificate(certificate: &CertificateDer<'_>) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    groups.push("system:authenticated".into());
    Some(Identity { user, groups })
}
