//! The API documentation: an OpenAPI document generated from the route table (every route, its
//! method, summary and required permission) plus the request/response schemas the modules
//! declare, served with Swagger UI at `/docs`. Swagger UI's files are embedded in the binary
//! (from the `swagger-ui-dist` npm package), so the page works offline.

use axum::Router;
use axum::http::{Method, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, ResponseBuilder,
};

use super::routes::{Access, RouteInfo};
use crate::state::AppState;

const SWAGGER_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scrm API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: "/docs/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true });</script>
</body></html>"##;

fn http_method(m: &Method) -> Option<HttpMethod> {
    Some(match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => return None,
    })
}

/// Build the OpenAPI document from the route table.
pub fn openapi(table: &[RouteInfo]) -> OpenApi {
    let mut paths = Paths::new();
    for r in table.iter().filter(|r| !r.page) {
        let Some(method) = http_method(&r.method) else {
            continue;
        };
        let mut op = OperationBuilder::new().summary(Some(r.summary)).tag(r.tag);
        op = match r.access {
            Access::Public => op.description(Some("Public.")),
            Access::Authenticated => op
                .description(Some("Any signed-in user."))
                .security(SecurityRequirement::new("bearer", Vec::<String>::new())),
            Access::Permission(p) => op
                .description(Some(format!("Permission: `{p}`.")))
                .security(SecurityRequirement::new("bearer", Vec::<String>::new())),
        };
        op = op.response(
            "200",
            ResponseBuilder::new().description("`{\"code\":0,\"message\":\"ok\",\"data\":…}`"),
        );
        if r.access != Access::Public {
            op = op
                .response(
                    "401",
                    ResponseBuilder::new().description("`UNAUTHORIZED`: no valid token"),
                )
                .response(
                    "403",
                    ResponseBuilder::new()
                        .description("`FORBIDDEN`: the role lacks the permission"),
                );
        }
        paths.add_path_operation(r.path, vec![method], op.build());
    }
    let bearer = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    OpenApiBuilder::new()
        .info(InfoBuilder::new().title("scrm").version(env!("CARGO_PKG_VERSION")).description(Some(
            "A social CRM for WeCom. Every answer is the envelope `{code, message, data}`; errors carry a stable `error` name.",
        )))
        .paths(paths)
        .components(Some(ComponentsBuilder::new().security_scheme("bearer", bearer).build()))
        .build()
}

/// The docs routes, all public.
pub fn router(doc: OpenApi) -> Router<AppState> {
    let json = doc.to_json().unwrap_or_else(|_| "{}".into());
    Router::new()
        .route("/docs", get(|| async { Html(PAGE) }))
        .route(
            "/docs/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { asset("text/css", SWAGGER_CSS) }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { asset("application/javascript", SWAGGER_JS) }),
        )
}

fn asset(content_type: &'static str, body: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
}

/// The docs routes as the route table records them.
pub fn routes_info() -> Vec<RouteInfo> {
    [
        ("/docs", "Interactive API documentation"),
        ("/docs/openapi.json", "The OpenAPI document"),
        ("/docs/swagger-ui.css", "Swagger UI stylesheet"),
        ("/docs/swagger-ui-bundle.js", "Swagger UI script"),
    ]
    .into_iter()
    .map(|(path, summary)| RouteInfo {
        method: Method::GET,
        path,
        access: Access::Public,
        summary,
        tag: "docs",
        page: false,
    })
    .collect()
}
