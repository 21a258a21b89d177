//! Bootstrap tokens as kubeadm makes them: Secrets `bootstrap-token-<id>` in `kube-system`
//! of type `bootstrap.kubernetes.io/token`, which authenticate as `system:bootstrap:<id>`
//! (group `system:bootstrappers`) until they expire. `fleetdb token create|list|delete`
//! manage them through the API.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fleetdb_apiserver::pipeline::authn::{
    TOKEN_NAMESPACE, TOKEN_SECRET_PREFIX, TOKEN_SECRET_TYPE, parse_bootstrap_token,
};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::joining::AUTO_APPROVE_GROUP;

/// How long a token lasts unless told otherwise (kubeadm's default too).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Reads a duration like `24h`, `30m`, `7d`, `90s` or `0` (never expires).
pub fn parse_ttl(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

/// A new random token: `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let id = pick(6);
    format!("{id}.{}", pick(16))
}

/// The Secret of a token.
pub fn secret(
    token: &str,
    ttl: Duration,
    description: Option<&str>,
    auto_approve: bool,
    now: time::OffsetDateTime,
) -> Option<Value> {
    let (id, secret) = parse_bootstrap_token(token)?;
    let mut data = serde_json::Map::new();
    let mut put = |key: &str, value: &str| {
        data.insert(key.into(), json!(STANDARD.encode(value)));
    };
    put("token-id", id);
    put("token-secret", secret);
    put("usage-bootstrap-authentication", "true");
    if !ttl.is_zero() {
        let expires = now + time::Duration::seconds(ttl.as_secs() as i64);
        put("expiration", &crate::rfc3339(expires)?);
    }
    if let Some(description) = description {
        put("description", description);
    }
    if auto_approve {
        put("auth-extra-groups", AUTO_APPROVE_GROUP);
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("{TOKEN_SECRET_PREFIX}{id}"), "namespace": TOKEN_NAMESPACE},
        "type": TOKEN_SECRET_TYPE,
        "data": data,
    }))
}

fn secrets(client: kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Secret".into(),
        plural: "secrets".into(),
    };
    Api::namespaced_with(client, TOKEN_NAMESPACE, &resource)
}

/// Creates a token; returns it.
pub async fn create(
    client: kube::Client,
    ttl: Duration,
    description: Option<&str>,
    auto_approve: bool,
) -> anyhow::Result<String> {
    let token = generate();
    let object = secret(
        &token,
        ttl,
        description,
        auto_approve,
        time::OffsetDateTime::now_utc(),
    )
    .context("cannot make a token")?;
    secrets(client)
        .create(&PostParams::default(), &serde_json::from_value(object)?)
        .await
        .context("cannot create the token")?;
    Ok(token)
}

/// One line per token: `ID  EXPIRES  GROUPS  DESCRIPTION` (never the secret).
pub async fn list(client: kube::Client) -> anyhow::Result<Vec<String>> {
    let listed = secrets(client)
        .list(&ListParams::default().fields(&format!("type={TOKEN_SECRET_TYPE}")))
        .await
        .context("cannot list tokens")?;
    let mut lines = vec![format!(
        "{:<8}{:<24}{:<44}{}",
        "ID", "EXPIRES", "EXTRA GROUPS", "DESCRIPTION"
    )];
    for object in listed.items {
        let field = |key: &str| -> String {
            object.data["data"][key]
                .as_str()
                .and_then(|v| STANDARD.decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok())
                .unwrap_or_default()
        };
        let expires = field("expiration");
        lines.push(format!(
            "{:<8}{:<24}{:<44}{}",
            field("token-id"),
            if expires.is_empty() {
                "never"
            } else {
                &expires
            },
            field("auth-extra-groups"),
            field("description")
        ));
    }
    Ok(lines)
}

/// Deletes a token by its id (or the whole token).
pub async fn delete(client: kube::Client, id: &str) -> anyhow::Result<()> {
    let id = id.split('.').next().unwrap_or(id);
    secrets(client)
        .delete(
            &format!("{TOKEN_SECRET_PREFIX}{id}"),
            &DeleteParams::default(),
        )
        .await
        .with_context(|| format!("cannot delete token {id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_their_secrets_have_kubeadm_s_form() {
        let token = generate();
        assert!(parse_bootstrap_token(&token).is_some(), "{token}");
        assert_ne!(generate(), token);
        let now = time::OffsetDateTime::from_unix_timestamp(1_796_040_000).unwrap();
        let secret = secret(&token, Duration::from_secs(3600), Some("rack 4"), true, now).unwrap();
        let (id, _) = parse_bootstrap_token(&token).unwrap();
        let identity = fleetdb_apiserver::pipeline::authn::from_bootstrap_secret(
            &secret,
            id,
            token.split_once('.').unwrap().1,
            1_796_040_000 + 3599,
        )
        .expect("the token authenticates before it expires");
        assert!(identity.groups.iter().any(|g| g == AUTO_APPROVE_GROUP));
        assert!(
            fleetdb_apiserver::pipeline::authn::from_bootstrap_secret(
                &secret,
                id,
                token.split_once('.').unwrap().1,
                1_796_040_000 + 3600,
            )
            .is_none()
        );
        assert_eq!(parse_ttl("24h"), Some(DEFAULT_TTL));
        assert_eq!(parse_ttl("0"), Some(Duration::ZERO));
        assert_eq!(parse_ttl("7x"), None);
    }
}
