//! kube-rs (the client every fleetdb tool is built on) against `fleetdb serve`, on the
//! embedded store and on etcd: a derived CRD, typed CRUD, merge patches, and
//! `kube::runtime::watcher`.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use support::{Backend, Fleetdb};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "example.com", version = "v1", kind = "Sprocket", namespaced)]
#[kube(status = "SprocketStatus", shortname = "sp")]
struct SprocketSpec {
    teeth: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
struct SprocketStatus {
    spinning: bool,
}

async fn client(server: &Fleetdb) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("build the client configuration");
    Client::try_from(config).expect("build the client")
}

fn sprocket(name: &str, teeth: i64) -> Sprocket {
    Sprocket::new(name, SprocketSpec { teeth })
}

async fn install(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Sprocket::crd())
        .await
        .expect("create the CRD");
    for _ in 0..100 {
        let crd = crds.get("sprockets.example.com").await.unwrap();
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the CRD never became established");
}

async fn scenarios(backend: Backend) {
    let server = Fleetdb::start(backend);
    let client = client(&server).await;
    let info = client.apiserver_version().await.expect("version");
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));
    install(&client).await;
    let api: Api<Sprocket> = Api::namespaced(client.clone(), "default");

    // The watcher sees the initial (empty) list, then every change. Streams are lazy: poll it
    // through the initial list before changing anything.
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("the watcher lists")
            .expect("the watcher stream goes on")
            .expect("no watcher error");
        if matches!(event, watcher::Event::InitDone) {
            break;
        }
    }
    let created = api
        .create(&PostParams::default(), &sprocket("s1", 12))
        .await
        .expect("create");
    assert!(created.resource_version().is_some());
    let fetched = api.get("s1").await.expect("get");
    assert_eq!(fetched.spec.teeth, 12);
    let listed = api
        .list(&ListParams::default().labels(""))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);

    let mut changed = fetched.clone();
    changed.spec.teeth = 14;
    let replaced = api
        .replace("s1", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_eq!(replaced.spec.teeth, 14);
    // The same stale object again: 409.
    match api.replace("s1", &PostParams::default(), &changed).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("a stale replace must conflict, got {other:?}"),
    }
    let patched = api
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"teeth": 16}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(patched.spec.teeth, 16);
    let status = api
        .patch_status(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"spinning": true}})),
        )
        .await
        .expect("status patch");
    assert!(status.status.unwrap().spinning);
    api.delete("s1", &DeleteParams::default())
        .await
        .expect("delete");

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|e: &String| e.starts_with("delete")) {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("watcher events arrive")
            .expect("the watcher stream goes on")
            .expect("no watcher error");
        match event {
            watcher::Event::Apply(s) => {
                seen.push(format!("apply {} {}", s.name_any(), s.spec.teeth))
            }
            watcher::Event::Delete(s) => seen.push(format!("delete {}", s.name_any())),
            watcher::Event::InitApply(s) => {
                seen.push(format!("apply {} {}", s.name_any(), s.spec.teeth))
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
    let after_create: Vec<String> = seen.clone();
    let expected: Vec<String> = [
        "apply s1 12",
        "apply s1 14",
        "apply s1 16",
        "apply s1 16",
        "delete s1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(after_create, expected, "watcher events: {seen:?}");

    // Streaming lists (sendInitialEvents + the closing bookmark), as client-go >= 1.35 uses.
    api.create(&PostParams::default(), &sprocket("s2", 20))
        .await
        .expect("create");
    let mut streaming = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), streaming.next())
            .await
            .expect("the streaming list ends with its bookmark")
            .expect("the stream goes on")
            .expect("no watcher error");
        match event {
            watcher::Event::InitApply(s) => initial.push(s.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["s2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_on_the_embedded_store() {
    scenarios(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_on_etcd() {
    scenarios(Backend::Etcd).await;
}
