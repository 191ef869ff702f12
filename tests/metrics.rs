//! `/metrics` through the real binary: after checks, batches, SCIM and admin calls, the control
//! plane's scrape (parsed, not grepped) counts exactly what was answered, by label; the Check
//! histogram is whole; the revision is the one Check reports. A sidecar exports its decisions
//! beside its follower gauges, failing closed (`STALE_SNAPSHOT`) or following.

use crate::scim::{USER, http};
use crate::support::{Server, path, run_ok, write_users};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis_proto::v1 as pb;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

/// One scrape: each family's type, and every sample in order.
#[derive(Debug)]
pub(crate) struct Scrape {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Scrape {
    /// Parses OpenMetrics text: `# TYPE` lines, samples with their labels, `# EOF` last.
    fn parse(text: &str) -> Scrape {
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
        for line in &lines[..lines.len() - 1] {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.splitn(3, ' ');
                if words.next() == Some("TYPE") {
                    let (name, kind) = (words.next().unwrap(), words.next().unwrap());
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "{name} declared twice:\n{text}"
                    );
                }
                continue;
            }
            samples.push(Sample::parse(line));
        }
        let scrape = Scrape { types, samples };
        for sample in &scrape.samples {
            assert!(
                scrape.family(&sample.name).is_some(),
                "{} has no # TYPE:\n{text}",
                sample.name
            );
        }
        scrape
    }

    /// The declared family a sample name belongs to: itself, or without the suffix its type
    /// adds.
    fn family(&self, sample: &str) -> Option<&str> {
        if self.types.contains_key(sample) {
            return Some(self.types.get_key_value(sample)?.0);
        }
        ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find_map(|family| self.types.get_key_value(family).map(|(k, _)| k.as_str()))
    }

    /// Whether `name` is a declared family or one of its samples (docs quote either).
    pub(crate) fn declares(&self, name: &str) -> bool {
        self.family(name).is_some()
    }

    fn kind(&self, family: &str) -> &str {
        self.types
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}"))
    }

    /// The samples named `name`, in order.
    fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The one sample named `name` with exactly `labels`.
    #[track_caller]
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<_> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == labels)
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
        found[0].value
    }

    /// Each labelled sample of `name` as (label values in key order, value).
    pub(crate) fn by_label(&self, name: &str) -> BTreeMap<Vec<String>, f64> {
        self.all(name)
            .into_iter()
            .map(|s| (s.labels.values().cloned().collect(), s.value))
            .collect()
    }

    /// Asserts the histogram `family` is whole: its buckets cumulative with `le` growing and
    /// ending at `+Inf` = `_count`; returns the count.
    #[track_caller]
    fn histogram(&self, family: &str) -> u64 {
        assert_eq!(self.kind(family), "histogram");
        let count = self.get(&format!("{family}_count"), &[]);
        let sum = self.get(&format!("{family}_sum"), &[]);
        let buckets = self.all(&format!("{family}_bucket"));
        assert!(buckets.len() > 10, "{buckets:?}");
        let mut last = (f64::NEG_INFINITY, 0.0);
        for bucket in &buckets {
            assert_eq!(bucket.labels.len(), 1, "{bucket:?}");
            let le = match bucket.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap(),
            };
            assert!(le > last.0, "le not growing: {buckets:?}");
            assert!(bucket.value >= last.1, "not cumulative: {buckets:?}");
            last = (le, bucket.value);
        }
        assert_eq!(last, (f64::INFINITY, count), "{buckets:?}");
        assert!(count == 0.0 || sum > 0.0, "sum {sum} of {count}");
        count as u64
    }
}

impl Sample {
    /// `name{key="value",…} value`, label values with OpenMetrics escapes.
    fn parse(line: &str) -> Sample {
        let (name, rest) = match line.find('{') {
            Some(open) => (&line[..open], &line[open + 1..]),
            None => {
                let (name, value) = line.split_once(' ').unwrap();
                return Sample {
                    name: name.to_owned(),
                    labels: BTreeMap::new(),
                    value: value.parse().unwrap(),
                };
            }
        };
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars();
        loop {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next().unwrap() {
                    '"' => break,
                    '\\' => match chars.next().unwrap() {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("{line}: {other:?}"),
            }
        }
        let value = chars.as_str().trim();
        Sample {
            name: name.to_owned(),
            labels,
            value: value
                .parse()
                .unwrap_or_else(|_| panic!("{line}: value {value}")),
        }
    }
}

/// `GET /metrics` on `server`'s HTTP port, parsed; asserts the OpenMetrics content type.
pub(crate) async fn scraped(server: &Server) -> Scrape {
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(format!("{}/metrics", server.http).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Scrape::parse(std::str::from_utf8(&body).unwrap())
}

/// Alice, Bob (engineering), Carol (inactive) and Dave; github is allowed to everyone, but
/// engineering may not delete repositories. Alice is an admin.
fn company(root: &Path) -> std::path::PathBuf {
    let export = root.join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_users(
        &export,
        &[
            ("u1", "alice@example.com", "Alice Admin", true),
            ("u2", "bob@example.com", "Bob Builder", true),
            ("u3", "carol@example.com", "Carol Chen", false),
            ("u4", "dave@example.com", "Dave Doe", true),
        ],
    );
    std::fs::write(
        export.join("groups.jsonl"),
        r#"{"id":"g-eng","name":"engineering","roles":[],"members":["u2"]}"#.to_owned() + "\n",
    )
    .unwrap();
    std::fs::write(
        export.join("policies.jsonl"),
        concat!(
            r#"{"id":"pol-1","name":"github for everyone","connector":"github","tools":["*"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"ALLOW","enabled":true}"#,
            "\n",
            r#"{"id":"pol-2","name":"engineering keeps its repos","connector":"github","#,
            r#""tools":["delete_repo"],"scope":{"all_users":false,"users":[],"groups":["g-eng"]},"#,
            r#""action":"DENY","enabled":true}"#,
            "\n"
        ),
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

fn request(user: &str, connector: &str, tool: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: user.into(),
        agent: "claude".into(),
        connector: connector.into(),
        tool: tool.into(),
        ..Default::default()
    }
}

/// (decision, reason) without their prefixes, as the metric labels name them.
fn outcome(answer: &pb::CheckResponse) -> (String, String) {
    (
        answer.decision().as_str_name()["DECISION_".len()..].to_owned(),
        answer.reason().as_str_name()["REASON_".len()..].to_owned(),
    )
}

/// Every (decision, reason) series the scrape has, by label values (decision, reason).
fn decisions(scrape: &Scrape) -> BTreeMap<(String, String), u64> {
    assert_eq!(scrape.kind("portcullis_decisions"), "counter");
    scrape
        .all("portcullis_decisions_total")
        .into_iter()
        .map(|s| {
            assert_eq!(s.labels.len(), 2, "{s:?}");
            (
                (s.labels["decision"].clone(), s.labels["reason"].clone()),
                s.value as u64,
            )
        })
        .collect()
}

/// The fourteen series decisions can produce, at `counted` or zero.
fn expected_decisions(counted: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    let mut all: BTreeMap<(String, String), u64> = [
        ("ALLOW", "POLICY"),
        ("STEP_UP", "POLICY"),
        ("REQUIRE_APPROVAL", "POLICY"),
        ("DENY", "POLICY"),
        ("DENY", "NO_MATCHING_POLICY"),
        ("DENY", "USER_LOCKED"),
        ("DENY", "USER_INACTIVE"),
        ("DENY", "UNKNOWN_USER"),
        ("DENY", "STALE_SNAPSHOT"),
        ("DENY", "AMBIGUOUS_USER"),
        ("DENY", "UNKNOWN_AGENT"),
        ("DENY", "AGENT_DISABLED"),
        ("DENY", "AGENT_NOT_ALLOWED"),
        ("ALLOW", "STEP_UP_MET"),
        ("ALLOW", "APPROVED"),
    ]
    .into_iter()
    .map(|(d, r)| ((d.to_owned(), r.to_owned()), 0))
    .collect();
    for (d, r, n) in counted {
        *all.get_mut(&((*d).to_owned(), (*r).to_owned()))
            .unwrap_or_else(|| panic!("{d}/{r} is no series")) = *n;
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_counts_what_it_answers() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let admin_token = crate::support::admin_token(&data, "u1");
    let scim_token = crate::support::scim_token(&data, "okta");
    let sidecar_token = root.path().join("sidecar-token");
    std::fs::write(&sidecar_token, "metrics-secret\n").unwrap();
    let server = Server::start_with(&data, &["--sidecar-token-file", path(&sidecar_token)]);

    // Nothing answered yet: every series there, at zero.
    let before = scraped(&server).await;
    assert_eq!(decisions(&before), expected_decisions(&[]));
    assert_eq!(before.histogram("portcullis_check_duration_seconds"), 0);
    assert!(before.all("portcullis_scim_requests_total").is_empty());
    assert!(before.all("portcullis_admin_calls_total").is_empty());

    // Checks: one of each outcome the directory has, and one refused.
    let mut client = server.client().await;
    let mut checks = 0;
    for (user, connector, tool, expected) in [
        (
            "alice@example.com",
            "github",
            "create_issue",
            ("ALLOW", "POLICY"),
        ),
        (
            "bob@example.com",
            "github",
            "delete_repo",
            ("DENY", "POLICY"),
        ),
        (
            "ghost@example.com",
            "github",
            "create_issue",
            ("DENY", "UNKNOWN_USER"),
        ),
        (
            "carol@example.com",
            "github",
            "create_issue",
            ("DENY", "USER_INACTIVE"),
        ),
        (
            "alice@example.com",
            "slack",
            "post",
            ("DENY", "NO_MATCHING_POLICY"),
        ),
    ] {
        let answer = client
            .check(request(user, connector, tool))
            .await
            .unwrap()
            .into_inner();
        checks += 1;
        let expected = (expected.0.to_owned(), expected.1.to_owned());
        assert_eq!(outcome(&answer), expected, "{user} {connector} {tool}");
    }
    let refused = client.check(request("", "github", "x")).await.unwrap_err();
    checks += 1;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // A batch answered (each check counted), and one refused whole (none counted).
    let batch = client
        .batch_check(pb::BatchCheckRequest {
            checks: vec![
                request("alice@example.com", "github", "merge"),
                request("nobody@example.com", "github", "merge"),
                request("dave@example.com", "github", "merge"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = batch.results.iter().map(outcome).collect();
    let pair = |d: &str, r: &str| (d.to_owned(), r.to_owned());
    assert_eq!(
        got,
        [
            pair("ALLOW", "POLICY"),
            pair("DENY", "UNKNOWN_USER"),
            pair("ALLOW", "POLICY")
        ]
    );
    let refused = client
        .batch_check(pb::BatchCheckRequest {
            checks: vec![
                request("alice@example.com", "github", "merge"),
                request("", "github", "merge"),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // SCIM: refused without a valid token, then a list and a new user. Neither a path outside
    // /scim/v2 nor /metrics itself is a SCIM request.
    let bad = http(
        &server.http,
        "GET",
        "/scim/v2/Users",
        &[("Authorization", "Bearer scim_nope")],
        b"",
    );
    assert_eq!(bad.status, 401, "{}", bad.body);
    let authorization = format!("Bearer {scim_token}");
    let list = http(
        &server.http,
        "GET",
        "/scim/v2/Users",
        &[("Authorization", &authorization)],
        b"",
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let body = json!({"schemas": [USER], "userName": "erin@example.com", "active": true});
    let created = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &[
            ("Authorization", &authorization),
            ("Content-Type", "application/scim+json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        http(&server.http, "GET", "/elsewhere", &[], b"").status,
        404
    );

    // Admin: two calls answered OK, one NOT_FOUND, one UNAUTHENTICATED.
    let mut alice = server.admin(&admin_token).await;
    alice.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    let missing = alice
        .lock_user(pb::LockUserRequest {
            user: "nobody@example.com".into(),
            reason: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let locked = alice
        .lock_user(pb::LockUserRequest {
            user: "bob@example.com".into(),
            reason: "laptop stolen".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // ApprovalFlowService's calls are counted with AdminService's.
    server
        .flows(&admin_token)
        .await
        .list_approval_flows(pb::ListApprovalFlowsRequest {})
        .await
        .unwrap();
    let mut stranger = server.admin("pc_not-a-token").await;
    let unauthenticated = stranger.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);

    // The lock is in decisions at the revision the write returned.
    let mut after_lock = request("bob@example.com", "github", "create_issue");
    after_lock.min_revision = locked.revision;
    let last = client.check(after_lock).await.unwrap().into_inner();
    checks += 1;
    assert_eq!(outcome(&last), pair("DENY", "USER_LOCKED"));

    let scrape = scraped(&server).await;
    assert_eq!(
        decisions(&scrape),
        expected_decisions(&[
            ("ALLOW", "POLICY", 3),
            ("DENY", "POLICY", 1),
            ("DENY", "UNKNOWN_USER", 2),
            ("DENY", "USER_INACTIVE", 1),
            ("DENY", "NO_MATCHING_POLICY", 1),
            ("DENY", "USER_LOCKED", 1),
        ])
    );
    assert_eq!(
        scrape.histogram("portcullis_check_duration_seconds"),
        checks
    );
    assert_eq!(scrape.kind("portcullis_scim_requests"), "counter");
    let by = |pairs: &[(&[&str], f64)]| -> BTreeMap<Vec<String>, f64> {
        pairs
            .iter()
            .map(|(labels, n)| (labels.iter().map(|l| (*l).to_owned()).collect(), *n))
            .collect()
    };
    assert_eq!(
        scrape.by_label("portcullis_scim_requests_total"),
        by(&[(&["200"], 1.0), (&["201"], 1.0), (&["401"], 1.0)])
    );
    assert_eq!(scrape.kind("portcullis_admin_calls"), "counter");
    // Label values in key order: code, method.
    assert_eq!(
        scrape.by_label("portcullis_admin_calls_total"),
        by(&[
            (&["NOT_FOUND", "LockUser"], 1.0),
            (&["OK", "ListApprovalFlows"], 1.0),
            (&["OK", "LockUser"], 1.0),
            (&["OK", "WhoAmI"], 1.0),
            (&["UNAUTHENTICATED", "WhoAmI"], 1.0),
        ])
    );

    // The snapshot: the revision Check reported, published by applying changes (the SCIM
    // user and the lock), fresh.
    assert_eq!(scrape.kind("portcullis_snapshot_revision"), "gauge");
    assert_eq!(
        scrape.get("portcullis_snapshot_revision", &[]),
        last.revision as f64
    );
    assert!(last.revision >= locked.revision);
    assert!(
        scrape.get(
            "portcullis_snapshot_publishes_total",
            &[("kind", "changes")]
        ) >= 2.0
    );
    assert_eq!(
        scrape.get("portcullis_snapshot_publishes_total", &[("kind", "full")]),
        0.0
    );
    assert_eq!(scrape.get("portcullis_snapshot_folds_total", &[]), 0.0);
    assert_eq!(scrape.kind("portcullis_snapshot_age_seconds"), "gauge");
    let age = scrape.get("portcullis_snapshot_age_seconds", &[]);
    assert!((0.0..60.0).contains(&age), "age {age}");
    assert_eq!(
        scrape.kind("portcullis_snapshot_last_build_seconds"),
        "gauge"
    );
    assert_eq!(
        scrape.kind("portcullis_snapshot_last_fold_seconds"),
        "gauge"
    );
    assert_eq!(
        scrape.get("portcullis_decision_records_dropped_total", &[]),
        0.0
    );

    // A sidecar following it answers at its revision and exports its own decisions beside
    // the follower's gauges.
    let sidecar = Server::spawn(&[
        "sidecar",
        "--upstream",
        &server.addr,
        "--upstream-token-file",
        path(&sidecar_token),
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    let mut near = sidecar.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut at_revision = request("alice@example.com", "github", "create_issue");
    at_revision.min_revision = last.revision;
    let mut sidecar_checks = 0;
    loop {
        let answer = near.check(at_revision.clone()).await;
        sidecar_checks += 1;
        match answer {
            Ok(answer) if outcome(answer.get_ref()) == pair("ALLOW", "POLICY") => break,
            _ => {
                assert!(Instant::now() < deadline, "the sidecar never caught up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let sidecar_scrape = scraped(&sidecar).await;
    let counted = decisions(&sidecar_scrape);
    assert_eq!(counted[&pair("ALLOW", "POLICY")], 1);
    let stale = counted[&pair("DENY", "STALE_SNAPSHOT")];
    assert_eq!(
        counted.values().sum::<u64>(),
        1 + stale,
        "only stale denies before its first snapshot (or waits refused): {counted:?}"
    );
    assert!(
        sidecar_scrape.histogram("portcullis_check_duration_seconds") == sidecar_checks,
        "every Check timed, refused ones too"
    );
    assert_eq!(
        sidecar_scrape.get("portcullis_snapshot_revision", &[]),
        last.revision as f64
    );
    assert_eq!(
        sidecar_scrape.get("portcullis_full_snapshots_total", &[]),
        1.0
    );
    assert_eq!(
        sidecar_scrape.get("portcullis_snapshot_failing_closed", &[]),
        0.0
    );
    assert_eq!(
        sidecar_scrape.kind("portcullis_snapshot_age_seconds"),
        "gauge"
    );
    // SCIM and admin are the control plane's only.
    assert!(
        !sidecar_scrape
            .types
            .contains_key("portcullis_scim_requests")
    );
    assert!(!sidecar_scrape.types.contains_key("portcullis_admin_calls"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_failing_closed_counts_stale_denies() {
    // Nothing listens on port 1: the sidecar never gets a snapshot and denies every check.
    let sidecar = Server::spawn(&[
        "sidecar",
        "--upstream",
        "http://127.0.0.1:1",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    let mut client = sidecar.client().await;
    let answer = client
        .check(request("alice@example.com", "github", "create_issue"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        outcome(&answer),
        ("DENY".to_owned(), "STALE_SNAPSHOT".to_owned())
    );
    let batch = client
        .batch_check(pb::BatchCheckRequest {
            checks: vec![request("a", "github", "x"), request("b", "github", "y")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.results.len(), 2);
    let scrape = scraped(&sidecar).await;
    assert_eq!(
        decisions(&scrape),
        expected_decisions(&[("DENY", "STALE_SNAPSHOT", 3)])
    );
    assert_eq!(scrape.histogram("portcullis_check_duration_seconds"), 1);
    assert_eq!(scrape.get("portcullis_snapshot_failing_closed", &[]), 1.0);
    assert_eq!(scrape.get("portcullis_full_snapshots_total", &[]), 0.0);
}
