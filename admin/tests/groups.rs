//! Groups, their members and roles: over a real server.

use crate::support::{Admin, Harness, assert_status, bad_list_requests};
use portcullis_proto::v1 as pb;
use tonic::Code;

fn names(response: &pb::ListGroupsResponse) -> Vec<&str> {
    response.groups.iter().map(|g| g.name.as_str()).collect()
}

fn member_ids(response: &pb::ListGroupMembersResponse) -> Vec<&str> {
    response
        .members
        .iter()
        .map(|m| m.user_id.as_str())
        .collect()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn list(admin: &Admin, request: pb::ListGroupsRequest) -> pb::ListGroupsResponse {
    admin
        .clone()
        .list_groups(request)
        .await
        .unwrap()
        .into_inner()
}

async fn create(admin: &Admin, name: &str, roles: &[pb::Role]) -> pb::Group {
    admin
        .clone()
        .create_group(pb::CreateGroupRequest {
            name: name.into(),
            description: format!("about {name}"),
            roles: roles.iter().map(|&r| r as i32).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap()
}

async fn get(admin: &Admin, id: &str) -> pb::GetGroupResponse {
    admin
        .clone()
        .get_group(pb::GetGroupRequest {
            id: id.into(),
            or_by_name: false,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn members(admin: &Admin, group_id: &str) -> pb::ListGroupMembersResponse {
    admin
        .clone()
        .list_group_members(pb::ListGroupMembersRequest {
            group_id: group_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn assign(admin: &Admin, group_id: &str, users: &[&str]) -> pb::AssignUsersResponse {
    admin
        .clone()
        .assign_users(pb::AssignUsersRequest {
            group_id: group_id.into(),
            users: users.iter().map(|u| (*u).to_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn list_groups_searches_sorts_and_pages() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let all = list(&admin, pb::ListGroupsRequest::default()).await;
    assert_eq!(names(&all), ["Admins", "Engineering", "Readers"]);
    assert!(all.next_page_token.is_empty());
    assert_eq!(all.revision, h.live.store().revision());
    let eng = &all.groups[1];
    assert_eq!(
        (
            eng.id.as_str(),
            eng.description.as_str(),
            eng.managed_by(),
            eng.user_count
        ),
        ("g-eng", "The Engineering group", pb::ManagedBy::External, 2)
    );
    assert_eq!(all.groups[0].roles, [pb::Role::Admin as i32]);

    let found = list(
        &admin,
        pb::ListGroupsRequest {
            search: "EER".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&found), ["Engineering"]);
    let found = list(
        &admin,
        pb::ListGroupsRequest {
            search: "r".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&found), ["Engineering", "Readers"]);
    let descending = list(
        &admin,
        pb::ListGroupsRequest {
            descending: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&descending), ["Readers", "Engineering", "Admins"]);
    // By user count, ties by id.
    let biggest = list(
        &admin,
        pb::ListGroupsRequest {
            sort: pb::GroupSort::UserCount as i32,
            descending: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&biggest), ["Engineering", "Readers", "Admins"]);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &admin,
            pb::ListGroupsRequest {
                sort: pb::GroupSort::UserCount as i32,
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await;
        seen.extend(page.groups.iter().map(|g| g.name.clone()));
        // Three groups: a cursor that never ends fails here instead of paging forever.
        assert!(seen.len() <= 3, "{seen:?}");
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["Admins", "Readers", "Engineering"]);

    // Pages of 2 by name while groups change underneath: each group exactly once; a group
    // created behind the cursor is not seen, one created ahead of it is.
    for name in ["Ops", "Product", "Sales", "Support"] {
        create(&admin, name, &[]).await;
    }
    let before = list(&admin, pb::ListGroupsRequest::default()).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(
            &admin,
            pb::ListGroupsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        seen.extend(page.groups.iter().map(|g| g.name.clone()));
        match pages {
            1 => {
                create(&admin, "AAA early", &[]).await;
                create(&admin, "ZZZ late", &[]).await;
            }
            _ => {
                // Change a group already listed and one not yet (their names stay).
                for id in ["g-admins", "g-readers"] {
                    admin
                        .clone()
                        .update_group(pb::UpdateGroupRequest {
                            id: id.into(),
                            description: format!("page {pages}"),
                            update_mask: mask(&["description"]),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
                assign(&admin, "g-readers", &["u-grace"]).await;
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = names(&before).iter().map(|n| (*n).to_owned()).collect();
    expected.push("ZZZ late".into());
    assert_eq!(seen, expected);

    // A token from another query is refused, naming the field.
    let first = list(
        &admin,
        pb::ListGroupsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert!(!first.next_page_token.is_empty());
    assert_status(
        admin
            .clone()
            .list_groups(pb::ListGroupsRequest {
                page_size: 2,
                descending: true,
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
}

#[tokio::test]
async fn create_makes_a_local_group_and_get_shows_it() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let created = admin
        .clone()
        .create_group(pb::CreateGroupRequest {
            name: "  Security  ".into(),
            description: "Incident response".into(),
            roles: vec![
                pb::Role::ReadOnly as i32,
                pb::Role::Admin as i32,
                pb::Role::ReadOnly as i32,
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let group = created.group.unwrap();
    let hex = group.id.strip_prefix("grp_").unwrap();
    assert_eq!(hex.len(), 16);
    assert!(
        hex.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        (
            group.name.as_str(),
            group.description.as_str(),
            group.managed_by(),
            group.user_count
        ),
        ("Security", "Incident response", pb::ManagedBy::Local, 0)
    );
    assert_eq!(
        group.roles,
        [pb::Role::Admin as i32, pb::Role::ReadOnly as i32]
    );
    assert!(group.external_id.is_empty());
    assert_eq!(group.created_at, group.updated_at);
    assert!(created.revision > 0);
    assert_eq!(h.live.engine().revision(), created.revision);

    let got = get(&admin, &group.id).await;
    assert_eq!(got.group.as_ref(), Some(&group));
    assert!(got.policy_ids.is_empty());
    assert_eq!(got.revision, created.revision);
    let other = create(&admin, "Security Team", &[]).await;
    assert_ne!(other.id, group.id);

    let eng = get(&admin, "g-eng").await;
    assert_eq!(eng.policy_ids, ["p-deny-delete", "p-eng-github"]);
    assert_eq!(eng.group.unwrap().user_count, 2);

    // Names are unique, ignoring case: against created and synced groups alike.
    for taken in ["security", "ADMINS", " engineering "] {
        assert_status(
            admin
                .clone()
                .create_group(pb::CreateGroupRequest {
                    name: taken.into(),
                    ..Default::default()
                })
                .await,
            Code::FailedPrecondition,
            "already named",
        );
    }
    assert_eq!(
        list(&admin, pb::ListGroupsRequest::default())
            .await
            .groups
            .len(),
        5
    );

    let events = h.audit("group.create").await;
    assert_eq!(events.len(), 2);
    let event = &events[1];
    assert_eq!(
        (
            event.actor.as_str(),
            event.target_kind.as_str(),
            event.target_id.as_str(),
            event.revision
        ),
        ("u-alice", "group", group.id.as_str(), created.revision)
    );
    assert!(
        event.after_json.contains("Incident response"),
        "{}",
        event.after_json
    );
}

#[tokio::test]
async fn get_finds_a_group_by_its_name_only_when_asked_and_refuses_a_shared_name() {
    // The identity provider synced two groups of the same name (only names given here are kept
    // unique).
    let mut model = crate::support::company();
    for id in ["g-c1", "g-c2"] {
        model.groups.push(crate::support::group(
            id,
            "Contractors",
            &[],
            pdp::ManagedBy::External,
        ));
    }
    let h = Harness::start_with(model).await;
    let admin = h.admin().await;
    let by = |id: &str, or_by_name| pb::GetGroupRequest {
        id: id.into(),
        or_by_name,
    };

    // By name, ignoring case: the group and its policies, as by its id.
    let named = admin
        .clone()
        .get_group(by("engineering", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named, get(&admin, "g-eng").await);
    let mut policies = named.policy_ids.clone();
    policies.sort();
    assert_eq!(policies, ["p-deny-delete", "p-eng-github"]);
    // An id is still an id.
    let by_id = admin.clone().get_group(by("g-eng", true)).await.unwrap();
    assert_eq!(by_id.into_inner().group.unwrap().name, "Engineering");
    // Not asked: a name is no id.
    assert_status(
        admin.clone().get_group(by("Engineering", false)).await,
        Code::NotFound,
        "group `Engineering` not found",
    );
    assert_status(
        admin.clone().get_group(by("nobody", true)).await,
        Code::NotFound,
        "no group has the id or the name `nobody`",
    );
    assert_status(
        admin.clone().get_group(by("CONTRACTORS", true)).await,
        Code::FailedPrecondition,
        "2 groups are named `CONTRACTORS`: give one of their ids (`g-c1`, `g-c2`)",
    );
}

#[tokio::test]
async fn update_changes_only_masked_fields() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let before = get(&admin, "g-admins").await.group.unwrap();
    let updated = admin
        .clone()
        .update_group(pb::UpdateGroupRequest {
            id: "g-admins".into(),
            name: "Ignored".into(),
            description: "Who runs Portcullis".into(),
            // Not masked, so not even read.
            roles: vec![42],
            update_mask: mask(&["description"]),
        })
        .await
        .unwrap()
        .into_inner();
    let after = updated.group.unwrap();
    assert_eq!(
        (
            after.id.as_str(),
            after.name.as_str(),
            after.roles.as_slice()
        ),
        ("g-admins", "Admins", before.roles.as_slice())
    );
    assert_eq!(after.description, "Who runs Portcullis");
    assert_eq!((after.user_count, after.created_at), (1, before.created_at));
    assert!(after.updated_at.unwrap().seconds > before.updated_at.unwrap().seconds);
    assert!(updated.warning.is_empty());
    assert_eq!(get(&admin, "g-admins").await.group.unwrap(), after);

    // The same change again commits nothing.
    let again = admin
        .clone()
        .update_group(pb::UpdateGroupRequest {
            id: "g-admins".into(),
            description: "Who runs Portcullis".into(),
            update_mask: mask(&["description"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revision, updated.revision);
    assert_eq!(again.group.unwrap(), after);

    // A group the identity provider manages can change, with a warning.
    let eng = admin
        .clone()
        .update_group(pb::UpdateGroupRequest {
            id: "g-eng".into(),
            name: " Platform ".into(),
            description: "not masked".into(),
            roles: vec![pb::Role::ReadOnly as i32],
            update_mask: mask(&["name", "roles"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        eng.warning,
        "group `g-eng` is managed by the identity provider: the next sync may overwrite this change"
    );
    let group = eng.group.unwrap();
    assert_eq!(
        (
            group.name.as_str(),
            group.description.as_str(),
            group.roles.as_slice(),
            group.user_count
        ),
        (
            "Platform",
            "The Engineering group",
            &[pb::Role::ReadOnly as i32][..],
            2
        )
    );
    // A change of case is not a clash with itself; another group's name is.
    admin
        .clone()
        .update_group(pb::UpdateGroupRequest {
            id: "g-eng".into(),
            name: "PLATFORM".into(),
            update_mask: mask(&["name"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        admin
            .clone()
            .update_group(pb::UpdateGroupRequest {
                id: "g-eng".into(),
                name: "readers".into(),
                update_mask: mask(&["name"]),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "already named",
    );
    // The decision rule reads ids, not names: carol keeps github.
    assert_eq!(
        h.check("u-carol", "github", "create_issue", eng.revision)
            .await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );

    for (paths, needle) in [
        (&["name", "colour"][..], "`colour`"),
        (&["id"][..], "`id`"),
        (&[][..], "required"),
    ] {
        assert_status(
            admin
                .clone()
                .update_group(pb::UpdateGroupRequest {
                    id: "g-eng".into(),
                    name: "Changed".into(),
                    update_mask: mask(paths),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            needle,
        );
    }
    assert_status(
        admin
            .clone()
            .update_group(pb::UpdateGroupRequest {
                id: "g-eng".into(),
                name: "Changed".into(),
                update_mask: None,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "update_mask",
    );
    assert_eq!(get(&admin, "g-eng").await.group.unwrap().name, "PLATFORM");

    let events = h.audit("group.update").await;
    assert_eq!(events.len(), 3);
    let event = &events[2];
    assert_eq!(
        (event.target_id.as_str(), event.revision),
        ("g-admins", updated.revision)
    );
    assert!(
        event.before_json.contains("The Admins group"),
        "{}",
        event.before_json
    );
    assert!(
        event.after_json.contains("Who runs Portcullis"),
        "{}",
        event.after_json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_different_fields_are_both_kept() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let group = create(&admin, "Contended", &[]).await;
    let run = |field: &'static str| {
        let admin = admin.clone();
        let id = group.id.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let value = format!("{field} {i}");
                let mut request = pb::UpdateGroupRequest {
                    id: id.clone(),
                    update_mask: mask(&[field]),
                    ..Default::default()
                };
                match field {
                    "name" => request.name = value,
                    _ => request.description = value,
                }
                admin.clone().update_group(request).await.unwrap();
            }
        })
    };
    let (names, descriptions) = tokio::join!(run("name"), run("description"));
    names.unwrap();
    descriptions.unwrap();
    let last = get(&admin, &group.id).await.group.unwrap();
    assert_eq!(
        (last.name.as_str(), last.description.as_str()),
        ("name 19", "description 19")
    );
    // Each update started from the one before it: none was lost, even for a moment.
    let mut events = h.audit("group.update").await;
    assert_eq!(events.len(), 40);
    events.sort_by_key(|e| e.revision);
    for pair in events.windows(2) {
        assert!(pair[0].revision < pair[1].revision);
        assert_eq!(pair[1].before_json, pair[0].after_json);
    }
}

#[tokio::test]
async fn a_group_with_the_admin_role_makes_its_members_admins() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let mut frank = h.client(Some(&h.norole_secret)).await;
    assert_status(
        frank.list_groups(pb::ListGroupsRequest::default()).await,
        Code::PermissionDenied,
        "holds no admin role",
    );
    let mut reader = h.reader().await;
    let ops = create(&admin, "Operators", &[pb::Role::Admin]).await;
    // Read Only may look but not change.
    assert_eq!(get(&reader, &ops.id).await.group.unwrap().name, "Operators");
    assert_status(
        reader
            .assign_users(pb::AssignUsersRequest {
                group_id: ops.id.clone(),
                users: vec!["u-frank".into()],
            })
            .await,
        Code::PermissionDenied,
        "needs the Admin role",
    );
    for call in [
        reader
            .create_group(pb::CreateGroupRequest {
                name: "Mine".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        reader
            .delete_group(pb::DeleteGroupRequest { id: ops.id.clone() })
            .await
            .map(|_| ()),
        reader
            .remove_group_member(pb::RemoveGroupMemberRequest {
                group_id: "g-admins".into(),
                user: "u-alice".into(),
            })
            .await
            .map(|_| ()),
        reader
            .update_group(pb::UpdateGroupRequest {
                id: ops.id.clone(),
                name: "Mine".into(),
                update_mask: mask(&["name"]),
                ..Default::default()
            })
            .await
            .map(|_| ()),
    ] {
        assert_status(call, Code::PermissionDenied, "needs the Admin role");
    }
    assert_eq!(members(&admin, &ops.id).await.members.len(), 0);

    assert_eq!(
        assign(&admin, &ops.id, &["frank@example.com"]).await.added,
        1
    );
    let who = frank
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.roles, [pb::Role::Admin as i32]);
    let made = frank
        .create_group(pb::CreateGroupRequest {
            name: "Frank's".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.audit("group.create").await[0].actor, "u-frank");

    // Taking the role away from the group takes it from frank at once.
    admin
        .clone()
        .update_group(pb::UpdateGroupRequest {
            id: ops.id.clone(),
            roles: vec![],
            update_mask: mask(&["roles"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        frank
            .delete_group(pb::DeleteGroupRequest {
                id: made.group.unwrap().id,
            })
            .await,
        Code::PermissionDenied,
        "holds no admin role",
    );
}

#[tokio::test]
async fn delete_removes_the_group_from_policies_and_decisions_follow() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    assert_eq!(
        h.check("carol@example.com", "github", "create_issue", 0)
            .await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );
    assert_eq!(
        h.check("u-carol", "github", "delete_repo", 0).await,
        (pb::Decision::Deny, pb::Reason::Policy)
    );
    let deleted = admin
        .clone()
        .delete_group(pb::DeleteGroupRequest { id: "g-eng".into() })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = deleted
        .updated_policies
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["p-deny-delete", "p-eng-github"]);
    for policy in &deleted.updated_policies {
        let scope = policy.scope.as_ref().unwrap();
        assert!(scope.group_ids.is_empty(), "{policy:?}");
        assert!(policy.updated_at.unwrap().seconds > policy.created_at.unwrap().seconds);
        assert_eq!(policy.connector, "github");
    }
    // Live as the call returns.
    assert_eq!(h.live.engine().revision(), deleted.revision);
    assert_eq!(
        h.check(
            "carol@example.com",
            "github",
            "create_issue",
            deleted.revision
        )
        .await,
        (pb::Decision::Deny, pb::Reason::NoMatchingPolicy)
    );
    assert_eq!(
        h.check("u-dave", "github", "delete_repo", 0).await,
        (pb::Decision::Deny, pb::Reason::NoMatchingPolicy)
    );
    // Slack, for everyone, is untouched.
    assert_eq!(
        h.check("u-carol", "slack", "post", 0).await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );

    assert_status(
        admin
            .clone()
            .get_group(pb::GetGroupRequest {
                id: "g-eng".into(),
                or_by_name: false,
            })
            .await,
        Code::NotFound,
        "g-eng",
    );
    assert_status(
        admin
            .clone()
            .delete_group(pb::DeleteGroupRequest { id: "g-eng".into() })
            .await,
        Code::NotFound,
        "g-eng",
    );
    // Its users stay, in no group.
    let carol = admin
        .clone()
        .get_user(pb::GetUserRequest {
            user: "u-carol".into(),
            activity_limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(carol.groups.is_empty());
    assert_eq!(
        names(&list(&admin, pb::ListGroupsRequest::default()).await),
        ["Admins", "Readers"]
    );

    let events = h.audit("group.delete").await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.target_id.as_str(), event.revision),
        ("g-eng", deleted.revision)
    );
    assert!(
        event.detail.contains("p-eng-github") && event.detail.contains("p-deny-delete"),
        "{}",
        event.detail
    );
    assert!(
        event.before_json.contains("Engineering"),
        "{}",
        event.before_json
    );
    let cleaned = h.audit("policy.update").await;
    assert_eq!(cleaned.len(), 2);
    assert!(cleaned.iter().all(|e| e.revision == deleted.revision));

    // A group no policy names: its members lose the role it gave, at once.
    let mut bob = h.reader().await;
    bob.list_groups(pb::ListGroupsRequest::default())
        .await
        .unwrap();
    let readers = admin
        .clone()
        .delete_group(pb::DeleteGroupRequest {
            id: "g-readers".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(readers.updated_policies.is_empty());
    assert_status(
        bob.list_groups(pb::ListGroupsRequest::default()).await,
        Code::PermissionDenied,
        "holds no admin role",
    );
}

#[tokio::test]
async fn members_list_with_join_details_search_and_pages() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let eng = members(&admin, "g-eng").await;
    assert_eq!(member_ids(&eng), ["u-carol", "u-dave"]);
    assert!(eng.next_page_token.is_empty());
    let carol = &eng.members[0];
    assert_eq!(
        (
            carol.display_name.as_str(),
            carol.email.as_str(),
            carol.status(),
            carol.source()
        ),
        (
            "Carol Engineer",
            "carol@example.com",
            pb::UserStatus::Active,
            pb::MembershipSource::Idp
        )
    );
    assert_eq!(
        carol.joined_at,
        Some(prost_types::Timestamp {
            seconds: 1_700_000_100,
            nanos: 0
        })
    );
    assert_eq!(carol.avatar.as_ref().unwrap().initials, "CE");

    let assigned = assign(&admin, "g-eng", &["erin@example.com", "u-frank"]).await;
    assert_eq!(assigned.added, 2);
    let all = members(&admin, "g-eng").await;
    assert_eq!(member_ids(&all), ["u-carol", "u-dave", "u-erin", "u-frank"]);
    assert_eq!(all.revision, assigned.revision);
    let frank = &all.members[3];
    assert_eq!(frank.source(), pb::MembershipSource::Local);
    assert!(frank.joined_at.as_ref().unwrap().seconds > 1_700_000_100);
    assert_eq!(all.members[2].status(), pb::UserStatus::Inactive);

    let search = |search: &str, page_size: u32, page_token: String| {
        let mut admin = admin.clone();
        let search = search.to_owned();
        async move {
            admin
                .list_group_members(pb::ListGroupMembersRequest {
                    group_id: "g-eng".into(),
                    search,
                    page_size,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert_eq!(
        member_ids(&search("DAVE@", 0, String::new()).await),
        ["u-dave"]
    );
    assert_eq!(
        member_ids(&search("engineer", 0, String::new()).await),
        ["u-carol", "u-dave"]
    );
    assert!(search("alice", 0, String::new()).await.members.is_empty());

    // Pages of 1 while members come and go: each member still there exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = search("", 1, token).await;
        seen.extend(page.members.iter().map(|m| m.user_id.clone()));
        // Four members at most: a cursor that never ends fails here instead of paging forever.
        assert!(seen.len() <= 4, "{seen:?}");
        if seen.len() == 1 {
            // Behind the cursor (not seen), ahead of it (seen), and one listed leaves.
            assign(&admin, "g-eng", &["u-alice", "u-grace"]).await;
        }
        if seen.len() == 2 {
            admin
                .clone()
                .remove_group_member(pb::RemoveGroupMemberRequest {
                    group_id: "g-eng".into(),
                    user: "u-frank".into(),
                })
                .await
                .unwrap();
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["u-carol", "u-dave", "u-erin", "u-grace"]);

    // A token from another group or search is refused.
    let first = search("", 1, String::new()).await;
    assert_status(
        admin
            .clone()
            .list_group_members(pb::ListGroupMembersRequest {
                group_id: "g-admins".into(),
                page_size: 1,
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        admin
            .clone()
            .list_group_members(pb::ListGroupMembersRequest {
                group_id: "g-nope".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "g-nope",
    );
}

/// A group larger than a page, paged to the end through gRPC (default pages, pages of 500, and
/// a search): every member once, in user id order, and nothing of the group that sorts next.
#[tokio::test]
async fn members_of_a_large_group_page_each_member_once_in_order() {
    use crate::support::{company, group, member, user};
    let mut model = company();
    // Ids not zero-padded, so id order (m0, m1, m10, m100, …) is not the order they were made in.
    let ids: Vec<String> = (0..1_234).map(|i| format!("m{i}")).collect();
    for id in &ids {
        model.users.push(user(
            id,
            &format!("{id}@example.com"),
            &format!("Member {id}"),
        ));
        model.memberships.push(member("g-big", id));
    }
    model
        .groups
        .push(group("g-big", "Big", &[], pdp::ManagedBy::External));
    // The group right after g-big in the membership order shares some of its members.
    model
        .groups
        .push(group("g-bigger", "Bigger", &[], pdp::ManagedBy::Local));
    model.memberships.push(member("g-bigger", "m0"));
    model.memberships.push(member("g-bigger", "u-alice"));
    let h = Harness::start_with(model).await;
    let admin = h.admin().await;
    let mut sorted = ids.clone();
    sorted.sort();

    for (search, page_size) in [("", 0), ("", 500), ("7", 50), ("MEMBER M12", 3)] {
        let mut seen: Vec<String> = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = admin
                .clone()
                .list_group_members(pb::ListGroupMembersRequest {
                    group_id: "g-big".into(),
                    search: search.into(),
                    page_size,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            // A cursor that never ends fails here instead of paging forever.
            assert!(pages <= ids.len() + 1, "{search:?}: too many pages");
            seen.extend(page.members.iter().map(|m| m.user_id.clone()));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let needle = search.to_lowercase();
        let expected: Vec<&String> = sorted
            .iter()
            .filter(|id| format!("member {id}").contains(&needle))
            .collect();
        assert!(expected.len() > 1, "{search:?} finds several members");
        assert_eq!(
            seen.iter().collect::<Vec<_>>(),
            expected,
            "{search:?} {page_size}"
        );
        let size = if page_size == 0 {
            50
        } else {
            page_size as usize
        };
        assert_eq!(pages, expected.len().div_ceil(size).max(1), "{search:?}");
    }
}

#[tokio::test]
async fn assign_is_all_or_nothing_and_remove_reports_what_it_did() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let first = assign(
        &admin,
        "g-admins",
        &[
            "frank@example.com",
            "u-grace",
            "u-frank",
            "ALICE@example.com",
        ],
    )
    .await;
    assert_eq!(first.added, 2);
    assert!(first.warning.is_empty());
    assert_eq!(h.live.engine().revision(), first.revision);
    // Idempotent: nothing added, nothing committed.
    let again = assign(&admin, "g-admins", &["u-frank", "grace@example.com"]).await;
    assert_eq!((again.added, again.revision), (0, first.revision));
    assert_eq!(
        member_ids(&members(&admin, "g-admins").await),
        ["u-alice", "u-frank", "u-grace"]
    );

    // One unknown user: nobody is added.
    assert_status(
        admin
            .clone()
            .assign_users(pb::AssignUsersRequest {
                group_id: "g-eng".into(),
                users: vec!["u-frank".into(), "nobody@example.com".into()],
            })
            .await,
        Code::NotFound,
        "nobody@example.com",
    );
    assert_eq!(
        member_ids(&members(&admin, "g-eng").await),
        ["u-carol", "u-dave"]
    );
    assert_eq!(h.live.store().revision(), first.revision);

    // An External group takes the change, with a warning; frank gets github through it.
    let external = assign(&admin, "g-eng", &["u-frank"]).await;
    assert_eq!(external.added, 1);
    assert!(
        external
            .warning
            .contains("managed by the identity provider"),
        "{}",
        external.warning
    );
    assert_eq!(
        h.check("u-frank", "github", "create_issue", external.revision)
            .await,
        (pb::Decision::Allow, pb::Reason::Policy)
    );

    let removed = admin
        .clone()
        .remove_group_member(pb::RemoveGroupMemberRequest {
            group_id: "g-eng".into(),
            user: "frank@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    assert!(removed.revision > external.revision);
    assert!(removed.warning.contains("g-eng"), "{}", removed.warning);
    assert_eq!(
        h.check("u-frank", "github", "create_issue", 0).await,
        (pb::Decision::Deny, pb::Reason::NoMatchingPolicy)
    );
    let not_member = admin
        .clone()
        .remove_group_member(pb::RemoveGroupMemberRequest {
            group_id: "g-eng".into(),
            user: "u-frank".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (not_member.removed, not_member.revision),
        (false, removed.revision)
    );
    assert!(not_member.warning.is_empty());
    admin
        .clone()
        .remove_group_member(pb::RemoveGroupMemberRequest {
            group_id: "g-admins".into(),
            user: "u-grace".into(),
        })
        .await
        .unwrap();

    let assigned = h.audit("group.assign").await;
    assert_eq!(assigned.len(), 2);
    assert_eq!(
        (assigned[1].target_id.as_str(), assigned[1].revision),
        ("g-admins", first.revision)
    );
    assert!(
        assigned[1].detail.contains("`u-frank`") && assigned[1].detail.contains("`u-grace`"),
        "{}",
        assigned[1].detail
    );
    assert!(!assigned[1].detail.contains("u-alice"));
    let removals = h.audit("group.remove_member").await;
    assert_eq!(removals.len(), 2);
    assert_eq!(
        (
            removals[1].target_id.as_str(),
            removals[1].revision,
            removals[1].actor.as_str()
        ),
        ("g-eng", removed.revision, "u-alice")
    );
    assert!(removals[1].detail.contains("u-frank"));
}

#[tokio::test]
async fn group_calls_reject_bad_input() {
    let h = Harness::start().await;
    let mut admin = h.admin().await;
    let start = h.live.store().revision();

    // ListGroups.
    let mut bad = bad_list_requests::<pb::ListGroupsRequest>();
    // A well-formed token of no query.
    bad.push((
        pb::ListGroupsRequest {
            page_token: "e30".into(),
            ..Default::default()
        },
        "page_token",
    ));
    for (request, needle) in bad {
        assert_status(
            admin.list_groups(request).await,
            Code::InvalidArgument,
            needle,
        );
    }

    // GetGroup.
    assert_status(
        admin
            .get_group(pb::GetGroupRequest {
                id: String::new(),
                or_by_name: false,
            })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        admin
            .get_group(pb::GetGroupRequest {
                id: "g-nope".into(),
                or_by_name: false,
            })
            .await,
        Code::NotFound,
        "group `g-nope` not found",
    );

    // CreateGroup.
    let create = |name: &str, description: &str, roles: Vec<i32>| pb::CreateGroupRequest {
        name: name.into(),
        description: description.into(),
        roles,
    };
    for (request, needle) in [
        (create("", "", vec![]), "name"),
        (create("   ", "", vec![]), "name"),
        (create(&"n".repeat(300), "", vec![]), "name"),
        (create("Ok", &"d".repeat(2000), vec![]), "description"),
        (create("Ok", "", vec![42]), "roles[0]"),
        (create("Ok", "", vec![1, 0]), "roles[1]"),
    ] {
        assert_status(
            admin.create_group(request).await,
            Code::InvalidArgument,
            needle,
        );
    }

    // UpdateGroup.
    let update = |id: &str, paths: &[&str]| pb::UpdateGroupRequest {
        id: id.into(),
        name: String::new(),
        description: String::new(),
        roles: vec![42],
        update_mask: mask(paths),
    };
    for (request, needle) in [
        (update("", &["description"]), "id"),
        (update("g-eng", &[]), "update_mask"),
        (update("g-eng", &["name"]), "name"),
        (update("g-eng", &["roles"]), "roles[0]"),
        (
            update("g-eng", &["members"]),
            "update_mask: unknown field `members`",
        ),
    ] {
        assert_status(
            admin.update_group(request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    assert_status(
        admin.update_group(update("g-nope", &["description"])).await,
        Code::NotFound,
        "g-nope",
    );

    // DeleteGroup.
    assert_status(
        admin
            .delete_group(pb::DeleteGroupRequest { id: String::new() })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        admin
            .delete_group(pb::DeleteGroupRequest {
                id: "g-nope".into(),
            })
            .await,
        Code::NotFound,
        "g-nope",
    );

    // ListGroupMembers.
    let listing = |group_id: &str, page_size: u32, page_token: &str| pb::ListGroupMembersRequest {
        group_id: group_id.into(),
        search: String::new(),
        page_size,
        page_token: page_token.into(),
    };
    for (request, needle) in [
        (listing("", 0, ""), "group_id"),
        (listing("g-eng", 501, ""), "page_size"),
        (listing("g-eng", 0, "%%%"), "page_token"),
    ] {
        assert_status(
            admin.list_group_members(request).await,
            Code::InvalidArgument,
            needle,
        );
    }

    // AssignUsers.
    let assigning = |group_id: &str, users: Vec<String>| pb::AssignUsersRequest {
        group_id: group_id.into(),
        users,
    };
    for (request, needle) in [
        (assigning("", vec!["u-frank".into()]), "group_id"),
        (assigning("g-eng", vec![]), "users"),
        (assigning("g-eng", vec!["u-frank".into(); 1001]), "users"),
        (
            assigning("g-eng", vec!["u-frank".into(), " ".into()]),
            "users[1]",
        ),
    ] {
        assert_status(
            admin.assign_users(request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    assert_status(
        admin
            .assign_users(assigning("g-nope", vec!["u-frank".into()]))
            .await,
        Code::NotFound,
        "g-nope",
    );

    // RemoveGroupMember.
    let removing = |group_id: &str, user: &str| pb::RemoveGroupMemberRequest {
        group_id: group_id.into(),
        user: user.into(),
    };
    for (request, needle) in [
        (removing("", "u-carol"), "group_id"),
        (removing("g-eng", ""), "user"),
    ] {
        assert_status(
            admin.remove_group_member(request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    for (request, needle) in [
        (removing("g-nope", "u-carol"), "g-nope"),
        (
            removing("g-eng", "nobody@example.com"),
            "nobody@example.com",
        ),
    ] {
        assert_status(
            admin.remove_group_member(request).await,
            Code::NotFound,
            needle,
        );
    }

    // Nothing changed, nothing audited.
    assert_eq!(h.live.store().revision(), start);
    assert_eq!(h.live.engine().revision(), start);
    for action in [
        "group.create",
        "group.update",
        "group.delete",
        "group.assign",
        "group.remove_member",
    ] {
        assert!(h.audit(action).await.is_empty(), "{action}");
    }
}
