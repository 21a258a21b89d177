//! Exporters: the fleet handed to the tools that act on it — an Ansible dynamic inventory
//! ([`inventory`]) and Prometheus service discovery ([`prometheus`]). What they publish
//! about a host comes from the fleet crate's shared rules (`Host::facts`,
//! `Host::preferred_address`, maintenance and termination), so both say the same.
//!
//! Architecture invariant: exporters are kube-rs clients of the API; they never reach into
//! the server or the store, so they work against any Kubernetes API server with the CRDs
//! applied.

pub mod inventory;
pub mod prometheus;

use fleetdb_fleet::Host;
use kube::api::{Api, ListParams};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file could not be read or written, or a setting is wrong.
    #[error("{0}")]
    Local(String),
    /// The API server refused or could not be reached.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

/// Hosts read per page (larger than kubectl's 500: fewer round trips for whole-fleet reads).
const LIST_PAGE: u32 = 2000;

/// Reads every Host with one paginated list.
pub async fn list_hosts(client: kube::Client) -> Result<Vec<Host>, ExportError> {
    let api: Api<Host> = Api::all(client);
    let mut hosts = Vec::new();
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = api.list(&params).await?;
        hosts.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(hosts),
        }
    }
}

/// A name Ansible (groups, variables) and Prometheus (labels) accept, made from free text:
/// lower case, `[a-z0-9_]` only, never starting with a digit.
pub fn identifier(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_valid_for_ansible_and_prometheus() {
        assert_eq!(identifier("fleetdb.io/role"), "fleetdb_io_role");
        assert_eq!(identifier("US-East-1"), "us_east_1");
        assert_eq!(identifier("9lives"), "_9lives");
        assert_eq!(identifier(""), "");
    }
}
