//! The stream in one process: a control plane (a real store in a temp dir, `Live`, the feed
//! served over gRPC on a loopback port) and followers connected to it. After every change a
//! follower at the same revision decides every request exactly like the control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fleet::{Feed, Follower, Options, Upstream};
use live::Live;
use pdp::{
    Action, Group, Lock, Membership, MembershipSource, Model, NoAttributes, Policy, Request, Scope,
    Snapshot, Timestamp, Tools, User,
};
use pdp_service::RequireToken;
use std::time::Duration;
use store::Store;
use tokio::sync::oneshot;

const TOKEN: &str = "stream-secret";

fn user(i: usize) -> User {
    User {
        id: format!("u{i}"),
        user_name: format!("user{i}@example.com"),
        emails: vec![format!("user{i}@example.com")],
        external_id: i.is_multiple_of(3).then(|| format!("ext{i}")),
        ..User::default()
    }
}

fn group(id: &str) -> Group {
    Group {
        id: id.into(),
        display_name: id.into(),
        ..Group::default()
    }
}

fn member(group_id: &str, user_id: &str) -> Membership {
    Membership {
        group_id: group_id.into(),
        user_id: user_id.into(),
        joined_at: Timestamp(1),
        source: MembershipSource::Idp,
    }
}

fn policy(id: &str, tools: Tools, scope: Scope, action: Action) -> Policy {
    Policy {
        id: id.into(),
        name: id.into(),
        connector: "github".into(),
        tools,
        scope,
        action,
        enabled: true,
        ..Policy::default()
    }
}

/// `users` users; group `big` holds the even ones, `small` the first ten; policies grant
/// through both groups, to everyone, and deny one tool to a named user.
fn model(users: usize) -> Model {
    let mut memberships: Vec<Membership> = (0..users)
        .step_by(2)
        .map(|i| member("big", &format!("u{i}")))
        .collect();
    memberships.extend((0..10.min(users)).map(|i| member("small", &format!("u{i}"))));
    Model {
        agents: vec![
            pdp::Agent {
                id: "claude".into(),
                aliases: vec!["oauth-claude".into()],
                ..pdp::Agent::default()
            },
            pdp::Agent {
                id: "inhouse".into(),
                scope: Scope {
                    groups: vec!["small".into()],
                    ..Scope::default()
                },
                ..pdp::Agent::default()
            },
        ],
        settings: Default::default(),
        revision: 0,
        users: (0..users).map(user).collect(),
        groups: vec![group("big"), group("small")],
        memberships,
        policies: vec![
            policy(
                "p-big",
                Tools::Only(vec!["merge".into()]),
                Scope {
                    groups: vec!["big".into()],
                    ..Scope::default()
                },
                Action::Allow,
            ),
            policy(
                "p-small",
                Tools::All,
                Scope {
                    groups: vec!["small".into()],
                    ..Scope::default()
                },
                Action::StepUp,
            ),
            policy(
                "p-all",
                Tools::Only(vec!["read".into()]),
                Scope {
                    all_users: true,
                    ..Scope::default()
                },
                Action::Allow,
            ),
            policy(
                "p-deny",
                Tools::Only(vec!["read".into()]),
                Scope {
                    users: vec!["u1".into()],
                    ..Scope::default()
                },
                Action::Deny,
            ),
            Policy {
                agents: pdp::Agents::Only(vec!["claude".into()]),
                step_up: Some(pdp::StepUp {
                    acr_values: vec!["phrh".into()],
                    ..pdp::StepUp::default()
                }),
                ..policy(
                    "p-claude",
                    Tools::Only(vec!["merge".into()]),
                    Scope {
                        all_users: true,
                        ..Scope::default()
                    },
                    Action::StepUp,
                )
            },
        ],
    }
}

/// One store transaction, as `Live::write` takes it.
type Write = Box<dyn FnOnce(&mut store::Tx<'_, '_>) -> Result<(), live::Error> + Send>;

/// A control plane serving the stream on a loopback port.
struct ControlPlane {
    live: Live,
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn control_plane(store: Store) -> ControlPlane {
    control_plane_at(store, "http://127.0.0.1:0").await
}

/// A control plane on `url`'s address (port 0: any free one), waiting for a previous one
/// there to let go of it.
async fn control_plane_at(store: Store, url: &str) -> ControlPlane {
    let addr = url.trim_start_matches("http://");
    let mut listener = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(bound) => {
                listener = Some(bound);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let listener = listener.expect("the address stayed taken");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let live = Live::start(store).unwrap();
    let feed = Feed::start(&live);
    let (stop, stopped) = oneshot::channel::<()>();
    let service = feed.service(RequireToken::new(TOKEN));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                    feed.stop();
                },
            )
            .await
            .unwrap();
    });
    ControlPlane {
        live,
        url,
        _stop: stop,
    }
}

fn follow(url: &str) -> Follower {
    Follower::start(
        Upstream::new(url, Some(TOKEN), None).unwrap(),
        Options::default(),
    )
    .unwrap()
}

/// Waits for the follower to reach the control plane's revision, then compares every user's
/// decision on every tool (by id, email and external id) and their listed tools.
async fn agrees(control: &Live, follower: &Follower, users: usize) {
    let revision = control.engine().revision();
    assert!(
        follower
            .engine()
            .wait_for(revision, Duration::from_secs(30))
            .await,
        "the follower did not reach revision {revision}: {:?}",
        follower.status()
    );
    let (theirs, mine) = (control.engine().snapshot(), follower.engine().snapshot());
    assert_eq!(mine.revision(), theirs.revision());
    assert_eq!(mine.user_count(), theirs.user_count());
    assert_eq!(mine.policy_count(), theirs.policy_count());
    for i in 0..users + 3 {
        for key in [
            format!("u{i}"),
            format!("USER{i}@example.com"),
            format!("ext{i}"),
        ] {
            let met = pdp::Authentication {
                acr: "phrh".into(),
                ..pdp::Authentication::default()
            };
            for agent in ["a", "claude", "oauth-claude", "inhouse", ""] {
                for tool in ["merge", "read", "other"] {
                    for authentication in [None, Some(&met)] {
                        let request = Request {
                            context: pdp::Context {
                                authentication,
                                ..Default::default()
                            },
                            user: &key,
                            agent,
                            connector: "github",
                            tool,
                            attributes: &NoAttributes,
                        };
                        assert_eq!(
                            mine.decide(&request),
                            theirs.decide(&request),
                            "{key} {agent} {tool} at revision {revision}"
                        );
                    }
                }
                assert_eq!(
                    mine.allowed_tools(&key, agent, None, &NoAttributes, Timestamp(0)),
                    theirs.allowed_tools(&key, agent, None, &NoAttributes, Timestamp(0))
                );
            }
        }
    }
}

fn snapshot_of(follower: &Follower) -> std::sync::Arc<Snapshot> {
    follower.engine().snapshot()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_decide_like_the_control_plane_through_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.import(&model(50)).unwrap();
    let control = control_plane(store).await;
    let follower = follow(&control.url);
    agrees(&control.live, &follower, 50).await;
    assert_eq!(follower.status().full_snapshots, 1);

    // Locks, deactivations, renames that move a login and an external id, new and deleted
    // users, memberships, groups and policies coming and going: one write each.
    let writes: Vec<Write> = vec![
        Box::new(|tx| {
            let mut u = tx.user("u4")?.unwrap();
            u.lock = Some(Lock {
                at: Timestamp(2),
                by: "admin".into(),
                reason: "incident".into(),
            });
            tx.put_user(&u)?;
            Ok(())
        }),
        Box::new(|tx| {
            let mut u = tx.user("u5")?.unwrap();
            u.active = false;
            tx.put_user(&u)?;
            Ok(())
        }),
        Box::new(|tx| {
            // u7 takes u8's email and u9's external id: the first in id order wins.
            let mut u = tx.user("u7")?.unwrap();
            u.emails = vec!["user8@example.com".into(), "seven@example.com".into()];
            u.external_id = Some("ext9".into());
            tx.put_user(&u)?;
            Ok(())
        }),
        Box::new(|tx| {
            tx.put_user(&user(50))?;
            tx.delete_user("u11")?;
            Ok(())
        }),
        Box::new(|tx| {
            tx.add_members("small", &[member("small", "u50")])?;
            Ok(())
        }),
        Box::new(|tx| {
            tx.remove_members("big", &["u2", "u4"])?;
            tx.add_members("big", &[member("big", "u3")])?;
            Ok(())
        }),
        Box::new(|tx| {
            tx.put_group(&group("new"))?;
            tx.add_members("new", &[member("new", "u1"), member("new", "u13")])?;
            tx.put_policy(&policy(
                "p-new",
                Tools::All,
                Scope {
                    groups: vec!["new".into()],
                    ..Scope::default()
                },
                Action::RequireApproval,
            ))?;
            Ok(())
        }),
        Box::new(|tx| {
            tx.delete_policy("p-deny")?;
            let mut p = tx.policy("p-all")?.unwrap();
            p.enabled = false;
            tx.put_policy(&p)?;
            Ok(())
        }),
        Box::new(|tx| {
            tx.delete_group("small")?;
            Ok(())
        }),
        // The kill switch, a new agent, the setting for unregistered agents.
        Box::new(|tx| {
            let mut claude = tx.agent("claude")?.unwrap();
            claude.enabled = false;
            tx.put_agent(&claude)?;
            Ok(())
        }),
        Box::new(|tx| {
            tx.put_agent(&pdp::Agent {
                id: "copilot".into(),
                ..pdp::Agent::default()
            })?;
            tx.put_settings(&pdp::Settings {
                unregistered_agents: pdp::Unregistered::Deny,
            })?;
            Ok(())
        }),
    ];
    for write in writes {
        control.live.write(write).await.unwrap();
        agrees(&control.live, &follower, 51).await;
    }
    let status = follower.status();
    assert_eq!((status.full_snapshots, status.changes), (1, 11));
    assert_eq!(status.lag(), 0);
    // A late follower starts from the whole directory and agrees too.
    let late = follow(&control.url);
    agrees(&control.live, &late, 51).await;
    assert_eq!(late.status().full_snapshots, 1);
    assert_eq!(
        snapshot_of(&late).revision(),
        snapshot_of(&follower).revision()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_larger_than_a_message_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // 10,000 users, 5,000 in `big`: deleting it changes 5,000 users' groups at once, more than
    // one message carries.
    store.import(&model(10_000)).unwrap();
    let control = control_plane(store).await;
    let follower = follow(&control.url);
    agrees(&control.live, &follower, 20).await;
    control
        .live
        .write(|tx| {
            tx.delete_group("big")?;
            Ok::<_, live::Error>(())
        })
        .await
        .unwrap();
    agrees(&control.live, &follower, 10_000).await;
    assert_eq!(follower.status().changes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_is_caught_up_from_its_change_log_or_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.import(&model(30)).unwrap();
    let control = control_plane(store).await;
    let url = control.url.clone();
    let follower = follow(&url);
    agrees(&control.live, &follower, 30).await;

    // Stopped, changed behind the follower's back, restarted on the same address.
    drop(control);
    let store = reopen(dir.path()).await;
    store
        .put_user(&User {
            active: false,
            ..user(3)
        })
        .unwrap();
    store.delete_user("u6").unwrap();
    let control = control_plane_at(store, &url).await;
    agrees(&control.live, &follower, 30).await;
    assert_eq!(
        follower.status().full_snapshots,
        1,
        "caught up from the log"
    );

    // Another store behind the same address, at a lower revision: the follower starts over
    // from its snapshot (its old revisions mean nothing there).
    drop(control);
    let other = tempfile::tempdir().unwrap();
    let store = reopen(other.path()).await;
    store.import(&model(5)).unwrap();
    let control = control_plane_at(store, &url).await;
    assert!(control.live.engine().revision() < follower.engine().revision());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while follower.status().full_snapshots < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            follower.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = follower.status();
    assert_eq!(status.revision, control.live.engine().revision());
    agrees(&control.live, &follower, 30).await;
}

/// Opens a store whose previous owner may still be letting go of it.
async fn reopen(dir: &std::path::Path) -> Store {
    for _ in 0..100 {
        match Store::open(dir) {
            Ok(store) => return store,
            Err(store::Error::Locked { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the store stayed locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_change_the_log_cannot_list_sends_the_whole_directory_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.import(&model(20)).unwrap();
    let control = control_plane(store).await;
    let follower = follow(&control.url);
    agrees(&control.live, &follower, 20).await;

    // More writes than the store lists for its view (it reloads the view) or logs (followers
    // cannot be caught up from the log): only a full snapshot brings them.
    let bulk = Model {
        users: (20..70_020).map(user).collect(),
        ..Model::default()
    };
    let store = control.live.store().clone();
    let summary = tokio::task::spawn_blocking(move || store.import(&bulk).unwrap())
        .await
        .unwrap();
    control.live.published(summary.revision).await.unwrap();
    // Counts agree in full; decisions on a sample.
    agrees(&control.live, &follower, 200).await;
    assert_eq!(follower.status().full_snapshots, 2);
}
