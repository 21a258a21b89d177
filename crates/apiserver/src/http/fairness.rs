//! A simple fairness limit: how many requests (and watches) one identity may have at once,
//! so that one client cannot starve the others. Past the limit the answer is `429` with
//! `Retry-After`, as kube-apiserver's priority and fairness answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::ApiError;

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

    /// Takes one of `user`'s slots, or `429` when they are all taken.
    pub fn acquire(&self, user: &str, what: &str) -> Result<Slot, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_user_and_given_back() {
        let limit = PerUser::new(2);
        let a1 = limit.acquire("a", "requests").unwrap();
        let _a2 = limit.acquire("a", "requests").unwrap();
        let refused = limit.acquire("a", "requests").err().unwrap();
        assert_eq!((refused.code, refused.reason), (429, "TooManyRequests"));
        let _b = limit.acquire("b", "requests").unwrap();
        drop(a1);
        assert_eq!(limit.held("a"), 1);
        let _a3 = limit.acquire("a", "requests").unwrap();
    }
}
