//! The web UI, served by `fleetdb serve` under `/ui` (docs/ui.md): server-rendered HTML
//! (maud) with one small script for keyboard navigation and live rows, every asset compiled
//! into the binary.
//!
//! Who may see and do what is the API's business, not the UI's: a session is an identity
//! the API authenticated (`fleetdb ui-login`, [`sessions`]); objects are read and changed by
//! API requests made as that identity — authorized, admitted and audited like kubectl's —
//! and the few views the API has no query for (free text and sorting over every host, the
//! overview's counts, live rows: [`index`]) are shown only to identities the authorizer
//! lets `list` (and `watch`) hosts.

pub mod index;
mod pages;
pub mod sessions;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetdb_apiserver::http::webapp::{Body, WebApp, WebContext, body_bytes};
use fleetdb_apiserver::pipeline::Attributes;
use fleetdb_apiserver::{ApiError, Identity};
use fleetdb_fleet::{GROUP, VERSION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use index::Indexes;
use sessions::{COOKIE, Session, Sessions};

/// Where the UI is served.
pub const PREFIX: &str = "/ui";
/// Where `fleetdb ui-login` asks for a one-time login (a non-resource path for RBAC).
pub const LOGIN_TOKENS_PATH: &str = "/ui/login-tokens";
/// The field manager of the UI's writes.
pub const FIELD_MANAGER: &str = "fleetdb-ui";
/// Largest form a browser may post.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Largest API answer a page reads.
pub const MAX_API_ANSWER_BYTES: usize = 64 << 20;
/// Most hosts one bulk action changes.
pub const MAX_BULK_HOSTS: usize = 500;
/// Rows of one page of the other kinds' tables.
pub const LIST_PAGE: usize = 500;
/// A live page hears at least this often that its stream is alive.
pub const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/icon.svg");

/// The UI: its sessions and its host index.
pub struct Ui {
    sessions: std::sync::Arc<Sessions>,
    indexes: Indexes,
}

impl Ui {
    pub fn new(session_lifetime: Duration) -> Self {
        Self {
            sessions: std::sync::Arc::new(Sessions::new(session_lifetime)),
            indexes: Indexes::default(),
        }
    }
}

type Answer = Response<Body>;

/// Why a page cannot be shown: the API's status code and message, or the UI's own.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    pub message: String,
}

impl Problem {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        Self::new(error.code, error.message)
    }
}

#[async_trait::async_trait]
impl WebApp for Ui {
    fn prefix(&self) -> &'static str {
        PREFIX
    }

    async fn handle(&self, context: WebContext, request: Request<Body>) -> Answer {
        let mut answer = self.route(&context, request).await;
        let headers = answer.headers_mut();
        for (name, value) in [
            (
                "content-security-policy",
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
            ("x-content-type-options", "nosniff"),
            // Nothing leaves for other sites; the server's own forms keep their Origin.
            ("referrer-policy", "same-origin"),
            ("x-frame-options", "DENY"),
            // The UI is only ever served over TLS: a browser that trusts the server's
            // certificate never tries it in clear for a year (this host name only).
            ("strict-transport-security", "max-age=31536000"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        answer
    }
}

/// A request as the handlers see it.
struct Asked {
    method: Method,
    /// Below the prefix, without a trailing slash (`""` for the overview).
    path: String,
    query: String,
    /// Where the browser sent it (`host:port`: HTTP/2's `:authority`, or `Host`).
    authority: String,
    headers: HeaderMap,
    body: Body,
}

impl Ui {
    async fn route(&self, context: &WebContext, request: Request<Body>) -> Answer {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path()[PREFIX.len()..]
            .trim_end_matches('/')
            .to_owned();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let asked = Asked {
            method: parts.method,
            path,
            query: parts.uri.query().unwrap_or_default().to_owned(),
            authority,
            headers: parts.headers,
            body,
        };
        match (&asked.method, asked.path.as_str()) {
            (&Method::GET, "/static/app.js") => return asset("text/javascript", SCRIPT),
            (&Method::GET, "/static/app.css") => return asset("text/css", STYLE),
            (&Method::GET, "/static/icon.svg") => return asset("image/svg+xml", ICON),
            (&Method::POST, "/login-tokens") => {
                return self.login_token(context, &asked.headers).await;
            }
            (&Method::GET, "/login") => return self.confirm_login(&asked.query),
            (&Method::POST, "/login") => {
                return self
                    .log_in(&asked.authority, &asked.headers, asked.body)
                    .await;
            }
            _ => {}
        }
        let Some((id, session)) = self.session(&asked.headers) else {
            return pages::html(StatusCode::UNAUTHORIZED, pages::logged_out());
        };
        let user = User {
            context,
            session: &session,
            id: &id,
        };
        let answer = match (&asked.method, asked.path.as_str()) {
            (&Method::POST, "/logout") => {
                return match form(asked.body, &session).await {
                    Ok(_) => {
                        self.sessions.end(&id);
                        let mut answer = redirect(&format!("{PREFIX}/"));
                        answer.headers_mut().insert(
                            header::SET_COOKIE,
                            HeaderValue::from_str(&format!(
                                "{COOKIE}=; Path={PREFIX}; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
                            ))
                            .expect("a valid cookie"),
                        );
                        answer
                    }
                    Err(error) => pages::error(&session, error),
                };
            }
            (&Method::GET, "") => self.overview(&user).await,
            (&Method::GET, "/hosts") => self.hosts(&user, &asked.query).await,
            (&Method::GET, "/stream/hosts") => self.stream(&user, &asked.query).await,
            (&Method::POST, "/hosts/actions") => match form(asked.body, &session).await {
                Ok(fields) => self.host_actions(&user, &fields).await,
                Err(error) => Err(error),
            },
            (&Method::GET, "/clusters") => self.clusters(&user, &asked.query).await,
            (&Method::GET, "/rollouts") => kind_page(&user, "rollouts", &asked.query).await,
            (&Method::GET, "/sources") => kind_page(&user, "sources", &asked.query).await,
            (&Method::GET, "/joins") => self.joins(&user).await,
            (&Method::POST, "/joins/approve") => match form(asked.body, &session).await {
                Ok(fields) => approve(&user, &fields).await,
                Err(error) => Err(error),
            },
            (&Method::GET, path) if path.starts_with("/hosts/") => {
                host_page(&user, &path["/hosts/".len()..]).await
            }
            _ => Err(Problem::new(
                404,
                format!("no page at {PREFIX}{}", asked.path),
            )),
        };
        answer.unwrap_or_else(|error| pages::error(&session, error))
    }

    /// `POST /ui/login-tokens`, authenticated and authorized like any API request (a
    /// non-resource path; the `fleetdb:ui` role grants it): a one-time login token for the
    /// caller (what `fleetdb ui-login` prints as a URL). Only identities of a client
    /// certificate may log in: a session must not outlive a bootstrap token or an
    /// impersonation it came from.
    async fn login_token(&self, context: &WebContext, headers: &HeaderMap) -> Answer {
        use fleetdb_apiserver::http::webapp::error_response;
        let caller = match context.caller(headers).await {
            Ok(caller) => caller,
            Err(error) => return error_response(error),
        };
        if caller.impersonator.is_some() || caller.credential.is_none() {
            return error_response(ApiError::forbidden(format!(
                "{} cannot log in to the UI: use the kubeconfig of a client certificate, not a token or impersonation",
                caller.user
            )));
        }
        if let Err(error) = context.authorize(&caller, &Attributes::path("post", LOGIN_TOKENS_PATH))
        {
            return error_response(error);
        }
        let Some(token) = self.sessions.login_token(caller.clone()) else {
            return fleetdb_apiserver::http::webapp::error_response(ApiError::too_many_requests(
                "too many UI logins are waiting to be used; try again in a few minutes",
            ));
        };
        tracing::info!(user = %caller.user, "issued a one-time UI login");
        json_answer(
            StatusCode::CREATED,
            &json!({
                "path": format!("{PREFIX}/login?token={token}"),
                "user": caller.user,
                "expiresInSeconds": sessions::LOGIN_TOKEN_LIFETIME.as_secs(),
            }),
        )
    }

    /// `GET /ui/login?token=…`: a page that says who the link logs in as, with the button
    /// that does (opening the link changes nothing: a link previewer or a page of someone
    /// else cannot use it, nor log a browser in unawares).
    fn confirm_login(&self, query: &str) -> Answer {
        let token = serde_urlencoded::from_str::<BTreeMap<String, String>>(query)
            .ok()
            .and_then(|q| q.get("token").cloned())
            .unwrap_or_default();
        match self.sessions.waiting_user(&token) {
            Some(user) => pages::html(StatusCode::OK, pages::confirm_login(&user, &token)),
            None => pages::html(StatusCode::UNAUTHORIZED, pages::login_refused()),
        }
    }

    /// `POST /ui/login` from the confirmation page: the session cookie, then the overview.
    async fn log_in(&self, authority: &str, headers: &HeaderMap, body: Body) -> Answer {
        // Posted from this server's own page: a browser says where a form came from.
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let foreign_origin = header("origin").is_some_and(|o| o != format!("https://{authority}"));
        let foreign_fetch = header("sec-fetch-site").is_some_and(|site| site != "same-origin");
        if foreign_origin || foreign_fetch {
            return pages::html(StatusCode::FORBIDDEN, pages::login_refused());
        }
        let fields: Vec<(String, String)> = match body_bytes(body, MAX_FORM_BYTES).await {
            Some(bytes) => serde_urlencoded::from_bytes(&bytes).unwrap_or_default(),
            None => Vec::new(),
        };
        let token = field(&fields, "token").unwrap_or_default();
        let Some((id, session)) = self.sessions.log_in(token) else {
            return pages::html(StatusCode::UNAUTHORIZED, pages::login_refused());
        };
        tracing::info!(user = %session.identity.user, "UI session started");
        let mut answer = redirect(&format!("{PREFIX}/"));
        let cookie = format!(
            "{COOKIE}={id}; Path={PREFIX}; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
            session
                .expires
                .saturating_duration_since(std::time::Instant::now())
                .as_secs()
        );
        answer.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("a valid cookie"),
        );
        answer
    }

    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE)
            .find_map(|(_, id)| self.sessions.get(id).map(|s| (id.to_owned(), s)))
    }
}

/// The signed-in user of one request.
struct User<'a> {
    context: &'a WebContext,
    session: &'a Session,
    /// The session's id.
    id: &'a str,
}

impl User<'_> {
    fn identity(&self) -> &Identity {
        &self.session.identity
    }

    /// Whether the user may `verb` hosts across the fleet.
    fn may_hosts(&self, verb: &str) -> bool {
        self.context.allowed(
            self.identity(),
            &Attributes::resource(verb, GROUP, "hosts", "", ""),
        )
    }

    /// An API request as the user; the answer's JSON, or the API's error.
    async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Problem> {
        self.api_as(method, path, "application/json", body).await
    }

    /// [`User::api`] asking for the representation `accept` (e.g. a Table).
    async fn api_as(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> Result<Value, Problem> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::ACCEPT, accept)
            .header(header::USER_AGENT, "fleetdb-ui");
        if method == Method::PATCH {
            request = request.header(header::CONTENT_TYPE, "application/merge-patch+json");
        } else if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body
            .map(|b| Body::from(b.to_string()))
            .unwrap_or_else(Body::empty);
        let request = request
            .body(body)
            .map_err(|e| Problem::new(500, e.to_string()))?;
        let answer = self.context.api(self.identity(), request).await;
        let status = answer.status();
        let bytes = body_bytes(answer.into_body(), MAX_API_ANSWER_BYTES)
            .await
            .ok_or_else(|| Problem::new(500, "the API's answer is too large for a page"))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            let message = value["message"].as_str().unwrap_or("the request failed");
            Err(Problem::new(status.as_u16(), message))
        }
    }
}

/// Fields of a posted form, once its CSRF token is the session's.
async fn form(body: Body, session: &Session) -> Result<Vec<(String, String)>, Problem> {
    let bytes = body_bytes(body, MAX_FORM_BYTES)
        .await
        .ok_or_else(|| Problem::new(413, format!("a form is at most {MAX_FORM_BYTES} bytes")))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| Problem::new(400, format!("not a form: {e}")))?;
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    if csrf != Some(session.csrf.as_str()) {
        return Err(Problem::new(
            403,
            "the form did not come from this session's page; reload it and try again",
        ));
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn asset(content_type: &'static str, text: &'static str) -> Answer {
    let mut answer = Response::new(Body::from(text));
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    answer
}

fn redirect(location: &str) -> Answer {
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        answer.headers_mut().insert(header::LOCATION, location);
    }
    answer
}

fn json_answer(status: StatusCode, value: &Value) -> Answer {
    let mut answer = Response::new(Body::from(value.to_string()));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    answer
}

/// Where a form sends the browser back to: one of the UI's own pages, nothing else.
fn back_to(fields: &[(String, String)]) -> String {
    match field(fields, "return") {
        Some(to)
            if to.starts_with(&format!("{PREFIX}/"))
                && !to.starts_with("//")
                && !to.contains('\\') =>
        {
            to.to_owned()
        }
        _ => format!("{PREFIX}/hosts"),
    }
}

/// `fleetdb ui-login`: asks the server, as the identity of `config`, for a one-time login
/// and returns the URL that opens it.
pub async fn login_url(config: kube::Config) -> anyhow::Result<String> {
    let base = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)?;
    let request = Request::post(format!("{PREFIX}/login-tokens"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Vec::new())?;
    let answer: Value = client.request(request).await?;
    let path = answer["path"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the server's answer has no login path: {answer}"))?;
    Ok(format!("{}{path}", base.trim_end_matches('/')))
}

fn hosts_path(name: &str) -> String {
    format!("/apis/{GROUP}/{VERSION}/hosts/{name}")
}

mod handlers;
use handlers::{approve, host_page, kind_page};
