//! History: who made each change, and reads of the past.
//!
//! Every write the registry makes carries a [`ChangeNote`] — the authenticated user, the user
//! who impersonated them if any, and the operation — which the store keeps beside the change
//! with its commit time for as long as it keeps history (`--history-days`). From that:
//!
//! * [`Registry::history`]: every version of one object still in history, deleted objects
//!   included, each with its time, user and operation (`GET …/NAME/history`);
//! * [`Registry::revision_as_of`]: the revision an `asOf` parameter (an RFC 3339 instant or a
//!   revision) names, so gets and lists read the fleet as it was then.

use bytes::Bytes;
use fleetdb_store::Revision;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Registry, Target, write::served_as};
use crate::api::{ApiError, Identity};
use crate::storage::codec;

/// Bytes of a user name a note keeps (the store bounds a note to 1 KiB).
const MAX_NOTED_NAME_BYTES: usize = 400;

/// Versions on one page of a history answer unless the client asks for another `limit`.
pub const HISTORY_PAGE: usize = 500;
/// Most versions one page of a history answer holds, whatever the `limit` (one fewer than
/// the store gives, so that one more tells whether older versions remain).
pub const MAX_HISTORY_ITEMS: usize = fleetdb_store::MAX_HISTORY_VERSIONS - 1;

/// The user that writes made by the server itself (objects removed with their definition)
/// are recorded under, as kube-apiserver's loopback client.
pub const SERVER_USER: &str = "system:apiserver";

/// Who made a change, and how; stored beside the change as compact JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNote {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub impersonator: Option<String>,
    /// `create`, `update`, `patch`, `apply`, `delete`, or the subresource written (`status`,
    /// `scale`, `approval`).
    #[serde(rename = "o")]
    pub operation: String,
}

impl ChangeNote {
    pub fn new(user: &Identity, operation: &str) -> Self {
        Self {
            user: bounded(&user.user),
            impersonator: user.impersonator.as_deref().map(bounded),
            operation: operation.to_owned(),
        }
    }

    /// The note of a write made by the server itself.
    pub fn server(operation: &str) -> Self {
        Self {
            user: SERVER_USER.to_owned(),
            impersonator: None,
            operation: operation.to_owned(),
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The note stored with a change; `None` for changes recorded without one.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

fn bounded(name: &str) -> String {
    let mut end = name.len().min(MAX_NOTED_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// A point in the past a read names: `asOf=2026-11-30T18:00:00Z` or `asOf=12345`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    Revision(Revision),
    /// Milliseconds since the Unix epoch.
    Time(i64),
}

impl AsOf {
    /// Parses an `asOf` parameter (400 when it is neither a revision nor an RFC 3339 time).
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if let Ok(revision) = raw.parse::<Revision>() {
            return if revision > 0 {
                Ok(Self::Revision(revision))
            } else {
                Err(ApiError::bad_request(format!(
                    "asOf: Invalid value: {raw:?}: a revision must be positive"
                )))
            };
        }
        let time = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "asOf: Invalid value: {raw:?}: must be an RFC 3339 time (2026-11-30T18:00:00Z) or a revision"
                ))
            })?;
        let millis = time.unix_timestamp_nanos() / 1_000_000;
        Ok(Self::Time(i64::try_from(millis).unwrap_or(i64::MAX)))
    }
}

/// The RFC 3339 form of a change's time, with milliseconds (`None` when unknown).
pub fn format_millis(millis: i64) -> Option<String> {
    if millis <= 0 {
        return None;
    }
    let time =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    ))
}

impl Registry {
    /// The revision `as_of` names: a revision as given (checked against the current one), an
    /// instant as the newest revision committed at or before it. `410 Gone` when history no
    /// longer reaches back that far.
    pub async fn revision_as_of(&self, as_of: AsOf) -> Result<Revision, ApiError> {
        let store = self.storage.store();
        match as_of {
            AsOf::Revision(revision) => {
                let current = self.storage.current_revision().await?;
                if revision > current {
                    return Err(ApiError::bad_request(format!(
                        "asOf: revision {revision} is newer than the latest ({current})"
                    )));
                }
                let compacted = store
                    .compacted_revision()
                    .await
                    .map_err(ApiError::from_store)?;
                if revision < compacted {
                    return Err(too_old(&revision.to_string(), compacted));
                }
                Ok(revision)
            }
            AsOf::Time(millis) => match store.revision_at(millis).await {
                Ok(revision) => Ok(revision),
                Err(fleetdb_store::StoreError::Compacted { compacted, .. }) => Err(too_old(
                    &format_millis(millis).unwrap_or_else(|| millis.to_string()),
                    compacted,
                )),
                Err(e) => Err(ApiError::from_store(e)),
            },
        }
    }

    /// One object as it was at `revision` (404 when it did not exist then).
    pub async fn get_at(&self, target: &Target, revision: Revision) -> Result<Value, ApiError> {
        let found = self
            .storage
            .store()
            .get(&target.key(), Some(revision))
            .await
            .map_err(ApiError::from_store)?;
        let kv = found.kv.ok_or_else(|| target.not_found())?;
        Ok(served_as(&target.resource, codec::decode(&kv)?))
    }

    /// One page of the versions of the object at `target` still in history — the newest
    /// `limit` before revision `before` (all when `None`) — oldest first, as an
    /// `ObjectHistory` document: each item has the change's `revision`, `time`, `user` (and
    /// `impersonatedBy`), `operation` and the `object` after it (`null` for a deletion).
    /// When older versions remain, `metadata.continue` is the token of the page before this
    /// one. A page also ends early once its objects reach the store's byte bound. 404 when
    /// history holds nothing.
    pub async fn history(
        &self,
        target: &Target,
        before: Option<Revision>,
        limit: usize,
    ) -> Result<Value, ApiError> {
        let store = self.storage.store();
        let current = self.storage.current_revision().await?;
        let limit = limit.clamp(1, MAX_HISTORY_ITEMS);
        let mut versions = store
            .history(&target.key(), before, limit + 1)
            .await
            .map_err(ApiError::from_store)?;
        if versions.is_empty() && before.is_none() {
            return Err(target.not_found());
        }
        let bytes: usize = versions
            .iter()
            .map(|v| v.kv.as_ref().map_or(0, |kv| kv.value.len()))
            .sum();
        let more = versions.len() > limit || bytes >= fleetdb_store::MAX_HISTORY_BYTES;
        versions.truncate(limit);
        let next = versions
            .last()
            .filter(|oldest| more && oldest.revision > 1)
            .map(|oldest| oldest.revision.to_string());
        let items: Vec<Value> = versions
            .iter()
            .rev()
            .map(|version| {
                let note = ChangeNote::parse(&version.note).unwrap_or_default();
                let object = version
                    .kv
                    .as_ref()
                    .and_then(|kv| codec::decode(kv).ok())
                    .map(|object| served_as(&target.resource, object));
                let mut item = json!({
                    "revision": version.revision,
                    "time": format_millis(version.time_millis),
                    "user": (!note.user.is_empty()).then_some(note.user),
                    "operation": match (&version.kv, note.operation.is_empty()) {
                        (None, _) => "delete".to_owned(),
                        (Some(_), true) => "unknown".to_owned(),
                        (Some(_), false) => note.operation,
                    },
                    "object": object,
                });
                if let Some(impersonator) = note.impersonator {
                    item["impersonatedBy"] = json!(impersonator);
                }
                item
            })
            .collect();
        let mut metadata = json!({"resourceVersion": current.to_string()});
        if let Some(next) = next {
            metadata["continue"] = json!(next);
        }
        Ok(json!({
            "kind": "ObjectHistory",
            "apiVersion": "fleetdb.io/v1",
            "metadata": metadata,
            "items": items,
        }))
    }
}

fn too_old(as_of: &str, compacted: Revision) -> ApiError {
    ApiError::expired(format!(
        "asOf {as_of} is older than the history this server keeps (it starts at revision {compacted}; see --history-days)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_stay_small() {
        let mut user = Identity::new("é".repeat(600), &[]);
        user.impersonator = Some("admin".into());
        let note = ChangeNote::new(&user, "patch");
        let bytes = note.to_bytes();
        assert!(bytes.len() <= fleetdb_store::MAX_NOTE_BYTES);
        assert_eq!(ChangeNote::parse(&bytes), Some(note.clone()));
        assert_eq!(note.user.len(), MAX_NOTED_NAME_BYTES);
        assert_eq!(ChangeNote::parse(b"not json"), None);
    }

    #[test]
    fn as_of_takes_revisions_and_rfc3339_times() {
        assert_eq!(AsOf::parse("42").unwrap(), AsOf::Revision(42));
        assert_eq!(
            AsOf::parse("2026-11-30T18:00:00.250Z").unwrap(),
            AsOf::Time(1_796_061_600_250)
        );
        assert_eq!(
            AsOf::parse("2026-11-30T19:00:00+01:00").unwrap(),
            AsOf::Time(1_796_061_600_000)
        );
        for bad in ["0", "-3", "yesterday", "2026-11-30", ""] {
            assert_eq!(AsOf::parse(bad).unwrap_err().code, 400, "{bad}");
        }
        assert_eq!(
            format_millis(1_796_061_600_250).as_deref(),
            Some("2026-11-30T18:00:00.250Z")
        );
        assert_eq!(format_millis(0), None);
    }
}
