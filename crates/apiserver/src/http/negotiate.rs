//! Content negotiation: what a response should be (JSON, a Table, aggregated discovery) and
//! whether a request body's media type is one we read.

use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};

use crate::api::ApiError;

/// The media type of aggregated discovery responses; kubectl ignores the body without it.
pub const AGGREGATED_DISCOVERY: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// What a Table row's `object` holds (`includeObject`, as kube-apiserver defines it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `null`.
    None,
    /// The object's metadata as a `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object (kubectl asks for it to sort by a field outside `metadata`).
    Object,
}

impl IncludeObject {
    /// The `includeObject` query parameter (absent or empty: the default).
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value.unwrap_or_default() {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(ApiError::bad_request(format!(
                "unrecognized includeObject value: {other:?}"
            ))),
        }
    }
}

/// A Table asked for: its `meta.k8s.io` version and what its rows carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableForm {
    /// `v1` or `v1beta1`.
    pub version: &'static str,
    pub include: IncludeObject,
}

impl TableForm {
    fn of(version: &'static str) -> Representation {
        Representation::Table(Self {
            version,
            include: IncludeObject::default(),
        })
    }
}

/// What the client asked the response to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    Json,
    /// A `meta.k8s.io` Table (the rows' objects are set by the request's query).
    Table(TableForm),
    /// Aggregated discovery (`apidiscovery.k8s.io/v2` or `v2beta1`).
    AggregatedDiscovery(&'static str),
}

/// One offer of an Accept header: type/subtype and its parameters.
struct Offer<'a> {
    media: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

fn offers(accept: &str) -> Vec<Offer<'_>> {
    accept
        .split(',')
        .map(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let params = parts
                .filter_map(|p| p.split_once('=').map(|(k, v)| (k.trim(), v.trim())))
                .collect();
            Offer { media, params }
        })
        .collect()
}

/// Picks the first offer we can produce. No Accept header means JSON.
pub fn representation(headers: &HeaderMap) -> Result<Representation, ApiError> {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Representation::Json);
    };
    if accept.trim().is_empty() {
        return Ok(Representation::Json);
    }
    for offer in offers(accept) {
        let param = |name: &str| {
            offer
                .params
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
        };
        match offer.media {
            "application/json" | "application/*" | "*/*" => {
                match (param("as"), param("g"), param("v")) {
                    (None, _, _) => return Ok(Representation::Json),
                    (Some("Table"), Some("meta.k8s.io"), Some("v1")) => {
                        return Ok(TableForm::of("v1"));
                    }
                    (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => {
                        return Ok(TableForm::of("v1beta1"));
                    }
                    (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                        return Ok(Representation::AggregatedDiscovery("v2"));
                    }
                    (
                        Some("APIGroupDiscoveryList"),
                        Some("apidiscovery.k8s.io"),
                        Some("v2beta1"),
                    ) => {
                        return Ok(Representation::AggregatedDiscovery("v2beta1"));
                    }
                    _ => continue,
                }
            }
            // We answer protobuf requests in JSON, which Kubernetes clients accept.
            "application/vnd.kubernetes.protobuf" => continue,
            _ => continue,
        }
    }
    // Clients that offered only protobuf (and JSON was not listed) still read JSON.
    if accept.contains("application/vnd.kubernetes.protobuf") {
        return Ok(Representation::Json);
    }
    Err(ApiError::not_acceptable(
        "application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
    ))
}

/// Media types of request bodies for create and update.
pub const BODY_TYPES: &str = "application/json, application/yaml";

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn kubectl_table_offer_selects_a_v1_table() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            representation(&with_accept(accept)).unwrap(),
            TableForm::of("v1")
        );
    }

    #[test]
    fn aggregated_discovery_offer_and_fallbacks() {
        let accept =
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            representation(&with_accept(accept)).unwrap(),
            Representation::AggregatedDiscovery("v2")
        );
        assert_eq!(
            representation(&HeaderMap::new()).unwrap(),
            Representation::Json
        );
        assert_eq!(
            representation(&with_accept(
                "application/vnd.kubernetes.protobuf,application/json"
            ))
            .unwrap(),
            Representation::Json
        );
        assert!(representation(&with_accept("text/html")).is_err());
    }
}
