//! The etcd v3 backend: the same contract mapped onto etcd's own revisions, transactions and
//! watches, so that several fleetdb processes can share one etcd cluster.
//!
//! Every key is stored under a root prefix (default `/fleetdb`), so one etcd cluster can hold
//! several fleetdb installations. Revisions are etcd's: other writers to the same cluster make
//! gaps in the revisions a fleetdb watch sees, which the contract allows (revisions are strictly
//! increasing, not dense).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::stream;

mod members;

use members::{Failure, Member, Members, failure, reads, unsent};

use crate::watch_positions::{WatchPositions, advance};
use crate::{
    Condition, Deleted, Event, EventKind, GetManyResponse, GetResponse, KeyValue, RangeRequest,
    RangeResponse, Result, Revision, Store, StoreError, Version, WatchStream, check_changed_range,
    check_get_many, check_key, check_note, check_value, effective_limit, history_limit, prefix_end,
};

/// Where each key's change notes live: `NOTES_PREFIX` + the key (keys start with `/`). etcd
/// has no per-revision metadata, so a write puts its note (the commit time, then the writer's
/// note) on this sibling key in the same transaction: the sibling's history lines up with the
/// key's, revision for revision, and a deletion leaves a note too. Keys under `/_fleetdb/`
/// (the store's own bookkeeping) get none.
pub const NOTES_PREFIX: &str = "/_fleetdb/notes";

/// The sibling key holding `key`'s change notes, if it gets one.
fn notes_key(key: &str) -> Option<String> {
    (!key.starts_with("/_fleetdb/")).then(|| format!("{NOTES_PREFIX}{key}"))
}

/// A note key's value: the commit time in milliseconds (little endian), then the note.
fn encode_note(note: &[u8]) -> Vec<u8> {
    encode_note_at(crate::now_millis(), note)
}

fn encode_note_at(time_millis: i64, note: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + note.len());
    value.extend_from_slice(&time_millis.to_le_bytes());
    value.extend_from_slice(note);
    value
}

/// The time and note a note key's value holds.
fn decode_note(value: &Bytes) -> (i64, Bytes) {
    match value.get(..8) {
        Some(time) => (
            i64::from_le_bytes(time.try_into().expect("8 bytes")),
            value.slice(8..),
        ),
        None => (0, Bytes::new()),
    }
}

/// The root prefix used when none is configured.
pub const DEFAULT_ROOT: &str = "/fleetdb";

/// Largest gRPC response we accept: a full range page of large values.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// How long one etcd request may take before it fails as unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`EtcdStore::connect`] waits for the cluster to serve a first read, by default
/// (a cluster started with the server, or in the middle of an election): longer than one
/// failover window, since a read sent to a member that still follows a dead leader can wait
/// out a whole attempt before the next member is asked.
pub const DEFAULT_STARTUP_WAIT: Duration = Duration::from_secs(60);
/// The pause between first reads while the cluster does not serve.
const STARTUP_RETRY: Duration = Duration::from_secs(1);

/// Tries of a write whose outcome was unknown (each settled by a read first).
const WRITE_ATTEMPTS: usize = 3;

/// Most operations in one etcd transaction (etcd's default `--max-txn-ops`); `get_many` reads
/// in transactions of this many gets.
pub const MAX_TXN_OPS: usize = 128;

/// Where and how to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Every key lives under this prefix.
    pub root: String,
    /// How long `connect` waits for a first answer ([`DEFAULT_STARTUP_WAIT`]).
    pub startup_wait: Duration,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            root: DEFAULT_ROOT.to_owned(),
            startup_wait: DEFAULT_STARTUP_WAIT,
        }
    }
}

/// A store backed by an etcd v3 cluster.
pub struct EtcdStore {
    /// One client per member, with failover between them (`members.rs`).
    members: Members,
    root: String,
    /// Best known compacted revision; compaction only moves it forward.
    compacted_hint: AtomicI64,
    positions: Arc<WatchPositions>,
}

impl EtcdStore {
    /// Connects to etcd and waits, up to `options.startup_wait`, until it answers a read:
    /// a server started with its cluster, or while the cluster elects a leader, starts once
    /// the cluster serves rather than failing.
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(StoreError::InvalidArgument(
                "at least one etcd endpoint is needed".into(),
            ));
        }
        let connect = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            // A member cut off from the leader refuses at once rather than serving stale
            // answers or holding a watch that sees nothing.
            .with_require_leader(true);
        let mut list = Vec::with_capacity(options.endpoints.len());
        for endpoint in &options.endpoints {
            // Channels connect lazily: a member down now is tried when it is needed.
            let client = Client::connect([endpoint], Some(connect.clone()))
                .await
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot use the etcd endpoint {endpoint}: {e}"))
                })?;
            list.push(Member::new(endpoint.clone(), client));
        }
        let store = Self {
            members: Members::new(list),
            root: options.root.trim_end_matches('/').to_owned(),
            compacted_hint: AtomicI64::new(0),
            positions: Arc::default(),
        };
        let deadline = tokio::time::Instant::now() + options.startup_wait;
        let mut warned = false;
        loop {
            match store.current_revision().await {
                Ok(_) => break,
                Err(StoreError::Unavailable(error))
                    if tokio::time::Instant::now() + STARTUP_RETRY < deadline =>
                {
                    if !warned {
                        tracing::warn!(%error, wait = ?options.startup_wait, "etcd does not serve yet; waiting");
                        warned = true;
                    }
                    tokio::time::sleep(STARTUP_RETRY).await;
                }
                Err(error) => return Err(error),
            }
        }
        if warned {
            tracing::info!("etcd serves");
        }
        Ok(store)
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.root.len() + key.len());
        full.extend_from_slice(self.root.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// A range read, sent to another member when one cannot serve it.
    async fn get_raw(
        &self,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse, etcd_client::Error> {
        self.members
            .call(reads, |client| {
                let (key, options) = (key.clone(), options.clone());
                async move { kv(&client).get(key, Some(options)).await }
            })
            .await
    }

    /// After a put whose outcome is unknown: `Some` when the key holds what it wrote (the
    /// write was applied), `None` when the put's condition still holds (it was not: try
    /// again), a refused condition otherwise.
    async fn settle_put(
        &self,
        key: &str,
        value: &Bytes,
        condition: Condition,
    ) -> Result<Option<KeyValue>> {
        let current = self.get(key, None).await?.kv;
        let applied = current.as_ref().filter(|kv| {
            kv.value == *value
                && match condition {
                    Condition::ModRevision(expected) => kv.mod_revision != expected,
                    _ => true,
                }
        });
        if let Some(kv) = applied {
            return Ok(Some(kv.clone()));
        }
        let holds = match condition {
            Condition::Always => true,
            Condition::Absent => current.is_none(),
            Condition::ModRevision(expected) => current
                .as_ref()
                .is_some_and(|kv| kv.mod_revision == expected),
        };
        if holds {
            Ok(None)
        } else {
            Err(StoreError::PreconditionFailed {
                key: key.to_owned(),
                current: current.map(Box::new),
            })
        }
    }

    /// After a delete whose outcome is unknown: `Some` when its note is the newest on the
    /// key's note key (it was applied), `None` when its condition still holds (try again).
    async fn settle_delete(
        &self,
        key: &str,
        condition: Condition,
        noted: Option<&(String, Vec<u8>)>,
    ) -> Result<Option<Deleted>> {
        let current = self.get(key, None).await?.kv;
        let holds = match condition {
            Condition::ModRevision(expected) => current
                .as_ref()
                .is_some_and(|kv| kv.mod_revision == expected),
            _ => current.is_some(),
        };
        if holds {
            return Ok(None);
        }
        if let Some((notes, sent)) = noted
            && let Some(note) = self.get(notes, None).await?.kv
            && note.value.as_ref() == sent.as_slice()
            && let Some(prev) = self.get(key, Some(note.mod_revision - 1)).await?.kv
        {
            return Ok(Some(Deleted {
                revision: note.mod_revision,
                prev,
            }));
        }
        Err(StoreError::Unavailable(format!(
            "etcd failed during the delete of {key}; whether it was applied is unknown"
        )))
    }

    /// A watch, started on another member when one cannot take it. (A member that fails
    /// later ends the stream with an error; the watcher starts again from where it was.)
    async fn watch_raw(
        &self,
        key: Vec<u8>,
        options: WatchOptions,
    ) -> Result<etcd_client::WatchStream, etcd_client::Error> {
        self.members
            .call(reads, |client| {
                let (key, options) = (key.clone(), options.clone());
                async move {
                    client
                        .watch_client()
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .watch(key, Some(options))
                        .await
                }
            })
            .await
    }

    /// A transaction, sent to another member when `retry` allows after a member failure.
    async fn txn_raw(
        &self,
        txn: Txn,
        retry: fn(Failure) -> bool,
    ) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
        self.members
            .call(retry, |client| {
                let txn = txn.clone();
                async move { kv(&client).txn(txn).await }
            })
            .await
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        convert_kv(&self.root, kv)
    }

    /// Maps an etcd error, resolving the compacted revision when that is the cause.
    async fn map_error(&self, e: etcd_client::Error, requested: Option<Revision>) -> StoreError {
        let message = e.to_string();
        if message.contains("required revision has been compacted") {
            let requested = requested.unwrap_or(0);
            let compacted = self.find_compacted().await.unwrap_or(requested + 1);
            return StoreError::Compacted {
                requested,
                compacted,
            };
        }
        if message.contains("required revision is a future revision") {
            let current = self.current_revision().await.unwrap_or(0);
            return StoreError::FutureRevision {
                requested: requested.unwrap_or(0),
                current,
            };
        }
        classify(e)
    }

    /// Finds the compacted revision: the lowest revision etcd can still read. etcd does not
    /// report it directly, so this bisects with cheap count-only reads.
    async fn find_compacted(&self) -> Result<Revision> {
        let current = self.current_revision().await?;
        let readable = |revision: Revision| async move {
            let options = GetOptions::new().with_count_only().with_revision(revision);
            match self.get_raw(self.full_key("/"), options).await {
                Ok(_) => Ok(true),
                Err(e) if e.to_string().contains("compacted") => Ok(false),
                Err(e) => Err(classify(e)),
            }
        };
        let mut low = self.compacted_hint.load(Ordering::Relaxed).max(1);
        if readable(low).await? {
            return Ok(if low == 1 { 0 } else { low });
        }
        // Invariant: `low` is not readable, `high` is.
        let mut high = current;
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if readable(middle).await? {
                high = middle;
            } else {
                low = middle;
            }
        }
        self.compacted_hint.fetch_max(high, Ordering::Relaxed);
        Ok(high)
    }
}

impl EtcdStore {
    /// Reads up to [`MAX_TXN_OPS`] keys in one transaction; returns them with its revision.
    async fn get_in_txn(
        &self,
        keys: &[String],
        revision: Option<Revision>,
    ) -> Result<(Vec<Option<KeyValue>>, Revision)> {
        let ops = keys
            .iter()
            .map(|key| {
                let options = revision.map(|r| GetOptions::new().with_revision(r));
                TxnOp::get(self.full_key(key), options)
            })
            .collect::<Vec<_>>();
        let response = match self.txn_raw(Txn::new().and_then(ops), reads).await {
            Ok(response) => response,
            Err(e) => return Err(self.map_error(e, revision).await),
        };
        let at = match revision {
            Some(revision) => revision,
            None => header_revision(response.header())?,
        };
        let responses = response.op_responses();
        if responses.len() != keys.len() {
            return Err(StoreError::Backend(format!(
                "etcd answered {} of {} reads in a transaction",
                responses.len(),
                keys.len()
            )));
        }
        let kvs = responses
            .into_iter()
            .map(|response| match response {
                TxnOpResponse::Get(get) => Ok(get.kvs().first().map(|kv| self.convert(kv))),
                _ => Err(StoreError::Backend(
                    "etcd answered a read in a transaction with another operation".into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((kvs, at))
    }
}

fn kv(client: &Client) -> etcd_client::KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// Errors that are not about revisions: connection trouble is `Unavailable`, size limits are
/// `ValueTooLarge`, the rest is a backend failure.
fn classify(e: etcd_client::Error) -> StoreError {
    match &e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            StoreError::Unavailable(format!("etcd: {e}"))
        }
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                StoreError::Unavailable(format!("etcd: {}", status.message()))
            }
            _ if status.message().contains("request is too large") => StoreError::ValueTooLarge {
                key: String::new(),
                size: 0,
                limit: crate::MAX_VALUE_BYTES,
            },
            _ => StoreError::Backend(format!("etcd: {}", status.message())),
        },
        _ => StoreError::Backend(format!("etcd: {e}")),
    }
}

fn convert_kv(root: &str, kv: &etcd_client::KeyValue) -> KeyValue {
    let key = kv.key().strip_prefix(root.as_bytes()).unwrap_or(kv.key());
    KeyValue {
        key: String::from_utf8_lossy(key).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Backend("etcd answered without a response header".into()))
}

/// The key's state from the `get` a failed transaction ran in its else branch.
fn failed_compare(root: &str, key: &str, responses: Vec<TxnOpResponse>) -> StoreError {
    let current = responses.into_iter().find_map(|response| match response {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| Box::new(convert_kv(root, kv))),
        _ => None,
    });
    StoreError::PreconditionFailed {
        key: key.to_owned(),
        current,
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .get_raw(self.full_key("/"), GetOptions::new().with_count_only())
            .await
            .map_err(classify)?;
        header_revision(response.header())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.find_compacted().await
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResponse> {
        check_key(key)?;
        let mut options = GetOptions::new();
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = match self.get_raw(self.full_key(key), options).await {
            Ok(response) => response,
            Err(e) => return Err(self.map_error(e, revision).await),
        };
        let at = match revision {
            Some(revision) => revision,
            None => header_revision(response.header())?,
        };
        Ok(GetResponse {
            kv: response.kvs().first().map(|kv| self.convert(kv)),
            revision: at,
        })
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        let limit = effective_limit(request.limit);
        let start = crate::keys::range_start(&request.prefix, request.from_key.as_deref());
        let full_prefix = self.full_key(&request.prefix);
        let end = prefix_end(&full_prefix).unwrap_or_else(|| vec![0]);
        let mut options = GetOptions::new().with_range(end).with_limit(limit as i64);
        if let Some(revision) = request.revision {
            options = options.with_revision(revision);
        }
        let response = match self.get_raw(self.full_key(start), options).await {
            Ok(response) => response,
            Err(e) => return Err(self.map_error(e, request.revision).await),
        };
        let at = match request.revision {
            Some(revision) => revision,
            None => header_revision(response.header())?,
        };
        Ok(RangeResponse {
            kvs: response.kvs().iter().map(|kv| self.convert(kv)).collect(),
            more: response.more(),
            count: request.count.then_some(response.count() as u64),
            revision: at,
        })
    }

    /// Transactions of up to [`MAX_TXN_OPS`] gets: each is atomic, and all after the first
    /// read at the first one's revision.
    async fn get_many(
        &self,
        keys: &[String],
        revision: Option<Revision>,
    ) -> Result<GetManyResponse> {
        check_get_many(keys)?;
        let mut chunks = keys.chunks(MAX_TXN_OPS);
        let Some(first) = chunks.next() else {
            let revision = match revision {
                Some(revision) => revision,
                None => self.current_revision().await?,
            };
            return Ok(GetManyResponse {
                kvs: Vec::new(),
                revision,
            });
        };
        let (mut kvs, at) = self.get_in_txn(first, revision).await?;
        let rest =
            futures::future::try_join_all(chunks.map(|chunk| self.get_in_txn(chunk, Some(at))))
                .await?;
        for (chunk, _) in rest {
            kvs.extend(chunk);
        }
        Ok(GetManyResponse { kvs, revision: at })
    }

    /// The keys put in `(after, until]` that exist at `until`: a keys-only range at `until`
    /// filtered by `mod_revision > after`. A range cannot see deleted keys, so with
    /// `with_deleted` this answers `None`. (etcd filters by revision after reading the whole
    /// range, so this costs the server a pass over the prefix's keys, but sends only keys.)
    async fn changed_keys(
        &self,
        prefix: &str,
        after: Revision,
        until: Revision,
        with_deleted: bool,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        check_changed_range(after, until)?;
        if with_deleted {
            return Ok(None);
        }
        if after == until {
            return Ok(Some(Vec::new()));
        }
        let full_prefix = self.full_key(prefix);
        let end = prefix_end(&full_prefix).unwrap_or_else(|| vec![0]);
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let options = GetOptions::new()
            .with_range(end)
            .with_keys_only()
            .with_min_mod_revision(after + 1)
            .with_revision(until)
            .with_limit(fetch);
        let response = match self.get_raw(full_prefix, options).await {
            Ok(response) => response,
            Err(e) => {
                return match self.map_error(e, Some(until)).await {
                    StoreError::Compacted { .. } => Ok(None),
                    other => Err(other),
                };
            }
        };
        if response.more() || response.kvs().len() > limit {
            return Ok(None);
        }
        Ok(Some(
            response
                .kvs()
                .iter()
                .map(|kv| self.convert(kv).key)
                .collect(),
        ))
    }

    async fn put_noted(
        &self,
        key: &str,
        value: Bytes,
        condition: Condition,
        note: Bytes,
    ) -> Result<KeyValue> {
        check_key(key)?;
        check_value(key, &value)?;
        check_note(&note)?;
        let full = self.full_key(key);
        let note_op =
            notes_key(key).map(|k| TxnOp::put(self.full_key(&k), encode_note(&note), None));
        let put = || {
            let mut ops = vec![TxnOp::put(
                full.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )];
            ops.extend(note_op.clone());
            ops
        };
        let compare = match condition {
            Condition::Always => None,
            Condition::Absent => Some(Compare::create_revision(full.clone(), CompareOp::Equal, 0)),
            Condition::ModRevision(revision) => Some(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                revision,
            )),
        };
        let txn = match compare {
            None => Txn::new().and_then(put()),
            Some(compare) => Txn::new()
                .when(vec![compare])
                .and_then(put())
                .or_else(vec![TxnOp::get(full.clone(), None)]),
        };
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            match self.txn_raw(txn.clone(), unsent).await {
                Ok(response) => break response,
                Err(e) if failure(&e) == Failure::Unknown && attempts < WRITE_ATTEMPTS => {
                    // The write may or may not have been applied: what the key holds says.
                    if let Some(kv) = self.settle_put(key, &value, condition).await? {
                        return Ok(kv);
                    }
                }
                Err(e) => {
                    return Err(match classify(e) {
                        StoreError::ValueTooLarge { limit, .. } => StoreError::ValueTooLarge {
                            key: key.to_owned(),
                            size: value.len(),
                            limit,
                        },
                        other => other,
                    });
                }
            }
        };
        if !response.succeeded() {
            return Err(failed_compare(&self.root, key, response.op_responses()));
        }
        let revision = header_revision(response.header())?;
        let prev = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Put(put) => put.prev_key().map(|kv| self.convert(kv)),
            _ => None,
        });
        let (create_revision, version) = match prev {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (revision, 1),
        };
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
            version,
        })
    }

    async fn delete_noted(&self, key: &str, condition: Condition, note: Bytes) -> Result<Deleted> {
        check_key(key)?;
        check_note(&note)?;
        let full = self.full_key(key);
        let compare = match condition {
            Condition::Always => Compare::create_revision(full.clone(), CompareOp::Greater, 0),
            Condition::ModRevision(revision) => {
                Compare::mod_revision(full.clone(), CompareOp::Equal, revision)
            }
            Condition::Absent => {
                return Err(StoreError::InvalidArgument(
                    "a delete cannot require the key to be absent".into(),
                ));
            }
        };
        let mut ops = vec![TxnOp::delete(
            full.clone(),
            Some(DeleteOptions::new().with_prev_key()),
        )];
        let noted = notes_key(key).map(|notes| (notes, encode_note(&note)));
        if let Some((notes, value)) = &noted {
            ops.push(TxnOp::put(self.full_key(notes), value.clone(), None));
        }
        let txn = Txn::new()
            .when(vec![compare])
            .and_then(ops)
            .or_else(vec![TxnOp::get(full.clone(), None)]);
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            match self.txn_raw(txn.clone(), unsent).await {
                Ok(response) => break response,
                Err(e) if failure(&e) == Failure::Unknown && attempts < WRITE_ATTEMPTS => {
                    if let Some(deleted) =
                        self.settle_delete(key, condition, noted.as_ref()).await?
                    {
                        return Ok(deleted);
                    }
                }
                Err(e) => return Err(classify(e)),
            }
        };
        if !response.succeeded() {
            return Err(failed_compare(&self.root, key, response.op_responses()));
        }
        let revision = header_revision(response.header())?;
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(delete) => {
                    delete.prev_kvs().first().map(|kv| self.convert(kv))
                }
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::Backend("etcd deleted without returning the previous value".into())
            })?;
        Ok(Deleted { revision, prev })
    }

    /// One transaction: the key's state and its note key, with the change's own time.
    async fn import(&self, change: &crate::Change) -> Result<()> {
        check_key(&change.key)?;
        check_note(&change.version.note)?;
        let full = self.full_key(&change.key);
        let mut ops = vec![match &change.version.kv {
            Some(kv) => {
                check_value(&change.key, &kv.value)?;
                TxnOp::put(full, kv.value.to_vec(), None)
            }
            None => TxnOp::delete(full, None),
        }];
        if let Some(notes) = notes_key(&change.key) {
            let time = if change.version.time_millis > 0 {
                change.version.time_millis
            } else {
                crate::now_millis()
            };
            ops.push(TxnOp::put(
                self.full_key(&notes),
                encode_note_at(time, &change.version.note),
                None,
            ));
        }
        // An unconditional write may be sent again after an unknown outcome.
        self.txn_raw(Txn::new().and_then(ops), reads)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Walks back one version at a time: the key and its note key read together at a
    /// revision name the newest change at or below it, so each step is one transaction.
    async fn history(
        &self,
        key: &str,
        before: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<Version>> {
        check_key(key)?;
        let limit = history_limit(limit);
        let notes = notes_key(key);
        let mut keys = vec![key.to_owned()];
        keys.extend(notes);
        let mut versions = Vec::new();
        let mut bytes = 0usize;
        let mut at: Option<Revision> = match before {
            Some(before) if before <= 1 => return Ok(versions),
            Some(before) => Some(before - 1),
            None => None,
        };
        while versions.len() < limit && bytes < crate::MAX_HISTORY_BYTES {
            let read = match self.get_in_txn(&keys, at).await {
                Ok((kvs, _)) => kvs,
                Err(StoreError::Compacted { .. }) => break,
                Err(e) => return Err(e),
            };
            let state = read.first().cloned().flatten();
            let noted = read.get(1).cloned().flatten();
            let Some(revision) = [&state, &noted]
                .iter()
                .filter_map(|kv| kv.as_ref().map(|kv| kv.mod_revision))
                .max()
            else {
                break;
            };
            let (time_millis, note) = noted
                .filter(|n| n.mod_revision == revision)
                .map_or((0, Bytes::new()), |n| decode_note(&n.value));
            let kv = state.filter(|kv| kv.mod_revision == revision);
            bytes += kv.as_ref().map_or(0, |kv| kv.value.len());
            versions.push(Version {
                revision,
                time_millis,
                kv,
                note,
            });
            if revision <= 1 {
                break;
            }
            at = Some(revision - 1);
        }
        Ok(versions)
    }

    /// The revision clock that retention keeps brackets the instant (an entry at or before
    /// it, and the next one); the notes written in between, replayed by a watch, give each
    /// change's time.
    async fn revision_at(&self, time_millis: i64) -> Result<Revision> {
        let clock = crate::retention::read_clock(self).await?;
        let compacted = self.find_compacted().await?;
        let time = u128::try_from(time_millis).unwrap_or(0);
        let from = match clock.iter().rev().find(|entry| entry.millis <= time) {
            Some(entry) => entry.revision.max(compacted),
            None if compacted > 0 => {
                return Err(StoreError::Compacted {
                    requested: compacted - 1,
                    compacted,
                });
            }
            None => 0,
        };
        let until = match clock.iter().find(|entry| entry.millis > time) {
            Some(entry) => entry.revision,
            None => self.current_revision().await?,
        };
        // The newest note at or below `until`: the replay below stops there at the latest.
        let full_prefix = self.full_key(&format!("{NOTES_PREFIX}/"));
        let end = prefix_end(&full_prefix).unwrap_or_else(|| vec![0]);
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_revision(until)
            .with_min_mod_revision(from + 1)
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_limit(1)
            .with_keys_only();
        let newest = match self.get_raw(full_prefix.clone(), options).await {
            Ok(response) => response.kvs().first().map(|kv| kv.mod_revision()),
            Err(e) => return Err(self.map_error(e, Some(until)).await),
        };
        let Some(last_note) = newest else {
            return Ok(from);
        };
        let mut found = from;
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(from + 1);
        let mut stream = self
            .watch_raw(full_prefix, options)
            .await
            .map_err(classify)?;
        'replay: while let Some(response) = tokio::time::timeout(REQUEST_TIMEOUT, stream.message())
            .await
            .map_err(|_| {
                StoreError::Unavailable("etcd did not replay the change notes in time".into())
            })?
            .map_err(classify)?
        {
            if response.compact_revision() > 0 {
                return Err(StoreError::Compacted {
                    requested: from,
                    compacted: response.compact_revision(),
                });
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let (time, _) = decode_note(&Bytes::copy_from_slice(kv.value()));
                if time > time_millis || kv.mod_revision() > until {
                    break 'replay;
                }
                found = kv.mod_revision();
                if found >= last_note {
                    break 'replay;
                }
            }
        }
        Ok(found)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        if after < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "cannot watch after negative revision {after}"
            )));
        }
        // A read at `after` fails exactly when a watch from `after + 1` would be compacted,
        // and answers now rather than from inside the stream.
        if after > 0 {
            let current = self.current_revision().await?;
            if after < current {
                let options = GetOptions::new().with_count_only().with_revision(after);
                if let Err(e) = self.get_raw(self.full_key("/"), options).await {
                    return Err(self.map_error(e, Some(after)).await);
                }
            }
        }
        let full_prefix = self.full_key(prefix);
        let end = prefix_end(&full_prefix).unwrap_or_else(|| vec![0]);
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after + 1)
            .with_prev_key();
        let watch = self
            .watch_raw(full_prefix, options)
            .await
            .map_err(classify)?;
        let state = EtcdWatch {
            watch,
            root: self.root.clone(),
            pending: std::collections::VecDeque::new(),
            position: self.positions.register(after),
            seen: after,
            finished: false,
        };
        Ok(Box::pin(stream::unfold(state, next_etcd_event)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let options = etcd_client::CompactionOptions::new().with_physical();
        let compacted = self
            .members
            .call(reads, |client| {
                let options = options.clone();
                async move { kv(&client).compact(revision, Some(options)).await }
            })
            .await;
        match compacted {
            Ok(_) => {
                self.compacted_hint.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            // Already compacted at or past `revision`: nothing to do.
            Err(e)
                if e.to_string()
                    .contains("required revision has been compacted") =>
            {
                Ok(())
            }
            Err(e) => Err(self.map_error(e, Some(revision)).await),
        }
    }

    fn oldest_watch_position(&self) -> Option<Revision> {
        self.positions.oldest()
    }
}

struct EtcdWatch {
    watch: etcd_client::WatchStream,
    root: String,
    pending: std::collections::VecDeque<Event>,
    position: Arc<AtomicI64>,
    seen: Revision,
    finished: bool,
}

async fn next_etcd_event(mut state: EtcdWatch) -> Option<(Result<Event>, EtcdWatch)> {
    loop {
        if state.finished {
            return None;
        }
        if let Some(event) = state.pending.pop_front() {
            state.seen = event.revision();
            advance(&state.position, state.seen);
            return Some((Ok(event), state));
        }
        let response = match state.watch.message().await {
            Ok(Some(response)) => response,
            Ok(None) => {
                state.finished = true;
                return Some((
                    Err(StoreError::Unavailable(
                        "etcd closed the watch stream".into(),
                    )),
                    state,
                ));
            }
            Err(e) => {
                state.finished = true;
                return Some((Err(classify(e)), state));
            }
        };
        if response.compact_revision() > 0 {
            state.finished = true;
            let error = StoreError::Compacted {
                requested: state.seen,
                compacted: response.compact_revision(),
            };
            return Some((Err(error), state));
        }
        if response.canceled() {
            state.finished = true;
            let reason = response.cancel_reason().to_owned();
            return Some((
                Err(StoreError::Unavailable(format!(
                    "etcd cancelled the watch: {reason}"
                ))),
                state,
            ));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let prev = event.prev_kv().map(|p| convert_kv(&state.root, p));
            let converted = match event.event_type() {
                EventType::Put => Event {
                    kind: EventKind::Put,
                    kv: convert_kv(&state.root, kv),
                    prev,
                },
                EventType::Delete => {
                    let mut kv = convert_kv(&state.root, kv);
                    kv.value = Bytes::new();
                    kv.create_revision = 0;
                    kv.version = 0;
                    Event {
                        kind: EventKind::Delete,
                        kv,
                        prev,
                    }
                }
            };
            state.pending.push_back(converted);
        }
    }
}
