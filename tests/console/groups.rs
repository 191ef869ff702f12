//! Groups pages: create, assign users, members with their joined time, remove, settings,
//! delete; Read Only people and forged writes; the SCIM overwrite warning; and on a user's
//! details, the tools each agent may use for them.

use super::{Browser, Reply, Setup};
use portcullis_proto::v1 as pb;

/// The values of every `name="{name}"` input in `html`, in page order.
fn values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// The table row of `html` that holds `needle`.
fn row_with<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not on the page: {html}"));
    let start = html[..at].rfind("<tr>").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

/// The group a create form's redirect points at.
fn created_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 303, "{}", reply.body);
    reply
        .location()
        .strip_prefix("/console/groups/")
        .unwrap_or_else(|| panic!("redirect to {}", reply.location()))
        .to_owned()
}

pub async fn members(setup: &Setup, group: &str) -> Vec<pb::GroupMember> {
    let mut admin = setup.server.admin(&setup.admin).await;
    admin
        .list_group_members(pb::ListGroupMembersRequest {
            group_id: group.to_owned(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members
}

pub async fn member_ids(setup: &Setup, group: &str) -> Vec<String> {
    members(setup, group)
        .await
        .into_iter()
        .map(|m| m.user_id)
        .collect()
}

pub async fn group(setup: &Setup, id: &str) -> Result<pb::Group, tonic::Status> {
    let mut admin = setup.server.admin(&setup.admin).await;
    admin
        .get_group(pb::GetGroupRequest {
            id: id.to_owned(),
            or_by_name: false,
        })
        .await
        .map(|answer| answer.into_inner().group.unwrap())
}

/// Creates a group through the console's form as `browser`.
async fn create(browser: &Browser, fields: &[(&str, &str)]) -> Reply {
    browser
        .submit("/console/groups/new", "/console/groups", fields)
        .await
}

#[tokio::test]
async fn an_admin_creates_a_group_assigns_several_users_and_removes_one() {
    let setup = Setup::start();
    let browser = setup.signed_in(&setup.admin).await;

    let list = browser.get("/console/groups").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains("href=\"/console/groups/new\""),
        "{}",
        list.body
    );
    assert!(
        list.body.contains("aria-current=\"page\">Groups"),
        "{}",
        list.body
    );

    // A name the service refuses: the form comes back with the message next to the field,
    // and what was typed is kept.
    let blank = create(
        &browser,
        &[
            ("name", "   "),
            ("description", "kept"),
            ("roles", "read_only"),
        ],
    )
    .await;
    assert_eq!(blank.status, 400, "{}", blank.body);
    assert!(
        blank.body.contains("id=\"name-error\"") && blank.body.contains("must not be empty"),
        "{}",
        blank.body
    );
    assert!(blank.body.contains(">kept</textarea>"), "{}", blank.body);

    let created = create(
        &browser,
        &[
            ("name", "Incident responders"),
            ("description", "on call this week"),
            ("roles", "read_only"),
        ],
    )
    .await;
    let id = created_id(&created);
    let stored = group(&setup, &id).await.unwrap();
    assert_eq!(stored.name, "Incident responders");
    assert_eq!(stored.description, "on call this week");
    assert_eq!(stored.roles, vec![pb::Role::ReadOnly as i32]);
    assert_eq!(stored.managed_by(), pb::ManagedBy::Local);

    // Names are unique: the service's refusal is shown on the form (409).
    let again = create(&browser, &[("name", "incident RESPONDERS")]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("unique"), "{}", again.body);

    let details = browser.get(&format!("/console/groups/{id}")).await;
    assert_eq!(details.status, 200, "{}", details.body);
    assert!(details.body.contains("No member yet."), "{}", details.body);
    assert!(
        !details.body.contains("next sync"),
        "a local group: no warning"
    );
    let listed = browser.get("/console/groups?q=incident").await;
    assert!(
        row_with(&listed.body, &format!("/console/groups/{id}\"")).contains("Local"),
        "{}",
        listed.body
    );

    // Assign Users: a search, then several users ticked and sent at once.
    let assign = format!("/console/groups/{id}/assign");
    let page = browser.get(&assign).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let candidates = values(&page.body, "users");
    assert!(candidates.len() >= 4, "{}", page.body);
    let picked = &candidates[..3];
    let searched = browser.get(&format!("{assign}?q=goldwasser193")).await;
    assert_eq!(values(&searched.body, "users"), vec!["u0000193".to_owned()]);

    let csrf = page.csrf();
    let mut fields = vec![("csrf", csrf.as_str()), ("q", "")];
    fields.extend(picked.iter().map(|u| ("users", u.as_str())));
    let assigned = browser.post(&assign, &fields).await;
    assert_eq!(assigned.status, 303, "{}", assigned.body);
    assert_eq!(assigned.location(), format!("/console/groups/{id}?added=3"));
    let mut picked = picked.to_vec();
    picked.sort();
    assert_eq!(member_ids(&setup, &id).await, picked, "members by user id");

    // Each is listed with the time they joined, as the API has it.
    let details = browser.get(assigned.location()).await;
    assert!(details.body.contains("3 users added."), "{}", details.body);
    for member in members(&setup, &id).await {
        let row = row_with(
            &details.body,
            &format!("/console/users/{}\"", member.user_id),
        );
        let joined = member.joined_at.unwrap();
        let shown = time_of(joined.seconds);
        assert!(row.contains(&shown) && row.contains("Added here"), "{row}");
        // The user's details link back to the group.
        let user = browser
            .get(&format!("/console/users/{}", member.user_id))
            .await;
        assert!(
            user.body
                .contains(&format!("href=\"/console/groups/{id}\"")),
            "{}",
            user.body
        );
    }

    // Users already in it stay as they are; one call adds the rest.
    let mut fields = vec![("csrf", csrf.as_str())];
    fields.extend(candidates[2..4].iter().map(|u| ("users", u.as_str())));
    let more = browser.post(&assign, &fields).await;
    assert_eq!(more.location(), format!("/console/groups/{id}?added=1"));
    // Nobody picked: the service's words, on the form.
    let none = browser.post(&assign, &[("csrf", csrf.as_str())]).await;
    assert_eq!(none.status, 400, "{}", none.body);
    assert!(none.body.contains("at least one user"), "{}", none.body);

    // Removing asks first; unconfirmed, nothing changes.
    let gone = &candidates[0];
    let remove = format!("/console/groups/{id}/members/{gone}/remove");
    let confirm = browser.get(&remove).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("Remove member"), "{}", confirm.body);
    let unconfirmed = browser.submit(&remove, &remove, &[]).await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
    assert!(unconfirmed.body.contains("id=\"confirm-error\""));
    assert_eq!(members(&setup, &id).await.len(), 4);
    let removed = browser
        .submit(&remove, &remove, &[("confirm", "yes")])
        .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let mut left = candidates[1..4].to_vec();
    left.sort();
    assert_eq!(member_ids(&setup, &id).await, left);
    let details = browser.get(&format!("/console/groups/{id}")).await;
    assert!(!details.body.contains(&format!("/console/users/{gone}\"")));
    // The member search narrows the list.
    let one = browser
        .get(&format!("/console/groups/{id}?q={}", candidates[1]))
        .await;
    assert_eq!(one.status, 200);
}

/// `seconds` since the epoch as the console shows times (`2026-12-07 22:55:42 UTC`).
fn time_of(seconds: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap()
        .format(&format)
        .unwrap()
}

#[tokio::test]
async fn group_settings_change_and_delete_says_what_happens_and_needs_a_confirmation() {
    let setup = Setup::start();
    let browser = setup.signed_in(&setup.admin).await;
    let id = created_id(&create(&browser, &[("name", "Contractors")]).await);
    let settings = format!("/console/groups/{id}/settings");

    let page = browser.get(&settings).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("value=\"{id}\" readonly")),
        "the id is shown read-only: {}",
        page.body
    );
    let saved = browser
        .submit(
            &settings,
            &settings,
            &[
                ("name", "Contractors (EMEA)"),
                ("description", "vendors in Europe"),
                ("roles", "admin"),
                ("roles", "read_only"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let stored = group(&setup, &id).await.unwrap();
    assert_eq!(stored.name, "Contractors (EMEA)");
    assert_eq!(stored.description, "vendors in Europe");
    assert_eq!(
        stored.roles,
        vec![pb::Role::Admin as i32, pb::Role::ReadOnly as i32]
    );
    let shown = browser.get(saved.location()).await;
    assert!(shown.body.contains("Saved."), "{}", shown.body);
    assert!(
        shown
            .body
            .contains("id=\"role-admin\" type=\"checkbox\" name=\"roles\" value=\"admin\" checked")
    );

    // Roles cleared, and a name the service refuses: shown next to the name, nothing saved.
    let refused = browser
        .submit(&settings, &settings, &[("name", ""), ("description", "x")])
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"name-error\""),
        "{}",
        refused.body
    );
    assert_eq!(group(&setup, &id).await.unwrap().name, "Contractors (EMEA)");
    let cleared = browser
        .submit(
            &settings,
            &settings,
            &[("name", "Contractors (EMEA)"), ("description", "")],
        )
        .await;
    assert_eq!(cleared.status, 303, "{}", cleared.body);
    assert!(group(&setup, &id).await.unwrap().roles.is_empty());

    // Delete: a group policies name, so the confirmation lists what loses it.
    let mut admin = setup.server.admin(&setup.admin).await;
    let named = admin
        .list_groups(pb::ListGroupsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    let mut target = None;
    for candidate in named {
        let got = admin
            .get_group(pb::GetGroupRequest {
                id: candidate.id.clone(),
                or_by_name: false,
            })
            .await
            .unwrap()
            .into_inner();
        if !got.policy_ids.is_empty() && candidate.user_count > 0 {
            target = Some((candidate, got.policy_ids));
            break;
        }
    }
    let (doomed, policies) = target.expect("a group some policy names");
    let doomed_settings = format!("/console/groups/{}/settings", doomed.id);
    let page = browser.get(&doomed_settings).await;
    for policy in &policies {
        assert!(
            page.body.contains(policy.as_str()),
            "{policy}: {}",
            page.body
        );
    }
    assert!(
        page.body.contains("stay in the directory") && page.body.contains("ends at once"),
        "{}",
        page.body
    );
    let delete = format!("/console/groups/{}/delete", doomed.id);
    let unconfirmed = browser.submit(&doomed_settings, &delete, &[]).await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body);
    assert!(group(&setup, &doomed.id).await.is_ok(), "not deleted");
    let members_before = members(&setup, &doomed.id).await;

    let deleted = browser
        .submit(&doomed_settings, &delete, &[("confirm", "yes")])
        .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(deleted.location(), "/console/groups");
    assert_eq!(
        group(&setup, &doomed.id).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        browser
            .get(&format!("/console/groups/{}", doomed.id))
            .await
            .status,
        404
    );
    // Its users stay; its policies no longer name it.
    let user = admin
        .get_user(pb::GetUserRequest {
            user: members_before[0].user_id.clone(),
            activity_limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(user.groups.iter().all(|g| g.group_id != doomed.id));
    for policy in policies {
        let policy = admin
            .get_policy(pb::GetPolicyRequest { id: policy })
            .await
            .unwrap()
            .into_inner()
            .policy
            .unwrap();
        let scope = policy.scope.unwrap_or_default();
        assert!(!scope.group_ids.contains(&doomed.id), "{scope:?}");
    }
}

#[tokio::test]
async fn read_only_people_see_no_write_control_and_forged_writes_are_refused() {
    let setup = Setup::start();
    let admin = setup.signed_in(&setup.admin).await;
    let id = created_id(&create(&admin, &[("name", "Auditors")]).await);
    let member = "u0000005";
    let assign = format!("/console/groups/{id}/assign");
    let assigned = admin.submit(&assign, &assign, &[("users", member)]).await;
    assert_eq!(assigned.status, 303, "{}", assigned.body);

    // A form without its CSRF token is refused before anything runs.
    let bare = admin
        .post(
            &format!("/console/groups/{id}/delete"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(bare.status, 403, "{}", bare.body);
    assert!(group(&setup, &id).await.is_ok());

    let reader = setup.signed_in(&setup.read_only).await;
    let list = reader.get("/console/groups").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(!list.body.contains("Create group"), "{}", list.body);
    let details = reader.get(&format!("/console/groups/{id}")).await;
    assert_eq!(details.status, 200, "{}", details.body);
    assert!(details.body.contains(member), "members are readable");
    assert!(!details.body.contains("Assign users"), "{}", details.body);
    assert!(!details.body.contains("/remove\""), "{}", details.body);
    let settings = reader.get(&format!("/console/groups/{id}/settings")).await;
    assert_eq!(settings.status, 200, "{}", settings.body);
    assert!(settings.body.contains("Auditors"));
    assert!(!settings.body.contains("<textarea"), "{}", settings.body);
    assert!(!settings.body.contains("Delete group"), "{}", settings.body);
    assert_eq!(reader.get("/console/groups/new").await.status, 403);
    assert_eq!(reader.get(&assign).await.status, 403);

    // Forged writes with the reader's own valid session and token: the service refuses.
    let page = "/console/groups";
    let forged: [(String, Vec<(&str, &str)>); 5] = [
        ("/console/groups".into(), vec![("name", "Forged")]),
        (assign.clone(), vec![("users", "u0000006")]),
        (
            format!("/console/groups/{id}/members/{member}/remove"),
            vec![("confirm", "yes")],
        ),
        (
            format!("/console/groups/{id}/settings"),
            vec![("name", "Renamed"), ("description", "")],
        ),
        (
            format!("/console/groups/{id}/delete"),
            vec![("confirm", "yes")],
        ),
    ];
    for (action, fields) in &forged {
        let reply = reader.submit(page, action, fields).await;
        assert_eq!(reply.status, 403, "{action}: {}", reply.body);
        assert!(
            reply.body.contains("Admin role"),
            "{action}: {}",
            reply.body
        );
    }
    let stored = group(&setup, &id).await.unwrap();
    assert_eq!(stored.name, "Auditors");
    assert_eq!(member_ids(&setup, &id).await, vec![member.to_owned()]);
    let found = admin.get("/console/groups?q=forged").await;
    assert!(found.body.contains("No group matches."), "{}", found.body);
}

#[tokio::test]
async fn a_scim_managed_group_warns_that_the_next_sync_may_overwrite_local_edits() {
    let setup = Setup::start();
    // A group the identity provider pushes over SCIM, with a member.
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Okta engineering",
        "members": [{"value": "u0000007"}],
    });
    let idp = Browser::new(&setup.server.http);
    let auth = format!("Bearer {}", setup.scim);
    let pushed = idp
        .send(
            "POST",
            "/scim/v2/Groups",
            &[
                ("content-type", "application/scim+json"),
                ("authorization", auth.as_str()),
            ],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let id = serde_json::from_str::<serde_json::Value>(&pushed.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A name the identity provider sent stays text.
    let hostile = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "<img src=x onerror=alert(1)>",
    });
    let pushed_hostile = idp
        .send(
            "POST",
            "/scim/v2/Groups",
            &[
                ("content-type", "application/scim+json"),
                ("authorization", auth.as_str()),
            ],
            hostile.to_string().into_bytes(),
        )
        .await;
    assert_eq!(pushed_hostile.status, 201, "{}", pushed_hostile.body);
    let hostile_id = serde_json::from_str::<serde_json::Value>(&pushed_hostile.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let browser = setup.signed_in(&setup.admin).await;
    for page in [
        "/console/groups?q=img".to_owned(),
        format!("/console/groups/{hostile_id}"),
        format!("/console/groups/{hostile_id}/settings"),
    ] {
        let reply = browser.get(&page).await;
        assert_eq!(reply.status, 200, "{page}: {}", reply.body);
        assert!(
            reply.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}: {}",
            reply.body
        );
        assert!(!reply.body.contains("<img"), "{page}: {}", reply.body);
    }
    let list = browser.get("/console/groups?q=okta").await;
    let row = row_with(&list.body, "Okta engineering");
    assert!(row.contains("SCIM"), "{row}");

    let warning = "the next sync may overwrite";
    let pages = [
        format!("/console/groups/{id}"),
        format!("/console/groups/{id}/assign"),
        format!("/console/groups/{id}/settings"),
        format!("/console/groups/{id}/members/u0000007/remove"),
    ];
    for page in &pages {
        let reply = browser.get(page).await;
        assert_eq!(reply.status, 200, "{page}: {}", reply.body);
        assert!(reply.body.contains(warning), "{page}: {}", reply.body);
    }
    // The settings page warns above both of its forms.
    let settings = browser.get(&pages[2]).await;
    assert_eq!(
        settings.body.matches(warning).count(),
        2,
        "{}",
        settings.body
    );
    // A local group's pages do not.
    let local = created_id(&create(&browser, &[("name", "Local only")]).await);
    let page = browser
        .get(&format!("/console/groups/{local}/settings"))
        .await;
    assert!(!page.body.contains(warning), "{}", page.body);
    // The edit still goes through, as the API allows it.
    let settings_path = &pages[2];
    let saved = browser
        .submit(
            settings_path,
            settings_path,
            &[("name", "Okta engineering"), ("description", "edited here")],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
}

#[tokio::test]
async fn user_details_show_the_tools_each_enabled_agent_may_use_as_the_engine_answers() {
    let setup = Setup::start();
    let mut admin = setup.server.admin(&setup.admin).await;
    let mut decisions = setup.server.client().await;
    let agents = admin
        .list_agents(pb::ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents;
    let enabled: Vec<&pb::Agent> = agents.iter().filter(|a| a.enabled).collect();
    assert!(!enabled.is_empty(), "the preset registers agents");

    let browser = setup.signed_in(&setup.read_only).await;
    let mut tools_seen = 0;
    for user in ["u0000005", "u0000193"] {
        let page = browser.get(&format!("/console/users/{user}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let section = &page.body[page.body.find("id=\"allowed-tools\"").unwrap()..];
        let section = &section[..section.find("</table>").unwrap()];
        for agent in enabled.iter().take(20) {
            let row = row_with(section, &format!("<code>{}</code>", agent.id));
            let allowed = decisions
                .list_allowed_tools(pb::ListAllowedToolsRequest {
                    user: user.to_owned(),
                    agent: agent.id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .tools;
            if allowed.is_empty() {
                assert!(row.contains("None"), "{row}");
            }
            for tool in allowed.iter().take(100) {
                let shown = format!("<code>{}.{}</code>", tool.connector, tool.tool);
                assert!(row.contains(&shown), "{shown} for {}: {row}", agent.id);
                tools_seen += 1;
            }
            assert_eq!(row.matches("<li>").count(), allowed.len().min(100), "{row}");
        }
        // So the locked case below shows a change, not a user who never had a tool.
        assert!(
            section.contains("<li>"),
            "{user} may use some tool: {section}"
        );
        for agent in agents.iter().filter(|a| !a.enabled) {
            assert!(
                !section.contains(&format!("<code>{}</code>", agent.id)),
                "a disabled agent is left out"
            );
        }
    }
    assert!(tools_seen > 0, "some agent may use some tool");

    // A locked user: every agent is denied, and the page says why.
    admin
        .lock_user(pb::LockUserRequest {
            user: "u0000005".into(),
            reason: "incident".into(),
        })
        .await
        .unwrap();
    let page = browser.get("/console/users/u0000005").await;
    let section = &page.body[page.body.find("id=\"allowed-tools\"").unwrap()..];
    let section = &section[..section.find("</table>").unwrap()];
    assert!(section.contains("This user is locked"), "{section}");
    assert!(!section.contains("<li>"), "{section}");

    // Disabling an agent takes it out of the section at once.
    let first = enabled[0].id.clone();
    admin
        .set_agent_enabled(pb::SetAgentEnabledRequest {
            id: first.clone(),
            enabled: false,
            reason: "kill switch test".into(),
        })
        .await
        .unwrap();
    let page = browser.get("/console/users/u0000193").await;
    let section = &page.body[page.body.find("id=\"allowed-tools\"").unwrap()..];
    let section = &section[..section.find("</table>").unwrap()];
    assert!(
        !section.contains(&format!("<code>{first}</code>")),
        "{section}"
    );
}
