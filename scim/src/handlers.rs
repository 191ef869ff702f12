//! The create, read, replace and patch requests of `/Users` and `/Groups`, said once over the
//! resource type ([`Kind`]): reading and checking the request, the `If-Match` precondition, the
//! write (see [`crate::write`]) and the answer, shown as the request's `attributes` and
//! `excludedAttributes` ask. What differs between users and groups (how a document is kept,
//! mapped and written) is the [`Kind`]'s.

use crate::attrs::Projection;
use crate::http::{self, Ctx};
use crate::patch;
use crate::resource;
use crate::schema::{self, Resource};
use crate::write::{Commit, write};
use crate::{Limits, Result, Scim};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use store::{Store, View};

/// A resource type SCIM clients write: how its documents are kept, read and written.
pub trait Kind: 'static {
    const RESOURCE: Resource;
    /// A client's document as it is kept, with what it carries besides (a group's member ids).
    type Doc: Clone + Send + Sync + 'static;
    /// The resource as it is: what a replace, a patch or a delete starts from.
    type Before: Send + 'static;

    /// The document of a create or replace body, or of a patched resource, as it is kept.
    fn normalize(body: Value) -> Result<Self::Doc>;

    /// The resource `id` as `view` has it, and rendered; 404 when there is none. Read outside
    /// the write lock: the commit makes sure nothing changed since `view`.
    fn current(store: &Store, view: &View, id: &str, base: &str) -> Result<(Self::Before, Value)>;

    /// Prepares the write of `doc` over `before` (`None`: a new resource), outside the write
    /// lock. Returns what the commit writes and answers.
    fn prepare(
        w: Writing<'_>,
        before: Option<Self::Before>,
        doc: Self::Doc,
    ) -> Result<Commit<Value>>;
}

/// What a write is prepared with: the limits it keeps to, the view it reads, the request it
/// answers, and the action it is audited as.
#[derive(Clone, Copy)]
pub struct Writing<'a> {
    pub limits: &'a Limits,
    pub view: &'a View,
    pub ctx: &'a Ctx,
    pub action: &'static str,
}

/// [`Kind::current`], refused with 412 unless it matches `if_match` (RFC 7644 §3.14).
pub fn current_matching<K: Kind>(
    store: &Store,
    view: &View,
    id: &str,
    base: &str,
    if_match: Option<&str>,
) -> Result<(K::Before, Value)> {
    let (before, current) = K::current(store, view, id, base)?;
    http::check_if_match(if_match, resource::version_of(&current))?;
    Ok((before, current))
}

/// The audit action of a create, a replace or a patch of `resource`.
fn action(resource: Resource, change: Change) -> &'static str {
    match (resource, change) {
        (Resource::User, Change::Create) => "user.create",
        (Resource::User, Change::Replace) => "user.replace",
        (Resource::User, Change::Patch) => "user.patch",
        (Resource::Group, Change::Create) => "group.create",
        (Resource::Group, Change::Replace) => "group.replace",
        (Resource::Group, Change::Patch) => "group.patch",
    }
}

/// What a write does to a resource.
#[derive(Clone, Copy)]
enum Change {
    Create,
    Replace,
    Patch,
}

/// A request's JSON body, which must name `urn` among its `schemas`.
async fn read_body(ctx: &Ctx, body: Body, urn: &str) -> Result<Value> {
    let body = http::read_json(ctx, body).await?;
    http::require_schema(&body, urn)?;
    Ok(body)
}

/// The full resource, shown as the request asked.
fn answer(status: StatusCode, rendered: &Value, projection: &Projection) -> Response {
    http::resource(status, rendered, &projection.apply(rendered))
}

/// `POST /<resources>`: 201 with the resource created.
pub async fn create<K: Kind>(State(scim): State<Scim>, ctx: Ctx, body: Body) -> Result<Response> {
    let doc = K::normalize(read_body(&ctx, body, K::RESOURCE.core_schema()).await?)?;
    let projection = Projection::from_ctx(&ctx, K::RESOURCE);
    let limits = scim.limits;
    let action = action(K::RESOURCE, Change::Create);
    let rendered = write(&scim, move |_, view| {
        let w = Writing {
            limits: &limits,
            view,
            ctx: &ctx,
            action,
        };
        K::prepare(w, None, doc.clone())
    })
    .await?;
    Ok(answer(StatusCode::CREATED, &rendered, &projection))
}

/// `GET /<resources>/<id>`.
pub async fn get<K: Kind>(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response> {
    let projection = Projection::from_ctx(&ctx, K::RESOURCE);
    let view = scim.live.view()?;
    let base = ctx.base;
    let (_, rendered) = scim
        .live
        .blocking(move |store| K::current(store, &view, &id, &base))
        .await??;
    Ok(answer(StatusCode::OK, &rendered, &projection))
}

/// `PUT /<resources>/<id>`: the body replaces the resource.
pub async fn replace<K: Kind>(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response> {
    let doc = K::normalize(read_body(&ctx, body, K::RESOURCE.core_schema()).await?)?;
    update::<K>(scim, ctx, id, Change::Replace, move |_| Ok(doc.clone())).await
}

/// `PATCH /<resources>/<id>`: the operations apply to the resource as SCIM shows it.
pub async fn patch<K: Kind>(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response> {
    let body = read_body(&ctx, body, schema::PATCH_OP).await?;
    scim.limits.check_operations(&body)?;
    let operations = patch::parse_within(&body, scim.limits.filter_bounds())?;
    let max_values = scim.limits.max_values();
    update::<K>(scim, ctx, id, Change::Patch, move |current| {
        let mut patched = current;
        patch::apply_within(&mut patched, &operations, max_values)?;
        K::normalize(patched)
    })
    .await
}

/// A replace or a patch: the resource as it is (if it matches `If-Match`) becomes the
/// document `doc_of` makes of it as rendered.
async fn update<K: Kind>(
    scim: Scim,
    ctx: Ctx,
    id: String,
    change: Change,
    doc_of: impl Fn(Value) -> Result<K::Doc> + Send + Sync + 'static,
) -> Result<Response> {
    let projection = Projection::from_ctx(&ctx, K::RESOURCE);
    let limits = scim.limits;
    let action = action(K::RESOURCE, change);
    let rendered = write(&scim, move |store, view| {
        let if_match = ctx.if_match.as_deref();
        let (before, current) = current_matching::<K>(store, view, &id, &ctx.base, if_match)?;
        let doc = doc_of(current)?;
        let w = Writing {
            limits: &limits,
            view,
            ctx: &ctx,
            action,
        };
        K::prepare(w, Some(before), doc)
    })
    .await?;
    Ok(answer(StatusCode::OK, &rendered, &projection))
}
