//! Authentication: who a request comes from. Today, by client certificate (verified by the
//! TLS layer against the server's CA): user = subject CN, groups = every subject O, plus
//! `system:authenticated`, and the certificate's serial, time of issue (for revocation) and
//! end of validity. The identity is read once per connection; revocation and expiry are
//! checked on every request.

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
            expires_at: cert.validity().not_after.timestamp(),
        }),
        ..Identity::default()
    })
}

/// The namespace bootstrap tokens live in.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// The Secret type of bootstrap tokens.
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The name prefix of bootstrap token Secrets (`bootstrap-token-<id>`).
pub const TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
/// The group of every identity a bootstrap token authenticates.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// The user name prefix of bootstrap token identities (`system:bootstrap:<id>`).
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";

/// A bearer token of the bootstrap form `[a-z0-9]{6}.[a-z0-9]{16}`: its id and secret.
pub fn parse_bootstrap_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (valid(id, 6) && valid(secret, 16)).then_some((id, secret))
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The identity a bootstrap token's Secret grants, if `secret` is its secret and the token
/// is usable for authentication and unexpired (kube-apiserver's bootstrap authenticator:
/// user `system:bootstrap:<id>`, groups `system:bootstrappers` and the token's
/// `auth-extra-groups`, which must start with `system:bootstrappers:`).
pub fn from_bootstrap_secret(
    stored: &serde_json::Value,
    id: &str,
    secret: &str,
    now: i64,
) -> Option<Identity> {
    use base64::Engine;
    let field = |name: &str| -> Option<String> {
        let text = stored["data"][name].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        String::from_utf8(bytes).ok()
    };
    if stored["type"] != TOKEN_SECRET_TYPE
        || stored["metadata"]["deletionTimestamp"].is_string()
        || field("token-id").as_deref() != Some(id)
        || !same_secret(field("token-secret")?.as_bytes(), secret.as_bytes())
        || field("usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return None;
    }
    if let Some(expiration) = field("expiration") {
        let at = time::OffsetDateTime::parse(
            &expiration,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?;
        if at.unix_timestamp() <= now {
            return None;
        }
    }
    let mut groups = vec![BOOTSTRAPPERS_GROUP.to_owned()];
    for group in field("auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !group.starts_with("system:bootstrappers:") {
            return None;
        }
        groups.push(group.to_owned());
    }
    groups.push(AUTHENTICATED_GROUP.into());
    Some(Identity {
        user: format!("{BOOTSTRAP_USER_PREFIX}{id}"),
        groups,
        ..Identity::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn secret(fields: &[(&str, &str)]) -> serde_json::Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let data: serde_json::Map<_, _> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(b64(v))))
            .collect();
        json!({"type": TOKEN_SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    #[test]
    fn bootstrap_tokens_authenticate_until_they_expire() {
        assert_eq!(
            parse_bootstrap_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123",
        ] {
            assert_eq!(parse_bootstrap_token(bad), None, "{bad}");
        }
        let base = [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            ("expiration", "2026-12-01T00:00:00Z"),
            (
                "auth-extra-groups",
                "system:bootstrappers:fleetdb:auto-approve",
            ),
        ];
        let before = 1_796_040_000; // 2026-11-30T12:00:00Z
        let after = 1_796_083_201; // 2026-12-01T00:00:01Z
        let identity = from_bootstrap_secret(&secret(&base), "abcdef", "0123456789abcdef", before)
            .expect("a valid token");
        assert_eq!(identity.user, "system:bootstrap:abcdef");
        assert_eq!(
            identity.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:fleetdb:auto-approve",
                "system:authenticated"
            ]
        );
        assert!(
            from_bootstrap_secret(&secret(&base), "abcdef", "0123456789abcdeX", before).is_none()
        );
        assert!(
            from_bootstrap_secret(&secret(&base), "abcdef", "0123456789abcdef", after).is_none()
        );
        let mut not_for_authentication = base;
        not_for_authentication[2].1 = "false";
        assert!(
            from_bootstrap_secret(
                &secret(&not_for_authentication),
                "abcdef",
                "0123456789abcdef",
                before
            )
            .is_none()
        );
        let mut escalating = base;
        escalating[4].1 = "system:masters";
        assert!(
            from_bootstrap_secret(&secret(&escalating), "abcdef", "0123456789abcdef", before)
                .is_none()
        );
    }
}
