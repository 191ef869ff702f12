//! The approvals inbox: an approver finds the request awaiting them, reads exactly what the
//! agent asked (arguments, justification, steps), approves it with a comment, and the retried
//! call passes; a person with no admin role signs in to their inbox and nothing else.

use super::Browser;
use crate::approvals::{approvals, company, create, person_token};
use crate::support::{Server, admin_token};
use portcullis_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_approves_in_the_console_and_the_retried_call_passes() {
    let (_root, data) = company();
    let _admin = admin_token(&data, "admin");
    let bob = person_token(&data, "bob");
    let ada = person_token(&data, "ada");
    let server = Server::start(&data);
    let mut gateway = approvals(&server, None).await;
    let request = gateway
        .create_approval_request(create("acme/old"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();

    // Ada (no admin role) signs in to her inbox only: the request is hers, not hers to approve.
    let requester = Browser::new(&server.http);
    assert_eq!(requester.sign_in(&ada).await.status, 303);
    let home = requester.get("/console").await;
    assert_eq!(home.location(), "/console/approvals");
    let inbox = requester.get("/console/approvals").await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    assert!(!inbox.body.contains(&request.id), "not awaiting ada");
    assert!(
        !inbox.body.contains("href=\"/console/users\""),
        "no Users entry"
    );
    assert_eq!(requester.get("/console/users").await.status, 403);
    let own = requester
        .get(&format!("/console/approvals/{}", request.id))
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(
        own.body.contains("does not await your approval"),
        "{}",
        own.body
    );
    let forged = requester
        .submit(
            &format!("/console/approvals/{}", request.id),
            &format!("/console/approvals/{}/approve", request.id),
            &[("comment", "mine")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("own request"), "{}", forged.body);

    // Bob finds it in his inbox and reads what the agent asked.
    let approver = Browser::new(&server.http);
    assert_eq!(approver.sign_in(&bob).await.status, 303);
    let inbox = approver.get("/console/approvals").await;
    assert!(inbox.body.contains(&request.id), "{}", inbox.body);
    let page = format!("/console/approvals/{}", request.id);
    let shown = approver.get(&page).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    for expected in [
        "acme/old",
        "cleaning up an archived repository",
        "ada@example.com",
        "github.delete_repo",
        "Approve this exact call",
    ] {
        assert!(shown.body.contains(expected), "{expected}: {}", shown.body);
    }
    let approved = approver
        .submit(
            &page,
            &format!("/console/approvals/{}/approve", request.id),
            &[("comment", "archived since 2019 <ok>")],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let after = approver.get(&page).await;
    assert!(after.body.contains("Approved"), "{}", after.body);
    assert!(
        after.body.contains("archived since 2019 &lt;ok&gt;"),
        "{}",
        after.body
    );

    // The retried call, naming the request, passes.
    assert_eq!(retried(&server, &request.id).await, pb::Decision::Allow);
}

/// What Check answers Ada's call (`create("acme/old")`) retried with approval request `id`.
pub async fn retried(server: &Server, id: &str) -> pb::Decision {
    server
        .client()
        .await
        .check(pb::CheckRequest {
            user: "ada@example.com".into(),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "delete_repo".into(),
            arguments: Some(crate::approvals::args("acme/old")),
            approval_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decision()
}
