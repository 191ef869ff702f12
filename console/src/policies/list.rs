//! The policies list: search, a connector filter, an action filter, paging; each page's rows
//! grouped under their connector.

use super::{ACTIONS, SECTION, action_badge, agents_summary, enabled_badge, href, scope_summary};
use crate::Console;
use crate::call::{Answer as _, Page, Signed};
use crate::layout;
use crate::list::{self, Search, pager};
use axum::extract::{Query, State};
use maud::{Markup, html};
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;
use serde::Deserialize;

/// Rows per page.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    /// Exactly this connector; empty for all.
    #[serde(default)]
    connector: String,
    /// One of the form names in [`ACTIONS`]; empty for all.
    #[serde(default)]
    action: String,
    #[serde(default)]
    page: String,
}

impl ListQuery {
    fn link(&self, page: &str) -> String {
        let mut pairs = vec![("q", self.q.as_str())];
        if !self.connector.is_empty() {
            pairs.push(("connector", &self.connector));
        }
        if !self.action.is_empty() {
            pairs.push(("action", &self.action));
        }
        if !page.is_empty() {
            pairs.push(("page", page));
        }
        list::link(SECTION, &pairs)
    }
}

pub async fn list(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Page<Markup> {
    let action = ACTIONS
        .iter()
        .find(|(_, name, _)| *name == query.action)
        .map_or(pb::PolicyAction::Unspecified, |(action, _, _)| *action);
    let request = pb::ListPoliciesRequest {
        search: query.q.trim().to_owned(),
        action: action as i32,
        sort: pb::PolicySort::Name as i32,
        descending: false,
        page_size: PAGE,
        page_token: query.page.clone(),
        connector: query.connector.trim().to_owned(),
    };
    let mut answer = console
        .services()
        .admin
        .list_policies(signed.request(request))
        .await
        .page()?;
    // The service pages by name; on a page, rows are grouped by connector (a stable sort keeps
    // them by name within one).
    answer
        .policies
        .sort_by(|a, b| a.connector.cmp(&b.connector));
    let groups = answer.policies.chunk_by(|a, b| a.connector == b.connector);
    let content = html! {
        h1 { "Policies" }
        @if signed.is_admin() {
            p { a.button href=(format!("{SECTION}/new")) { "New policy" } }
        }
        (Search {
            action: SECTION,
            trigger: "input changed delay:300ms from:#q, change, submit",
            target: "policies",
            label: "Search by name or description",
            q: &query.q,
            maxlength: Some("1000"),
            placeholder: None,
            more: html! {
            div {
                label for="connector" { "Connector" }
                input #connector type="text" name="connector" value=(query.connector) placeholder="github" maxlength="128";
            }
            div {
                label for="action" { "Action" }
                select #action name="action" {
                    option value="" selected[query.action.is_empty()] { "All" }
                    @for (_, name, label) in ACTIONS {
                        option value=(name) selected[query.action == name] { (label) }
                    }
                }
            }
            },
        }.render())
        div #policies {
            table {
                caption.visually-hidden { "Policies by connector" }
                thead { tr {
                    th scope="col" { "Policy" }
                    th scope="col" { "Action" }
                    th scope="col" { "Users" }
                    th scope="col" { "Tools" }
                    th scope="col" { "Agents" }
                    th scope="col" { "State" }
                } }
                @for rows in groups {
                    @let connector = rows.first().map_or("", |r| r.connector.as_str());
                    tbody {
                        tr.group {
                            th scope="colgroup" colspan="6" {
                                "Connector "
                                a href=(ListQuery { connector: connector.to_owned(), ..ListQuery::default() }.link("")) {
                                    code { (connector) }
                                }
                            }
                        }
                        @for row in rows {
                            tr {
                                td {
                                    a href=(href(&row.id)) { (row.name) }
                                    @if !row.description.is_empty() {
                                        " " span.muted { (row.description) }
                                    }
                                }
                                td { (action_badge(row.action())) }
                                td { (scope_summary(row.all_users, row.user_count as usize, row.group_count as usize)) }
                                td { (super::tools_summary(row.all_tools, &row.tools)) }
                                td { (agents_summary(row.agents.as_ref())) }
                                td { (enabled_badge(row.enabled)) }
                            }
                        }
                    }
                }
                @if answer.policies.is_empty() {
                    tbody { tr { td colspan="6" { "No policy matches." } } }
                }
            }
            (pager("Pages", &query.page, &answer.next_page_token, |page| query.link(page)))
        }
    };
    Ok(layout::page(&signed, SECTION, "Policies", content))
}
