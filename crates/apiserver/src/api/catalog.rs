//! The catalog: every kind the server serves, built-in or defined by a CRD, with what the
//! other layers need to know of it (names, scope, subresources, printer columns, its
//! schema compiled once per CRD version).
//!
//! Built-in kinds are `v1` Namespaces, `apiextensions.k8s.io/v1` CustomResourceDefinitions,
//! the four `rbac.authorization.k8s.io/v1` kinds, the access and identity reviews of
//! `authorization.k8s.io/v1` and `authentication.k8s.io/v1` (answered, never stored), and
//! fleetdb's `security.fleetdb.io/v1` CertificateRevocations, and what hosts join and report
//! with: `v1` Secrets (bootstrap tokens), ConfigMaps and Events, `events.k8s.io/v1` Events,
//! `coordination.k8s.io/v1` Leases and `certificates.k8s.io/v1` CertificateSigningRequests.
//! Every established CRD adds one [`Resource`] per served version. The catalog is rebuilt
//! from the stored CRDs whenever one changes (the registry does it after its own CRD writes,
//! the definitions controller when another fleetdb process sharing the same etcd writes them).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use fleetdb_machinery::jsonpath;
use fleetdb_machinery::schema::Schema;
use serde_json::Value;

/// Which built-in behaviour a resource has (the registry picks its strategy by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Namespace,
    CustomResourceDefinition,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    /// A review (`SelfSubjectAccessReview` and friends): created to get an answer, never
    /// stored.
    Review,
    CertificateRevocation,
    /// `v1` Secret: `stringData` folded into `data`, `type` and `immutable` kept.
    Secret,
    /// `v1` ConfigMap.
    ConfigMap,
    /// `coordination.k8s.io/v1` Lease: heartbeats.
    Lease,
    /// `v1` Event and `events.k8s.io/v1` Event.
    Event,
    /// `certificates.k8s.io/v1` CertificateSigningRequest, with `approval` and `status`.
    CertificateSigningRequest,
    /// An object of a CRD-defined kind.
    Custom,
}

/// An additional printer column of a CRD version.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: jsonpath::Path,
}

/// Where a CRD's scale subresource reads and writes replicas (JSON paths like `.spec.replicas`).
#[derive(Clone, Debug)]
pub struct ScaleSpec {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// The verbs every stored kind serves.
pub const STORED_KIND_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub struct Resource {
    pub group: String,
    pub version: String,
    /// Every served version of this resource, preferred (storage) first.
    pub served_versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// The approval subresource (CertificateSigningRequests only).
    pub approval_subresource: bool,
    /// The scale subresource, when the CRD version defines one.
    pub scale: Option<ScaleSpec>,
    pub printer_columns: Vec<PrinterColumn>,
    /// Fields of the object its field selectors may name besides `metadata.name` and
    /// `metadata.namespace` (a CRD version's `selectableFields`, without the leading dot).
    pub selectable_fields: Vec<String>,
    /// The version's `openAPIV3Schema` as written in the CRD (for the OpenAPI documents).
    pub schema_document: Option<Value>,
    /// The same schema compiled (what prune, default, validate and apply walk).
    pub schema: Option<Arc<Schema>>,
    pub kind_tag: Kind,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for the core group), as in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (or `Kind` for the core group), as in validation messages.
    pub fn kind_qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The store prefix of this resource's objects, optionally of one namespace.
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{group}/{}/{ns}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.key_prefix(namespace))
    }

    /// Verbs for discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.kind_tag == Kind::Review {
            return vec!["create"];
        }
        STORED_KIND_VERBS.to_vec()
    }
}

/// The OpenAPI schema published for a built-in kind: open `spec` and `status`.
fn builtin_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    })
}

/// The built-in Namespace resource.
pub fn namespaces() -> Resource {
    Resource {
        group: String::new(),
        version: "v1".into(),
        served_versions: vec!["v1".into()],
        plural: "namespaces".into(),
        singular: "namespace".into(),
        kind: "Namespace".into(),
        list_kind: "NamespaceList".into(),
        namespaced: false,
        short_names: vec!["ns".into()],
        categories: vec![],
        status_subresource: true,
        approval_subresource: false,
        scale: None,
        printer_columns: vec![
            PrinterColumn {
                name: "Status".into(),
                type_: "string".into(),
                format: String::new(),
                description: "The phase of the namespace".into(),
                priority: 0,
                json_path: ".status.phase".into(),
            },
            PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            },
        ],
        selectable_fields: Vec::new(),
        schema_document: Some(builtin_schema()),
        schema: None,
        kind_tag: Kind::Namespace,
    }
}

/// The built-in CustomResourceDefinition resource.
pub fn custom_resource_definitions() -> Resource {
    Resource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        served_versions: vec!["v1".into()],
        plural: "customresourcedefinitions".into(),
        singular: "customresourcedefinition".into(),
        kind: "CustomResourceDefinition".into(),
        list_kind: "CustomResourceDefinitionList".into(),
        namespaced: false,
        short_names: vec!["crd".into(), "crds".into()],
        categories: vec!["api-extensions".into()],
        status_subresource: true,
        approval_subresource: false,
        scale: None,
        printer_columns: vec![PrinterColumn {
            name: "Created At".into(),
            type_: "string".into(),
            format: "date-time".into(),
            description: "When the definition was created".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }],
        selectable_fields: Vec::new(),
        schema_document: Some(builtin_schema()),
        schema: None,
        kind_tag: Kind::CustomResourceDefinition,
    }
}

/// A column printing when an object was created.
fn age_column() -> PrinterColumn {
    PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }
}

fn column(name: &str, json_path: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: "string".into(),
        format: String::new(),
        description: String::new(),
        priority,
        json_path: json_path.into(),
    }
}

/// A built-in resource of `group`/`v1` with no subresources.
fn builtin(
    group: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    kind_tag: Kind,
    printer_columns: Vec<PrinterColumn>,
) -> Resource {
    Resource {
        group: group.into(),
        version: "v1".into(),
        served_versions: vec!["v1".into()],
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: vec![],
        categories: vec![],
        status_subresource: false,
        approval_subresource: false,
        scale: None,
        printer_columns,
        selectable_fields: Vec::new(),
        schema_document: Some(builtin_schema()),
        schema: None,
        kind_tag,
    }
}

/// The group of the RBAC kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The group of the access reviews.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
/// The group of the identity review.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
/// fleetdb's own group of security kinds.
pub const SECURITY_GROUP: &str = "security.fleetdb.io";

/// The built-in RBAC resources: roles, clusterroles, rolebindings, clusterrolebindings.
pub fn rbac_resources() -> Vec<Resource> {
    let binding_columns = || {
        vec![
            column("Role Kind", ".roleRef.kind", 0),
            column("Role", ".roleRef.name", 0),
            age_column(),
        ]
    };
    vec![
        builtin(
            RBAC_GROUP,
            "roles",
            "Role",
            true,
            Kind::Role,
            vec![age_column()],
        ),
        builtin(
            RBAC_GROUP,
            "clusterroles",
            "ClusterRole",
            false,
            Kind::ClusterRole,
            vec![age_column()],
        ),
        builtin(
            RBAC_GROUP,
            "rolebindings",
            "RoleBinding",
            true,
            Kind::RoleBinding,
            binding_columns(),
        ),
        builtin(
            RBAC_GROUP,
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            Kind::ClusterRoleBinding,
            binding_columns(),
        ),
    ]
}

/// The reviews: answered at once, never stored.
pub fn review_resources() -> Vec<Resource> {
    vec![
        builtin(
            AUTHORIZATION_GROUP,
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
            Kind::Review,
            vec![],
        ),
        builtin(
            AUTHORIZATION_GROUP,
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            false,
            Kind::Review,
            vec![],
        ),
        builtin(
            AUTHORIZATION_GROUP,
            "subjectaccessreviews",
            "SubjectAccessReview",
            false,
            Kind::Review,
            vec![],
        ),
        builtin(
            AUTHORIZATION_GROUP,
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            true,
            Kind::Review,
            vec![],
        ),
        builtin(
            AUTHENTICATION_GROUP,
            "selfsubjectreviews",
            "SelfSubjectReview",
            false,
            Kind::Review,
            vec![],
        ),
    ]
}

/// fleetdb's CertificateRevocations: certificates the server refuses.
pub fn certificate_revocations() -> Resource {
    builtin(
        SECURITY_GROUP,
        "certificaterevocations",
        "CertificateRevocation",
        false,
        Kind::CertificateRevocation,
        vec![
            column("User", ".spec.user", 0),
            column("Serial", ".spec.serial", 0),
            column("Revoked At", ".spec.revokedAt", 0),
            age_column(),
        ],
    )
}

/// The group of CertificateSigningRequests.
pub const CERTIFICATES_GROUP: &str = "certificates.k8s.io";
/// The group of Leases.
pub const COORDINATION_GROUP: &str = "coordination.k8s.io";
/// The group of the newer Event API.
pub const EVENTS_GROUP: &str = "events.k8s.io";

/// A column whose cell the Table code computes (`count`: keys of a map; `age`: since a
/// time; `object`: `kind/name` of a reference; `duration`: seconds, humanly; `conditions`:
/// a CertificateSigningRequest's state).
fn computed(name: &str, json_path: &str, type_: &str) -> PrinterColumn {
    PrinterColumn {
        type_: type_.into(),
        ..column(name, json_path, 0)
    }
}

/// An Event resource: core `v1` (`message`, `involvedObject`, `lastTimestamp`) or
/// `events.k8s.io/v1` (`note`, `regarding`, `eventTime`).
fn events(group: &str, seen: &str, about: &str, text: (&str, &str)) -> Resource {
    let mut events = builtin(
        group,
        "events",
        "Event",
        true,
        Kind::Event,
        vec![
            computed("Last Seen", seen, "age"),
            column("Type", ".type", 0),
            column("Reason", ".reason", 0),
            computed("Object", about, "object"),
            column(text.0, text.1, 0),
        ],
    );
    events.short_names = vec!["ev".into()];
    with_schema(
        events,
        if group.is_empty() {
            super::schemas::core_event()
        } else {
            super::schemas::events_event()
        },
    )
}

/// A built-in resource with a typed schema (`schemas.rs`), compiled once: its writes go
/// through the same pruning and validation as a custom resource's.
fn with_schema(mut resource: Resource, document: Value) -> Resource {
    resource.schema = Some(Arc::new(Schema::compile(&document)));
    resource.schema_document = Some(document);
    resource
}

/// Secrets, ConfigMaps, Events (both APIs), Leases and CertificateSigningRequests.
pub fn joining_resources() -> Vec<Resource> {
    let secrets = builtin(
        "",
        "secrets",
        "Secret",
        true,
        Kind::Secret,
        vec![
            column("Type", ".type", 0),
            computed("Data", ".data", "count"),
            age_column(),
        ],
    );
    let mut configmaps = builtin(
        "",
        "configmaps",
        "ConfigMap",
        true,
        Kind::ConfigMap,
        vec![computed("Data", ".data", "count"), age_column()],
    );
    configmaps.short_names = vec!["cm".into()];
    let leases = with_schema(
        builtin(
            COORDINATION_GROUP,
            "leases",
            "Lease",
            true,
            Kind::Lease,
            vec![column("Holder", ".spec.holderIdentity", 0), age_column()],
        ),
        super::schemas::lease(),
    );
    let mut csrs = builtin(
        CERTIFICATES_GROUP,
        "certificatesigningrequests",
        "CertificateSigningRequest",
        false,
        Kind::CertificateSigningRequest,
        vec![
            age_column(),
            column("SignerName", ".spec.signerName", 0),
            column("Requestor", ".spec.username", 0),
            computed("RequestedDuration", ".spec.expirationSeconds", "duration"),
            computed("Condition", ".status", "conditions"),
        ],
    );
    csrs.short_names = vec!["csr".into()];
    csrs.status_subresource = true;
    csrs.approval_subresource = true;
    vec![
        secrets,
        configmaps,
        events(
            "",
            ".lastTimestamp",
            ".involvedObject",
            ("Message", ".message"),
        ),
        events(EVENTS_GROUP, ".eventTime", ".regarding", ("Note", ".note")),
        leases,
        csrs,
    ]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The resources a stored CRD defines (one per served version), if it is well-formed.
pub fn resources_of_crd(crd: &Value) -> Vec<Resource> {
    let spec = &crd["spec"];
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        spec["names"]["plural"].as_str(),
        spec["names"]["kind"].as_str(),
    ) else {
        return Vec::new();
    };
    let singular = spec["names"]["singular"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = spec["names"]["listKind"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{kind}List"));
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let mut served: Vec<&Value> = versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .collect();
    // Storage version first: it is the preferred one.
    served.sort_by_key(|v| !v["storage"].as_bool().unwrap_or(false));
    let served_versions: Vec<String> = served
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    served
        .iter()
        .filter_map(|v| {
            let name = v["name"].as_str()?;
            let document = v["schema"]["openAPIV3Schema"]
                .as_object()
                .map(|_| v["schema"]["openAPIV3Schema"].clone());
            let printer_columns = v["additionalPrinterColumns"]
                .as_array()
                .map(|columns| {
                    columns
                        .iter()
                        .filter_map(|c| {
                            Some(PrinterColumn {
                                name: c["name"].as_str()?.to_owned(),
                                type_: c["type"].as_str().unwrap_or("string").to_owned(),
                                format: c["format"].as_str().unwrap_or("").to_owned(),
                                description: c["description"].as_str().unwrap_or("").to_owned(),
                                priority: c["priority"].as_i64().unwrap_or(0),
                                json_path: c["jsonPath"].as_str()?.into(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selectable_fields = v["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["jsonPath"].as_str())
                .map(|path| path.trim_start_matches('.').to_owned())
                .collect();
            Some(Resource {
                group: group.to_owned(),
                version: name.to_owned(),
                served_versions: served_versions.clone(),
                selectable_fields,
                plural: plural.to_owned(),
                singular: singular.clone(),
                kind: kind.to_owned(),
                list_kind: list_kind.clone(),
                namespaced,
                short_names: strings(&spec["names"]["shortNames"]),
                categories: strings(&spec["names"]["categories"]),
                status_subresource: v["subresources"]["status"].is_object(),
                approval_subresource: false,
                scale: v["subresources"]["scale"].as_object().and_then(|scale| {
                    Some(ScaleSpec {
                        spec_replicas_path: scale.get("specReplicasPath")?.as_str()?.to_owned(),
                        status_replicas_path: scale.get("statusReplicasPath")?.as_str()?.to_owned(),
                        label_selector_path: scale
                            .get("labelSelectorPath")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    })
                }),
                printer_columns,
                schema_document: document.clone(),
                schema: document.as_ref().map(|d| Arc::new(Schema::compile(d))),
                kind_tag: Kind::Custom,
            })
        })
        .collect()
}

/// A consistent view of everything served.
#[derive(Default)]
pub struct Snapshot {
    by_path: HashMap<(String, String, String), Arc<Resource>>,
    /// group → versions in preference order.
    groups: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    fn add(&mut self, resource: Resource) {
        let versions = self.groups.entry(resource.group.clone()).or_default();
        if !versions.contains(&resource.version) {
            versions.push(resource.version.clone());
        }
        self.by_path.insert(
            (
                resource.group.clone(),
                resource.version.clone(),
                resource.plural.clone(),
            ),
            Arc::new(resource),
        );
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.by_path
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// Every group (the core group is ""), with its versions in preference order.
    pub fn groups(&self) -> &BTreeMap<String, Vec<String>> {
        &self.groups
    }

    /// The resources of one group/version, sorted by plural.
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        let mut found: Vec<Arc<Resource>> = self
            .by_path
            .values()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.plural.cmp(&b.plural));
        found
    }

    /// Any served version of `group`/`plural` (for CRD clean-up and cross-version lookups).
    pub fn any_version(&self, group: &str, plural: &str) -> Option<Arc<Resource>> {
        let versions = self.groups.get(group)?;
        versions.iter().find_map(|v| self.get(group, v, plural))
    }
}

/// The catalog shared by every layer: a snapshot replaced whole on every rebuild.
pub struct Catalog {
    snapshot: RwLock<Arc<Snapshot>>,
    /// The store revision the snapshot's CRDs were read at.
    revision: std::sync::Mutex<i64>,
}

impl Catalog {
    /// A catalog serving the built-in kinds and the given CRDs.
    pub fn new(crds: &[Value]) -> Self {
        let catalog = Self {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            revision: std::sync::Mutex::new(0),
        };
        catalog.rebuild(crds);
        catalog
    }

    /// [`Catalog::rebuild`] from CRDs read at store revision `revision`, unless the catalog
    /// already holds CRDs read at a later one (a slower reload must not undo a newer).
    /// Returns whether it rebuilt.
    pub fn rebuild_at(&self, revision: i64, crds: &[Value]) -> bool {
        let mut current = self.revision.lock().unwrap_or_else(|e| e.into_inner());
        if revision < *current {
            return false;
        }
        *current = revision;
        self.rebuild(crds);
        true
    }

    /// Replaces the served set with the built-ins plus the given CRDs.
    pub fn rebuild(&self, crds: &[Value]) {
        let mut snapshot = Snapshot::default();
        snapshot.add(namespaces());
        snapshot.add(custom_resource_definitions());
        for resource in rbac_resources().into_iter().chain(review_resources()) {
            snapshot.add(resource);
        }
        snapshot.add(certificate_revocations());
        for resource in joining_resources() {
            snapshot.add(resource);
        }
        for crd in crds {
            if crd["metadata"]["deletionTimestamp"].is_string() {
                continue;
            }
            for resource in resources_of_crd(crd) {
                snapshot.add(resource);
            }
        }
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
