//! The links in notification webhooks open the console: with `--console-public-url` set, a
//! real receiver on loopback gets each request's console page in `data.console_url` (and as a
//! link in the Slack message), and that page opens for a signed-in approver (signed out, the
//! sign-in comes back to it); without it the field is null.

use super::Browser;
use crate::approvals::{approvals, company, create, person_token};
use crate::support::{Server, admin_token, run_ok};
use axum::routing::post;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PUBLIC: &str = "https://portcullis.example.com";

/// A webhook receiver on an ephemeral loopback port: answers 204 and keeps each body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = Arc::clone(&bodies);
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: String| {
                let kept = Arc::clone(&kept);
                async move {
                    kept.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let (listener, addr) = test_support::loopback().await;
        let url = format!("http://{addr}/hook");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, bodies, task }
    }

    /// The first `n` bodies, waiting at most 30 s for them.
    async fn received(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let bodies = self.bodies.lock().unwrap().clone();
            if bodies.len() >= n {
                return bodies;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} deliveries within 30 s: {bodies:?}",
                bodies.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `admin webhooks create` for `approval.created` to `url`, in Slack's shape or not.
fn subscribe(server: &Server, token: &str, url: &str, slack: bool) {
    let mut args = vec![
        "admin",
        "--server",
        &server.addr,
        "--token",
        token,
        "webhooks",
        "create",
        "--url",
        url,
        "--event",
        "approval.created",
    ];
    if slack {
        args.push("--slack");
    }
    run_ok(&args);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_payloads_link_to_the_request_page_an_approver_opens() {
    let (_root, data) = company();
    let admin = admin_token(&data, "admin");
    let bob = person_token(&data, "bob");
    let server = Server::start_with(&data, &["--console-public-url", &format!("{PUBLIC}/")]);
    let json = Receiver::start().await;
    let slack = Receiver::start().await;
    subscribe(&server, &admin, &json.url, false);
    subscribe(&server, &admin, &slack.url, true);

    let request = approvals(&server, None)
        .await
        .create_approval_request(create("acme/old"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    let page = format!("/console/approvals/{}", request.id);
    let link = format!("{PUBLIC}{page}");

    let event = &json.received(1).await[0];
    assert_eq!(event["type"], "approval.created", "{event}");
    assert_eq!(event["data"]["id"], request.id.as_str(), "{event}");
    assert_eq!(event["data"]["console_url"], link.as_str(), "{event}");
    let message = &slack.received(1).await[0];
    let text = message["text"].as_str().unwrap();
    assert!(
        text.ends_with(&format!(" <{link}|Open in the console>")),
        "{text}"
    );

    // The link's path is the request's page: Bob, an approver the flow names, opens it signed
    // in and may approve it there.
    let approver = Browser::new(&server.http);
    assert_eq!(approver.sign_in(&bob).await.status, 303);
    let shown = approver.get(&page).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(
        shown.body.contains("Approve this exact call"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("acme/old"), "{}", shown.body);
    // Signed out, the link leads to the sign-in page, which comes back to it once signed in.
    let later = Browser::new(&server.http);
    let away = later.get(&page).await;
    assert_eq!(away.status, 303, "{}", away.body);
    let sign_in = away.location().to_owned();
    assert_eq!(
        sign_in,
        format!(
            "/console/sign-in?then=%2Fconsole%2Fapprovals%2F{}",
            request.id
        )
    );
    let form = later.get(&sign_in).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(
        super::field_value(&form.body, "then").as_deref(),
        Some(page.as_str())
    );
    let csrf = form.csrf();
    let signed_in = later
        .post(
            "/console/sign-in",
            &[("csrf", &csrf), ("token", &bob), ("then", &page)],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), page);
    assert_eq!(later.get(&page).await.status, 200);
    // A return path off the console is not followed: the console's home instead.
    let form = later.get("/console/sign-in").await;
    let csrf = form.csrf();
    let elsewhere = later
        .post(
            "/console/sign-in",
            &[
                ("csrf", &csrf),
                ("token", &bob),
                ("then", "//evil.example/console/"),
            ],
        )
        .await;
    assert_eq!(elsewhere.status, 303, "{}", elsewhere.body);
    assert_eq!(elsewhere.location(), "/console");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_the_link_is_null() {
    let (_root, data) = company();
    let admin = admin_token(&data, "admin");
    let server = Server::start(&data);
    let json = Receiver::start().await;
    let slack = Receiver::start().await;
    subscribe(&server, &admin, &json.url, false);
    subscribe(&server, &admin, &slack.url, true);
    approvals(&server, None)
        .await
        .create_approval_request(create("acme/old"))
        .await
        .unwrap();
    let event = &json.received(1).await[0];
    assert!(event["data"].get("console_url").is_some(), "{event}");
    assert_eq!(event["data"]["console_url"], Value::Null, "{event}");
    let message = &slack.received(1).await[0];
    assert!(
        !message["text"].as_str().unwrap().contains("console"),
        "{message}"
    );
}
