//! The AuthZEN search APIs: `POST /access/v1/search/action` (the tools a user may call on a
//! connector) and `POST /access/v1/search/resource` (the connectors where a user may call a
//! tool), paged.
//!
//! Still one decision path: `ListAllowedTools` names the candidates (every tool or connector
//! whose answer may be other than Deny), and each candidate of a page is then decided by one
//! `BatchCheck` with the search's context, so a result is exactly a tuple `evaluation` answers
//! `true` for, and each decision is counted and logged as any other. Subject search is not
//! served: users are found by key, in no order that survives a full build, so a page could not
//! say where the next starts (docs/authzen.md).

use super::{Failure, Pdp, identified, member, named, request_id, respond, typed, valid};
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pb::decision_service_server::DecisionService as _;
use portcullis_proto::v1 as pb;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub(super) const ACTION: &str = "/access/v1/search/action";
pub(super) const RESOURCE: &str = "/access/v1/search/resource";

/// The largest `page.limit` accepted: one `BatchCheck` at its default bound. A server with a
/// lower `batch-max-checks` decides at most that many a page (the next token goes on from there).
pub const MAX_PAGE: usize = crate::DEFAULT_MAX_BATCH;

/// The longest `page.token` read; ours are far shorter (a tool or connector name is at most
/// 1,024 bytes).
const MAX_TOKEN: usize = 2048;

/// What a search enumerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Searched {
    /// Tools (`action.name`), for a subject and a connector.
    Action,
    /// Connectors (`resource.id`), for a subject and a tool.
    Resource,
}

impl Searched {
    /// The tag a page token carries, so one endpoint's token is refused by the other.
    fn tag(self) -> &'static str {
        match self {
            Searched::Action => "action",
            Searched::Resource => "resource",
        }
    }

    /// A result as the specification shapes it.
    fn result(self, name: &str) -> Value {
        match self {
            Searched::Action => json!({ "name": name }),
            Searched::Resource => json!({ "type": "connector", "id": name }),
        }
    }

    /// Puts candidate `name` in the place of the searched-for part of `check`.
    fn set(self, check: &mut pb::CheckRequest, name: &str) {
        match self {
            Searched::Action => check.tool = name.to_owned(),
            Searched::Resource => check.connector = name.to_owned(),
        }
    }
}

/// A search request, read and checked; nothing is decided yet.
#[derive(Debug)]
struct Query {
    /// The evaluation each candidate gets, its searched-for part a placeholder.
    base: pb::CheckRequest,
    /// The page: after which candidate (by name) it starts, and how many it decides.
    after: Option<String>,
    limit: usize,
}

/// Reads a search body for `searched`: the subject, the fixed one of resource and action, the
/// context (as `evaluation` reads it, but `approval_id` is dropped: an approval is for exactly
/// one call, never a search) and the page.
fn query(
    body: &Map<String, Value>,
    searched: Searched,
    bounds: &crate::CheckBounds,
) -> Result<Query, Failure> {
    let user = identified(member(body.get("subject"), "subject")?, "user", "subject")?;
    let resource = member(body.get("resource"), "resource")?;
    // A placeholder for the part searched for, only so the request is checked as `Check`
    // will check every candidate's.
    let (connector, tool) = match searched {
        Searched::Action => (identified(resource, "connector", "resource")?, "*"),
        Searched::Resource => {
            typed(resource, "connector", "resource")?;
            ("*", named(member(body.get("action"), "action")?, "action")?)
        }
    };
    let mut base = pb::CheckRequest {
        user: user.to_owned(),
        connector: connector.to_owned(),
        tool: tool.to_owned(),
        ..Default::default()
    };
    if let Some(context) = body.get("context").filter(|c| !c.is_null()) {
        super::with_context(&mut base, context, "context")?;
    }
    base.approval_id.clear();
    valid(&base, "", bounds)?;
    let (after, limit) = page(body, searched)?;
    Ok(Query { base, after, limit })
}

/// `page.token` (the candidate the previous page ended at) and `page.limit` (at most
/// [`MAX_PAGE`], the default).
fn page(body: &Map<String, Value>, searched: Searched) -> Result<(Option<String>, usize), Failure> {
    let page = match body.get("page") {
        None | Some(Value::Null) => return Ok((None, MAX_PAGE)),
        Some(Value::Object(page)) => page,
        Some(_) => return Err(Failure::bad("`page` must be an object")),
    };
    let limit = match page.get("limit") {
        None | Some(Value::Null) => MAX_PAGE,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                Failure::bad(format!(
                    "`page.limit` is {n}: it must be a whole number from 1 to {MAX_PAGE}"
                ))
            })?,
        Some(_) => return Err(Failure::bad("`page.limit` must be a number")),
    };
    // Drafts of the specification sent the token back as `next_token`: read either.
    let (field, token) = match super::text(page, "token", "page")? {
        Some(token) => ("token", Some(token)),
        None => ("next_token", super::text(page, "next_token", "page")?),
    };
    let after = match token {
        None | Some("") => None,
        Some(token) => Some(cursor(token, searched, field)?),
    };
    Ok((after, limit))
}

/// The opaque `page.next_token` for a page that ended at candidate `last`.
fn next_token(searched: Searched, last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}\n{last}", searched.tag()))
}

/// The candidate a token of [`next_token`] names, sent as `page.{field}`; anything else is
/// refused.
fn cursor(token: &str, searched: Searched, field: &str) -> Result<String, Failure> {
    let refused = || Failure::bad(format!("`page.{field}` is not a page token of this search"));
    if token.len() > MAX_TOKEN {
        return Err(refused());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused())?;
    let text = String::from_utf8(bytes).map_err(|_| refused())?;
    match text.split_once('\n') {
        Some((tag, last)) if tag == searched.tag() && !last.is_empty() => Ok(last.to_owned()),
        _ => Err(refused()),
    }
}

/// The fuzz target's entry: a body as both searches read it, up to the decision.
#[cfg(feature = "fuzzing")]
pub(super) fn read_body(body: &Map<String, Value>) {
    for searched in [Searched::Action, Searched::Resource] {
        let _ = query(body, searched, &crate::CheckBounds::default());
    }
}

pub(super) async fn action(State(pdp): State<Arc<Pdp>>, request: Request) -> Response {
    search(pdp, request, Searched::Action).await
}

pub(super) async fn resource(State(pdp): State<Arc<Pdp>>, request: Request) -> Response {
    search(pdp, request, Searched::Resource).await
}

async fn search(pdp: Arc<Pdp>, request: Request, searched: Searched) -> Response {
    let id = request_id(request.headers());
    let answered = async {
        let body = pdp.body(request).await?;
        let query = query(&body, searched, pdp.decisions.check_bounds())?;
        let (candidates, revision) = pdp.candidates(&query.base, searched).await?;
        pdp.page(&query, searched, &candidates, revision).await
    };
    respond(answered.await, id)
}

impl Pdp {
    /// The names `searched` may find, sorted: every tool (or connector) `ListAllowedTools`
    /// lists for the query with an answer other than Deny; with the revision it listed them at.
    async fn candidates(
        &self,
        base: &pb::CheckRequest,
        searched: Searched,
    ) -> Result<(Vec<String>, u64), Failure> {
        let listed = self
            .decisions
            .list_allowed_tools(tonic::Request::new(pb::ListAllowedToolsRequest {
                user: base.user.clone(),
                agent: base.agent.clone(),
                connector: match searched {
                    Searched::Action => base.connector.clone(),
                    Searched::Resource => String::new(),
                },
                attributes: base.attributes.clone(),
                min_revision: 0,
            }))
            .await
            .map_err(|status| Failure::from_status(&status))?
            .into_inner();
        let mut names: Vec<String> = match searched {
            Searched::Action => listed.tools.into_iter().map(|t| t.tool).collect(),
            // A connector's `*` covers the tool unless a policy names it; then the tool has its
            // own entry, or none when it is denied (and the check below says so).
            Searched::Resource => listed
                .tools
                .into_iter()
                .filter(|t| t.tool == base.tool || t.tool == "*")
                .map(|t| t.connector)
                .collect(),
        };
        names.sort_unstable();
        names.dedup();
        Ok((names, listed.revision))
    }

    /// Decides the page of `candidates` after `query.after`, at most `query.limit` of them, in
    /// one `BatchCheck` at `revision` or later: the results are those it allows.
    async fn page(
        &self,
        query: &Query,
        searched: Searched,
        candidates: &[String],
        revision: u64,
    ) -> Result<Value, Failure> {
        let start = query.after.as_deref().map_or(0, |after| {
            candidates.partition_point(|c| c.as_str() <= after)
        });
        let limit = query.limit.min(self.decisions.max_batch());
        let chosen: Vec<&String> = candidates.iter().skip(start).take(limit).collect();
        let more = start + chosen.len() < candidates.len();
        let checks: Vec<pb::CheckRequest> = chosen
            .iter()
            .map(|name| {
                let mut check = query.base.clone();
                searched.set(&mut check, name);
                check.min_revision = revision;
                check
            })
            .collect();
        let answers = if checks.is_empty() {
            Vec::new()
        } else {
            self.batch_check(checks).await?
        };
        let mut results = Vec::new();
        let mut step_up = Vec::new();
        let mut require_approval = Vec::new();
        for (name, answer) in chosen.iter().zip(&answers) {
            match answer.decision() {
                pb::Decision::Allow => results.push(searched.result(name)),
                pb::Decision::StepUp => step_up.push(searched.result(name)),
                pb::Decision::RequireApproval => require_approval.push(searched.result(name)),
                _ => {}
            }
        }
        let next_token = match chosen.last() {
            Some(last) if more => next_token(searched, last),
            _ => String::new(),
        };
        let revision = answers.first().map_or(revision, |a| a.revision);
        let count = results.len();
        Ok(json!({
            "results": results,
            "page": { "next_token": next_token, "count": count },
            "context": {
                "revision": revision,
                "step_up": step_up,
                "require_approval": require_approval,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_is_read_back_only_by_its_own_search() {
        let token = next_token(Searched::Action, "create_issue");
        assert_eq!(
            cursor(&token, Searched::Action, "token").unwrap(),
            "create_issue"
        );
        assert!(cursor(&token, Searched::Resource, "token").is_err());
        for garbage in ["", "!!", "YWN0aW9u", &"A".repeat(MAX_TOKEN + 1)] {
            let error = cursor(garbage, Searched::Action, "next_token").unwrap_err();
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(error.message.starts_with("`page.next_token`"), "{error:?}");
        }
    }
}
