//! The admin API against a real server: ListUsers search latency, and how long a lock takes to
//! reach decisions.
//!
//! ```sh
//! cargo bench --bench admin                                   # medium (100k users)
//! PORTCULLIS_BENCH_PRESET=large cargo bench --bench admin     # large (1M users)
//! ```
//!
//! It generates the preset's directory, imports it into a sled store in a temp dir, starts
//! AdminService and DecisionService in this process on a loopback port and calls them over gRPC
//! with a real client. Each figure is a distribution over many calls (p50, p90, p99).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use admin::{Activity, AdminService};
use pb::admin_service_client::AdminServiceClient;
use pb::decision_service_client::DecisionServiceClient;
use pdp_service::{DecisionService, Recorder};
use portcullis_proto::v1 as pb;
use std::time::Instant;
use support::{Picker, imported, peak_rss_mib, summary};
use tonic::transport::Channel;

mod support;

fn main() {
    let preset = std::env::var("PORTCULLIS_BENCH_PRESET").unwrap_or_else(|_| "medium".into());
    let params = workload::Params::preset(&preset).unwrap();
    let generated = workload::generate(&params).unwrap();
    let model = generated.files.to_model(pdp::Timestamp(1_700_000_000_000));
    let emails: Vec<String> = model.users.iter().map(|u| u.email().to_owned()).collect();
    let active: Vec<String> = model
        .users
        .iter()
        .filter(|u| u.status() == pdp::UserStatus::Active)
        .map(|u| u.id.clone())
        .collect();
    let admin_email = emails[0].clone();
    println!(
        "{preset}: {} users, {} groups, {} policies",
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (recorder, records) = Recorder::channel(1024);
        let activity = Activity::start(records);
        let server = tonic::transport::Server::builder()
            .add_service(
                DecisionService::new(live.engine().clone())
                    .with_recorder(recorder)
                    .into_server(),
            )
            .add_service(AdminService::new(live.clone(), activity).into_server());
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(server.serve_with_incoming(incoming));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}").parse().unwrap();
        let mut admin = AdminServiceClient::with_interceptor(
            channel.clone(),
            move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", auth.clone());
                Ok(r)
            },
        );
        let mut decisions = DecisionServiceClient::new(channel);

        println!("ListUsers, page of 50:");
        let mut pick = Picker(42);
        let calls = 100;
        let mut run =
            async |name: &str, make: &mut dyn FnMut(&mut Picker) -> pb::ListUsersRequest| {
                let mut samples = Vec::with_capacity(calls);
                let mut rows = 0;
                for _ in 0..calls {
                    let request = make(&mut pick);
                    let t = Instant::now();
                    let response = admin.list_users(request).await.unwrap().into_inner();
                    samples.push(t.elapsed());
                    rows += response.users.len();
                }
                summary(&format!("{name} ({} rows/page)", rows / calls), samples);
            };
        run("first page, by email", &mut |_| {
            pb::ListUsersRequest::default()
        })
        .await;
        run("first page, by created, descending", &mut |_| {
            pb::ListUsersRequest {
                sort: pb::UserSort::Created as i32,
                descending: true,
                ..Default::default()
            }
        })
        .await;
        // A name fragment: the first three letters of someone's email (many matches).
        run("search: 3-letter fragment", &mut |p| {
            let email = &emails[p.below(emails.len())];
            pb::ListUsersRequest {
                search: email.chars().take(3).collect(),
                ..Default::default()
            }
        })
        .await;
        // A whole email: one match, so the whole order is scanned to fill the page.
        run("search: one user's full email", &mut |p| {
            pb::ListUsersRequest {
                search: emails[p.below(emails.len())].clone(),
                ..Default::default()
            }
        })
        .await;
        run("search: no match", &mut |_| pb::ListUsersRequest {
            search: "zz-no-such-user-zz".into(),
            ..Default::default()
        })
        .await;
        run("status: inactive", &mut |_| pb::ListUsersRequest {
            status: pb::UserStatus::Inactive as i32,
            ..Default::default()
        })
        .await;

        println!("LockUser → Check sees it (a poller calls Check without min_revision):");
        let mut call = Vec::new();
        let mut after_return = Vec::new();
        let mut read_own = Vec::new();
        for i in 0..20 {
            let user = active[pick.below(active.len())].clone();
            let mut poller = decisions.clone();
            let polled = user.clone();
            let seen = tokio::spawn(async move {
                loop {
                    let r = poller
                        .check(pb::CheckRequest {
                            user: polled.clone(),
                            agent: "bench".into(),
                            connector: "github".into(),
                            tool: "t".into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    if r.reason() == pb::Reason::UserLocked {
                        return Instant::now();
                    }
                }
            });
            let t = Instant::now();
            let locked = admin
                .lock_user(pb::LockUserRequest {
                    user: user.clone(),
                    reason: format!("bench {i}"),
                })
                .await
                .unwrap()
                .into_inner();
            let returned = Instant::now();
            call.push(returned - t);
            let t2 = Instant::now();
            let own = decisions
                .check(pb::CheckRequest {
                    user: user.clone(),
                    agent: "bench".into(),
                    connector: "github".into(),
                    tool: "t".into(),
                    min_revision: locked.revision,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            read_own.push(t2.elapsed());
            assert_eq!(own.reason(), pb::Reason::UserLocked);
            let seen = seen.await.unwrap();
            after_return.push(seen.saturating_duration_since(returned));
        }
        summary("LockUser call (commit, fsync, publish)", call);
        summary(
            "first Check seeing it, after the call returned",
            after_return,
        );
        summary("Check with min_revision right after", read_own);
    });
    println!("peak RSS {} MiB", peak_rss_mib());
}
