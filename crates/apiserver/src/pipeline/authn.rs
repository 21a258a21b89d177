//! Authentication: who a request comes from. Today, by client certificate (verified by the
//! TLS layer against the server's CA): user = subject CN, groups = every subject O, plus
//! `system:authenticated`, and the certificate's serial and time of issue for revocation.
//! The identity is read once per connection; revocation is checked on every request.

use rustls_pki_types::CertificateDer;

use crate::api::Identity;
use crate::api::identity::{AUTHENTICATED_GROUP, Credential, serial_hex};
use crate::pki::ISSUE_BACKDATE_SECONDS;

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
    groups.push(AUTHENTICATED_GROUP.into());
    Some(Identity {
        user,
        groups,
        credential: Some(Credential {
            serial: serial_hex(cert.raw_serial()),
            issued_at: cert.validity().not_before.timestamp() + ISSUE_BACKDATE_SECONDS,
        }),
        ..Identity::default()
    })
}
