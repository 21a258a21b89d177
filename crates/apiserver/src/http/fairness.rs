//! A simple fairness limit: how many requests (and watches) one identity may have at once,
//! so that one client cannot starve the others. Past the limit the answer is `429` with
//! `Retry-After`, as kube-apiserver's priority and fairness answers. Members of
//! `system:masters` are exempt, as they are from kube-apiserver's priority and fairness (its
//! `exempt` priority level): they can do anything anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::{ApiError, Identity};

/// The group whose members no fairness limit applies to.
pub const EXEMPT_GROUP: &str = "system:masters";

/// Counts per user name, each bounded.
pub struct PerUser {
    limit: usize,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One counted slot; given back when dropped.
pub struct Slot {
    user: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl PerUser {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: Arc::default(),
        }
    }

    /// Takes one of the identity's slots, or `429` when they are all taken; `None` for
    /// exempt identities (nothing to count).
    pub fn acquire(&self, identity: &Identity, what: &str) -> Result<Option<Slot>, ApiError> {
        if identity.groups.iter().any(|g| g == EXEMPT_GROUP) {
            return Ok(None);
        }
        self.acquire_for(&identity.user, what).map(Some)
    }

    /// Takes one of `user`'s slots, or `429` when they are all taken.
    fn acquire_for(&self, user: &str, what: &str) -> Result<Slot, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(user.to_owned()).or_default();
        if *count >= self.limit {
            return Err(ApiError::too_many_requests(format!(
                "too many {what} from user {user:?} at once (the limit is {}); please try again later",
                self.limit
            )));
        }
        *count += 1;
        Ok(Slot {
            user: user.to_owned(),
            counts: self.counts.clone(),
        })
    }

    /// The slots `user` holds now.
    #[cfg(test)]
    pub fn held(&self, user: &str) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

/// A token bucket per identity: how often one may start something (watches), with a burst.
pub struct RatePerUser {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

/// Buckets kept before idle ones (full again) are forgotten.
const MAX_TRACKED_BUCKETS: usize = 65_536;

impl RatePerUser {
    pub fn new(per_second: f64, burst: usize) -> Self {
        Self {
            per_second,
            burst: burst as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of the identity's bucket, or `429` when it is empty; exempt identities
    /// take none.
    pub fn take(&self, identity: &Identity, what: &str) -> Result<(), ApiError> {
        if identity.groups.iter().any(|g| g == EXEMPT_GROUP) {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_BUCKETS {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets
            .entry(identity.user.clone())
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens < 1.0 {
            return Err(ApiError::too_many_requests(format!(
                "user {:?} starts {what} too often (at most {} a second); please try again later",
                identity.user, self.per_second
            )));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_user_and_given_back() {
        let limit = PerUser::new(2);
        let a1 = limit.acquire_for("a", "requests").unwrap();
        let _a2 = limit.acquire_for("a", "requests").unwrap();
        let refused = limit.acquire_for("a", "requests").err().unwrap();
        assert_eq!((refused.code, refused.reason), (429, "TooManyRequests"));
        let _b = limit.acquire_for("b", "requests").unwrap();
        drop(a1);
        assert_eq!(limit.held("a"), 1);
        let _a3 = limit.acquire_for("a", "requests").unwrap();
        let master = Identity::system("admin");
        for _ in 0..10 {
            assert!(
                limit.acquire(&master, "requests").unwrap().is_none(),
                "exempt"
            );
        }
    }

    #[test]
    fn starts_are_rate_limited_with_a_burst() {
        let rate = RatePerUser::new(1.0, 3);
        let bob = Identity::new("bob", &[]);
        for _ in 0..3 {
            rate.take(&bob, "watches").unwrap();
        }
        assert_eq!(rate.take(&bob, "watches").unwrap_err().code, 429);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        rate.take(&bob, "watches").unwrap();
        for _ in 0..10 {
            rate.take(&Identity::system("admin"), "watches").unwrap();
        }
    }
}
