//! The admin console over real HTTP against the real `serve`: a small client that keeps the
//! session cookie and reads each page's CSRF token as a browser would, and a server with a
//! generated directory, an Admin token and a Read Only token. Each page's tests are a module.

mod activity;
mod agents;
mod approvals;
mod browser;
mod groups;
mod oidc;
mod policies;
mod settings;
mod users;
mod webhook_links;

use crate::support::{Server, generated_and_imported, path, run_ok};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// A served directory (the small preset with agents, seed 1) with its tokens.
pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub server: Server,
    /// An Admin token of u0000193.
    pub admin: String,
    /// A Read Only token of u0000002.
    pub read_only: String,
    /// A SCIM token (IdP `okta`).
    pub scim: String,
}

impl Setup {
    pub fn start() -> Setup {
        Setup::start_with(&[])
    }

    /// With extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (_, data) = generated_and_imported(
            dir.path(),
            &["--preset", "small", "--seed", "1", "--agents"],
        );
        let admin = token(&data, "u0000193", "admin");
        let read_only = token(&data, "u0000002", "read-only");
        let scim = crate::support::scim_token(&data, "okta");
        let server = Server::start_with(&data, extra);
        Setup {
            _dir: dir,
            server,
            admin,
            read_only,
            scim,
        }
    }

    /// A browser signed in with `token`.
    pub async fn signed_in(&self, token: &str) -> Browser {
        let browser = Browser::new(&self.server.http);
        let reply = browser.sign_in(token).await;
        assert_eq!(reply.status, 303, "sign-in: {}", reply.body);
        browser
    }

    /// `portcullis check` against this server: the decision line.
    pub fn check(&self, args: &[&str]) -> String {
        let mut all = vec!["check", "--server", &self.server.addr];
        all.extend_from_slice(args);
        run_ok(&all)
    }
}

/// A display name an identity provider could send, which must render as text.
pub const XSS: &str = "<img src=x onerror=alert(1)>";

impl Setup {
    /// Creates a user over SCIM (as the identity provider would) with this display name.
    pub async fn scim_user(&self, email: &str, display_name: &str) {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": email,
            "displayName": display_name,
            "emails": [{"value": email, "primary": true}],
            "active": true,
        });
        let auth = format!("Bearer {}", self.scim);
        let created = Browser::new(&self.server.http)
            .send(
                "POST",
                "/scim/v2/Users",
                &[
                    ("content-type", "application/scim+json"),
                    ("authorization", auth.as_str()),
                ],
                body.to_string().into_bytes(),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
}

fn token(data: &std::path::Path, user: &str, role: &str) -> String {
    let out = run_ok(&[
        "token",
        "create",
        "--data-dir",
        path(data),
        "--user",
        user,
        "--role",
        role,
        "-q",
    ]);
    out.trim().to_owned()
}

/// An answer: status, headers, body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The page's CSRF token (the first form's `csrf` field).
    pub fn csrf(&self) -> String {
        field_value(&self.body, "csrf")
            .unwrap_or_else(|| panic!("no csrf field on the page: {}", self.body))
    }

    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The `value` of the first input named `name` in `html`.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// An HTTP client that keeps cookies like a browser (one origin, no JavaScript).
pub struct Browser {
    http: Hyper<HttpConnector, Full<Bytes>>,
    base: String,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    /// `base`: `http://host:port`.
    pub fn new(base: &str) -> Browser {
        Browser {
            http: Hyper::builder(TokioExecutor::new()).build_http(),
            base: base.to_owned(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], Vec::new()).await
    }

    /// Posts `fields` url-encoded, as a form does.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(fields).unwrap().into_bytes();
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        self.send("POST", path, &headers, body).await
    }

    /// Opens `page`, then posts `fields` to `action` with the page's CSRF token, as
    /// submitting a form on that page does.
    pub async fn submit(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> Reply {
        let opened = self.get(page).await;
        assert_eq!(opened.status, 200, "GET {page}: {}", opened.body);
        let csrf = opened.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// Signs in with an admin token through the sign-in form.
    pub async fn sign_in(&self, token: &str) -> Reply {
        self.submit("/console/sign-in", "/console/sign-in", &[("token", token)])
            .await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut request = axum::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let cookie = {
            let cookies = self.cookies.lock().unwrap();
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookie.is_empty() {
            request = request.header("cookie", cookie);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), self.http.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {url}: no answer within 30 s"))
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}
