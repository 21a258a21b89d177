//! Who a request comes from: a user name and groups, as Kubernetes' `user.Info`. The http
//! layer authenticates (a client certificate's CN and O values); every layer below may read
//! it (authorization, admission, and the history of who changed what).

/// An authenticated (or anonymous) user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// The user of requests that presented no credentials.
    pub fn anonymous() -> Self {
        Self {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// An identity of the server itself (its controllers, start-up work), in
    /// `system:masters`.
    pub fn system(user: &str) -> Self {
        Self {
            user: user.into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.user == "system:anonymous"
    }
}
