//! The console's server-side render time at a million users: a request through the console's
//! router (sign-in session check, the admin service call, the HTML) to the whole body, for the
//! Users page (first page, a search, two sorts) and a 100,000-member group's details page.
//! Goal: median ≤ 20 ms each (issue 20).
//!
//! ```sh
//! cargo bench --bench console                                  # large (1M users)
//! PORTCULLIS_BENCH_PRESET=medium cargo bench --bench console   # medium (100k users)
//! PORTCULLIS_BENCH_CALLS=200 cargo bench --bench console       # calls per page (default 100)
//! ```
//!
//! It generates the preset's directory the way `benches/admin.rs` does, adds one group holding
//! every tenth user (100,000 members at 1M users), imports it into a sled store in a temp dir,
//! builds the same admin services `serve` builds and the console's router over them, signs in
//! through the real sign-in form with a minted Admin token, and sends each page's GET to the
//! router in process (no socket: what is timed is the server's work). Each figure is a
//! distribution over many calls (p50, p90, p99, max), after a few unrecorded warm-up calls.
//! Last, it follows the group's "Next page" links to its last page and times that page: a
//! cursor that does not seek would show there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use admin::webhooks::{WebhookOutbox, WebhookService};
use admin::{Activity, AdminService, ApprovalFlowService};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pdp::{Group, ManagedBy, Membership, MembershipSource, Timestamp};
use std::time::{Duration, Instant};
use support::{Picker, imported, peak_rss_mib, summary};
use tower_service::Service;

mod support;

/// The big group's id, and how often a user is in it (every `SPREAD`th user).
const GROUP: &str = "g-bench-everyone-tenth";
const SPREAD: usize = 10;
/// Unrecorded calls before each page's timed ones.
const WARM_UP: usize = 5;

fn main() {
    let preset = std::env::var("PORTCULLIS_BENCH_PRESET").unwrap_or_else(|_| "large".into());
    let calls: usize = std::env::var("PORTCULLIS_BENCH_CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    let params = workload::Params::preset(&preset).unwrap();
    let generated = workload::generate(&params).unwrap();
    let now = Timestamp(1_700_000_000_000);
    let mut model = generated.files.to_model(now);
    model.groups.push(Group {
        id: GROUP.into(),
        display_name: "Everyone, every tenth".into(),
        description: "The console bench's big group".into(),
        managed_by: ManagedBy::Local,
        created_at: now,
        updated_at: now,
        ..Group::default()
    });
    let members: Vec<Membership> = model
        .users
        .iter()
        .step_by(SPREAD)
        .map(|u| Membership {
            group_id: GROUP.into(),
            user_id: u.id.clone(),
            joined_at: now,
            source: MembershipSource::Local,
        })
        .collect();
    let group_size = members.len();
    model.memberships.extend(members);
    // Searches that match few: a user's whole email (one), a user's display name (those who
    // share it), drawn deterministically.
    let mut pick = Picker(42);
    let emails: Vec<String> = (0..calls)
        .map(|_| {
            model.users[pick.below(model.users.len())]
                .email()
                .to_owned()
        })
        .collect();
    let names: Vec<String> = (0..calls)
        .map(|_| {
            model.users[pick.below(model.users.len())]
                .display_name
                .clone()
        })
        .collect();
    let admin_email = model.users[0].email().to_owned();
    println!(
        "{preset}: {} users, {} groups, {} policies; group {GROUP} has {group_size} members",
        model.users.len(),
        model.groups.len(),
        model.policies.len()
    );

    let (_dir, live, secret) = imported(model, &admin_email);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let engine = live.engine().clone();
        let outbox = WebhookOutbox::open(live.store()).unwrap();
        let approvals = admin::approvals::Approvals::start(live.clone(), None).unwrap();
        let services = console::Services {
            admin: AdminService::new(live.clone(), Activity::decision_log()),
            flows: ApprovalFlowService::new(live.clone()),
            webhooks: WebhookService::new(live.clone(), outbox),
            approvals: admin::approvals::ApprovalService::new(approvals, None),
            decisions: pdp_service::DecisionService::new(engine),
        };
        let router = console::Console::new(services, console::Settings::default(), false).router();
        let cookie = sign_in(&router, &secret).await;

        // The search index is built on the first search (serve warms it in the background at
        // start): time that once, apart, so the figures below are the steady state.
        let t = Instant::now();
        let (status, _) = get(&router, &cookie, "/console/users?q=zz-no-such-user-zz").await;
        assert_eq!(status, StatusCode::OK);
        println!(
            "  first search (builds the search index) {:.0} ms",
            t.elapsed().as_secs_f64() * 1000.0
        );

        println!("GET → whole HTML body, in process:");
        let run = async |name: &str, paths: &dyn Fn(usize) -> String| {
            for i in 0..WARM_UP {
                get(&router, &cookie, &paths(i)).await;
            }
            let mut samples: Vec<Duration> = Vec::with_capacity(calls);
            let mut rows = 0;
            let mut bytes = 0;
            for i in 0..calls {
                let path = paths(i);
                let t = Instant::now();
                let (status, body) = get(&router, &cookie, &path).await;
                samples.push(t.elapsed());
                assert_eq!(status, StatusCode::OK, "{path}: {body}");
                rows += body.matches("<tr").count().saturating_sub(1);
                bytes += body.len();
            }
            summary(
                &format!(
                    "{name} ({} rows, {} KiB)",
                    rows / calls,
                    bytes / calls / 1024
                ),
                samples,
            );
        };
        let query = |q: &str| serde_urlencoded::to_string([("q", q)]).unwrap();
        run("users: first page", &|_| "/console/users".into()).await;
        run("users: search, a whole email", &|i| {
            format!("/console/users?{}", query(&emails[i % emails.len()]))
        })
        .await;
        run("users: search, a display name", &|i| {
            format!("/console/users?{}", query(&names[i % names.len()]))
        })
        .await;
        run("users: sort by created, descending", &|_| {
            "/console/users?sort=created&desc=1".into()
        })
        .await;
        run("users: sort by MFA", &|_| "/console/users?sort=mfa".into()).await;
        run(&format!("group of {group_size}: details"), &|_| {
            format!("/console/groups/{GROUP}")
        })
        .await;

        // The group's last page: follow "Next page" from the first to the end, as a person
        // paging through would, then time that page alone.
        let mut path = format!("/console/groups/{GROUP}");
        let mut pages = 1;
        let started = Instant::now();
        loop {
            let (status, body) = get(&router, &cookie, &path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            match next_page(&body) {
                Some(next) => {
                    path = next;
                    pages += 1;
                }
                None => break,
            }
        }
        println!(
            "  (followed {pages} pages of the group in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        run(
            &format!("group of {group_size}: page {pages} (the last)"),
            &|_| path.clone(),
        )
        .await;
    });
    println!("peak RSS {} MiB", peak_rss_mib());
}

/// Signs in as a browser does (the form's cookie and CSRF field, then the token) and returns
/// the session's `Cookie` header value.
async fn sign_in(router: &Router, secret: &str) -> String {
    let form = router
        .clone()
        .call(
            Request::get("/console/sign-in")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let form_cookie = set_cookie(&form);
    let html = String::from_utf8(
        form.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sign-in form has a CSRF field");
    let body = serde_urlencoded::to_string([("csrf", csrf), ("token", secret)]).unwrap();
    let signed = router
        .clone()
        .call(
            Request::post("/console/sign-in")
                .header(header::COOKIE, &form_cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER, "sign-in refused");
    set_cookie(&signed)
}

/// The address of a page's "Next page" link, if it has one.
fn next_page(html: &str) -> Option<String> {
    let before = &html[..html.find("\">Next page</a>")?];
    let href = &before[before.rfind("href=\"")? + "href=\"".len()..];
    Some(href.replace("&amp;", "&"))
}

/// The `name=value` part of a response's `Set-Cookie`.
fn set_cookie(response: &axum::response::Response) -> String {
    let value = response
        .headers()
        .get(header::SET_COOKIE)
        .expect("a cookie is set")
        .to_str()
        .unwrap();
    value.split(';').next().unwrap().to_owned()
}

/// One GET through the router (a clone, as a server does per connection; axum's `Router` is
/// always ready, so `call` without `poll_ready` is what `oneshot` does) and its whole body.
async fn get(router: &Router, cookie: &str, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .call(
            Request::get(path)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}
