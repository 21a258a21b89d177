//! The audit log, in kube-apiserver's format: one `audit.k8s.io/v1` `Event` JSON object per
//! line, at the level an `audit.k8s.io/v1` `Policy` gives each request (`None`, `Metadata`,
//! `Request`, `RequestResponse`), with its stages (`RequestReceived`, `ResponseStarted` for
//! watches, `ResponseComplete`), rotated by size.
//!
//! Events are queued (at most [`AUDIT_QUEUE_EVENTS`]) to one writer thread, so a slow disk
//! never holds a request; when the queue is full, events are counted and dropped, and the
//! server says so in its log. Bodies are recorded up to [`MAX_AUDITED_BODY_BYTES`]; the
//! kinds in [`UNRECORDED_RESOURCES`] never have theirs recorded. No header is recorded.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::api::{ApiError, Identity};
use crate::pipeline::Attributes;

/// Events waiting for the writer; past it, new events are dropped and counted.
pub const AUDIT_QUEUE_EVENTS: usize = 10_000;
/// Request and response bodies larger than this are left out of events (with an
/// annotation saying so).
pub const MAX_AUDITED_BODY_BYTES: usize = 1024 * 1024;
/// Default of `--audit-log-maxsize`, in megabytes (as kube-apiserver's log rotation).
pub const DEFAULT_MAX_SIZE_MB: u64 = 100;
/// Resources whose bodies are never recorded, whatever the policy says: they carry
/// credentials.
pub const UNRECORDED_RESOURCES: [&str; 4] = [
    "secrets",
    "tokenreviews",
    "certificatesigningrequests",
    "serviceaccounts/token",
];

/// How much of a request is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// A stage of a request's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyDocument {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: bool,
}

/// An audit policy: the first rule that matches a request gives its level; no rule, no
/// event.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<Stage>,
    omit_managed_fields: bool,
}

/// What the policy says of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    omitted: HashSet<Stage>,
    omit_managed_fields: bool,
}

impl Policy {
    /// Reads an `audit.k8s.io/v1` `Policy` (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, String> {
        let document: PolicyDocument =
            serde_saphyr::from_str(text).map_err(|e| format!("not an audit policy: {e}"))?;
        if document.kind != "Policy"
            || !matches!(
                document.api_version.as_str(),
                "audit.k8s.io/v1" | "audit.k8s.io/v1beta1"
            )
        {
            return Err(format!(
                "an audit policy is apiVersion audit.k8s.io/v1, kind Policy; this is {} {}",
                document.api_version, document.kind
            ));
        }
        if document.rules.is_empty() {
            return Err("the audit policy has no rules: nothing would be logged".into());
        }
        Ok(Self {
            rules: document.rules,
            omit_stages: document.omit_stages,
            omit_managed_fields: document.omit_managed_fields,
        })
    }

    /// Reads a policy file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the audit policy {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every request at `Metadata` (used when a log path is given without a policy).
    pub fn metadata_for_all() -> Self {
        Self {
            rules: vec![Rule {
                level: Level::Metadata,
                users: vec![],
                user_groups: vec![],
                verbs: vec![],
                resources: vec![],
                namespaces: vec![],
                non_resource_urls: vec![],
                omit_stages: vec![],
                omit_managed_fields: None,
            }],
            omit_stages: vec![],
            omit_managed_fields: false,
        }
    }

    /// Whether any rule records bodies (so they must be kept while requests run).
    pub fn records_bodies(&self) -> bool {
        self.rules.iter().any(|r| r.level >= Level::Request)
    }

    /// The level and omitted stages of a request (`policy.Checker`).
    pub fn decide(&self, user: &Identity, attributes: &Attributes) -> Decision {
        for rule in &self.rules {
            if matches(rule, user, attributes) {
                return Decision {
                    level: rule.level,
                    omitted: rule
                        .omit_stages
                        .iter()
                        .chain(&self.omit_stages)
                        .copied()
                        .collect(),
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                };
            }
        }
        Decision {
            level: Level::None,
            omitted: HashSet::new(),
            omit_managed_fields: false,
        }
    }
}

fn url_matches(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

fn matches(rule: &Rule, user: &Identity, a: &Attributes) -> bool {
    if !rule.users.is_empty() && !rule.users.contains(&user.user) {
        return false;
    }
    if !rule.user_groups.is_empty() && !user.groups.iter().any(|g| rule.user_groups.contains(g)) {
        return false;
    }
    if !rule.verbs.is_empty() && !rule.verbs.contains(&a.verb) {
        return false;
    }
    if !rule.namespaces.is_empty() || !rule.resources.is_empty() {
        if !a.resource_request {
            return false;
        }
        if !rule.namespaces.is_empty() && !rule.namespaces.contains(&a.namespace) {
            return false;
        }
        if !rule.resources.is_empty() {
            let combined = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            let any = rule.resources.iter().any(|gr| {
                gr.group == a.api_group
                    && (gr.resources.is_empty()
                        || gr.resources.iter().any(|r| {
                            r == "*"
                                || *r == combined
                                || r.strip_prefix("*/").is_some_and(|sub| sub == a.subresource)
                                || r.strip_suffix("/*").is_some_and(|res| res == a.resource)
                        }))
                    && (gr.resource_names.is_empty() || gr.resource_names.contains(&a.name))
            });
            if !any {
                return false;
            }
        }
    }
    if !rule.non_resource_urls.is_empty() {
        if a.resource_request {
            return false;
        }
        if !rule
            .non_resource_urls
            .iter()
            .any(|u| url_matches(u, &a.path))
        {
            return false;
        }
    }
    true
}

/// Where and how the log is written.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// The log file; `-` is standard output.
    pub path: PathBuf,
    pub policy: Policy,
    /// Rotate when the file would grow past this many megabytes.
    pub max_size_mb: u64,
    /// Rotated files kept (0: all).
    pub max_backups: usize,
}

enum Message {
    Line(String),
    /// Flush, then answer.
    Flush(SyncSender<()>),
}

/// The audit log of one server.
pub struct AuditLog {
    policy: Policy,
    queue: SyncSender<Message>,
    dropped: AtomicU64,
}

/// A line's time: RFC 3339 in UTC with microseconds (`MicroTime`).
fn micro_time(time: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.microsecond()
    )
}

/// Writes queued lines to the file, rotating it by size.
struct Writer {
    path: PathBuf,
    max_bytes: u64,
    max_backups: usize,
    out: Option<std::io::BufWriter<std::fs::File>>,
    size: u64,
    failing: bool,
}

impl Writer {
    fn open(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.out = Some(std::io::BufWriter::new(file));
        Ok(())
    }

    /// `audit.log` → `audit-2026-11-30T18-00-00.000.log`, then the oldest backups beyond
    /// `max_backups` removed.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        let now = OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond()
        );
        let (stem, extension) = self.stem_and_extension();
        let parent = self.path.parent().unwrap_or(Path::new("."));
        let backup = parent.join(format!("{stem}-{stamp}{extension}"));
        std::fs::rename(&self.path, &backup)?;
        if self.max_backups > 0 {
            let mut backups: Vec<PathBuf> = std::fs::read_dir(parent)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{stem}-")) && n.ends_with(&extension)
                    })
                })
                .collect();
            backups.sort();
            let excess = backups.len().saturating_sub(self.max_backups);
            for old in &backups[..excess] {
                std::fs::remove_file(old)?;
            }
        }
        self.open()
    }

    fn stem_and_extension(&self) -> (String, String) {
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("audit.log");
        match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
            _ => (name.to_owned(), String::new()),
        }
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        if self.path == Path::new("-") {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(line.as_bytes())?;
            return stdout.write_all(b"\n");
        }
        if self.out.is_none() {
            self.open()?;
        }
        let length = line.len() as u64 + 1;
        if self.size > 0 && self.size + length > self.max_bytes {
            self.rotate()?;
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("not open"))?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        self.size += length;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => std::io::stdout().flush(),
        }
    }

    fn report(&mut self, result: std::io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::error!(path = %self.path.display(), %error, "cannot write the audit log");
            }
            Err(_) => {}
        }
    }

    fn run(mut self, queue: Receiver<Message>) {
        while let Ok(first) = queue.recv() {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Line(line) => {
                        let result = self.write(&line);
                        self.report(result);
                    }
                    Message::Flush(done) => {
                        let result = self.flush();
                        self.report(result);
                        let _ = done.send(());
                    }
                }
                next = queue.try_recv().ok();
            }
            // The queue is empty: flush, so the file is current between bursts.
            let result = self.flush();
            self.report(result);
        }
    }
}

impl AuditLog {
    /// Opens (creating, owner-only) the log and starts its writer.
    pub fn open(settings: AuditSettings) -> Result<Arc<Self>, String> {
        let mut writer = Writer {
            path: settings.path.clone(),
            max_bytes: settings.max_size_mb.max(1) * 1024 * 1024,
            max_backups: settings.max_backups,
            out: None,
            size: 0,
            failing: false,
        };
        if settings.path != Path::new("-") {
            writer.open().map_err(|e| {
                format!("cannot open the audit log {}: {e}", settings.path.display())
            })?;
        }
        let (queue, receiver) = std::sync::mpsc::sync_channel(AUDIT_QUEUE_EVENTS);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| format!("cannot start the audit log writer: {e}"))?;
        Ok(Arc::new(Self {
            policy: settings.policy,
            queue,
            dropped: AtomicU64::new(0),
        }))
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, line: String) {
        match self.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::error!(dropped, "the audit log cannot keep up: events dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits until every event queued so far is written.
    pub fn flush(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// What routing learns of a request, for its event.
#[derive(Default)]
pub struct Noted {
    pub attributes: Option<Attributes>,
    /// Who a bearer token authenticated (the connection carried no certificate).
    pub authenticated: Option<Identity>,
    pub impersonated: Option<Identity>,
    /// `allow` or `forbid`, and the authorizer's reason.
    pub decision: Option<(&'static str, String)>,
    pub error: Option<ApiError>,
}

/// One request being audited.
pub struct Record {
    log: Arc<AuditLog>,
    id: String,
    received: OffsetDateTime,
    request_uri: String,
    method: String,
    user_agent: Option<String>,
    source_ip: Option<String>,
    user: Identity,
    pub noted: Mutex<Noted>,
    request_body: Mutex<Option<Vec<u8>>>,
}

/// A body recorded as the policy allows: JSON as itself, YAML read as JSON, anything else
/// (protobuf) left out.
fn body_object(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() || bytes.len() > MAX_AUDITED_BODY_BYTES {
        return None;
    }
    serde_json::from_slice(bytes)
        .ok()
        .or_else(|| serde_saphyr::from_slice::<Value>(bytes).ok())
        .filter(|v| v.is_object())
}

fn strip_managed_fields(value: &mut Value) {
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            strip_managed_fields(item);
        }
    }
}

fn user_info(user: &Identity) -> Value {
    let mut info = json!({"username": user.user});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

impl Record {
    /// Starts the record of a request.
    pub fn new(
        log: Arc<AuditLog>,
        method: &str,
        request_uri: String,
        user_agent: Option<String>,
        source_ip: Option<String>,
        user: &Identity,
        id: Option<String>,
    ) -> Self {
        Self {
            log,
            id: id
                .filter(|id| !id.is_empty() && id.len() <= 128)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            received: OffsetDateTime::now_utc(),
            request_uri,
            method: method.to_owned(),
            user_agent,
            source_ip,
            user: user.clone(),
            noted: Mutex::new(Noted::default()),
            request_body: Mutex::new(None),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Keeps the request body (up to the bound) for a `Request` level event.
    pub fn keep_request_chunk(&self, chunk: &[u8]) {
        let mut body = self.request_body.lock().unwrap_or_else(|e| e.into_inner());
        let kept = body.get_or_insert_with(Vec::new);
        if kept.len() <= MAX_AUDITED_BODY_BYTES {
            kept.extend_from_slice(
                &chunk[..chunk.len().min(MAX_AUDITED_BODY_BYTES + 1 - kept.len())],
            );
        }
    }

    /// The policy's decision for this request, now that routing is done.
    pub fn decision(&self) -> Decision {
        let noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        let attributes = noted.attributes.clone().unwrap_or_else(|| {
            // A request refused before routing (401): a non-resource request.
            let path = self.request_uri.split('?').next().unwrap_or_default();
            Attributes::path(&self.method.to_ascii_lowercase(), path)
        });
        self.log.policy.decide(&self.user, &attributes)
    }

    /// Writes the event of one stage. `response` is the response body when recorded.
    pub fn emit(&self, decision: &Decision, stage: Stage, code: u16, response: Option<&[u8]>) {
        if decision.level == Level::None || decision.omitted.contains(&stage) {
            return;
        }
        let noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        let mut event = Map::new();
        event.insert("kind".into(), json!("Event"));
        event.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
        event.insert("level".into(), json!(decision.level.name()));
        event.insert("auditID".into(), json!(self.id));
        event.insert("stage".into(), json!(stage.name()));
        event.insert("requestURI".into(), json!(self.request_uri));
        let verb = noted
            .attributes
            .as_ref()
            .map(|a| a.verb.clone())
            .unwrap_or_else(|| self.method.to_ascii_lowercase());
        event.insert("verb".into(), json!(verb));
        event.insert(
            "user".into(),
            user_info(noted.authenticated.as_ref().unwrap_or(&self.user)),
        );
        if let Some(impersonated) = &noted.impersonated {
            event.insert("impersonatedUser".into(), user_info(impersonated));
        }
        if let Some(ip) = &self.source_ip {
            event.insert("sourceIPs".into(), json!([ip]));
        }
        if let Some(agent) = &self.user_agent {
            event.insert("userAgent".into(), json!(agent));
        }
        let mut unrecorded = false;
        if let Some(a) = noted.attributes.as_ref().filter(|a| a.resource_request) {
            let mut reference = Map::new();
            reference.insert("resource".into(), json!(a.resource));
            if !a.namespace.is_empty() {
                reference.insert("namespace".into(), json!(a.namespace));
            }
            if !a.name.is_empty() {
                reference.insert("name".into(), json!(a.name));
            }
            if !a.api_group.is_empty() {
                reference.insert("apiGroup".into(), json!(a.api_group));
            }
            reference.insert("apiVersion".into(), json!(a.api_version));
            if !a.subresource.is_empty() {
                reference.insert("subresource".into(), json!(a.subresource));
            }
            event.insert("objectRef".into(), Value::Object(reference));
            let combined = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            unrecorded = UNRECORDED_RESOURCES.contains(&a.resource.as_str())
                || UNRECORDED_RESOURCES.contains(&combined.as_str());
        }
        if stage != Stage::RequestReceived {
            let mut status = json!({"metadata": {}, "code": code});
            if let Some(error) = &noted.error {
                status["status"] = json!("Failure");
                status["message"] = json!(error.message);
                status["reason"] = json!(error.reason);
            }
            event.insert("responseStatus".into(), status);
        }
        let mut annotations = Map::new();
        let mut record_body = |name: &str, bytes: Option<&[u8]>, event: &mut Map<String, Value>| {
            let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
                return;
            };
            if unrecorded {
                return;
            }
            match body_object(bytes) {
                Some(mut object) => {
                    if decision.omit_managed_fields {
                        strip_managed_fields(&mut object);
                    }
                    event.insert(name.into(), object);
                }
                None => {
                    annotations.insert(
                        format!("audit.fleetdb.io/{name}"),
                        json!(if bytes.len() > MAX_AUDITED_BODY_BYTES {
                            "left out: larger than the audit log records"
                        } else {
                            "left out: not JSON or YAML"
                        }),
                    );
                }
            }
        };
        if decision.level >= Level::Request {
            let body = self.request_body.lock().unwrap_or_else(|e| e.into_inner());
            record_body("requestObject", body.as_deref(), &mut event);
        }
        if decision.level >= Level::RequestResponse && stage == Stage::ResponseComplete {
            record_body("responseObject", response, &mut event);
        }
        event.insert(
            "requestReceivedTimestamp".into(),
            json!(micro_time(self.received)),
        );
        event.insert(
            "stageTimestamp".into(),
            json!(micro_time(OffsetDateTime::now_utc())),
        );
        if let Some((decision, reason)) = &noted.decision {
            annotations.insert("authorization.k8s.io/decision".into(), json!(decision));
            annotations.insert("authorization.k8s.io/reason".into(), json!(reason));
        }
        if !annotations.is_empty() {
            event.insert("annotations".into(), Value::Object(annotations));
        }
        drop(noted);
        self.log.send(Value::Object(event).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: [/healthz*, /readyz*, /livez*]
- level: RequestResponse
  users: [alice]
  resources:
  - group: fleetdb.io
    resources: [hosts, "*/status"]
- level: Request
  verbs: [create, update, patch]
  namespaces: [""]
- level: Metadata
"#;

    #[test]
    fn the_first_matching_rule_gives_the_level() {
        let policy = Policy::parse(POLICY).unwrap();
        let alice = Identity::new("alice", &["system:authenticated"]);
        let bob = Identity::new("bob", &["system:authenticated"]);
        let host = Attributes::resource("get", "fleetdb.io", "hosts", "", "web-1");
        assert_eq!(policy.decide(&alice, &host).level, Level::RequestResponse);
        assert_eq!(policy.decide(&bob, &host).level, Level::Metadata);
        let mut status = Attributes::resource("patch", "fleetdb.io", "sources", "", "pdx");
        status.subresource = "status".into();
        assert_eq!(policy.decide(&alice, &status).level, Level::RequestResponse);
        let create = Attributes::resource("create", "", "namespaces", "", "");
        assert_eq!(policy.decide(&bob, &create).level, Level::Request);
        let namespaced = Attributes::resource("create", "", "configmaps", "default", "");
        assert_eq!(policy.decide(&bob, &namespaced).level, Level::Metadata);
        let health = Attributes::path("get", "/readyz");
        assert_eq!(policy.decide(&bob, &health).level, Level::None);
        let decision = policy.decide(&bob, &create);
        assert!(decision.omitted.contains(&Stage::RequestReceived));
    }

    #[test]
    fn a_policy_that_is_not_one_is_refused() {
        assert!(Policy::parse("kind: Policy\napiVersion: v1\nrules: [{level: None}]").is_err());
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []").is_err());
        assert!(
            Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]")
                .is_err()
        );
        assert!(
            Policy::parse(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, user: [x]}]"
            )
            .is_err(),
            "a misspelt field would silently match everything"
        );
    }

    #[test]
    fn the_log_rotates_and_keeps_its_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(AuditSettings {
            path: path.clone(),
            policy: Policy::metadata_for_all(),
            max_size_mb: 1,
            max_backups: 2,
        })
        .unwrap();
        let user = Identity::new("alice", &[]);
        let decision = log
            .policy()
            .decide(&user, &Attributes::path("get", "/version"));
        for _ in 0..5 {
            // Each burst is a little over a megabyte of events.
            for _ in 0..2500 {
                let record = Record::new(
                    log.clone(),
                    "GET",
                    format!("/version?{}", "x".repeat(200)),
                    None,
                    None,
                    &user,
                    None,
                );
                record.emit(&decision, Stage::ResponseComplete, 200, None);
            }
            log.flush();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("audit")), "{names:?}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for name in &names {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(
                text.len() as u64 <= 1024 * 1024,
                "{name} is {} bytes",
                text.len()
            );
            for line in text.lines() {
                let event: Value = serde_json::from_str(line).unwrap();
                assert_eq!(event["kind"], "Event");
            }
        }
    }
}
