//! One client per etcd member, and failover between them.
//!
//! etcd-client's own balancing spreads requests over every endpoint and hands back the
//! failure of whichever it picked, so with one member down about half of all requests failed
//! although a quorum was serving. Here each member has its own client; a request goes to the
//! member that answered last and, when that member cannot serve it (connection refused or
//! broken, no leader, timed out), to the next one, for up to [`FAILOVER_WINDOW`] with a short
//! pause once every member was tried (an election takes about a second). A member that fails
//! is tried last for [`MEMBER_BACKOFF`], and its failures are logged at most once per
//! [`LOG_EVERY`].
//!
//! When a request has tried for a whole window without any member answering (quorum lost,
//! every member down), the members are taken as down: later requests try each member once
//! and fail at once instead of each waiting out the window, until a member answers again
//! (readiness keeps asking, so recovery is noticed without traffic).
//!
//! Reads are retried freely. Writes are retried where the failure says the write never
//! reached a leader (no connection, no leader); after any other failure its outcome is
//! unknown, so the write's caller settles it by reading (see `EtcdStore::put_noted`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::Client;

/// How long a request keeps trying other members before it fails as unavailable.
pub const FAILOVER_WINDOW: Duration = Duration::from_secs(8);
/// How long a member that failed is tried after the others.
pub const MEMBER_BACKOFF: Duration = Duration::from_secs(2);
/// The pause after every member failed once, before trying them again.
const ROUND_PAUSE: Duration = Duration::from_millis(100);
/// Longest one member may take to answer one request before the next member is tried (a
/// member cut off from its peers may hold a request until etcd's own timeout). Long enough
/// for the largest range page.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one log line per member per this long.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Member {
    pub endpoint: String,
    pub client: Client,
    failed_at: Mutex<Option<Instant>>,
    logged_at: Mutex<Option<Instant>>,
}

impl Member {
    pub fn new(endpoint: String, client: Client) -> Self {
        Self {
            endpoint,
            client,
            failed_at: Mutex::new(None),
            logged_at: Mutex::new(None),
        }
    }

    fn backing_off(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < MEMBER_BACKOFF)
    }

    fn failed(&self, error: &etcd_client::Error) {
        *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let mut logged = self.logged_at.lock().unwrap_or_else(|e| e.into_inner());
        if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            *logged = Some(Instant::now());
            tracing::warn!(member = %self.endpoint, reason = %error, "etcd member cannot serve; using the others");
        }
    }

    fn answered(&self) {
        let mut failed = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if failed.take().is_some() {
            tracing::info!(member = %self.endpoint, "etcd member serves again");
        }
    }
}

/// What a failure means for trying again elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// Not about a member (a refused compare, a compacted revision, a bad request).
    Answer,
    /// The member could not take the request at all: it never reached a leader.
    NotSent,
    /// The member failed after taking it: a write's outcome is unknown.
    Unknown,
}

pub(super) fn failure(error: &etcd_client::Error) -> Failure {
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => Failure::NotSent,
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            let not_sent = [
                "connect error",
                "Connection refused",
                "connection refused",
                "no leader",
                "not capable",
                "dns error",
            ];
            match status.code() {
                tonic::Code::Unavailable if not_sent.iter().any(|m| message.contains(m)) => {
                    Failure::NotSent
                }
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
                | tonic::Code::Unknown => Failure::Unknown,
                _ if message.contains("leader changed") || message.contains("timed out") => {
                    Failure::Unknown
                }
                _ => Failure::Answer,
            }
        }
        _ => Failure::Answer,
    }
}

/// The members, which one answered last, and whether none could serve.
pub(super) struct Members {
    pub list: Vec<Member>,
    preferred: AtomicUsize,
    /// Set when a request spent [`FAILOVER_WINDOW`] without an answer; cleared by the next
    /// answer from any member.
    down: AtomicBool,
}

impl Members {
    pub fn new(list: Vec<Member>) -> Self {
        Self {
            list,
            preferred: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// No member could serve the last request that tried them all for a window.
    fn down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// A member answered: the members are not down (any more).
    fn serving(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("an etcd member serves again");
        }
    }

    /// The members in the order to try them: the one that answered last, then the others
    /// (those that failed recently after the rest).
    fn order(&self) -> Vec<usize> {
        let n = self.list.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        order.sort_by_key(|i| self.list[*i].backing_off());
        order
    }

    /// Runs `call` on the members in turn until one answers. A failure of the kind `retry`
    /// allows moves on to the next member (after a pause once all were tried), until
    /// [`FAILOVER_WINDOW`] — or for one round only while the members are down; any other
    /// failure is the answer.
    pub async fn call<T, F, Fut>(
        &self,
        retry: fn(Failure) -> bool,
        mut call: F,
    ) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let was_down = self.down();
        let deadline = Instant::now() + FAILOVER_WINDOW;
        loop {
            let mut last = None;
            for i in self.order() {
                let member = &self.list[i];
                let answer = match tokio::time::timeout(
                    ATTEMPT_TIMEOUT,
                    call(member.client.clone()),
                )
                .await
                {
                    Ok(answer) => answer,
                    // Its outcome is unknown, like any failure after sending.
                    Err(_) => Err(etcd_client::Error::GRpcStatus(
                        tonic::Status::deadline_exceeded(format!(
                            "no answer within {ATTEMPT_TIMEOUT:?}"
                        )),
                    )),
                };
                match answer {
                    Ok(answer) => {
                        member.answered();
                        self.preferred.store(i, Ordering::Relaxed);
                        self.serving();
                        return Ok(answer);
                    }
                    Err(error) => {
                        let kind = failure(&error);
                        if kind == Failure::Answer {
                            self.serving();
                            return Err(error);
                        }
                        member.failed(&error);
                        if !retry(kind) {
                            return Err(error);
                        }
                        if !was_down && Instant::now() >= deadline {
                            if !self.down.swap(true, Ordering::Relaxed) {
                                tracing::error!(
                                    window = ?FAILOVER_WINDOW,
                                    "no etcd member could serve; failing requests at once until one answers"
                                );
                            }
                            return Err(error);
                        }
                        last = Some(error);
                    }
                }
            }
            // While the members are down, one round is all a request gets.
            if let (true, Some(error)) = (was_down, last) {
                return Err(error);
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }
}

/// Reads may be sent again after any member failure.
pub(super) fn reads(failure: Failure) -> bool {
    failure != Failure::Answer
}

/// Writes only when they never reached a leader.
pub(super) fn unsent(failure: Failure) -> bool {
    failure == Failure::NotSent
}
