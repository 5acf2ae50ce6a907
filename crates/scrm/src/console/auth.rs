//! Signing in to the console: the login page, the session cookie, the page guard, the language.
//!
//! Login goes through the API's own login handler (password check, throttling, audit, token
//! issue); the console only moves the token into an `HttpOnly; SameSite=Strict` cookie, which
//! [`crate::auth::authenticate`] reads when a request has no `Authorization` header.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Chrome, Form, PageError, PageResult, html};
use crate::auth::routes::LoginRequest;
use crate::auth::tokens::SESSION_COOKIE;
use crate::auth::{CurrentUser, check};
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::routes::Access;
use crate::state::AppState;

/// The cookie that keeps the console's language.
pub const LANG_COOKIE: &str = "scrm_lang";

/// The console's language: Chinese by default, English on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// The label in this language; each template names both, side by side.
    pub fn t<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// `zh` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The language the switch offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// `?lang=` first, then the cookie, then Chinese.
    pub fn of(uri: &Uri, headers: &HeaderMap) -> Lang {
        query_lang(uri)
            .or_else(|| cookie(headers, LANG_COOKIE).and_then(Lang::parse))
            .unwrap_or_default()
    }
}

fn query_lang(uri: &Uri) -> Option<Lang> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "lang")
        .and_then(|(_, v)| Lang::parse(&v))
}

/// A cookie's value.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::of(&parts.uri, &parts.headers))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Chrome {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let user = parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(PageError(ApiError::Unauthorized))?;
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/console".into());
        Ok(Chrome::new(
            Lang::of(&parts.uri, &parts.headers),
            user,
            parts.uri.path(),
            here,
        ))
    }
}

/// The guard on every console page: the API's check; without a session the browser goes to the
/// login page, a refusal is a 403 page. `?lang=` on any page is remembered in a cookie.
pub async fn page_guard(
    State(state): State<AppState>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Response {
    let remember = query_lang(req.uri());
    let mut resp = match check(&state, access, req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(ApiError::Unauthorized) => to_login(&req),
        Err(e) => PageError(e).into_response(),
    };
    if let Some(l) = remember {
        set_cookie(&mut resp, &lang_cookie(l));
    }
    resp
}

fn to_login(req: &Request) -> Response {
    let next = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|_| req.method() == axum::http::Method::GET)
        .unwrap_or("/console");
    let to = format!(
        "/console/login?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    if req.headers().contains_key("hx-request") {
        // htmx swaps a fragment: tell it to load the login page instead.
        let mut resp = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&to) {
            resp.headers_mut().insert("hx-redirect", v);
        }
        resp.extensions_mut().insert(crate::http::error::Enveloped);
        return resp;
    }
    Redirect::to(&to).into_response()
}

fn set_cookie(resp: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn lang_cookie(l: Lang) -> String {
    format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
        l.code()
    )
}

/// Only console paths are followed after login or a language switch (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/console") && !n.starts_with("/console/login"))
        .unwrap_or("/console")
        .to_string()
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    l: Lang,
    next: String,
    username: String,
    error: Option<String>,
}

fn next_of(uri: &Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
}

/// `GET /console/login`.
pub async fn login_page(l: Lang, uri: Uri) -> PageResult {
    super::page(&LoginPage {
        l,
        next: safe_next(next_of(&uri).as_deref()),
        username: String::new(),
        error: None,
    })
}

/// `POST /console/login`: the API's login; the token goes into the session cookie.
pub async fn login(State(state): State<AppState>, l: Lang, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let username = form.get("username").unwrap_or_default();
    let request = LoginRequest {
        username: username.clone(),
        password: form
            .0
            .iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    };
    let next = safe_next(form.get("next").as_deref());
    match crate::auth::routes::login(State(state.clone()), ApiJson(request)).await {
        Ok(reply) => {
            let ttl = state.config.session_ttl.as_secs();
            let mut resp = Redirect::to(&next).into_response();
            set_cookie(
                &mut resp,
                &format!(
                    "{SESSION_COOKIE}={}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Strict",
                    reply.1.token
                ),
            );
            Ok(resp)
        }
        Err(e @ ApiError::Internal(_)) => Err(PageError(e)),
        Err(e) => {
            let error = match e.name() {
                "INVALID_CREDENTIALS" => l.t("用户名或密码错误", "Wrong user name or password"),
                "LOGIN_THROTTLED" => l.t(
                    "登录失败次数过多，请稍后再试",
                    "Too many failed logins; try again later",
                ),
                _ => l.t("请输入用户名和密码", "Enter your user name and password"),
            };
            let page = LoginPage {
                l,
                next,
                username,
                error: Some(error.to_string()),
            };
            Ok(html(e.status(), page.render()?))
        }
    }
}

/// `POST /console/logout`: revoke the session's token and clear the cookie.
pub async fn logout(State(state): State<AppState>, user: CurrentUser) -> PageResult {
    crate::auth::routes::logout(State(state), user).await?;
    let mut resp = Redirect::to("/console/login").into_response();
    set_cookie(
        &mut resp,
        &format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    Ok(resp)
}

/// `GET /console/lang?set=en&next=/console/…`: remember the language, go back.
pub async fn switch_lang(uri: Uri) -> Response {
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let l = get("set").and_then(Lang::parse).unwrap_or_default();
    let next = get("next")
        .filter(|n| n.starts_with("/console"))
        .unwrap_or("/console");
    let mut resp = Redirect::to(next).into_response();
    set_cookie(&mut resp, &lang_cookie(l));
    resp
}
