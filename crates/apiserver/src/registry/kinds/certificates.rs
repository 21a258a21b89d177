//! CertificateSigningRequests: kube-apiserver's rules for the spec (a PEM certificate
//! request, a signer, usages; immutable once created) and for the conditions
//! (Approved and Denied exclusive, neither they nor Failed ever removed). Who may approve or
//! sign, and the requester recorded in the spec, are admission's (`pipeline::certificates`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fleetdb_machinery::field::FieldError;
use serde_json::{Value, json};

use crate::api::Resource;
use crate::registry::strategy::Strategy;

/// The shortest certificate lifetime a request may ask for (`expirationSeconds`).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// The key usages a request may name (`certificates/v1.KeyUsage`).
pub const KEY_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The condition types that approve or deny a request.
pub const APPROVAL_CONDITIONS: [&str; 2] = ["Approved", "Denied"];

/// The DER of the certificate request a CSR's `spec.request` holds (base64 of a PEM
/// `CERTIFICATE REQUEST` block), if it holds one that parses.
pub fn request_der(object: &Value) -> Option<Vec<u8>> {
    let pem = STANDARD.decode(object["spec"]["request"].as_str()?).ok()?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    if block.label != "CERTIFICATE REQUEST" {
        return None;
    }
    <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&block.contents)
        .ok()?;
    Some(block.contents)
}

fn spec_problems(object: &Value) -> Vec<FieldError> {
    let mut causes = Vec::new();
    let spec = &object["spec"];
    if !spec.is_object() {
        causes.push(FieldError::required("spec", ""));
        return causes;
    }
    if spec["request"].as_str().is_none_or(str::is_empty) {
        causes.push(FieldError::required("spec.request", ""));
    } else if request_der(object).is_none() {
        causes.push(FieldError::invalid_value(
            "spec.request",
            &json!("<redacted>"),
            "must be a base64-encoded PEM \"CERTIFICATE REQUEST\" block",
        ));
    }
    match spec["signerName"].as_str() {
        None | Some("") => causes.push(FieldError::required("spec.signerName", "")),
        Some(signer) => {
            let (domain, path) = signer.split_once('/').unwrap_or((signer, ""));
            let valid = !path.is_empty()
                && fleetdb_machinery::validation::dns1123_subdomain(domain).is_empty()
                && path.len() <= 253;
            if !valid {
                causes.push(FieldError::invalid_value(
                    "spec.signerName",
                    &json!(signer),
                    "must be a fully qualified domain and path of the form 'example.com/signer-name'",
                ));
            }
        }
    }
    match spec["usages"].as_array() {
        None => causes.push(FieldError::required("spec.usages", "")),
        Some(usages) => {
            for (i, usage) in usages.iter().enumerate() {
                if !usage.as_str().is_some_and(|u| KEY_USAGES.contains(&u)) {
                    causes.push(FieldError::not_supported(
                        format!("spec.usages[{i}]"),
                        usage,
                        &KEY_USAGES.iter().map(|u| json!(u)).collect::<Vec<_>>(),
                    ));
                }
            }
        }
    }
    match &spec["expirationSeconds"] {
        Value::Null => {}
        value if value.as_i64().is_some_and(|s| s >= MIN_EXPIRATION_SECONDS) => {}
        value => causes.push(FieldError::invalid_value(
            "spec.expirationSeconds",
            value,
            "may not specify a duration less than 600 seconds (10 minutes)",
        )),
    }
    causes
}

fn conditions(object: &Value) -> Vec<&Value> {
    object["status"]["conditions"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

fn condition_problems(object: &Value, old: &Value) -> Vec<FieldError> {
    let mut causes = Vec::new();
    let current = conditions(object);
    let mut seen = Vec::new();
    for (i, condition) in current.iter().enumerate() {
        let at = format!("status.conditions[{i}]");
        let Some(kind) = condition["type"].as_str().filter(|t| !t.is_empty()) else {
            causes.push(FieldError::required(format!("{at}.type"), ""));
            continue;
        };
        if seen.contains(&kind) {
            causes.push(FieldError::new(
                fleetdb_machinery::field::REASON_DUPLICATE,
                format!("{at}.type"),
                format!("Duplicate value: {kind:?}"),
            ));
        }
        seen.push(kind);
        let status = condition["status"].as_str().unwrap_or_default();
        let allowed: &[&str] = if matches!(kind, "Approved" | "Denied" | "Failed") {
            &["True"]
        } else {
            &["True", "False", "Unknown"]
        };
        if !allowed.contains(&status) {
            causes.push(FieldError::not_supported(
                format!("{at}.status"),
                &json!(status),
                &allowed.iter().map(|s| json!(s)).collect::<Vec<_>>(),
            ));
        }
    }
    if seen.contains(&"Approved") && seen.contains(&"Denied") {
        causes.push(FieldError::invalid_value(
            "status.conditions",
            &json!("Approved"),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    for lasting in ["Approved", "Denied", "Failed"] {
        let had = conditions(old).iter().any(|c| c["type"] == lasting);
        if had && !seen.contains(&lasting) {
            causes.push(FieldError::invalid(
                "status.conditions",
                format!("Forbidden: updates may not remove a condition of type {lasting:?}"),
            ));
        }
    }
    let (certificate, before) = (
        &object["status"]["certificate"],
        &old["status"]["certificate"],
    );
    if before.as_str().is_some_and(|c| !c.is_empty()) && certificate != before {
        causes.push(FieldError::invalid(
            "status.certificate",
            "Forbidden: updates may not modify existing certificate content",
        ));
    }
    causes
}

/// The strategy of CertificateSigningRequests.
pub struct CertificateRequestStrategy;

impl Strategy for CertificateRequestStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["metadata.name", "spec.signerName"]
    }

    fn prepare_create(&self, _: &Resource, object: &mut Value) -> Vec<FieldError> {
        if let Some(fields) = object.as_object_mut() {
            fields.remove("status");
        }
        spec_problems(object)
    }

    fn prepare_update(&self, _: &Resource, object: &mut Value, old: &Value) -> Vec<FieldError> {
        if object["spec"] != old["spec"] {
            return vec![FieldError::invalid(
                "spec",
                "Invalid value: field is immutable",
            )];
        }
        condition_problems(object, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let csr = params.serialize_request(&key).unwrap();
        STANDARD.encode(csr.pem().unwrap())
    }

    fn csr() -> Value {
        json!({"spec": {
            "request": request(),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
        }})
    }

    #[test]
    fn a_request_needs_a_parsable_csr_a_signer_and_usages() {
        let resource = &crate::api::catalog::joining_resources()[5];
        let mut good = csr();
        good["status"] = json!({"certificate": "x"});
        assert!(
            CertificateRequestStrategy
                .prepare_create(resource, &mut good)
                .is_empty()
        );
        assert!(good.get("status").is_none(), "status is the signer's");
        let mut bad = json!({"spec": {"request": STANDARD.encode("not pem"), "signerName": "nodomain", "usages": ["flying"], "expirationSeconds": 60}});
        let fields: Vec<_> = CertificateRequestStrategy
            .prepare_create(resource, &mut bad)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.request",
                "spec.signerName",
                "spec.usages[0]",
                "spec.expirationSeconds"
            ]
        );
    }

    #[test]
    fn conditions_are_exclusive_and_lasting() {
        let resource = &crate::api::catalog::joining_resources()[5];
        let old = csr();
        let mut approved = old.clone();
        approved["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True", "reason": "r"}]});
        assert!(
            CertificateRequestStrategy
                .prepare_update(resource, &mut approved.clone(), &old)
                .is_empty()
        );
        let mut both = approved.clone();
        both["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "Denied", "status": "True"}));
        assert_eq!(
            CertificateRequestStrategy
                .prepare_update(resource, &mut both, &approved)
                .len(),
            1
        );
        let mut removed = old.clone();
        let causes = CertificateRequestStrategy.prepare_update(resource, &mut removed, &approved);
        assert!(causes[0].message.contains("may not remove"), "{causes:?}");
        let mut respecced = approved.clone();
        respecced["spec"]["usages"] = json!(["server auth"]);
        assert_eq!(
            CertificateRequestStrategy.prepare_update(resource, &mut respecced, &approved)[0].field,
            "spec"
        );
    }
}
