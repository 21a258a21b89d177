//! Logins and sessions of the web UI, kept in this replica's memory (a restart logs
//! everyone out; behind a load balancer, sessions need stickiness — docs/ui.md).
//!
//! `fleetdb ui-login` asks the API, as the identity of a kubeconfig, for a one-time login
//! token; opening `/ui/login?token=…` within [`LOGIN_TOKEN_LIFETIME`] trades it for a session
//! of that identity (an HTTP-only, `Secure`, `SameSite=Strict` cookie) that lasts the
//! configured lifetime. Every token is 256 random bits; each login token works once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use fleetdb_apiserver::Identity;

/// How long a one-time login URL stays valid.
pub const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How long a session lasts unless `--ui-session-lifetime` says otherwise.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Most login tokens waiting to be used at once.
pub const MAX_PENDING_LOGINS: usize = 1024;
/// Most login tokens of one user waiting at once (a new one replaces their oldest).
pub const MAX_PENDING_LOGINS_PER_USER: usize = 4;
/// Most sessions at once (past it, the one closest to its end makes room).
pub const MAX_SESSIONS: usize = 10_000;
/// Most sessions of one user at once (a new one ends their oldest).
pub const MAX_SESSIONS_PER_USER: usize = 16;
/// Shortest and longest session lifetime `--ui-session-lifetime` accepts.
pub const SESSION_LIFETIME_RANGE: (Duration, Duration) = (
    Duration::from_secs(1),
    Duration::from_secs(30 * 24 * 60 * 60),
);
/// The session cookie's name.
pub const COOKIE: &str = "fleetdb-ui-session";

/// One session.
#[derive(Clone)]
pub struct Session {
    pub identity: Identity,
    /// Sent back with every form, so that another site cannot make the browser act.
    pub csrf: String,
    pub expires: Instant,
}

struct Waiting {
    identity: Identity,
    expires: Instant,
}

/// The login tokens and sessions of this replica.
pub struct Sessions {
    lifetime: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    logins: HashMap<String, Waiting>,
    sessions: HashMap<String, Session>,
}

/// Of one user's entries (with when each ends), those that must go so that one more fits
/// within `share`: the ones ending first.
fn oldest_past(mut entries: Vec<(Instant, String)>, share: usize) -> Vec<String> {
    entries.sort();
    let surplus = (entries.len() + 1).saturating_sub(share);
    entries
        .into_iter()
        .take(surplus)
        .map(|(_, key)| key)
        .collect()
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            state: Mutex::new(State::default()),
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A one-time login token for `identity`; `None` when too many wait.
    pub fn login_token(&self, identity: Identity) -> Option<String> {
        let mut state = self.state();
        let now = Instant::now();
        state.logins.retain(|_, w| w.expires > now);
        let own = state
            .logins
            .iter()
            .filter(|(_, w)| w.identity.user == identity.user)
            .map(|(key, w)| (w.expires, key.clone()))
            .collect::<Vec<_>>();
        for key in oldest_past(own, MAX_PENDING_LOGINS_PER_USER) {
            state.logins.remove(&key);
        }
        if state.logins.len() >= MAX_PENDING_LOGINS {
            return None;
        }
        let token = random_token();
        state.logins.insert(
            token.clone(),
            Waiting {
                identity,
                expires: now + LOGIN_TOKEN_LIFETIME,
            },
        );
        Some(token)
    }

    /// Who a login token would log in as, if it is still good.
    pub fn waiting_user(&self, token: &str) -> Option<String> {
        let state = self.state();
        state
            .logins
            .get(token)
            .filter(|w| w.expires > Instant::now())
            .map(|w| w.identity.user.clone())
    }

    /// Trades a login token (once, before it expires) for a new session: its id and it. The
    /// session lasts the configured lifetime, or until the identity's certificate expires
    /// if sooner (none when it already has).
    pub fn log_in(&self, token: &str) -> Option<(String, Session)> {
        let mut state = self.state();
        let now = Instant::now();
        let waiting = state.logins.remove(token).filter(|w| w.expires > now)?;
        // A session ends with the certificate it came from, if that is sooner (and none
        // starts from an expired one: decided before any other session makes room).
        let lifetime = match &waiting.identity.credential {
            Some(credential) => {
                let left = credential.expires_at - time::OffsetDateTime::now_utc().unix_timestamp();
                let left = Duration::from_secs(u64::try_from(left).ok().filter(|s| *s > 0)?);
                self.lifetime.min(left)
            }
            None => self.lifetime,
        };
        state.sessions.retain(|_, s| s.expires > now);
        // Room: the user's oldest sessions past their share, then whichever ends first.
        let own = state
            .sessions
            .iter()
            .filter(|(_, s)| s.identity.user == waiting.identity.user)
            .map(|(key, s)| (s.expires, key.clone()))
            .collect::<Vec<_>>();
        for key in oldest_past(own, MAX_SESSIONS_PER_USER) {
            state.sessions.remove(&key);
        }
        if state.sessions.len() >= MAX_SESSIONS
            && let Some(first) = state
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            state.sessions.remove(&first);
        }
        let session = Session {
            identity: waiting.identity,
            csrf: random_token(),
            expires: now + lifetime,
        };
        let id = random_token();
        state.sessions.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// The session with this id, unless it ended or expired.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut state = self.state();
        match state.sessions.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                state.sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout).
    pub fn end(&self, id: &str) {
        self.state().sessions.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_works_once_and_sessions_expire() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let token = sessions
            .login_token(Identity::new("alice", &["team-a"]))
            .unwrap();
        let (id, session) = sessions.log_in(&token).unwrap();
        assert_eq!(session.identity.user, "alice");
        assert!(sessions.log_in(&token).is_none(), "a token works once");
        assert!(sessions.log_in("made-up").is_none());
        assert_eq!(sessions.get(&id).unwrap().csrf, session.csrf);
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&id).is_none(), "expired");

        let token = sessions.login_token(Identity::new("bob", &[])).unwrap();
        let (id, _) = sessions.log_in(&token).unwrap();
        sessions.end(&id);
        assert!(sessions.get(&id).is_none(), "logged out");
    }

    #[test]
    fn a_session_ends_with_its_certificate() {
        let sessions = Sessions::new(DEFAULT_SESSION_LIFETIME);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let of_certificate = |expires_at: i64| {
            let mut identity = Identity::new("carol", &[]);
            identity.credential = Some(fleetdb_apiserver::api::identity::Credential {
                serial: "01".into(),
                issued_at: now - 60,
                expires_at,
            });
            identity
        };
        let token = sessions.login_token(of_certificate(now + 600)).unwrap();
        let (_, session) = sessions.log_in(&token).unwrap();
        let left = session.expires - Instant::now();
        assert!(
            left <= Duration::from_secs(600) && left > Duration::from_secs(590),
            "{left:?}"
        );
        let token = sessions.login_token(of_certificate(now + 86_400)).unwrap();
        let (_, session) = sessions.log_in(&token).unwrap();
        assert!(
            session.expires - Instant::now() > DEFAULT_SESSION_LIFETIME - Duration::from_secs(5)
        );
        let token = sessions.login_token(of_certificate(now - 1)).unwrap();
        assert!(
            sessions.log_in(&token).is_none(),
            "an expired certificate logs in nobody"
        );
    }

    #[test]
    fn logins_and_sessions_are_bounded_per_user_and_in_all() {
        let sessions = Sessions::new(DEFAULT_SESSION_LIFETIME);
        // One user cannot fill the waiting room: their oldest token makes way.
        let first = sessions.login_token(Identity::new("x", &[])).unwrap();
        for _ in 0..MAX_PENDING_LOGINS {
            assert!(sessions.login_token(Identity::new("x", &[])).is_some());
        }
        assert!(sessions.log_in(&first).is_none(), "replaced by newer ones");
        for i in 0..MAX_PENDING_LOGINS {
            let _ = sessions.login_token(Identity::new(format!("user-{i}"), &[]));
        }
        assert!(sessions.login_token(Identity::new("late", &[])).is_none());

        let sessions = Sessions::new(DEFAULT_SESSION_LIFETIME);
        let mut ids = Vec::new();
        for _ in 0..MAX_SESSIONS_PER_USER + 2 {
            let token = sessions.login_token(Identity::new("y", &[])).unwrap();
            ids.push(sessions.log_in(&token).unwrap().0);
        }
        assert!(sessions.get(&ids[0]).is_none(), "the oldest made room");
        assert!(sessions.get(&ids[1]).is_none());
        assert!(ids[2..].iter().all(|id| sessions.get(id).is_some()));
    }
}
