//! The route table. Every route is registered through [`Routes::route`] with exactly one
//! [`Access`] decision, which is both enforced (by the guard layered on that route alone) and
//! recorded (for the OpenAPI document and the test that fails on a route without a permission).
//! Handlers get the caller from [`CurrentUser`](crate::auth::CurrentUser), which only the guard
//! provides, so a route that skipped registration cannot see a user.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, login, docs, callbacks that carry their own signature).
    Public,
    /// Any signed-in user, whatever the role.
    Authenticated,
    /// Users whose role holds this permission.
    Permission(&'static str),
}

/// One registered route, as the OpenAPI document and the permission test see it.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    pub tag: &'static str,
    /// A console page (HTML): guarded by the same check, but a caller without a session is sent
    /// to the login page and a refusal is an HTML page; left out of the API docs.
    pub page: bool,
}

/// A module's routes and their table.
pub struct Routes {
    tag: &'static str,
    state: AppState,
    router: Router<AppState>,
    table: Vec<RouteInfo>,
    /// Console pages rather than API routes.
    page: bool,
}

impl Routes {
    /// Start a module's routes; `tag` groups them in the API docs.
    pub fn new(state: &AppState, tag: &'static str) -> Self {
        Routes {
            tag,
            state: state.clone(),
            router: Router::new(),
            table: Vec::new(),
            page: false,
        }
    }

    /// Start the console's pages: the same table and access rules, with the page guard.
    pub fn pages(state: &AppState, tag: &'static str) -> Self {
        Routes {
            page: true,
            ..Routes::new(state, tag)
        }
    }

    /// Register `handler` for `method path`, guarded by `access`.
    pub fn route<H, T>(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        summary: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
        self.push(method, path, access, summary, on(filter, handler))
    }

    /// Like [`Routes::route`], with its own body limit instead of the server's
    /// (`SCRM_BODY_LIMIT_BYTES`): a file upload takes more than a JSON body ever should. Over the
    /// limit, reading the body fails with 413.
    pub fn route_with_body_limit<H, T>(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        summary: &'static str,
        limit: usize,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
        let method_router = on(filter, handler).layer(axum::extract::DefaultBodyLimit::max(limit));
        self.push(method, path, access, summary, method_router)
    }

    /// Guard a route by `access` and record it in the table.
    fn push(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        summary: &'static str,
        mut method_router: axum::routing::MethodRouter<AppState>,
    ) -> Self {
        if access != Access::Public && self.page {
            method_router = method_router.route_layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                move |state, req, next| crate::console::auth::page_guard(state, access, req, next),
            ));
        } else if access != Access::Public {
            method_router = method_router.route_layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                move |state, req, next| crate::auth::guard(state, access, req, next),
            ));
        }
        self.router = self.router.route(path, method_router);
        self.table.push(RouteInfo {
            method,
            path,
            access,
            summary,
            tag: self.tag,
            page: self.page,
        });
        self
    }

    /// Add another module's routes.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// Mount a plain router (static assets) whose routes are all public, recording them.
    pub fn public_router(
        mut self,
        router: Router<AppState>,
        routes: &[(Method, &'static str, &'static str)],
    ) -> Self {
        self.router = self.router.merge(router);
        for (method, path, summary) in routes {
            self.table.push(RouteInfo {
                method: method.clone(),
                path,
                access: Access::Public,
                summary,
                tag: self.tag,
                page: self.page,
            });
        }
        self
    }

    /// The router and the table.
    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteInfo>) {
        (self.router, self.table)
    }
}
