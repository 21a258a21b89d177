//! The write rules: create, update, patch, server-side apply and delete, each one
//! compare-and-swap on the stored revision, retried when it loses a race it did not ask to
//! lose (no explicit precondition), answered `409 Conflict` when it did.

use bytes::Bytes;
use fleetdb_machinery::field::FieldError;
use fleetdb_machinery::{apply, json as json_rules, meta, patch as json_patches, validation};
use fleetdb_store::{Condition, KeyValue, MAX_VALUE_BYTES, Revision};
use serde_json::{Value, json};

use super::history::ChangeNote;
use super::scale;
use super::strategy::{self, StrategyContext};
use super::{
    AdmissionRequest, DeleteOptions, Deleted, FieldValidation, MAX_DELETE_COLLECTION,
    MAX_OBJECT_DEPTH, MAX_PATCH_ADDED_BYTES, Operation, Patch, Registry, Subresource, Target,
    WriteOptions, Written,
};
use crate::api::{ApiError, Resource};
use crate::storage::{SelectRequest, Selectors, codec, select};

/// `old` with the status of `new` (or none, if `new` has none): what a write through
/// `/status` may change. `new` is most often `old` with another status (a patch, or an
/// object read and sent back), so it is reused, and only its other fields that differ from
/// `old`'s are copied from `old`.
fn status_of_new_rest_of_old(mut new: Value, old: &Value) -> Value {
    // `new` passed `check_type` and `old` came through `codec::decode`, so both are
    // objects; were either not, the write would change nothing.
    let (Some(fields), Some(stored)) = (new.as_object_mut(), old.as_object()) else {
        return old.clone();
    };
    fields.retain(|key, _| key == "status" || stored.contains_key(key));
    for (key, value) in stored {
        if key == "status" {
            continue;
        }
        match fields.get_mut(key) {
            Some(sent) if sent == value => {}
            Some(sent) => *sent = value.clone(),
            None => {
                fields.insert(key.clone(), value.clone());
            }
        }
    }
    new
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub(crate) fn now_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Who a write's changed fields belong to in `metadata.managedFields`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// An ordinary write (create, update, patch) by the options' field manager.
    Update,
    /// A server-side apply, which has already recorded ownership.
    Recorded,
}

/// The outcome of merging a requested change into the stored object.
enum Prepared {
    /// Write this object (these bytes).
    Write(Value, Bytes),
    /// The change changes nothing; answer with the stored object.
    Unchanged,
    /// The last finalizer of an object being deleted is gone: remove it.
    Remove(Value),
}

/// The object as served: the resource's apiVersion and kind.
pub(crate) fn served_as(resource: &Resource, mut object: Value) -> Value {
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    object
}

/// Checks the apiVersion/kind a client sent against the URL; fills them in when missing.
fn check_type(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if let Some(kind) = object["kind"].as_str()
        && kind != resource.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    if let Some(api_version) = object["apiVersion"].as_str() {
        let served = resource.served_versions.iter().any(|v| {
            if resource.group.is_empty() {
                api_version == v
            } else {
                api_version == format!("{}/{v}", resource.group)
            }
        });
        if !served {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                resource.api_version()
            )));
        }
    }
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    Ok(())
}

/// The 400 for an object naming another namespace than the URL.
fn namespace_mismatch() -> ApiError {
    ApiError::bad_request(
        "the namespace of the provided object does not match the namespace sent on the request",
    )
}

/// The 400 for an object naming another object than the URL.
fn name_mismatch(sent: &str, name: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the name of the object ({sent}) does not match the name on the URL ({name})"
    ))
}

/// The CRD write pipeline for a custom resource: prune unknown fields (reporting them as
/// `mode` says), apply defaults, validate against the schema. Returns the warnings for the
/// client and the validation problems.
fn conform(
    resource: &Resource,
    object: &mut Value,
    mode: FieldValidation,
) -> Result<(Vec<String>, Vec<FieldError>), ApiError> {
    let Some(schema) = resource.schema.as_deref() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut unknown = Vec::new();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let extra: Vec<String> = metadata
            .keys()
            .filter(|k| !meta::OBJECT_META_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in extra {
            metadata.remove(&key);
            unknown.push(format!("metadata.{key}"));
        }
    }
    unknown.extend(schema.prune(object));
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        match mode {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    resource.kind,
                    resource.version,
                    resource.kind,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = list,
            FieldValidation::Ignore => {}
        }
    }
    schema.apply_defaults(object);
    Ok((warnings, schema.validate(object)))
}

/// The bytes to store for an object, once it is known they can be read back: nested no
/// deeper than [`MAX_OBJECT_DEPTH`] (422) and within the store's value limit (413).
fn storable(target: &Target, object: &Value) -> Result<Bytes, ApiError> {
    if json_rules::depth_within(object, MAX_OBJECT_DEPTH).is_none() {
        return Err(target.invalid(
            target.name(),
            vec![FieldError::forbidden(
                "",
                &format!("the object nests values more than {MAX_OBJECT_DEPTH} levels deep"),
            )],
        ));
    }
    let bytes = codec::encode(object);
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(ApiError::object_too_large(bytes.len(), MAX_VALUE_BYTES));
    }
    Ok(bytes)
}

/// The answer for a written object: the object, or its Scale for `/scale`.
fn answer(target: &Target, object: Value) -> Value {
    match (target.subresource, &target.resource.scale) {
        (Some(Subresource::Scale), Some(spec)) => scale::scale_of(spec, &object),
        _ => object,
    }
}

/// The `409` of a UID precondition that does not hold.
fn uid_conflict(target: &Target, expected: &str, object: &Value) -> ApiError {
    target.conflict(&format!(
        "Precondition failed: UID in precondition: {expected}, UID in object meta: {}",
        meta::uid(object).unwrap_or("")
    ))
}

/// Marks an object whose deletion must wait: `deletionTimestamp`, a generation bump, and
/// what its kind adds.
fn mark_deleted(target: &Target, object: &mut Value) {
    let strategy = strategy::for_resource(&target.resource);
    if let Some(metadata) = meta::metadata_mut(object) {
        metadata.insert("deletionTimestamp".into(), json!(now_timestamp()));
        metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
        if strategy.tracks_generation() {
            let generation = metadata
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata.insert("generation".into(), json!(generation + 1));
        }
    }
    strategy.prepare_deletion(object);
}

impl Registry {
    fn strategy_context(&self) -> StrategyContext<'_> {
        StrategyContext {
            storage: &self.storage,
            catalog: &self.catalog,
            policy: &self.policy,
        }
    }

    /// The stored object and its key-value, or `404`.
    pub(crate) async fn read_current(
        &self,
        target: &Target,
    ) -> Result<(Value, KeyValue), ApiError> {
        let kv = self
            .storage
            .get(&target.key())
            .await?
            .ok_or_else(|| target.not_found())?;
        Ok((codec::decode(&kv)?, kv))
    }

    /// Whether the namespace exists and accepts new objects.
    async fn check_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        let namespaces = crate::api::catalog::namespaces();
        match self.storage.get(&namespaces.key(None, namespace)).await? {
            None => Err(ApiError::not_found(
                "namespaces",
                "",
                "namespaces",
                namespace,
            )),
            Some(kv) if meta::is_being_deleted(&codec::decode(&kv)?) => {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Creates `object` (already decoded) at `target`'s collection.
    pub async fn create(
        &self,
        target: &Target,
        object: Value,
        options: &WriteOptions<'_>,
    ) -> Result<Written, ApiError> {
        self.insert(target, object, options, Ownership::Update)
            .await
    }

    async fn insert(
        &self,
        target: &Target,
        mut object: Value,
        options: &WriteOptions<'_>,
        ownership: Ownership,
    ) -> Result<Written, ApiError> {
        let resource = &target.resource;
        let strategy = strategy::for_resource(resource);
        check_type(resource, &mut object)?;
        let metadata = meta::metadata_mut(&mut object)
            .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
        if resource.namespaced {
            let namespace = target.namespace.clone().unwrap_or_default();
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != namespace => return Err(namespace_mismatch()),
                _ => {}
            }
            metadata.insert("namespace".into(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        let name = match metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => name.to_owned(),
            None => match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let generated = validation::generate_name(prefix, rand::random::<u32>);
                    metadata.insert("name".into(), json!(generated));
                    generated
                }
                _ => {
                    return Err(target.invalid(
                        "",
                        vec![FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            },
        };
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        metadata.insert("creationTimestamp".into(), json!(now_timestamp()));
        if strategy.tracks_generation() {
            metadata.insert("generation".into(), json!(1));
        }
        let mut causes = meta::name_errors(&name, strategy.name_problems(&name));
        causes.extend(meta::label_and_annotation_errors(&object));
        let target = Target {
            resource: resource.clone(),
            namespace: target.namespace.clone(),
            name: Some(name.clone()),
            subresource: None,
        };
        causes.extend(strategy.prepare_create(resource, &mut object));
        let (warnings, schema_causes) = conform(resource, &mut object, options.field_validation)?;
        causes.extend(schema_causes);
        if !causes.is_empty() {
            return Err(target.invalid(&name, causes));
        }
        if resource.namespaced {
            self.check_namespace(target.namespace.as_deref().unwrap_or_default())
                .await?;
        }
        options.admission.admit(
            &AdmissionRequest {
                operation: Operation::Create,
                target: &target,
                user: options.user,
                old: None,
                dry_run: options.dry_run,
            },
            &mut object,
        )?;
        if ownership == Ownership::Update {
            object = apply::record_update(
                None,
                object,
                &options.field_manager,
                resource.schema.as_deref(),
                &resource.api_version(),
                &now_timestamp(),
                None,
            );
        }
        let bytes = storable(&target, &object)?;
        if options.dry_run {
            return Ok(Written {
                object,
                stored: None,
                warnings,
            });
        }
        match self
            .storage
            .put(
                &target.key(),
                bytes,
                Condition::Absent,
                ChangeNote::new(
                    options.user,
                    match ownership {
                        Ownership::Update => "create",
                        Ownership::Recorded => "apply",
                    },
                )
                .to_bytes(),
            )
            .await?
        {
            Ok(kv) => {
                strategy.after_write(&self.strategy_context()).await;
                codec::set_resource_version(&mut object, kv.mod_revision);
                Ok(Written {
                    object,
                    stored: Some(kv),
                    warnings,
                })
            }
            Err(()) => Err(ApiError::already_exists(
                &resource.qualified(),
                &resource.group,
                &resource.plural,
                &name,
            )),
        }
    }

    /// Merges `new` (a full object from PUT, a patched or applied object) into `old`
    /// following the metadata rules, the kind's strategy and the schema.
    fn prepare_update(
        &self,
        target: &Target,
        mut new: Value,
        old: &Value,
        options: &WriteOptions<'_>,
        ownership: Ownership,
    ) -> Result<(Prepared, Vec<String>), ApiError> {
        let resource = &target.resource;
        let strategy = strategy::for_resource(resource);
        let name = target.name();
        check_type(resource, &mut new)?;
        if let Some(sent) = new["metadata"]["name"].as_str()
            && sent != name
        {
            return Err(name_mismatch(sent, name));
        }
        if resource.namespaced
            && let Some(sent) = new["metadata"]["namespace"].as_str()
            && !sent.is_empty()
            && Some(sent) != target.namespace.as_deref()
        {
            return Err(namespace_mismatch());
        }
        if let Some(uid) = new["metadata"]["uid"].as_str()
            && !uid.is_empty()
            && Some(uid) != meta::uid(old)
        {
            return Err(uid_conflict(target, uid, old));
        }
        let status_only = matches!(
            target.subresource,
            Some(Subresource::Status | Subresource::Approval)
        );
        let mut merged = if status_only {
            // Only .status changes through /status.
            // A server-side apply to the subresource has recorded who owns what in the
            // object it sent: keep that, not the stored list.
            let recorded = (ownership == Ownership::Recorded).then(|| {
                new.get_mut("metadata")
                    .and_then(|metadata| metadata.get_mut("managedFields"))
                    .map_or(Value::Null, Value::take)
            });
            let mut merged = status_of_new_rest_of_old(new, old);
            if let Some(managed_fields) = recorded {
                merged["metadata"]["managedFields"] = managed_fields;
            }
            merged
        } else {
            new
        };
        {
            let metadata = meta::metadata_mut(&mut merged)
                .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old["metadata"].get(field) {
                    Some(value) => {
                        metadata.insert(field.into(), value.clone());
                    }
                    None => {
                        metadata.remove(field);
                    }
                }
            }
            metadata.remove("selfLink");
            metadata.insert(
                "resourceVersion".into(),
                old["metadata"]["resourceVersion"].clone(),
            );
        }
        if !status_only && resource.status_subresource {
            match old.get("status") {
                Some(status) => merged["status"] = status.clone(),
                None => {
                    merged.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        let being_deleted = meta::is_being_deleted(old);
        let mut causes = meta::label_and_annotation_errors(&merged);
        if being_deleted {
            let before = meta::finalizers(old);
            if meta::finalizers(&merged)
                .iter()
                .any(|f| !before.contains(f))
            {
                causes.push(FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        causes.extend(strategy.prepare_update(resource, &mut merged, old));
        let (warnings, schema_causes) = conform(resource, &mut merged, options.field_validation)?;
        causes.extend(schema_causes);
        if !causes.is_empty() {
            return Err(target.invalid(name, causes));
        }
        if strategy.tracks_generation() && !meta::same_spec(&merged, old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            merged["metadata"]["generation"] = json!(generation + 1);
        }
        options.admission.admit(
            &AdmissionRequest {
                operation: Operation::Update,
                target,
                user: options.user,
                old: Some(old),
                dry_run: options.dry_run,
            },
            &mut merged,
        )?;
        if ownership == Ownership::Update {
            merged = apply::record_update(
                Some(old),
                merged,
                &options.field_manager,
                resource.schema.as_deref(),
                &resource.api_version(),
                &now_timestamp(),
                target.subresource.map(Subresource::name),
            );
        }
        if being_deleted && meta::finalizers(&merged).is_empty() && strategy.may_remove(&merged) {
            return Ok((Prepared::Remove(merged), warnings));
        }
        if merged == *old {
            return Ok((Prepared::Unchanged, warnings));
        }
        let bytes = storable(target, &merged)?;
        Ok((Prepared::Write(merged, bytes), warnings))
    }

    /// Writes a prepared update guarded by the stored revision; `None` when it lost the race.
    /// The object comes back with what is now stored, when the write stored new bytes.
    async fn write_prepared(
        &self,
        target: &Target,
        prepared: Prepared,
        old: Value,
        revision: Revision,
        dry_run: bool,
        note: ChangeNote,
    ) -> Result<Option<(Value, Option<KeyValue>)>, ApiError> {
        let strategy = strategy::for_resource(&target.resource);
        match prepared {
            Prepared::Unchanged => Ok(Some((old, None))),
            Prepared::Write(object, _) | Prepared::Remove(object) if dry_run => {
                Ok(Some((object, None)))
            }
            Prepared::Write(mut object, bytes) => {
                let written = self
                    .storage
                    .put(
                        &target.key(),
                        bytes,
                        Condition::ModRevision(revision),
                        note.to_bytes(),
                    )
                    .await?;
                let Ok(kv) = written else { return Ok(None) };
                codec::set_resource_version(&mut object, kv.mod_revision);
                strategy.after_write(&self.strategy_context()).await;
                Ok(Some((object, Some(kv))))
            }
            Prepared::Remove(mut object) => {
                strategy
                    .before_remove(&self.strategy_context(), &object)
                    .await?;
                let note = ChangeNote {
                    operation: "delete".into(),
                    ..note
                };
                let removed = self
                    .storage
                    .delete(
                        &target.key(),
                        Condition::ModRevision(revision),
                        note.to_bytes(),
                    )
                    .await?;
                let Ok(deleted) = removed else {
                    return Ok(None);
                };
                codec::set_resource_version(&mut object, deleted.revision);
                strategy.after_write(&self.strategy_context()).await;
                Ok(Some((object, None)))
            }
        }
    }

    /// Prepares `new` against the stored `old` (at `revision`) and writes it; `None` when
    /// the write lost a race (the caller retries or answers `409`).
    /// `operation` names the write in history (`update`, `patch`, `apply`); a write of a
    /// subresource is named after it.
    #[allow(clippy::too_many_arguments)]
    async fn try_update(
        &self,
        target: &Target,
        new: Value,
        old: Value,
        revision: Revision,
        options: &WriteOptions<'_>,
        ownership: Ownership,
        operation: &'static str,
    ) -> Result<Option<Written>, ApiError> {
        let (prepared, warnings) = self.prepare_update(target, new, &old, options, ownership)?;
        let operation = target.subresource.map_or(operation, Subresource::name);
        let note = ChangeNote::new(options.user, operation);
        Ok(self
            .write_prepared(target, prepared, old, revision, options.dry_run, note)
            .await?
            .map(|(object, stored)| Written {
                object: answer(target, object),
                stored,
                warnings,
            }))
    }

    /// Replaces an object (PUT). With `metadata.resourceVersion` the write is conditional on
    /// it (`409` when stale); without, the kind must allow unconditional updates.
    pub async fn update(
        &self,
        target: &Target,
        new: Value,
        options: &WriteOptions<'_>,
    ) -> Result<Written, ApiError> {
        let strategy = strategy::for_resource(&target.resource);
        let scale = match target.subresource {
            Some(Subresource::Scale) => target.resource.scale.as_ref(),
            _ => None,
        };
        let precondition = new["metadata"]["resourceVersion"]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        if precondition.is_none() && scale.is_none() && strategy.requires_resource_version() {
            return Err(target.invalid(
                target.name(),
                vec![FieldError::invalid(
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ));
        }
        let mut attempts = super::WriteAttempts::new();
        while attempts.next().await {
            let (old, kv) = self.read_current(target).await?;
            if let Some(sent) = &precondition
                && *sent != kv.mod_revision.to_string()
            {
                return Err(target.modified());
            }
            let new = match scale {
                Some(spec) => scale::apply_scale(&target.resource, spec, &old, &new)?,
                None => new.clone(),
            };
            match self
                .try_update(
                    target,
                    new,
                    old,
                    kv.mod_revision,
                    options,
                    Ownership::Update,
                    "update",
                )
                .await?
            {
                Some(written) => return Ok(written),
                None if precondition.is_some() => return Err(target.modified()),
                None => continue,
            }
        }
        Err(target.modified())
    }

    /// Patches an object: a merge patch or JSON patch applied to the stored object (or its
    /// Scale), retried on the fresh object when it loses a race, unless the patch itself set
    /// `metadata.resourceVersion` (then it is a precondition).
    pub async fn patch(
        &self,
        target: &Target,
        patch: &Patch,
        options: &WriteOptions<'_>,
    ) -> Result<Written, ApiError> {
        let resource = &target.resource;
        let scale = match target.subresource {
            Some(Subresource::Scale) => resource.scale.as_ref(),
            _ => None,
        };
        let mut attempts = super::WriteAttempts::new();
        while attempts.next().await {
            let (old, kv) = self.read_current(target).await?;
            let mut patched = match scale {
                Some(spec) => scale::scale_of(spec, &old),
                None => old.clone(),
            };
            match patch {
                Patch::Merge(document) => json_patch::merge(&mut patched, document),
                Patch::Json(operations) => {
                    json_patches::apply_json_patch(
                        &mut patched,
                        operations,
                        MAX_OBJECT_DEPTH,
                        MAX_PATCH_ADDED_BYTES,
                    )
                    .map_err(|refused| {
                        target.invalid(target.name(), vec![FieldError::invalid("", refused.0)])
                    })?;
                }
            }
            if !patched.is_object() {
                return Err(ApiError::bad_request("the patch does not leave an object"));
            }
            if let Some(spec) = scale {
                patched = scale::apply_scale(resource, spec, &old, &patched)?;
            }
            // A patch that sets metadata.resourceVersion makes it a precondition.
            let precondition = patched["metadata"]["resourceVersion"]
                != old["metadata"]["resourceVersion"]
                || matches!(patch, Patch::Merge(p) if p["metadata"]["resourceVersion"].is_string());
            if patched["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
                return Err(target.modified());
            }
            match self
                .try_update(
                    target,
                    patched,
                    old,
                    kv.mod_revision,
                    options,
                    Ownership::Update,
                    "patch",
                )
                .await?
            {
                Some(written) => return Ok(written),
                None if precondition => return Err(target.modified()),
                None => continue,
            }
        }
        Err(target.modified())
    }

    /// Server-side apply of `config` by `options.field_manager`: merged with field ownership
    /// (`fleetdb_machinery::apply`), creating the object when it does not exist.
    pub async fn apply(
        &self,
        target: &Target,
        mut config: Value,
        force: bool,
        options: &WriteOptions<'_>,
    ) -> Result<Written, ApiError> {
        let resource = &target.resource;
        let name = target.name().to_owned();
        let manager = options.field_manager.as_str();
        if manager.is_empty() {
            return Err(target.invalid(
                &name,
                vec![FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a YAML mapping (an object)",
            ));
        }
        if !config["metadata"]["managedFields"].is_null() {
            return Err(target.invalid(
                &name,
                vec![FieldError::invalid(
                    "metadata.managedFields",
                    "Invalid value: must be nil in an apply configuration",
                )],
            ));
        }
        if target.subresource.is_none() {
            check_type(resource, &mut config)?;
        }
        if !config["metadata"].is_object() {
            config["metadata"] = json!({});
        }
        match config["metadata"]["name"].as_str() {
            Some(sent) if sent != name => return Err(name_mismatch(sent, &name)),
            _ => config["metadata"]["name"] = json!(name),
        }
        if resource.namespaced {
            let namespace = target.namespace.clone().unwrap_or_default();
            match config["metadata"]["namespace"].as_str() {
                Some(sent) if !sent.is_empty() && sent != namespace => {
                    return Err(namespace_mismatch());
                }
                _ => config["metadata"]["namespace"] = json!(namespace),
            }
        }
        let api_version = resource.api_version();
        let subresource = target.subresource.map(Subresource::name);
        let mut attempts = super::WriteAttempts::new();
        while attempts.next().await {
            let now = now_timestamp();
            let Some(kv) = self.storage.get(&target.key()).await? else {
                if target.subresource.is_some() {
                    return Err(target.not_found());
                }
                let applied = apply::apply(
                    None,
                    &config,
                    manager,
                    force,
                    resource.schema.as_deref(),
                    &api_version,
                    &now,
                    None,
                )
                .map_err(|conflicts| apply_conflict(target, &conflicts, &Value::Null))?;
                match self
                    .insert(target, applied.object, options, Ownership::Recorded)
                    .await
                {
                    // Someone created it meanwhile: apply onto theirs.
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    other => return other,
                }
            };
            let old = codec::decode(&kv)?;
            if let Some(expected) = config["metadata"]["resourceVersion"].as_str()
                && expected != kv.mod_revision.to_string()
            {
                return Err(target.modified());
            }
            let applied = apply::apply(
                Some(&old),
                &config,
                manager,
                force,
                resource.schema.as_deref(),
                &api_version,
                &now,
                subresource,
            )
            .map_err(|conflicts| {
                apply_conflict(target, &conflicts, &old["metadata"]["managedFields"])
            })?;
            let mut object = applied.object;
            object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if let Some(written) = self
                .try_update(
                    target,
                    object,
                    old,
                    kv.mod_revision,
                    options,
                    Ownership::Recorded,
                    "apply",
                )
                .await?
            {
                return Ok(written);
            }
        }
        Err(target.modified())
    }

    /// Deletes an object: marks it when finalizers (or its kind) must run first, removes it
    /// otherwise; preconditions on uid and resourceVersion.
    pub async fn delete(
        &self,
        target: &Target,
        options: &DeleteOptions,
        user: &crate::api::Identity,
        admission: &dyn super::Admission,
    ) -> Result<Deleted, ApiError> {
        let strategy = strategy::for_resource(&target.resource);
        let mut attempts = super::WriteAttempts::new();
        while attempts.next().await {
            let kv = self
                .storage
                .get(&target.key())
                .await?
                .ok_or_else(|| target.not_found())?;
            let Ok(mut object) = codec::decode(&kv) else {
                return self.delete_damaged(target, &kv, options, user).await;
            };
            if let Some(uid) = &options.uid
                && Some(uid.as_str()) != meta::uid(&object)
            {
                return Err(uid_conflict(target, uid, &object));
            }
            if let Some(rv) = &options.resource_version
                && *rv != kv.mod_revision.to_string()
            {
                return Err(target.conflict(&format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                )));
            }
            strategy.check_delete(&object)?;
            if meta::is_being_deleted(&object) {
                // Already being deleted: nothing changes.
                return Ok(Deleted::Pending(object));
            }
            let mut admitted = object.clone();
            admission.admit(
                &AdmissionRequest {
                    operation: Operation::Delete,
                    target,
                    user,
                    old: Some(&object),
                    dry_run: options.dry_run,
                },
                &mut admitted,
            )?;
            if !meta::finalizers(&object).is_empty() || !strategy.may_remove(&object) {
                mark_deleted(target, &mut object);
                if options.dry_run {
                    return Ok(Deleted::Pending(object));
                }
                let written = self
                    .storage
                    .put(
                        &target.key(),
                        codec::encode(&object),
                        Condition::ModRevision(kv.mod_revision),
                        ChangeNote::new(user, "delete").to_bytes(),
                    )
                    .await?;
                let Ok(written) = written else { continue };
                codec::set_resource_version(&mut object, written.mod_revision);
                strategy.after_write(&self.strategy_context()).await;
                return Ok(Deleted::Pending(object));
            }
            let answer_with_status = strategy.answers_removal_with_status();
            if options.dry_run {
                return Ok(Deleted::Removed {
                    object,
                    answer_with_status,
                });
            }
            strategy
                .before_remove(&self.strategy_context(), &object)
                .await?;
            let removed = self
                .storage
                .delete(
                    &target.key(),
                    Condition::ModRevision(kv.mod_revision),
                    ChangeNote::new(user, "delete").to_bytes(),
                )
                .await?;
            let Ok(deleted) = removed else { continue };
            codec::set_resource_version(&mut object, deleted.revision);
            strategy.after_write(&self.strategy_context()).await;
            return Ok(Deleted::Removed {
                object,
                answer_with_status,
            });
        }
        Err(target.modified())
    }

    /// Removes an object that cannot be read back (stored by an older version, or damaged):
    /// no rule of its kind can apply to it, so it goes at once, with a warning in the log.
    async fn delete_damaged(
        &self,
        target: &Target,
        kv: &KeyValue,
        options: &DeleteOptions,
        user: &crate::api::Identity,
    ) -> Result<Deleted, ApiError> {
        if let Some(rv) = &options.resource_version
            && *rv != kv.mod_revision.to_string()
        {
            return Err(target.modified());
        }
        let object = json!({"metadata": {"name": target.name(), "namespace": target.namespace}});
        if !options.dry_run {
            if self
                .storage
                .delete(
                    &target.key(),
                    Condition::ModRevision(kv.mod_revision),
                    ChangeNote::new(user, "delete").to_bytes(),
                )
                .await?
                .is_err()
            {
                return Err(target.modified());
            }
            tracing::warn!(key = %kv.key, "deleted an object that could not be read");
        }
        Ok(Deleted::Removed {
            object,
            answer_with_status: true,
        })
    }

    /// Deletes every object of a collection the selectors match (at most
    /// [`MAX_DELETE_COLLECTION`]), each as a single delete would (finalizers respected).
    /// Returns what was deleted or marked, and the revision the matches were read at.
    pub async fn delete_collection(
        &self,
        target: &Target,
        selectors: &Selectors,
        options: &DeleteOptions,
        user: &crate::api::Identity,
        admission: &dyn super::Admission,
    ) -> Result<(Vec<Value>, Revision), ApiError> {
        let resource = &target.resource;
        let page = select(
            &self.storage,
            &SelectRequest {
                resource,
                namespace: target.namespace.as_deref(),
                selectors,
                revision: None,
                from_key: None,
                limit: MAX_DELETE_COLLECTION,
                max_bytes: 0,
                continued: false,
            },
        )
        .await?;
        let mut deleted = Vec::new();
        for kv in &page.kvs {
            let object = codec::decode(kv)?;
            let item = Target {
                resource: resource.clone(),
                namespace: meta::namespace(&object).map(str::to_owned),
                name: meta::name(&object).map(str::to_owned),
                subresource: None,
            };
            match self.delete(&item, options, user, admission).await {
                Ok(_) => deleted.push(served_as(resource, object)),
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(e),
            }
        }
        Ok((deleted, page.revision))
    }
}

/// The 409 for apply conflicts, one `FieldManagerConflict` cause per field.
fn apply_conflict(target: &Target, conflicts: &[apply::Conflict], managed: &Value) -> ApiError {
    let causes = conflicts
        .iter()
        .map(|c| {
            FieldError::new(
                "FieldManagerConflict",
                c.field.clone(),
                format!("conflict with \"{}\"", c.manager),
            )
        })
        .collect();
    let r = &target.resource;
    ApiError::conflict_with_causes(
        &r.group,
        &r.plural,
        target.name(),
        apply::conflict_message(conflicts, managed),
        causes,
    )
}
