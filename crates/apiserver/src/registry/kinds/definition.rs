//! CustomResourceDefinitions: validation of the definition (names, scope, versions, and
//! structural schemas), the status the CRD controller would write (accepted names,
//! conditions, stored versions), the clean-up of a deleted definition's objects, and the
//! catalog rebuilt after every write so the next request sees the change.

use async_trait::async_trait;
use fleetdb_machinery::field::{FieldError, REASON_NOT_SUPPORTED};
use fleetdb_machinery::schema::check_structural;
use fleetdb_machinery::{meta, validation};
use serde_json::{Value, json};

use crate::api::{ApiError, Resource};
use crate::registry::definitions;
use crate::registry::strategy::{Strategy, StrategyContext};
use crate::registry::write::now_timestamp;

/// The strategy of CustomResourceDefinitions.
pub struct DefinitionStrategy;

#[async_trait]
impl Strategy for DefinitionStrategy {
    fn prepare_create(&self, _: &Resource, object: &mut Value) -> Vec<FieldError> {
        let causes = validate_crd(object);
        if causes.is_empty() {
            set_crd_status(object, None);
        }
        causes
    }

    fn prepare_update(&self, _: &Resource, object: &mut Value, old: &Value) -> Vec<FieldError> {
        let mut causes = validate_crd(object);
        for field in ["group", "scope"] {
            if object["spec"][field] != old["spec"][field] {
                causes.push(FieldError::invalid(
                    format!("spec.{field}"),
                    "Invalid value: field is immutable",
                ));
            }
        }
        if causes.is_empty() {
            set_crd_status(object, Some(old));
        }
        causes
    }

    /// The definition's objects go with it (all versions share one prefix).
    async fn before_remove(
        &self,
        context: &StrategyContext<'_>,
        object: &Value,
    ) -> Result<(), ApiError> {
        let group = object["spec"]["group"].as_str().unwrap_or("");
        let plural = object["spec"]["names"]["plural"].as_str().unwrap_or("");
        if let Some(defined) = context.catalog.snapshot().any_version(group, plural) {
            context
                .storage
                .delete_prefix(
                    &defined.key_prefix(None),
                    crate::registry::history::ChangeNote::server("delete").to_bytes(),
                )
                .await?;
        }
        Ok(())
    }

    async fn after_write(&self, context: &StrategyContext<'_>) {
        definitions::reload(context.storage, context.catalog).await;
    }
}

fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    if group.is_empty() {
        causes.push(FieldError::required("spec.group", ""));
    } else {
        for problem in validation::dns1123_subdomain(group) {
            causes.push(FieldError::invalid(
                "spec.group",
                format!("Invalid value: {group:?}: {problem}"),
            ));
        }
        if !group.contains('.') {
            causes.push(FieldError::invalid(
                "spec.group",
                format!("Invalid value: {group:?}: should be a domain with at least one dot"),
            ));
        }
    }
    if plural.is_empty() {
        causes.push(FieldError::required("spec.names.plural", ""));
    } else {
        for problem in validation::dns1123_label(plural) {
            causes.push(FieldError::invalid(
                "spec.names.plural",
                format!("Invalid value: {plural:?}: {problem}"),
            ));
        }
    }
    if let Some(singular) = spec["names"]["singular"].as_str() {
        for problem in validation::dns1123_label(singular) {
            causes.push(FieldError::invalid(
                "spec.names.singular",
                format!("Invalid value: {singular:?}: {problem}"),
            ));
        }
    }
    if spec["names"]["kind"].as_str().unwrap_or("").is_empty() {
        causes.push(FieldError::required("spec.names.kind", ""));
    }
    let name = meta::name(crd).unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(FieldError::invalid(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        Some(other) => causes.push(FieldError::new(
            REASON_NOT_SUPPORTED,
            "spec.scope",
            format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""),
        )),
        None => causes.push(FieldError::required("spec.scope", "")),
    }
    match spec["versions"].as_array() {
        None => causes.push(FieldError::required("spec.versions", "")),
        Some(versions) if versions.is_empty() => {
            causes.push(FieldError::required("spec.versions", ""))
        }
        Some(versions) => {
            let storage = versions
                .iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .count();
            if storage != 1 {
                causes.push(FieldError::invalid(
                    "spec.versions",
                    format!("Invalid value: {storage}: must have exactly one version marked as storage version"),
                ));
            }
            for (i, version) in versions.iter().enumerate() {
                let field = format!("spec.versions[{i}]");
                match version["name"].as_str() {
                    Some(name) => {
                        for problem in validation::dns1123_label(name) {
                            causes.push(FieldError::invalid(
                                format!("{field}.name"),
                                format!("Invalid value: {name:?}: {problem}"),
                            ));
                        }
                    }
                    None => causes.push(FieldError::required(format!("{field}.name"), "")),
                }
                let schema = &version["schema"]["openAPIV3Schema"];
                if !schema.is_object() {
                    causes.push(FieldError::required(
                        format!("{field}.schema.openAPIV3Schema"),
                        "",
                    ));
                } else {
                    let base = format!("{field}.schema.openAPIV3Schema");
                    causes.extend(check_structural(schema, &base));
                }
                causes.extend(validate_selectable_fields(
                    &version["selectableFields"],
                    schema,
                    &format!("{field}.selectableFields"),
                ));
            }
        }
    }
    causes
}

/// Most selectable fields a CRD version may declare (kube-apiserver's limit).
pub const MAX_SELECTABLE_FIELDS: usize = 8;

/// A version's `selectableFields`, as kube-apiserver checks them: each a simple path from
/// the root (`.spec.cluster`) to a string, boolean or integer of the schema, none twice, at
/// most [`MAX_SELECTABLE_FIELDS`].
fn validate_selectable_fields(fields: &Value, schema: &Value, base: &str) -> Vec<FieldError> {
    let mut causes = Vec::new();
    let Some(fields) = fields.as_array() else {
        return causes;
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, field) in fields.iter().enumerate() {
        let at = format!("{base}[{i}].jsonPath");
        let Some(path) = field["jsonPath"].as_str().filter(|p| !p.is_empty()) else {
            causes.push(FieldError::required(at, ""));
            continue;
        };
        if !seen.insert(path) {
            causes.push(FieldError::new(
                "FieldValueDuplicate",
                &at,
                format!("Duplicate value: {path:?}"),
            ));
            continue;
        }
        let segments: Option<Vec<&str>> = path.strip_prefix('.').map(|p| p.split('.').collect());
        let simple = segments.as_ref().is_some_and(|s| {
            s.iter().all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        });
        if !simple {
            causes.push(FieldError::invalid(
                &at,
                format!("Invalid value: {path:?}: is an invalid path: must be a simple path to a field of the object, like .spec.name"),
            ));
            continue;
        }
        let node = segments
            .unwrap_or_default()
            .iter()
            .try_fold(schema, |node, segment| node["properties"].get(*segment));
        let typed = node
            .and_then(|n| n["type"].as_str())
            .is_some_and(|t| matches!(t, "string" | "boolean" | "integer"));
        if !typed {
            causes.push(FieldError::invalid(
                &at,
                format!("Invalid value: {path:?}: must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."),
            ));
        }
    }
    if seen.len() > MAX_SELECTABLE_FIELDS {
        causes.push(FieldError::new(
            "FieldValueTooMany",
            base,
            format!(
                "Too many: {}: must have at most {MAX_SELECTABLE_FIELDS} items",
                seen.len()
            ),
        ));
    }
    causes
}

/// Sets `status` the way the CRD controller does once names are accepted.
fn set_crd_status(crd: &mut Value, old: Option<&Value>) {
    let names = &crd["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or("").to_owned();
    let mut accepted = json!({
        "plural": names["plural"],
        "singular": names["singular"].as_str().map(str::to_owned).unwrap_or_else(|| kind.to_lowercase()),
        "kind": kind,
        "listKind": names["listKind"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{kind}List")),
    });
    for optional in ["shortNames", "categories"] {
        if names[optional].is_array() {
            accepted[optional] = names[optional].clone();
        }
    }
    let mut stored: Vec<Value> = old
        .and_then(|o| o["status"]["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    if let Some(storage) = crd["spec"]["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["storage"].as_bool() == Some(true)))
        .and_then(|v| v["name"].as_str())
        && !stored.iter().any(|s| s == storage)
    {
        stored.push(json!(storage));
    }
    let since = |condition: &str| {
        old.and_then(|o| o["status"]["conditions"].as_array())
            .and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == condition && c["status"] == "True")
            })
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(now_timestamp)
    };
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
        ],
        "storedVersions": stored,
    });
}
