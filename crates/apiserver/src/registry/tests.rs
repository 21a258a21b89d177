//! The registry's write rules, without HTTP: objects go in and come out as `Value`s, errors
//! as `ApiError`s, on a real embedded store.

use std::sync::Arc;

use fleetdb_store::embedded::EmbeddedStore;
use serde_json::{Value, json};

use super::*;
use crate::api::Catalog;
use crate::api::catalog::{custom_resource_definitions, namespaces};
use crate::storage::Storage;

struct Setup {
    registry: Registry,
    admin: Identity,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

const WIDGET_CRD: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
"names":{"plural":"widgets","singular":"widget","kind":"Widget"},"versions":[{"name":"v1",
"served":true,"storage":true,"subresources":{"status":{}},"schema":{"openAPIV3Schema":
{"type":"object","properties":{"spec":{"type":"object","properties":{
"size":{"type":"integer","minimum":0},"color":{"type":"string","default":"blue"}}},
"status":{"type":"object","properties":{"ready":{"type":"boolean"}}}}}}}]}}"#;

impl Setup {
    /// A registry on a fresh embedded store, with namespace `default` and the widget CRD.
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let (shutdown, signal) = tokio::sync::watch::channel(false);
        let storage = Arc::new(Storage::new(store, signal));
        let registry = Registry::new(storage, Arc::new(Catalog::new(&[])));
        let setup = Self {
            registry,
            admin: Identity::system("tester"),
            _shutdown: shutdown,
            _dir: dir,
        };
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        setup
            .registry
            .create(
                &setup.collection_of(namespaces(), None),
                namespace,
                &setup.options(),
            )
            .await
            .unwrap();
        setup
            .registry
            .create(
                &setup.collection_of(custom_resource_definitions(), None),
                serde_json::from_str(WIDGET_CRD).unwrap(),
                &setup.options(),
            )
            .await
            .unwrap();
        setup
    }

    fn options(&self) -> WriteOptions<'_> {
        WriteOptions {
            user: &self.admin,
            dry_run: false,
            field_manager: "tester".into(),
            field_validation: FieldValidation::Warn,
            admission: &AdmitAll,
        }
    }

    fn dry_run(&self) -> WriteOptions<'_> {
        WriteOptions {
            dry_run: true,
            ..self.options()
        }
    }

    fn collection_of(&self, resource: Resource, namespace: Option<&str>) -> Target {
        Target::collection(Arc::new(resource), namespace.map(str::to_owned))
    }

    fn widgets(&self) -> Target {
        let resource = self
            .registry
            .catalog()
            .snapshot()
            .get("example.com", "v1", "widgets")
            .expect("the CRD is served right after its create");
        Target::collection(resource, Some("default".into()))
    }

    fn widget(&self, name: &str) -> Target {
        Target {
            name: Some(name.into()),
            ..self.widgets()
        }
    }

    fn status_of(&self, name: &str) -> Target {
        Target {
            subresource: Some(Subresource::Status),
            ..self.widget(name)
        }
    }

    async fn create(&self, object: Value) -> Value {
        self.registry
            .create(&self.widgets(), object, &self.options())
            .await
            .unwrap()
            .object
    }

    async fn get(&self, name: &str) -> Result<Value, ApiError> {
        self.registry.get(&self.widget(name)).await
    }

    async fn delete(&self, name: &str, options: &DeleteOptions) -> Result<Deleted, ApiError> {
        self.registry
            .delete(&self.widget(name), options, &self.admin, &AdmitAll)
            .await
    }
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
}

fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap()
}

#[tokio::test]
async fn create_sets_the_server_fields_and_ignores_the_clients() {
    let s = Setup::new().await;
    let mut sent = widget("w", json!({"size": 1}));
    sent["metadata"]["uid"] = json!("chosen-by-client");
    sent["metadata"]["resourceVersion"] = json!("7");
    sent["metadata"]["generation"] = json!(9);
    sent["status"] = json!({"ready": true});
    let created = s.create(sent).await;
    let meta = &created["metadata"];
    assert_ne!(meta["uid"], "chosen-by-client");
    assert!(meta["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        meta["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["namespace"], "default");
    assert_ne!(meta["resourceVersion"], "7");
    assert!(
        created.get("status").is_none(),
        "status is set through /status only"
    );
    assert_eq!(created["spec"]["color"], "blue", "defaults applied");
    assert_eq!(s.get("w").await.unwrap(), created);
}

#[tokio::test]
async fn generate_name_makes_a_valid_unique_name() {
    let s = Setup::new().await;
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let object = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"generateName": "w-"}});
        let created = s.create(object).await;
        let name = created["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("w-") && name.len() == 7, "{name}");
        assert!(names.insert(name));
    }
    let nameless = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}});
    let error = s
        .registry
        .create(&s.widgets(), nameless, &s.options())
        .await
        .unwrap_err();
    assert_eq!((error.code, error.reason), (422, "Invalid"));
    assert!(
        error.message.contains("name or generateName is required"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn spec_changes_bump_the_generation_metadata_and_status_do_not() {
    let s = Setup::new().await;
    let created = s.create(widget("w", json!({"size": 1}))).await;
    assert_eq!(generation(&created), 1);
    let mut changed = created.clone();
    changed["spec"]["size"] = json!(2);
    let updated = s
        .registry
        .update(&s.widget("w"), changed, &s.options())
        .await
        .unwrap()
        .object;
    assert_eq!(generation(&updated), 2);
    let mut labelled = updated.clone();
    labelled["metadata"]["labels"] = json!({"team": "infra"});
    let labelled = s
        .registry
        .update(&s.widget("w"), labelled, &s.options())
        .await
        .unwrap()
        .object;
    assert_eq!(generation(&labelled), 2);
    assert_eq!(labelled["metadata"]["labels"]["team"], "infra");
    let patch = Patch::Merge(json!({"status": {"ready": true}}));
    let status = s
        .registry
        .patch(&s.status_of("w"), &patch, &s.options())
        .await
        .unwrap()
        .object;
    assert_eq!(generation(&status), 2);
    assert_eq!(status["status"]["ready"], true);
}

#[tokio::test]
async fn the_status_subresource_changes_status_only_and_the_object_everything_else() {
    let s = Setup::new().await;
    s.create(widget("w", json!({"size": 1}))).await;
    // Through the object, .status is ignored.
    let patch = Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": true}}));
    let main = s
        .registry
        .patch(&s.widget("w"), &patch, &s.options())
        .await
        .unwrap()
        .object;
    assert_eq!(main["spec"]["size"], 2);
    assert!(main.get("status").is_none());
    // Through /status, everything but .status is ignored.
    let patch = Patch::Merge(
        json!({"spec": {"size": 3}, "metadata": {"labels": {"x": "y"}}, "status": {"ready": true}}),
    );
    let status = s
        .registry
        .patch(&s.status_of("w"), &patch, &s.options())
        .await
        .unwrap()
        .object;
    assert_eq!(status["spec"]["size"], 2);
    assert!(status["metadata"]["labels"].is_null());
    assert_eq!(status["status"]["ready"], true);
    // Managed fields say who set what, and through which subresource.
    let managers: Vec<(String, Option<String>)> = status["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_owned(),
                e["subresource"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert!(
        managers.contains(&("tester".into(), Some("status".into()))),
        "{managers:?}"
    );
}

#[tokio::test]
async fn preconditions_decide_and_lost_races_of_unconditional_writes_retry() {
    let s = Setup::new().await;
    let created = s.create(widget("w", json!({"size": 1}))).await;
    // A stale resourceVersion is a conflict.
    let mut stale = created.clone();
    stale["spec"]["size"] = json!(2);
    s.registry
        .update(&s.widget("w"), stale.clone(), &s.options())
        .await
        .unwrap();
    let error = s
        .registry
        .update(&s.widget("w"), stale, &s.options())
        .await
        .unwrap_err();
    assert_eq!((error.code, error.reason), (409, "Conflict"));
    assert!(
        error.message.contains("the object has been modified"),
        "{}",
        error.message
    );
    // Custom resources allow no update without a resourceVersion...
    let mut unconditional = created.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let error = s
        .registry
        .update(&s.widget("w"), unconditional, &s.options())
        .await
        .unwrap_err();
    assert_eq!((error.code, error.reason), (422, "Invalid"));
    // ...built-in kinds do.
    let ns = Target::object(Arc::new(namespaces()), None, "default".into());
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "labels": {"a": "b"}}});
    let updated = s
        .registry
        .update(&ns, namespace, &s.options())
        .await
        .unwrap();
    assert_eq!(updated.object["metadata"]["labels"]["a"], "b");
    assert_eq!(
        updated.object["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "default"
    );
    // A wrong uid is a conflict that says so.
    let current = s.get("w").await.unwrap();
    let mut other = current.clone();
    other["metadata"]["uid"] = json!("someone-else");
    let error = s
        .registry
        .update(&s.widget("w"), other, &s.options())
        .await
        .unwrap_err();
    assert_eq!(error.code, 409);
    assert!(
        error
            .message
            .contains("Precondition failed: UID in precondition: someone-else"),
        "{}",
        error.message
    );
    let error = s
        .delete(
            "w",
            &DeleteOptions {
                uid: Some("someone-else".into()),
                ..DeleteOptions::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(error.code, 409);
    // A patch that carries a resourceVersion makes it a precondition.
    let patch = Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"size": 9}}));
    let error = s
        .registry
        .patch(&s.widget("w"), &patch, &s.options())
        .await
        .unwrap_err();
    assert_eq!(error.code, 409);
    // Concurrent unconditional patches all land: each lost race is retried.
    let registry = Arc::new(s);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = registry.clone();
            tokio::spawn(async move {
                let patch = Patch::Merge(json!({"metadata": {"labels": {format!("l{i}"): "x"}}}));
                s.registry
                    .patch(&s.widget("w"), &patch, &s.options())
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let labels = registry.get("w").await.unwrap()["metadata"]["labels"].clone();
    assert_eq!(labels.as_object().unwrap().len(), 8, "{labels}");
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_gone() {
    let s = Setup::new().await;
    let mut object = widget("w", json!({"size": 1}));
    object["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    s.create(object).await;
    let Deleted::Pending(marked) = s.delete("w", &DeleteOptions::default()).await.unwrap() else {
        panic!("an object with finalizers is only marked");
    };
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(generation(&marked), 2);
    // Deleting again changes nothing.
    let Deleted::Pending(again) = s.delete("w", &DeleteOptions::default()).await.unwrap() else {
        panic!("still pending");
    };
    assert_eq!(
        again["metadata"]["resourceVersion"],
        marked["metadata"]["resourceVersion"]
    );
    // No new finalizers on the way out.
    let patch = Patch::Merge(
        json!({"metadata": {"finalizers": ["example.com/cleanup", "example.com/more"]}}),
    );
    let error = s
        .registry
        .patch(&s.widget("w"), &patch, &s.options())
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
    assert!(
        error.message.contains("no new finalizers can be added"),
        "{}",
        error.message
    );
    // The last finalizer removed: the object goes.
    let patch = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    s.registry
        .patch(&s.widget("w"), &patch, &s.options())
        .await
        .unwrap();
    assert_eq!(s.get("w").await.unwrap_err().code, 404);
}

#[tokio::test]
async fn dry_runs_check_everything_and_store_nothing() {
    let s = Setup::new().await;
    let written = s
        .registry
        .create(&s.widgets(), widget("w", json!({"size": 1})), &s.dry_run())
        .await
        .unwrap();
    assert_eq!(written.object["spec"]["color"], "blue");
    assert_eq!(s.get("w").await.unwrap_err().code, 404);
    let error = s
        .registry
        .create(
            &s.widgets(),
            widget("bad", json!({"size": -1})),
            &s.dry_run(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, 422, "dry runs validate");
    let created = s.create(widget("w", json!({"size": 1}))).await;
    let patch = Patch::Merge(json!({"spec": {"size": 5}}));
    let preview = s
        .registry
        .patch(&s.widget("w"), &patch, &s.dry_run())
        .await
        .unwrap();
    assert_eq!(preview.object["spec"]["size"], 5);
    assert_eq!(s.get("w").await.unwrap(), created);
    let options = DeleteOptions {
        dry_run: true,
        ..DeleteOptions::default()
    };
    assert!(matches!(
        s.delete("w", &options).await.unwrap(),
        Deleted::Removed {
            answer_with_status: true,
            ..
        }
    ));
    assert_eq!(s.get("w").await.unwrap(), created);
}

#[tokio::test]
async fn the_schema_prunes_defaults_and_validates() {
    let s = Setup::new().await;
    let written = s
        .registry
        .create(
            &s.widgets(),
            widget("w", json!({"size": 1, "unknown": true})),
            &s.options(),
        )
        .await
        .unwrap();
    assert!(written.object["spec"].get("unknown").is_none());
    assert_eq!(written.warnings, ["unknown field \"spec.unknown\""]);
    let strict = WriteOptions {
        field_validation: FieldValidation::Strict,
        ..s.options()
    };
    let error = s
        .registry
        .create(&s.widgets(), widget("x", json!({"unknown": 1})), &strict)
        .await
        .unwrap_err();
    assert_eq!(error.code, 400);
    let error = s
        .registry
        .create(
            &s.widgets(),
            widget("y", json!({"size": "big"})),
            &s.options(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
    assert!(
        error.message.contains(
            "spec.size: Invalid value: \"string\": spec.size in body must be of type integer"
        ),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn objects_need_a_namespace_that_accepts_them() {
    let s = Setup::new().await;
    let elsewhere = Target {
        namespace: Some("missing".into()),
        ..s.widgets()
    };
    let error = s
        .registry
        .create(&elsewhere, widget("w", json!({})), &s.options())
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.message.as_str()),
        (404, "namespaces \"missing\" not found")
    );
    let mut sent = widget("w", json!({}));
    sent["metadata"]["namespace"] = json!("other");
    let error = s
        .registry
        .create(&s.widgets(), sent, &s.options())
        .await
        .unwrap_err();
    assert_eq!(error.code, 400);
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_refuses_to_take_others() {
    let s = Setup::new().await;
    let applier = |manager: &str| WriteOptions {
        field_manager: manager.into(),
        ..s.options()
    };
    let applied = s
        .registry
        .apply(
            &s.widget("w"),
            widget("w", json!({"size": 1})),
            false,
            &applier("a"),
        )
        .await
        .unwrap();
    assert_eq!(applied.object["spec"]["size"], 1);
    let error = s
        .registry
        .apply(
            &s.widget("w"),
            widget("w", json!({"size": 2})),
            false,
            &applier("b"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, 409);
    assert!(
        error.message.contains("conflict with \"a\""),
        "{}",
        error.message
    );
    let forced = s
        .registry
        .apply(
            &s.widget("w"),
            widget("w", json!({"size": 2})),
            true,
            &applier("b"),
        )
        .await
        .unwrap();
    assert_eq!(forced.object["spec"]["size"], 2);
    let error = s
        .registry
        .apply(&s.widget("w"), widget("w", json!({})), false, &applier(""))
        .await
        .unwrap_err();
    assert_eq!(error.code, 422, "an applier needs a name");
}

#[tokio::test]
async fn an_apply_to_status_records_its_manager_for_the_status_subresource() {
    let s = Setup::new().await;
    s.create(widget("w", json!({"size": 1}))).await;
    let reporter = WriteOptions {
        field_manager: "reporter".into(),
        ..s.options()
    };
    let mut status = widget("w", json!({}));
    status.as_object_mut().unwrap().remove("spec");
    status["status"] = json!({"ready": true});
    let applied = s
        .registry
        .apply(&s.status_of("w"), status, true, &reporter)
        .await
        .unwrap();
    assert_eq!(applied.object["status"]["ready"], true);
    let stored = s.get("w").await.unwrap();
    let entry = stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "reporter")
        .unwrap_or_else(|| panic!("no entry of the reporter: {}", stored["metadata"]));
    assert_eq!(entry["operation"], "Apply");
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:ready": {}}}));
    assert!(
        stored["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "tester"),
        "the creator's entry stays"
    );
}
