//! The AWS EC2 source: `DescribeInstances` of one region, with the Source's filters.
//!
//! Credentials, region and endpoint are resolved by `aws-config` exactly as every AWS tool
//! does (environment, profiles, SSO, instance roles; `AWS_REGION`, `AWS_ENDPOINT_URL` or
//! `AWS_ENDPOINT_URL_EC2`), so the same binary talks to AWS or to an emulator. The call itself
//! is a small SigV4-signed query-protocol request (`aws-sigv4` + `quick-xml`) instead of
//! `aws-sdk-ec2`, whose build costs more than the rest of fleetdb (see ARCHITECTURE.md).
//!
//! An instance becomes a Host named by its instance id: placement, addresses, type, state and
//! platform go to `status`; tags `role` and `team` to the well-known labels (and `role` to a
//! new Host's `spec.role`); the `Name` tag, the launch time and every other tag to annotations.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use fleetdb_fleet::{AwsSource, Hardware, HostAddress, HostState, HostStatus, ProviderRef, labels};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

use crate::{FetchError, Observation, ObservedHost, label_value};

/// Instances asked for per DescribeInstances page (the API's maximum).
const PAGE_SIZE: u32 = 1000;
/// Pages read at most in one enumeration (a runaway `nextToken` never loops forever).
const MAX_PAGES: usize = 10_000;
/// Largest DescribeInstances response accepted.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// The EC2 API version of the query protocol.
const API_VERSION: &str = "2016-11-15";

/// Annotation prefix for tags that are not well-known labels.
pub const TAG_ANNOTATION_PREFIX: &str = "tags.aws.fleetdb.io/";
/// Annotation with the `Name` tag.
pub const NAME_ANNOTATION: &str = "aws.fleetdb.io/name";
/// Annotation with the launch time.
pub const LAUNCH_TIME_ANNOTATION: &str = "aws.fleetdb.io/launch-time";

#[derive(Deserialize)]
struct Items<T> {
    #[serde(rename = "item", default = "Vec::new")]
    items: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInstancesResponse {
    #[serde(default)]
    reservation_set: Items<Reservation>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    owner_id: Option<String>,
    #[serde(default)]
    instances_set: Items<Instance>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Instance {
    instance_id: String,
    instance_type: Option<String>,
    instance_state: Option<InstanceState>,
    private_dns_name: Option<String>,
    dns_name: Option<String>,
    private_ip_address: Option<String>,
    ip_address: Option<String>,
    launch_time: Option<String>,
    placement: Option<Placement>,
    platform_details: Option<String>,
    cpu_options: Option<CpuOptions>,
    #[serde(default)]
    tag_set: Items<Tag>,
}

#[derive(Deserialize, Default)]
struct InstanceState {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Placement {
    availability_zone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CpuOptions {
    core_count: Option<u32>,
    threads_per_core: Option<u32>,
}

#[derive(Deserialize, Default)]
struct Tag {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    errors: ErrorList,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorList {
    error: Vec<ApiError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiError {
    code: String,
    message: String,
}

fn encode(text: &str) -> String {
    // RFC 3986 unreserved characters stay; everything else is percent-encoded (SigV4 rules).
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn request_body(filters: &BTreeMap<String, String>, next_token: Option<&str>) -> String {
    let mut params = vec![
        ("Action".to_owned(), "DescribeInstances".to_owned()),
        ("Version".to_owned(), API_VERSION.to_owned()),
        ("MaxResults".to_owned(), PAGE_SIZE.to_string()),
    ];
    for (index, (name, values)) in filters.iter().enumerate() {
        params.push((format!("Filter.{}.Name", index + 1), name.clone()));
        // Several values of one filter are comma separated in the Source.
        for (value_index, value) in values.split(',').map(str::trim).enumerate() {
            params.push((
                format!("Filter.{}.Value.{}", index + 1, value_index + 1),
                value.to_owned(),
            ));
        }
    }
    if let Some(token) = next_token {
        params.push(("NextToken".to_owned(), token.to_owned()));
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn state_of(name: &str) -> HostState {
    match name {
        "running" => HostState::Running,
        "stopped" | "stopping" => HostState::Stopped,
        "terminated" | "shutting-down" => HostState::Terminated,
        _ => HostState::Unknown,
    }
}

fn host_of(instance: Instance, owner: Option<&str>, region: &str, source: &str) -> ObservedHost {
    let tags: BTreeMap<String, String> = instance
        .tag_set
        .items
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    let role = tags.get("role").or_else(|| tags.get("Role")).cloned();
    let team = tags.get("team").or_else(|| tags.get("Team")).cloned();
    let mut host_labels = BTreeMap::from([
        (labels::PROVIDER.to_owned(), "aws".to_owned()),
        (labels::SOURCE.to_owned(), source.to_owned()),
    ]);
    if let Some(region) = label_value(region) {
        host_labels.insert(labels::REGION.to_owned(), region);
    }
    if let Some(role) = role.as_deref().and_then(label_value) {
        host_labels.insert(labels::ROLE.to_owned(), role);
    }
    if let Some(team) = team.as_deref().and_then(label_value) {
        host_labels.insert(labels::TEAM.to_owned(), team);
    }
    let mut annotations = BTreeMap::new();
    for (key, value) in &tags {
        match key.as_str() {
            "Name" => {
                annotations.insert(NAME_ANNOTATION.to_owned(), value.clone());
            }
            "role" | "Role" | "team" | "Team" => {}
            other => {
                if let Some(key) = label_value(other) {
                    annotations.insert(format!("{TAG_ANNOTATION_PREFIX}{key}"), value.clone());
                }
            }
        }
    }
    if let Some(launched) = &instance.launch_time {
        annotations.insert(LAUNCH_TIME_ANNOTATION.to_owned(), launched.clone());
    }
    let mut addresses = Vec::new();
    for (type_, address) in [
        ("InternalIP", &instance.private_ip_address),
        ("ExternalIP", &instance.ip_address),
        ("InternalDNS", &instance.private_dns_name),
        ("ExternalDNS", &instance.dns_name),
    ] {
        if let Some(address) = address.as_ref().filter(|a| !a.is_empty()) {
            addresses.push(HostAddress {
                type_: type_.into(),
                address: address.clone(),
            });
        }
    }
    let cpus = instance
        .cpu_options
        .as_ref()
        .and_then(|c| Some(c.core_count? * c.threads_per_core.unwrap_or(1)));
    let name = instance.instance_id.to_ascii_lowercase();
    ObservedHost {
        line: 0,
        name,
        role,
        labels: host_labels,
        annotations,
        status: HostStatus {
            provider: Some(ProviderRef {
                type_: "aws".into(),
                account: owner.map(str::to_owned),
                id: instance.instance_id,
            }),
            region: Some(region.to_owned()),
            zone: instance.placement.and_then(|p| p.availability_zone),
            addresses,
            hardware: Some(Hardware {
                cpus,
                model: instance.instance_type,
                ..Hardware::default()
            }),
            os: instance.platform_details,
            state: Some(
                instance
                    .instance_state
                    .map(|s| state_of(&s.name))
                    .unwrap_or_default(),
            ),
            ..HostStatus::default()
        },
    }
}

/// Parses one DescribeInstances response page.
fn parse_page(
    body: &str,
    region: &str,
    source: &str,
    hosts: &mut Vec<ObservedHost>,
) -> Result<Option<String>, FetchError> {
    let response: DescribeInstancesResponse = quick_xml::de::from_str(body)
        .map_err(|e| FetchError::Source(format!("unexpected DescribeInstances response: {e}")))?;
    for reservation in response.reservation_set.items {
        let owner = reservation.owner_id.clone();
        for instance in reservation.instances_set.items {
            hosts.push(host_of(instance, owner.as_deref(), region, source));
        }
    }
    Ok(response.next_token.filter(|t| !t.is_empty()))
}

/// Whether `region` is an AWS region name (`us-east-1`, `eu-central-2`, `us-gov-west-1`,
/// `us-isob-east-1`, `ap-southeast-5`): two letters, one or two words, a number. A record's
/// region becomes part of the endpoint's host name, so nothing else may pass.
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let word =
        |p: &str| !p.is_empty() && p.len() <= 16 && p.bytes().all(|b| b.is_ascii_lowercase());
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && word(parts[0])
        && parts[1..parts.len() - 1].iter().all(|p| word(p))
        && parts[parts.len() - 1].len() <= 2
        && !parts[parts.len() - 1].is_empty()
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// Enumerates the instances of an AWS source.
pub async fn observe(settings: &AwsSource, source: &str) -> Result<Observation, FetchError> {
    if let Some(region) = &settings.region
        && !is_region(region)
    {
        return Err(FetchError::Source(format!(
            "spec.aws.region {region:?} is not an AWS region name (like us-east-1)"
        )));
    }
    let tls = aws_smithy_http_client::tls::Provider::Rustls(
        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
    );
    let sdk_http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls)
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(sdk_http);
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let config = loader.load().await;
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .ok_or_else(|| {
            FetchError::Source("no AWS region: set spec.aws.region or AWS_REGION".into())
        })?;
    if !is_region(&region) {
        return Err(FetchError::Source(format!(
            "the AWS region {region:?} is not a region name (like us-east-1)"
        )));
    }
    // The endpoint comes from this machine's AWS configuration only, never from a record.
    let endpoint = std::env::var("AWS_ENDPOINT_URL_EC2")
        .ok()
        .or_else(|| config.endpoint_url().map(str::to_owned))
        .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
    let endpoint = endpoint.trim_end_matches('/').to_owned() + "/";
    let credentials = config
        .credentials_provider()
        .ok_or_else(|| FetchError::Source("no AWS credentials provider".into()))?
        .provide_credentials()
        .await
        .map_err(|e| FetchError::Source(format!("cannot get AWS credentials: {e}")))?;
    let identity = credentials.into();

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            FetchError::Source(format!("cannot load the system's root certificates: {e}"))
        })?
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| FetchError::Source(format!("bad EC2 endpoint {endpoint:?}: {e}")))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| FetchError::Source(format!("the EC2 endpoint {endpoint:?} has no host")))?;

    let mut observation = Observation::default();
    let mut next_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let body = request_body(&settings.filters, next_token.as_deref());
        let headers = [
            ("host", host.as_str()),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ];
        let signing_settings = aws_sigv4::http_request::SigningSettings::default();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(signing_settings)
            .build()
            .map_err(|e| FetchError::Source(format!("cannot sign the EC2 request: {e}")))?
            .into();
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            endpoint.as_str(),
            headers.iter().copied(),
            aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| FetchError::Source(format!("cannot sign the EC2 request: {e}")))?;
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| FetchError::Source(format!("cannot sign the EC2 request: {e}")))?
            .into_parts();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(uri.clone())
            .header("host", &host)
            .header("content-type", headers[1].1)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| FetchError::Source(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        let response = client
            .request(request)
            .await
            .map_err(|e| FetchError::Source(format!("EC2 at {endpoint} cannot be reached: {e}")))?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::Source(format!("cannot read the EC2 response: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            let reason = quick_xml::de::from_str::<ErrorResponse>(&text)
                .ok()
                .and_then(|e| e.errors.error.into_iter().next())
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(FetchError::Source(format!(
                "EC2 DescribeInstances failed: {reason}"
            )));
        }
        next_token = parse_page(&text, &region, source, &mut observation.hosts)?;
        if next_token.is_none() {
            return Ok(observation);
        }
    }
    Err(FetchError::Source(format!(
        "DescribeInstances did not finish within {MAX_PAGES} pages"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_region_names_pass() {
        for region in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "us-isob-east-1",
            "ap-southeast-5",
            "cn-north-1",
        ] {
            assert!(is_region(region), "{region}");
        }
        for bad in [
            "x@elsewhere/",
            "us-east-1.evil.com",
            "us-east",
            "US-EAST-1",
            "us-east-1/",
            "",
            "a-b-1",
            "us--1",
            "us-east-123",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    const PAGE: &str = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r1</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1</reservationId>
      <ownerId>123456789012</ownerId>
      <instancesSet>
        <item>
          <instanceId>i-0abc</instanceId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <privateDnsName>ip-10-0-0-1.ec2.internal</privateDnsName>
          <dnsName></dnsName>
          <instanceType>m5.large</instanceType>
          <launchTime>2026-11-20T10:00:00.000Z</launchTime>
          <placement><availabilityZone>us-east-1a</availabilityZone></placement>
          <privateIpAddress>10.0.0.1</privateIpAddress>
          <platformDetails>Linux/UNIX</platformDetails>
          <cpuOptions><coreCount>1</coreCount><threadsPerCore>2</threadsPerCore></cpuOptions>
          <tagSet>
            <item><key>Name</key><value>web-1</value></item>
            <item><key>role</key><value>web</value></item>
            <item><key>env</key><value>prod</value></item>
          </tagSet>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
  <nextToken>page-2</nextToken>
</DescribeInstancesResponse>"#;

    #[test]
    fn a_response_page_becomes_hosts() {
        let mut hosts = Vec::new();
        let next = parse_page(PAGE, "us-east-1", "aws-use1", &mut hosts).unwrap();
        assert_eq!(next.as_deref(), Some("page-2"));
        let host = &hosts[0];
        assert_eq!(host.name, "i-0abc");
        assert_eq!(host.role.as_deref(), Some("web"));
        assert_eq!(host.labels[labels::ROLE], "web");
        assert_eq!(host.labels[labels::REGION], "us-east-1");
        assert_eq!(host.annotations[NAME_ANNOTATION], "web-1");
        assert_eq!(host.annotations["tags.aws.fleetdb.io/env"], "prod");
        let status = &host.status;
        assert_eq!(status.zone.as_deref(), Some("us-east-1a"));
        assert_eq!(status.state, Some(HostState::Running));
        assert_eq!(status.hardware.as_ref().unwrap().cpus, Some(2));
        assert_eq!(
            status.provider.as_ref().unwrap().account.as_deref(),
            Some("123456789012")
        );
        assert_eq!(status.addresses.len(), 2, "empty addresses are skipped");
    }

    #[test]
    fn filters_are_encoded_for_the_query_protocol() {
        let filters = BTreeMap::from([("tag:env".to_owned(), "prod, staging".to_owned())]);
        let body = request_body(&filters, Some("a/b"));
        assert!(body.contains("Filter.1.Name=tag%3Aenv"));
        assert!(body.contains("Filter.1.Value.1=prod&Filter.1.Value.2=staging"));
        assert!(body.ends_with("NextToken=a%2Fb"));
    }

    #[test]
    fn empty_responses_parse() {
        let mut hosts = Vec::new();
        let body = r#"<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"#;
        assert_eq!(parse_page(body, "r", "s", &mut hosts).unwrap(), None);
        assert!(hosts.is_empty());
    }
}
