//! Who a request comes from: a user name and groups, as Kubernetes' `user.Info`. The http
//! layer authenticates (a client certificate's CN and O values); every layer below may read
//! it (authorization, admission, and the history of who changed what).

use std::collections::BTreeMap;

/// The certificate a request was authenticated by, as revocation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The certificate's serial number, lower-case hex without separators.
    pub serial: String,
    /// When it was issued (Unix seconds).
    pub issued_at: i64,
    /// When it stops being valid (Unix seconds: its `notAfter`). A connection is
    /// authenticated once, at its handshake; requests on it after this are refused, as
    /// kube-apiserver verifies the certificate on every request.
    pub expires_at: i64,
}

/// An authenticated (or anonymous) user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// `user.Info`'s uid (set by impersonation only).
    pub uid: String,
    /// `user.Info`'s extra values (set by impersonation only).
    pub extra: BTreeMap<String, Vec<String>>,
    /// The client certificate, when the identity came from one.
    pub credential: Option<Credential>,
    /// The user who authenticated, when this identity is one they impersonate.
    pub impersonator: Option<String>,
}

/// The group of the server's administrators, allowed everything.
pub const MASTERS_GROUP: &str = "system:masters";
/// The group every authenticated identity is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

impl Identity {
    /// A user with these groups and nothing else.
    pub fn new(user: impl Into<String>, groups: &[&str]) -> Self {
        Self {
            user: user.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// The user of requests that presented no credentials.
    pub fn anonymous() -> Self {
        Self::new("system:anonymous", &["system:unauthenticated"])
    }

    /// An identity of the server itself (its controllers, start-up work), in
    /// `system:masters`.
    pub fn system(user: &str) -> Self {
        Self::new(user, &[MASTERS_GROUP, AUTHENTICATED_GROUP])
    }

    pub fn is_anonymous(&self) -> bool {
        self.user == "system:anonymous"
    }

    /// Whether the identity is in `system:masters` (exempt from per-user limits, allowed to
    /// grant anything).
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS_GROUP)
    }
}

pub use crate::pki::{normalize_serial, serial_hex};
