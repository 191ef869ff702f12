//! The admin console: the product's pages (Users, Groups, Policies, Approvals, Agents,
//! Activity, Settings) as server-rendered HTML under `/console` on the HTTP port.
//!
//! It owns the pages, the console's sessions (sign-in with an admin token or the company's
//! identity provider, idle and absolute timeouts, sign-out), CSRF tokens and the security
//! headers. It holds no business logic: every read and write is a call to the same in-process
//! admin services the gRPC API serves ([`Services`]), with the signed-in person as the caller
//! (`admin::auth::ConsoleSession`, or the token they signed in with), so roles, validation,
//! audit and errors are the API's own. Every page works without JavaScript; the vendored htmx
//! (`assets/`) updates searches and lists in place where it runs.
//!
//! It must not touch the store, decide, or render anything a user sent without escaping (maud
//! escapes every interpolation; `PreEscaped` is used only for the product's own constant text).

mod activity;
mod agents;
mod allowed_tools;
mod approvals;
mod assets;
mod call;
mod confirm;
mod fields;
mod form;
mod groups;
mod headers;
mod layout;
mod list;
pub mod oidc;
mod policies;
mod session;
mod settings;
mod settings_pages;
mod sign_in;
mod users;
mod view;

pub use session::{Credential, Session, Sessions};
pub use settings::Settings;

use admin::webhooks::WebhookService;
use admin::{AdminService, ApprovalFlowService};
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

/// The admin services the console calls, the same values the gRPC server serves.
#[derive(Clone, Debug)]
pub struct Services {
    pub admin: AdminService,
    pub flows: ApprovalFlowService,
    pub webhooks: WebhookService,
    pub approvals: admin::approvals::ApprovalService,
    /// Decisions the console asks for itself (a user's allowed tools, "test this policy"):
    /// the same engine, but not recorded in the decision log or the decision metrics, which
    /// count the gateway's calls.
    pub decisions: pdp_service::DecisionService,
}

/// What every page handler reads: the services, the sessions, the settings.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
    /// The identity provider people sign in with, when one is configured.
    provider: Option<Arc<oidc::Client>>,
}

struct Inner {
    services: Services,
    sessions: Sessions,
    /// Whether the HTTP port is served over TLS: cookies are then `Secure` and `__Host-`.
    tls: bool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    pub fn new(services: Services, settings: Settings, tls: bool) -> Console {
        let sessions = Sessions::new(settings.session_limits());
        Console {
            inner: Arc::new(Inner {
                services,
                sessions,
                tls,
            }),
            provider: None,
        }
    }

    /// Lets people sign in with the company's identity provider (`config`, from
    /// [`Settings::identity_provider`]); without it only admin tokens sign in.
    pub fn with_identity_provider(mut self, config: Option<oidc::Config>) -> Console {
        self.provider = config.map(|config| Arc::new(oidc::Client::new(config)));
        self
    }

    pub(crate) fn provider(&self) -> Option<&oidc::Client> {
        self.provider.as_deref()
    }

    pub(crate) fn services(&self) -> &Services {
        &self.inner.services
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub(crate) fn tls(&self) -> bool {
        self.inner.tls
    }

    /// The routes under `/console`, to merge into the HTTP port's router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/console", get(view::home))
            .route("/console/", get(view::home))
            .route("/console/activity", get(activity::page))
            .route("/console/approvals", get(approvals::inbox))
            .route("/console/approvals/{id}", get(approvals::details))
            .route("/console/approvals/{id}/approve", post(approvals::approve))
            .route("/console/approvals/{id}/deny", post(approvals::deny))
            .route("/console/assets/{name}", get(assets::serve))
            .route(
                "/console/sign-in",
                get(sign_in::page).post(sign_in::with_token),
            )
            .route("/console/sign-in/provider", get(oidc::flow::start))
            .route("/console/sign-in/callback", get(oidc::flow::callback))
            .route("/console/sign-out", post(sign_in::sign_out))
            .route("/console/users", get(users::list))
            .route("/console/users/{id}", get(users::details))
            .route("/console/users/{id}/lock", post(users::lock))
            .route("/console/users/{id}/unlock", post(users::unlock))
            .route("/console/groups", get(groups::list).post(groups::create))
            .route("/console/groups/new", get(groups::new))
            .route("/console/groups/{id}", get(groups::details::page))
            .route(
                "/console/groups/{id}/assign",
                get(groups::assign::page).post(groups::assign::assign),
            )
            .route(
                "/console/groups/{id}/members/{user}/remove",
                get(groups::details::confirm_remove).post(groups::details::remove),
            )
            .route(
                "/console/groups/{id}/settings",
                get(groups::settings::page).post(groups::settings::update),
            )
            .route(
                "/console/groups/{id}/delete",
                post(groups::settings::delete),
            )
            .route("/console/settings", get(settings_pages::landing))
            .route(
                "/console/settings/organisation",
                get(settings_pages::organisation::show).post(settings_pages::organisation::update),
            )
            .route(
                "/console/settings/tokens",
                get(settings_pages::tokens::show).post(settings_pages::tokens::create),
            )
            .route(
                "/console/settings/tokens/{id}/revoke",
                get(settings_pages::tokens::confirm_revoke).post(settings_pages::tokens::revoke),
            )
            .route(
                "/console/settings/scim",
                get(settings_pages::scim::show).post(settings_pages::scim::create),
            )
            .route(
                "/console/settings/scim/{id}/rotate",
                get(settings_pages::scim::confirm_rotate).post(settings_pages::scim::rotate),
            )
            .route(
                "/console/settings/scim/{id}/revoke",
                get(settings_pages::scim::confirm_revoke).post(settings_pages::scim::revoke),
            )
            .route(
                "/console/settings/webhooks",
                get(settings_pages::webhooks::list).post(settings_pages::webhooks::create),
            )
            .route(
                "/console/settings/webhooks/new",
                get(settings_pages::webhooks::new),
            )
            .route(
                "/console/settings/webhooks/{id}",
                get(settings_pages::webhooks::show).post(settings_pages::webhooks::update),
            )
            .route(
                "/console/settings/webhooks/{id}/delete",
                post(settings_pages::webhooks::delete),
            )
            .route("/console/settings/audit", get(settings_pages::audit::list))
            .route(
                "/console/policies",
                get(policies::list).post(policies::create),
            )
            .route("/console/policies/new", get(policies::new))
            .route(
                "/console/policies/{id}",
                get(policies::details).post(policies::update),
            )
            .route("/console/policies/{id}/edit", get(policies::edit))
            .route(
                "/console/policies/{id}/enabled",
                post(policies::set_enabled),
            )
            .route("/console/policies/{id}/delete", post(policies::delete))
            .route("/console/agents", get(agents::list))
            .route("/console/agents/disable", post(agents::disable))
            .route("/console/agents/enable", post(agents::enable))
            .route(
                "/console/{*rest}",
                get(view::not_found).post(view::not_found),
            )
            .with_state(self)
            .layer(axum::middleware::from_fn(headers::secure))
    }
}
