//! A group's settings: name, its read-only id, description and roles; and deleting the group,
//! after a confirmation that says what happens.

use super::{SECTION, chosen_roles, get, path, role_choices, roles_or_none, sync_warning};
use crate::Console;
use crate::call::{Answer as _, Page, Signed};
use crate::confirm::tick;
use crate::fields::{Fields, Problems};
use crate::form::Posted;
use crate::layout;
use crate::view;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

/// The settings form's fields, named as UpdateGroup's.
const FIELDS: [&str; 3] = ["name", "description", "roles"];

#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    /// Set after a save.
    #[serde(default)]
    saved: Option<String>,
}

/// The page: `group` as stored, `draft` what the form shows (the stored values, or what was
/// sent when the service refused it), the policies that name the group, and the refusals of
/// the settings form and of the delete form.
fn settings_page(
    signed: &Signed,
    group: &pb::Group,
    draft: &pb::Group,
    policy_ids: &[String],
    problems: &Problems,
    saved: bool,
) -> Markup {
    let base = path(&group.id);
    let content = html! {
        p { a href=(base) { "← " (group.name) } }
        h1 { "Settings of " (group.name) }
        @if saved { p.notice role="status" { "Saved." } }
        @if signed.is_admin() {
            form.card method="post" action=(format!("{base}/settings")) {
                h2 { "Group" }
                (sync_warning(group))
                (problems.above())
                input type="hidden" name="csrf" value=(signed.csrf());
                (problems.text("name", "Name", &draft.name, true, 256))
                div.field {
                    label for="group-id" { "Id (read-only)" }
                    input #group-id type="text" value=(group.id) readonly;
                }
                (problems.textarea("description", "Description", &draft.description, 1024))
                (role_choices(&draft.roles, problems))
                button type="submit" { "Save" }
            }
            (delete_form(signed, group, policy_ids, problems))
        } @else {
            div.card {
                dl.facts {
                    dt { "Name" } dd { (group.name) }
                    dt { "Id" } dd { code { (group.id) } }
                    dt { "Description" } dd { (group.description) }
                    dt { "Roles" } dd { (roles_or_none(&group.roles)) }
                }
            }
        }
    };
    layout::page(
        signed,
        SECTION,
        &format!("Settings of {}", group.name),
        content,
    )
}

fn delete_form(
    signed: &Signed,
    group: &pb::Group,
    policy_ids: &[String],
    problems: &Problems,
) -> Markup {
    html! {
        form.card method="post" action=(format!("{}/delete", path(&group.id))) {
            h2 { "Delete group" }
            (sync_warning(group))
            p { "Deleting " strong { (group.name) } ":" }
            ul {
                li { "its " (group.user_count) " user" @if group.user_count != 1 { "s" } " stay in the directory, in their other groups;" }
                li {
                    @if policy_ids.is_empty() {
                        "no policy names it;"
                    } @else {
                        (policy_ids.len()) " polic" @if policy_ids.len() == 1 { "y loses" } @else { "ies lose" }
                        " the group (" (listed(policy_ids)) ");"
                    }
                }
                li { "the access it gives (its roles, what its policies allow) ends at once, from the next decision on." }
            }
            input type="hidden" name="csrf" value=(signed.csrf());
            (tick("confirm-delete", &format!("Delete {} now", group.name), problems))
            button.danger type="submit" { "Delete group" }
        }
    }
}

/// At most this many policy ids are named in the delete confirmation.
const SHOWN_POLICIES: usize = 20;

fn listed(ids: &[String]) -> String {
    let shown = ids[..ids.len().min(SHOWN_POLICIES)].join(", ");
    match ids.len().saturating_sub(SHOWN_POLICIES) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

pub async fn page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Page<Markup> {
    let (group, policy_ids) = get(&console, &signed, &id).await?;
    Ok(settings_page(
        &signed,
        &group,
        &group,
        &policy_ids,
        &Problems::none(),
        shown.saved.is_some(),
    ))
}

pub async fn update(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    let request = pb::UpdateGroupRequest {
        id: id.clone(),
        name: form.one("name").to_owned(),
        description: form.one("description").to_owned(),
        roles: chosen_roles(&form),
        update_mask: Some(prost_types::FieldMask {
            paths: FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        }),
    };
    let problems = match console
        .services()
        .admin
        .update_group(signed.request(request.clone()))
        .await
    {
        Ok(_) => return Ok(view::see_other(&format!("{}/settings?saved=1", path(&id)))),
        Err(status) => Problems::refused(status, &FIELDS)?,
    };
    let (group, policy_ids) = get(&console, &signed, &id).await?;
    let draft = pb::Group {
        name: request.name,
        description: request.description,
        roles: request.roles,
        ..group.clone()
    };
    let status = problems.status.unwrap_or(StatusCode::BAD_REQUEST);
    Ok((
        status,
        settings_page(&signed, &group, &draft, &policy_ids, &problems, false),
    )
        .into_response())
}

pub async fn delete(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Page {
    let Posted { signed, form } = posted;
    if !form.confirmed() {
        let (group, policy_ids) = get(&console, &signed, &id).await?;
        let problems = Problems::field("confirm", "tick the confirmation box to delete the group");
        return Ok((
            StatusCode::BAD_REQUEST,
            settings_page(&signed, &group, &group, &policy_ids, &problems, false),
        )
            .into_response());
    }
    let request = pb::DeleteGroupRequest { id };
    console
        .services()
        .admin
        .delete_group(signed.request(request))
        .await
        .page()?;
    Ok(view::see_other(SECTION))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_delete_confirmation_names_at_most_twenty_policies() {
        let few: Vec<String> = vec!["p1".into(), "p2".into()];
        assert_eq!(super::listed(&few), "p1, p2");
        let many: Vec<String> = (0..23).map(|i| format!("p{i}")).collect();
        let shown = super::listed(&many);
        assert!(
            shown.starts_with("p0, p1,") && shown.ends_with("p19 and 3 more"),
            "{shown}"
        );
    }
}
