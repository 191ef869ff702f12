//! The Activity page: decisions per minute by outcome and the tools denied most, from the
//! decision log, and recent locks from the audit log.

use super::Setup;
use crate::support::{PATIENCE, wait_for_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_shows_the_decisions_denials_and_locks_that_happened() {
    let setup = Setup::start();
    let admin = setup.signed_in(&setup.admin).await;
    let locked = admin
        .submit(
            "/console/users/u0000005",
            "/console/users/u0000005/lock",
            &[("reason", "incident 42"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(locked.status, 303, "{}", locked.body);
    for _ in 0..3 {
        let answer = setup.check(&[
            "--user",
            "u0000005",
            "--agent",
            "gemini",
            "--connector",
            "slack",
            "--tool",
            "search_alert",
        ]);
        assert!(answer.contains("USER_LOCKED"), "{answer}");
    }

    // The decision log is written in batches off the hot path: wait for the three denials.
    let page = wait_for_async("the denials on the Activity page", PATIENCE, || async {
        let page = admin.get("/console/activity").await;
        if page.status == 200 && page.body.contains("<td>slack.search_alert</td><td>3</td>") {
            Ok(page)
        } else {
            Err(page.status)
        }
    })
    .await;
    assert!(page.body.contains("3 decisions"), "{}", page.body);
    assert!(page.body.contains("<rect class=\"deny\""), "a deny bar");
    assert!(page.body.contains("role=\"img\""), "the chart is labelled");
    let locks = page.body.split("Recent locks").nth(1).unwrap();
    assert!(
        locks.contains("user.lock") && locks.contains("u0000005") && locks.contains("incident 42"),
        "{locks}"
    );
    let day = admin.get("/console/activity?minutes=1440").await;
    assert_eq!(day.status, 200);
    assert!(
        day.body.contains("<option value=\"1440\" selected"),
        "{}",
        day.body
    );

    // Read Only people see it too.
    let reader = setup.signed_in(&setup.read_only).await;
    let read = reader.get("/console/activity").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body.contains("slack.search_alert"));
}
