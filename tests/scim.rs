//! SCIM end to end through the binary: `scim-token create`, then an IdP's calls over real HTTP
//! to `serve`, reaching decisions at once. Every step of the Okta and Entra ID lifecycles is read
//! back over SCIM and seen by a Check over gRPC; every error answer carries the RFC 7644 body.

use crate::support::{Server, path, run, run_ok};
use portcullis_proto::v1::decision_service_client::DecisionServiceClient;
use portcullis_proto::v1::{CheckRequest, CheckResponse, Decision, Reason};
use serde_json::{Value, json};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

pub(crate) const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const ENTRA_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// An HTTP answer: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.body))
    }

    /// The JSON body of an answer that must have `status`.
    #[track_caller]
    pub(crate) fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.json()
    }

    /// Asserts an RFC 7644 §3.12 error answer; returns its `detail`.
    #[track_caller]
    pub(crate) fn expect_error(&self, status: u16, scim_type: Option<&str>) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/scim+json")),
            "{:?}",
            self.headers
        );
        let body = self.json();
        assert!(
            body["schemas"]
                .as_array()
                .is_some_and(|s| s.contains(&json!(ERROR))),
            "{body}"
        );
        assert_eq!(body["status"], json!(status.to_string()), "{body}");
        match scim_type {
            Some(t) => assert_eq!(body["scimType"], json!(t), "{body}"),
            None => assert!(body.get("scimType").is_none(), "{body}"),
        }
        let detail = body["detail"].as_str().unwrap_or_default().to_owned();
        assert!(!detail.is_empty(), "{body}");
        detail
    }
}

/// One HTTP/1.1 request over a fresh connection. `headers` are sent as given (no
/// `Authorization` unless listed); with `Transfer-Encoding: chunked` among them the body goes in
/// 64 KiB chunks, else with its `Content-Length`. A server may answer before reading the whole
/// body (413): a failed body write is ignored and the answer read all the same.
pub(crate) fn http(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !chunked {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let _ = if chunked {
        body.chunks(64 * 1024)
            .try_for_each(|chunk| {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                stream.write_all(chunk)?;
                stream.write_all(b"\r\n")
            })
            .and_then(|()| stream.write_all(b"0\r\n\r\n"))
    } else {
        stream.write_all(body)
    };
    let mut response = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // A reset after the answer (the server closed with our body unread).
            Err(_) if !response.is_empty() => break,
            Err(e) => panic!("{method} {target}: no answer: {e}"),
        }
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let mut raw = response[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        raw = dechunk(&raw);
    } else if let Some(length) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        assert!(raw.len() >= length, "a short body: {head}");
        raw.truncate(length);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(raw).unwrap(),
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 2 + size + 2..];
    }
}

/// A SCIM client of one server with one bearer token; targets are under `/scim/v2`.
pub(crate) struct Scim {
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Scim {
    pub(crate) fn send(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Reply {
        let authorization = format!("Bearer {}", self.token);
        let mut headers = vec![
            ("Authorization", authorization.as_str()),
            ("Accept", "application/scim+json"),
        ];
        if body.is_some() {
            headers.push(("Content-Type", "application/scim+json"));
        }
        if let Some(tag) = if_match {
            headers.push(("If-Match", tag));
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        http(
            &self.base,
            method,
            &format!("/scim/v2{target}"),
            &headers,
            body.as_bytes(),
        )
    }

    pub(crate) fn get(&self, target: &str) -> Reply {
        self.send("GET", target, None, None)
    }

    pub(crate) fn post(&self, target: &str, body: &Value) -> Reply {
        self.send("POST", target, Some(body), None)
    }

    fn put(&self, target: &str, body: &Value) -> Reply {
        self.send("PUT", target, Some(body), None)
    }

    pub(crate) fn patch(&self, target: &str, operations: Value) -> Reply {
        let body = json!({"schemas": [PATCH_OP], "Operations": operations});
        self.send("PATCH", target, Some(&body), None)
    }

    /// `GET /Users?filter=…` (or `/Groups`): the resources found.
    fn filter(&self, resource: &str, filter: &str) -> Vec<Value> {
        let list = self
            .get(&format!("{resource}?filter={}", encode(filter)))
            .expect(200);
        let found = list["Resources"].as_array().cloned().unwrap_or_default();
        assert_eq!(list["totalResults"], json!(found.len()), "{list}");
        found
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_owned()
}

/// The `value`s of a multi-valued attribute (`members`, `groups`, `emails`), sorted.
fn values(resource: &Value, attribute: &str) -> Vec<String> {
    let mut values: Vec<String> = resource[attribute]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    values.sort();
    values
}

/// Checks over gRPC for github's `create_issue`, remembering the newest snapshot revision seen.
pub(crate) struct Decisions {
    client: DecisionServiceClient<tonic::transport::Channel>,
    revision: u64,
}

impl Decisions {
    pub(crate) async fn connect(server: &Server) -> Decisions {
        Decisions {
            client: server.client().await,
            revision: 0,
        }
    }

    async fn check(&mut self, user: &str) -> CheckResponse {
        let answer = self
            .client
            .check(CheckRequest {
                user: user.into(),
                agent: "claude".into(),
                connector: "github".into(),
                tool: "create_issue".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.revision >= self.revision, "{answer:?}");
        answer
    }

    /// Asserts the answer for `user`; returns the deciding policy's id.
    pub(crate) async fn expect(
        &mut self,
        user: &str,
        decision: Decision,
        reason: Reason,
    ) -> String {
        let answer = self.check(user).await;
        self.assert(user, answer, decision, reason)
    }

    /// As [`Decisions::expect`], from a snapshot newer than any seen before: the write just
    /// acknowledged is live.
    async fn after_write(&mut self, user: &str, decision: Decision, reason: Reason) -> String {
        let before = self.revision;
        let answer = self.check(user).await;
        assert!(
            answer.revision > before,
            "not a newer snapshot than {before}: {answer:?}"
        );
        self.assert(user, answer, decision, reason)
    }

    /// An admin grants github to `group`: `member`'s next answer, after that write, is the new
    /// policy's Allow, and `other` (in the group too) is allowed by it as well; the policy's id.
    async fn granted(&mut self, s: &Setup, group: &str, member: &str, other: &str) -> String {
        let policy = s.allow_github_to(group);
        assert_eq!(
            self.after_write(member, Decision::Allow, Reason::Policy)
                .await,
            policy
        );
        assert_eq!(
            self.expect(other, Decision::Allow, Reason::Policy).await,
            policy
        );
        policy
    }

    fn assert(
        &mut self,
        user: &str,
        answer: CheckResponse,
        decision: Decision,
        reason: Reason,
    ) -> String {
        assert_eq!(
            (answer.decision(), answer.reason()),
            (decision, reason),
            "{user}: {answer:?}"
        );
        self.revision = answer.revision;
        answer.policy_id
    }
}

/// A store with an imported directory (`users`: id, email, name; all active), an admin's API
/// token for the first of them and a SCIM connection named `idp`; served.
pub(crate) struct Setup {
    pub(crate) server: Server,
    pub(crate) scim: Scim,
    pub(crate) admin_token: String,
    _root: tempfile::TempDir,
}

pub(crate) fn setup(idp: &str, users: &[(&str, &str, &str)]) -> Setup {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    if !users.is_empty() {
        import(root.path(), &data, users);
    }
    let admin_token = match users.first() {
        Some((_, email, _)) => {
            let out = run_ok(&[
                "token",
                "create",
                "--data-dir",
                path(&data),
                "--user",
                email,
                "--role",
                "admin",
            ]);
            out.lines().last().unwrap().to_owned()
        }
        None => String::new(),
    };
    let out = run_ok(&[
        "scim-token",
        "create",
        "--data-dir",
        path(&data),
        "--name",
        idp,
    ]);
    let token = out.lines().last().unwrap().to_owned();
    assert!(token.starts_with("scim_"), "{out}");
    let server = Server::start(&data);
    let scim = Scim {
        base: server.http.clone(),
        token,
    };
    Setup {
        server,
        scim,
        admin_token,
        _root: root,
    }
}

fn import(root: &Path, data: &Path, users: &[(&str, &str, &str)]) {
    let export = root.join("export");
    fs::create_dir_all(&export).unwrap();
    let users: Vec<_> = users
        .iter()
        .map(|&(id, email, name)| (id, email, name, true))
        .collect();
    crate::support::write_users(&export, &users);
    fs::write(export.join("groups.jsonl"), "").unwrap();
    fs::write(export.join("policies.jsonl"), "").unwrap();
    run_ok(&["import", "--data-dir", path(data), path(&export)]);
}

impl Setup {
    /// An admin-API policy allowing every github tool to `group`; returns its id.
    fn allow_github_to(&self, group: &str) -> String {
        let out = run_ok(&[
            "admin",
            "--server",
            &self.server.addr,
            "--token",
            &self.admin_token,
            "--json",
            "policies",
            "create",
            "--name",
            "github for the group",
            "--connector",
            "github",
            "--all-tools",
            "--group",
            group,
            "--action",
            "allow",
        ]);
        let created: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(created["policy"]["scope"]["group_ids"], json!([group]));
        created["policy"]["id"].as_str().unwrap().to_owned()
    }
}

/// `portcullis check` through the CLI.
fn decision(server: &Server, user: &str) -> String {
    run_ok(&[
        "check",
        "--server",
        &server.addr,
        "--user",
        user,
        "--connector",
        "github",
        "--tool",
        "create_issue",
    ])
}

#[test]
fn an_idp_provisions_and_deactivates_a_user_over_scim() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = run_ok(&[
        "scim-token",
        "create",
        "--data-dir",
        path(&data),
        "--name",
        "okta",
    ]);
    let secret = out.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("scim_"), "{out}");

    let server = Server::start(&data);
    assert!(
        server.http.starts_with("http://127.0.0.1:"),
        "{}",
        server.http
    );
    // Refused while the server holds the store.
    let held = run(&[
        "scim-token",
        "create",
        "--data-dir",
        path(&data),
        "--name",
        "entra",
    ]);
    assert!(!held.status.success());
    assert!(String::from_utf8_lossy(&held.stderr).contains("running server"));
    let scim = Scim {
        base: server.http.clone(),
        token: secret,
    };

    // Entra's test-connection probe.
    let probe = scim.get("/Users?filter=userName%20eq%20%22c0ffee-probe%22");
    assert_eq!(probe.expect(200)["totalResults"], json!(0));
    // A wrong token gets the SCIM error body.
    let wrong = Scim {
        base: server.http.clone(),
        token: "nope".into(),
    };
    wrong.get("/Users").expect_error(401, None);

    let created = scim.post(
        "/Users",
        &json!({
            "schemas": [USER],
            "userName": "ada@example.com", "externalId": "00u1",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
            "active": true
        }),
    );
    let id = id_of(&created.expect(201));
    // Known at once (no policy grants anything, so the default deny).
    assert!(decision(&server, "ada@example.com").contains("NO_MATCHING_POLICY"));

    let deactivated = scim.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(deactivated.expect(200)["active"], json!(false));
    assert!(decision(&server, "00u1").contains("USER_INACTIVE"));

    let gone = scim.send("DELETE", &format!("/Users/{id}"), None, None);
    assert_eq!(gone.status, 204, "{}", gone.body);
    assert!(decision(&server, "ada@example.com").contains("UNKNOWN_USER"));
}

/// A user as Okta sends it on create and on every profile push (PUT of the whole user).
pub(crate) fn okta_user(user_name: &str, external_id: &str, first: &str, last: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{first} {last}"),
        "locale": "en-US",
        "externalId": external_id,
        "groups": [],
        "password": "S3cret!",
        "active": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_lifecycle_over_the_binary() {
    use Decision::{Allow, Deny};
    let s = setup("okta", &[("u-admin", "admin@example.com", "Ada Admin")]);
    let scim = &s.scim;
    let mut decide = Decisions::connect(&s.server).await;
    decide
        .expect("admin@example.com", Deny, Reason::NoMatchingPolicy)
        .await;

    // Okta asks whether the user exists, with paging parameters: no.
    let lookup = format!(
        "/Users?filter={}&startIndex=1&count=100",
        encode(r#"userName eq "linus@example.com""#)
    );
    assert_eq!(scim.get(&lookup).expect(200)["totalResults"], json!(0));
    decide
        .expect("linus@example.com", Deny, Reason::UnknownUser)
        .await;

    // Create.
    let created = scim.post(
        "/Users",
        &okta_user("linus@example.com", "00u-linus", "Linus", "T"),
    );
    let user = created.expect(201);
    let id = id_of(&user);
    assert!(user.get("password").is_none(), "{user}");
    let location = created.header("location").unwrap();
    assert!(
        location.ends_with(&format!("/scim/v2/Users/{id}")),
        "{location}"
    );
    assert_eq!(created.header("etag"), user["meta"]["version"].as_str());
    let found = scim.get(&lookup).expect(200);
    assert_eq!(found["totalResults"], json!(1));
    assert_eq!(found["Resources"][0]["id"], json!(id));
    let got = scim.get(&format!("/Users/{id}")).expect(200);
    assert_eq!(got["userName"], json!("linus@example.com"));
    assert_eq!(got["name"]["givenName"], json!("Linus"));
    assert_eq!(got["active"], json!(true));
    decide
        .after_write("linus@example.com", Deny, Reason::NoMatchingPolicy)
        .await;
    for key in ["LINUS@example.com", "00u-linus", id.as_str()] {
        decide.expect(key, Deny, Reason::NoMatchingPolicy).await;
    }

    // A profile push: the whole user, id included, with a second email.
    let mut whole = okta_user("linus@example.com", "00u-linus", "Linus", "Torvalds");
    whole["id"] = json!(id);
    whole["title"] = json!("Maintainer");
    whole["emails"]
        .as_array_mut()
        .unwrap()
        .push(json!({"value": "linus@kernel.org", "type": "home"}));
    let put = scim.put(&format!("/Users/{id}"), &whole).expect(200);
    let got = scim.get(&format!("/Users/{id}")).expect(200);
    assert_eq!(got, put);
    assert_eq!(got["name"]["familyName"], json!("Torvalds"));
    assert_eq!(got["displayName"], json!("Linus Torvalds"));
    assert_eq!(got["title"], json!("Maintainer"));
    assert_eq!(
        values(&got, "emails"),
        ["linus@example.com", "linus@kernel.org"]
    );
    decide
        .after_write("linus@kernel.org", Deny, Reason::NoMatchingPolicy)
        .await;

    // Deactivation: `replace` without a path.
    let deactivated = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .expect(200);
    assert_eq!(deactivated["active"], json!(false));
    assert_eq!(
        scim.get(&format!("/Users/{id}")).expect(200)["active"],
        json!(false)
    );
    decide
        .after_write("linus@example.com", Deny, Reason::UserInactive)
        .await;
    // Reactivation.
    scim.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": true}}]),
    )
    .expect(200);
    assert_eq!(
        scim.get(&format!("/Users/{id}")).expect(200)["active"],
        json!(true)
    );
    decide
        .after_write("linus@example.com", Deny, Reason::NoMatchingPolicy)
        .await;

    // A second user, then the group push with both as members.
    let greg = id_of(
        &scim
            .post(
                "/Users",
                &okta_user("greg@example.com", "00u-greg", "Greg", "KH"),
            )
            .expect(201),
    );
    let group = scim
        .post(
            "/Groups",
            &json!({
                "schemas": [GROUP],
                "displayName": "Kernel",
                "members": [
                    {"value": id, "display": "linus@example.com"},
                    {"value": greg, "display": "greg@example.com"}
                ]
            }),
        )
        .expect(201);
    let group_id = id_of(&group);
    let mut both = vec![id.clone(), greg.clone()];
    both.sort();
    assert_eq!(values(&group, "members"), both);
    let got = scim.get(&format!("/Groups/{group_id}")).expect(200);
    assert_eq!(got["displayName"], json!("Kernel"));
    assert_eq!(values(&got, "members"), both);
    let linus = scim.get(&format!("/Users/{id}")).expect(200);
    assert_eq!(values(&linus, "groups"), [group_id.as_str()]);
    // Known to decisions, though no policy names the group yet.
    decide
        .after_write("linus@example.com", Deny, Reason::NoMatchingPolicy)
        .await;

    // An admin grants github to the group.
    let policy = decide
        .granted(&s, &group_id, "linus@example.com", "greg@example.com")
        .await;
    decide
        .expect("admin@example.com", Deny, Reason::NoMatchingPolicy)
        .await;

    // Okta removes a member with a value-filtered path.
    let removed = scim
        .patch(
            &format!("/Groups/{group_id}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
        )
        .expect(200);
    assert_eq!(values(&removed, "members"), [greg.as_str()]);
    let got = scim.get(&format!("/Groups/{group_id}")).expect(200);
    assert_eq!(values(&got, "members"), [greg.as_str()]);
    let linus = scim.get(&format!("/Users/{id}")).expect(200);
    assert!(values(&linus, "groups").is_empty(), "{linus}");
    decide
        .after_write("linus@example.com", Deny, Reason::NoMatchingPolicy)
        .await;
    decide
        .expect("greg@example.com", Allow, Reason::Policy)
        .await;

    // And adds them back.
    scim.patch(
        &format!("/Groups/{group_id}"),
        json!([{"op": "add", "path": "members", "value": [{"value": id, "display": "linus@example.com"}]}]),
    )
    .expect(200);
    let got = scim.get(&format!("/Groups/{group_id}")).expect(200);
    assert_eq!(values(&got, "members"), both);
    assert_eq!(
        decide
            .after_write("linus@example.com", Allow, Reason::Policy)
            .await,
        policy
    );

    // A rename: the whole user again, under a new userName and email.
    let mut renamed = okta_user(
        "linus.torvalds@example.com",
        "00u-linus",
        "Linus",
        "Torvalds",
    );
    renamed["id"] = json!(id);
    renamed["title"] = json!("Maintainer");
    let put = scim.put(&format!("/Users/{id}"), &renamed).expect(200);
    assert_eq!(put["id"], json!(id));
    let got = scim.get(&format!("/Users/{id}")).expect(200);
    assert_eq!(got["userName"], json!("linus.torvalds@example.com"));
    assert_eq!(values(&got, "emails"), ["linus.torvalds@example.com"]);
    assert_eq!(values(&got, "groups"), [group_id.as_str()]);
    assert!(
        scim.filter("/Users", r#"userName eq "linus@example.com""#)
            .is_empty()
    );
    let found = scim.filter("/Users", r#"userName eq "Linus.Torvalds@example.com""#);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], json!(id));
    decide
        .after_write("linus.torvalds@example.com", Allow, Reason::Policy)
        .await;
    for old in ["linus@example.com", "linus@kernel.org"] {
        decide.expect(old, Deny, Reason::UnknownUser).await;
    }
    decide.expect("00u-linus", Allow, Reason::Policy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_lifecycle_over_the_binary() {
    use Decision::{Allow, Deny};
    let s = setup(
        "entra",
        &[
            ("u-admin", "admin@contoso.com", "Ada Admin"),
            ("u-bob", "bob@contoso.com", "Bob Builder"),
        ],
    );
    let scim = &s.scim;
    let mut decide = Decisions::connect(&s.server).await;

    // "Test connection", then: does the user exist? No.
    let probe = scim.get("/Users?filter=userName+eq+%22d1f4b2a0-5d8e-4f7a-9c3b-2e6f8a1b0c9d%22");
    assert_eq!(probe.expect(200)["totalResults"], json!(0));
    assert!(
        scim.filter("/Users", r#"userName eq "ghopper@contoso.onmicrosoft.com""#)
            .is_empty()
    );

    // The user principal name and the mail differ, as they often do in Entra.
    let created = scim
        .post(
            "/Users",
            &json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7b2a8c2f2f2a",
                "userName": "ghopper@contoso.onmicrosoft.com",
                "active": true,
                "displayName": "Grace Hopper",
                "emails": [{"primary": true, "type": "work", "value": "grace.hopper@contoso.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "Grace Hopper", "familyName": "Hopper", "givenName": "Grace"},
                "roles": [],
                ENTERPRISE: {"employeeNumber": "1906", "department": "Navy"}
            }),
        )
        .expect(201);
    let id = id_of(&created);
    let found = scim.filter(
        "/Users",
        r#"externalId eq "0a21f0f2-8d2a-4f8e-bf98-7b2a8c2f2f2a""#,
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], json!(id));
    assert_eq!(found[0][ENTERPRISE]["department"], json!("Navy"));
    decide
        .after_write("grace.hopper@contoso.com", Deny, Reason::NoMatchingPolicy)
        .await;
    decide
        .expect(
            "GHopper@contoso.onmicrosoft.com",
            Deny,
            Reason::NoMatchingPolicy,
        )
        .await;

    // A group, with Entra's own schema URN along.
    let group = scim
        .post(
            "/Groups",
            &json!({
                "schemas": [GROUP, ENTRA_GROUP],
                "externalId": "5e2b7d1c-entra",
                "displayName": "Contoso Sailors",
                "meta": {"resourceType": "Group"}
            }),
        )
        .expect(201);
    let group_id = id_of(&group);
    assert_eq!(group["schemas"], json!([GROUP, ENTRA_GROUP]));
    let lookup = scim
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            encode(r#"displayName eq "Contoso Sailors""#)
        ))
        .expect(200);
    assert_eq!(lookup["totalResults"], json!(1));
    assert_eq!(lookup["Resources"][0]["id"], json!(group_id));
    assert!(lookup["Resources"][0].get("members").is_none());
    decide
        .after_write("grace.hopper@contoso.com", Deny, Reason::NoMatchingPolicy)
        .await;

    // Members added with a capitalised op; an admin grants github to the group.
    scim.patch(
        &format!("/Groups/{group_id}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": id}, {"value": "u-bob"}]}]),
    )
    .expect(200);
    let mut both = vec![id.clone(), "u-bob".to_owned()];
    both.sort();
    let got = scim.get(&format!("/Groups/{group_id}")).expect(200);
    assert_eq!(values(&got, "members"), both);
    decide
        .after_write("bob@contoso.com", Deny, Reason::NoMatchingPolicy)
        .await;
    decide
        .granted(&s, &group_id, "grace.hopper@contoso.com", "bob@contoso.com")
        .await;

    // Deactivated and reactivated with booleans as strings.
    let user = format!("/Users/{id}");
    let patched = scim
        .patch(
            &user,
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .expect(200);
    assert_eq!(patched["active"], json!(false));
    assert_eq!(scim.get(&user).expect(200)["active"], json!(false));
    decide
        .after_write("grace.hopper@contoso.com", Deny, Reason::UserInactive)
        .await;
    scim.patch(
        &user,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .expect(200);
    assert_eq!(scim.get(&user).expect(200)["active"], json!(true));
    decide
        .after_write("grace.hopper@contoso.com", Allow, Reason::Policy)
        .await;

    // The work email through a value-filtered path.
    scim.patch(
        &user,
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "grace@contoso.com"}]),
    )
    .expect(200);
    let got = scim.get(&user).expect(200);
    assert_eq!(got["emails"][0]["value"], json!("grace@contoso.com"));
    assert_eq!(got["emails"][0]["type"], json!("work"));
    assert_eq!(values(&got, "emails"), ["grace@contoso.com"]);
    assert_eq!(
        scim.filter("/Users", r#"emails.value eq "grace@contoso.com""#)[0]["id"],
        json!(id)
    );
    decide
        .after_write("Grace@Contoso.com", Allow, Reason::Policy)
        .await;
    decide
        .expect("grace.hopper@contoso.com", Deny, Reason::UnknownUser)
        .await;

    // Enterprise extension paths, the manager as a bare id, and a rename of the display name.
    let patched = scim
        .patch(
            &user,
            json!([
                {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": "u-admin"},
                {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Research"},
                {"op": "Replace", "path": "displayName", "value": "Rear Admiral Hopper"}
            ]),
        )
        .expect(200);
    let got = scim.get(&user).expect(200);
    assert_eq!(got, patched);
    assert_eq!(got[ENTERPRISE]["manager"]["value"], json!("u-admin"));
    assert_eq!(got[ENTERPRISE]["department"], json!("Research"));
    assert_eq!(got[ENTERPRISE]["employeeNumber"], json!("1906"));
    assert_eq!(got["displayName"], json!("Rear Admiral Hopper"));
    assert!(
        got["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE)),
        "{got}"
    );
    decide
        .after_write("grace@contoso.com", Allow, Reason::Policy)
        .await;

    // A member removed by a value-filtered path loses what the group granted.
    scim.patch(
        &format!("/Groups/{group_id}"),
        json!([{"op": "Remove", "path": format!("members[value eq \"{id}\"]")}]),
    )
    .expect(200);
    let got = scim.get(&format!("/Groups/{group_id}")).expect(200);
    assert_eq!(values(&got, "members"), ["u-bob"]);
    assert!(values(&scim.get(&user).expect(200), "groups").is_empty());
    decide
        .after_write("grace@contoso.com", Deny, Reason::NoMatchingPolicy)
        .await;
    decide
        .expect("bob@contoso.com", Allow, Reason::Policy)
        .await;

    // And one removed by a value list.
    scim.patch(
        &format!("/Groups/{group_id}"),
        json!([{"op": "Remove", "path": "members", "value": [{"value": "u-bob"}]}]),
    )
    .expect(200);
    let got = scim.get(&format!("/Groups/{group_id}")).expect(200);
    assert!(values(&got, "members").is_empty(), "{got}");
    decide
        .after_write("bob@contoso.com", Deny, Reason::NoMatchingPolicy)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_errors_over_the_binary() {
    let s = setup("okta", &[]);
    let scim = &s.scim;
    let mut decide = Decisions::connect(&s.server).await;
    let ada = json!({"schemas": [USER], "userName": "ada@example.com", "active": true});
    let id = id_of(&scim.post("/Users", &ada).expect(201));
    decide
        .after_write("ada@example.com", Decision::Deny, Reason::NoMatchingPolicy)
        .await;

    // No token, a wrong one.
    let anonymous = http(&s.server.http, "GET", "/scim/v2/Users", &[], b"");
    let detail = anonymous.expect_error(401, None);
    assert!(detail.contains("missing credentials"), "{detail}");
    assert!(anonymous.header("www-authenticate").is_some());
    let wrong = Scim {
        base: s.server.http.clone(),
        token: "scim_nope".into(),
    };
    wrong.get("/Users").expect_error(401, None);
    wrong.post("/Users", &ada).expect_error(401, None);

    // Malformed JSON; no userName.
    let broken = http(
        &s.server.http,
        "POST",
        "/scim/v2/Users",
        &[
            ("Authorization", &format!("Bearer {}", scim.token)),
            ("Content-Type", "application/scim+json"),
        ],
        br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"#,
    );
    broken.expect_error(400, Some("invalidSyntax"));
    scim.post("/Users", &json!({"schemas": [USER], "active": true}))
        .expect_error(400, Some("invalidValue"));

    // Unknown ids.
    scim.get("/Users/no-such-user").expect_error(404, None);
    scim.get("/Groups/no-such-group").expect_error(404, None);
    scim.patch(
        "/Users/no-such-user",
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .expect_error(404, None);

    // A userName taken (ignoring case).
    let duplicate = json!({"schemas": [USER], "userName": "ADA@example.com", "active": true});
    scim.post("/Users", &duplicate)
        .expect_error(409, Some("uniqueness"));

    // Filters that do not parse.
    for filter in [
        "userName eq",
        "userName eq \"ada@example.com",
        "(userName eq \"a\"",
    ] {
        scim.get(&format!("/Users?filter={}", encode(filter)))
            .expect_error(400, Some("invalidFilter"));
    }

    // If-Match: a stale version is refused and changes nothing; the current one passes.
    let user = format!("/Users/{id}");
    let current = scim.get(&user);
    let etag = current.header("etag").unwrap().to_owned();
    assert_eq!(current.json()["meta"]["version"], json!(etag));
    let stale = "W/\"0000000000000000\"";
    let deactivate = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    scim.send("PATCH", &user, Some(&deactivate), Some(stale))
        .expect_error(412, None);
    let mut renamed = ada.clone();
    renamed["userName"] = json!("ada.lovelace@example.com");
    scim.send("PUT", &user, Some(&renamed), Some(stale))
        .expect_error(412, None);
    scim.send("DELETE", &user, None, Some(stale))
        .expect_error(412, None);
    let unchanged = scim.get(&user);
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));
    assert_eq!(unchanged.json()["active"], json!(true));
    decide
        .expect("ada@example.com", Decision::Deny, Reason::NoMatchingPolicy)
        .await;
    let patched = scim.send("PATCH", &user, Some(&deactivate), Some(&etag));
    assert_eq!(patched.expect(200)["active"], json!(false));
    assert_ne!(patched.header("etag"), Some(etag.as_str()));
    decide
        .after_write("ada@example.com", Decision::Deny, Reason::UserInactive)
        .await;
    // The old version is stale now.
    scim.send("DELETE", &user, None, Some(&etag))
        .expect_error(412, None);

    // A body over 4 MiB, refused whole.
    let mut big = json!({"schemas": [USER], "userName": "big@example.com", "active": true});
    big["title"] = json!("x".repeat(4 * 1024 * 1024));
    scim.post("/Users", &big).expect_error(413, None);
    // Also when it comes in chunks, with no length to refuse it by up front.
    let authorization = format!("Bearer {}", scim.token);
    let chunked = http(
        &s.server.http,
        "POST",
        "/scim/v2/Users",
        &[
            ("Authorization", &authorization),
            ("Content-Type", "application/scim+json"),
            ("Transfer-Encoding", "chunked"),
        ],
        big.to_string().as_bytes(),
    );
    chunked.expect_error(413, None);
    // A small chunked body is read as any other.
    let small = json!({"schemas": [USER], "userName": "chunky@example.com", "active": false});
    let chunky = http(
        &s.server.http,
        "POST",
        "/scim/v2/Users",
        &[
            ("Authorization", &authorization),
            ("Content-Type", "application/scim+json"),
            ("Transfer-Encoding", "chunked"),
        ],
        small.to_string().as_bytes(),
    );
    let chunky = id_of(&chunky.expect(201));
    decide
        .after_write("chunky@example.com", Decision::Deny, Reason::UserInactive)
        .await;
    assert!(
        scim.filter("/Users", r#"userName eq "big@example.com""#)
            .is_empty()
    );

    // Bulk is not supported.
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "1", "data": ada}]
    });
    scim.post("/Bulk", &bulk).expect_error(501, None);

    // None of the refused requests reached decisions: ada as the last write left her.
    decide
        .expect("ada@example.com", Decision::Deny, Reason::UserInactive)
        .await;
    decide
        .expect("big@example.com", Decision::Deny, Reason::UnknownUser)
        .await;
    let all = scim.get("/Users").expect(200);
    let mut ids = vec![id, chunky];
    ids.sort();
    let mut listed: Vec<String> = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    listed.sort();
    assert_eq!(listed, ids, "{all}");
}

/// The SCIM limits are `serve` settings: lowered here by flag and environment, they hold.
#[test]
fn serve_applies_the_scim_limits_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let token = crate::support::scim_token(dir.path(), "okta");
    let server = Server::spawn_with_env(
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(dir.path()),
            "--scim-max-operations",
            "2",
        ],
        &[("PORTCULLIS_SCIM_MAX_VALUES", "3")],
    );
    let scim = Scim {
        base: server.http.clone(),
        token,
    };
    let user = scim
        .post(
            "/Users",
            &json!({"schemas": [USER], "userName": "ada@example.com"}),
        )
        .expect(201);
    let target = format!("/Users/{}", user["id"].as_str().unwrap());
    let add = |i: usize| json!({"op": "add", "path": "emails", "value": [{"value": format!("{i}@x.io")}]});
    let detail = scim
        .patch(&target, json!([add(0), add(1), add(2)]))
        .expect_error(400, Some("tooMany"));
    assert!(detail.contains("the limit is 2"), "{detail}");
    scim.patch(&target, json!([add(0), add(1)])).expect(200);
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"value": format!("{i}@y.io")}))
        .collect();
    let detail = scim
        .patch(
            &target,
            json!([{"op": "add", "path": "emails", "value": four}]),
        )
        .expect_error(400, Some("invalidValue"));
    assert!(detail.contains("`emails` has 6 values"), "{detail}");
    assert!(detail.contains("limit is 3"), "{detail}");
}
