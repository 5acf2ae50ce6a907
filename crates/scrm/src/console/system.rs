//! Users, roles and API tokens, for admins: create a user, change a role, reset a password,
//! disable or enable; create an API token (shown once) and revoke one. Every change is the
//! API's own handler, so validation, audit and the rule "you cannot demote or disable
//! yourself" are the API's.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Answer, Chrome, FieldErrors, Form, Notes, PageResult, answer, answer_found, arg, data,
    field_problems, reshow, see_other, value,
};
use crate::auth::permissions as perm;
use crate::auth::users::UserView;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::system::{tokens, users};

/// The roles a user can have, with their labels.
pub fn roles(l: &super::Lang) -> [(&'static str, &'static str); 3] {
    [
        ("admin", l.t("管理员", "admin")),
        ("operator", l.t("运营", "operator")),
        ("viewer", l.t("只读", "viewer")),
    ]
}

/// The roles with every permission each holds (the role table of the users page).
pub fn role_permissions(l: &super::Lang) -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    roles(l)
        .into_iter()
        .filter_map(|(code, label)| {
            crate::auth::permissions::Role::parse(code).map(|r| (code, label, r.permissions()))
        })
        .collect()
}

/// What the create form held.
#[derive(Default)]
pub struct UserDraft {
    pub username: String,
    pub display_name: String,
    pub role: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    c: Chrome,
    users: Vec<UserView>,
    total: i64,
    d: UserDraft,
    /// Problems of the create form by field; of a row's forms by `user-<id>`.
    errors: FieldErrors,
    notes: Notes,
}

async fn users_with(
    state: &AppState,
    c: Chrome,
    d: UserDraft,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let p = value(
        users::list(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"size": 200}))?),
        )
        .await,
    )?;
    reshow(
        status,
        &UsersPage {
            c,
            users: p.list,
            total: p.total,
            d,
            errors,
            notes,
        },
    )
}

/// `GET /console/users`: the tenant's users with their roles and the forms to change them.
pub async fn users_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let notes = Notes::from_query(&c.l, raw.as_deref());
    let d = UserDraft {
        role: "operator".into(),
        ..Default::default()
    };
    users_with(&state, c, d, FieldErrors::default(), notes, StatusCode::OK).await
}

/// A body that does not parse (an unknown role) is the role field's problem.
fn user_problems(e: &ApiError) -> FieldErrors {
    match e {
        ApiError::Validation { fields, message }
            if fields.is_empty() && message.starts_with("invalid input") =>
        {
            FieldErrors(vec![("role".to_string(), message.clone())])
        }
        other => field_problems(other),
    }
}

/// `POST /console/users`: create a user.
pub async fn create_user(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let d = UserDraft {
        username: form.get("username").unwrap_or_default(),
        display_name: form.get("displayName").unwrap_or_default(),
        role: form.get("role").unwrap_or_default(),
    };
    let password = form
        .0
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let body = json!({
        "username": d.username,
        "password": password,
        "displayName": Some(&d.display_name).filter(|n| !n.is_empty()),
        "role": d.role,
    });
    let r = match arg(body) {
        Ok(b) => value(users::create(State(state.clone()), c.user.clone(), ApiJson(b)).await),
        Err(e) => Err(e),
    };
    match answer(r)? {
        Answer::Saved(_) => see_other("/console/users?done=created"),
        Answer::Refused(e) => {
            let status = e.status();
            let mut errors = user_problems(&e);
            if matches!(e, ApiError::Domain { .. }) {
                errors = FieldErrors(vec![("username".into(), e.to_string())]);
            }
            users_with(&state, c, d, errors, Notes::default(), status).await
        }
    }
}

/// `POST /console/users/{id}` (action role|disable|enable|password).
pub async fn user_action(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let s = State(state.clone());
    let u = c.user.clone();
    let r: Result<Value, ApiError> = match form.get("action").as_deref() {
        Some("password") => {
            let password = form
                .0
                .iter()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            data(
                users::reset_password(
                    s,
                    u,
                    ApiPath(id),
                    ApiJson(arg(json!({"password": password}))?),
                )
                .await,
            )
        }
        Some(a @ ("disable" | "enable")) => {
            let body = json!({"status": if a == "enable" { 1 } else { 0 }});
            data(users::update(s, u, ApiPath(id), ApiJson(arg(body)?)).await)
        }
        _ => match arg(json!({"role": form.get("role").unwrap_or_default()})) {
            Ok(b) => data(users::update(s, u, ApiPath(id), ApiJson(b)).await),
            Err(e) => Err(e),
        },
    };
    match answer_found(r)? {
        Answer::Saved(_) => see_other("/console/users?done=saved"),
        Answer::Refused(e) => {
            let status = e.status();
            let errors = FieldErrors(vec![(format!("user-{id}"), super::explain(&e))]);
            let d = UserDraft {
                role: "operator".into(),
                ..Default::default()
            };
            users_with(&state, c, d, errors, Notes::default(), status).await
        }
    }
}

/// An API token as listed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub prefix: String,
    pub create_time: String,
    pub expire_time: Option<String>,
    pub last_used_time: Option<String>,
    pub revoked: bool,
    pub token: Option<String>,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct TokensPage {
    c: Chrome,
    tokens: Vec<Token>,
    users: Vec<UserView>,
    /// The token just created: shown this once.
    fresh: Option<Token>,
    name: String,
    errors: FieldErrors,
    notes: Notes,
}

impl TokensPage {
    pub fn user_name(&self, id: &i64) -> String {
        self.users
            .iter()
            .find(|u| u.id == *id)
            .map(|u| u.username.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

async fn tokens_with(
    state: &AppState,
    c: Chrome,
    fresh: Option<Token>,
    name: String,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let tokens: Vec<Token> = data(tokens::list(State(state.clone()), c.user.clone()).await)?;
    let users = if c.can(perm::USER_VIEW) {
        value(
            users::list(
                State(state.clone()),
                c.user.clone(),
                ApiQuery(arg(json!({"size": 200}))?),
            )
            .await,
        )?
        .list
    } else {
        Vec::new()
    };
    reshow(
        status,
        &TokensPage {
            c,
            tokens,
            users,
            fresh,
            name,
            errors,
            notes,
        },
    )
}

/// `GET /console/tokens`: API tokens (never the secret, except once after creation).
pub async fn tokens_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let notes = Notes::from_query(&c.l, raw.as_deref());
    tokens_with(
        &state,
        c,
        None,
        String::new(),
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/tokens` (name, userId, expiresInDays): the new token is shown once, on this
/// answer only.
pub async fn create_token(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let name = form.get("name").unwrap_or_default();
    let days = form.get("expiresInDays");
    let body = json!({
        "name": name,
        "userId": form.ids("userId").first(),
        "expiresInDays": days.as_deref().map(|d| d.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(d))),
    });
    let r = match arg(body) {
        Ok(b) => {
            data::<_, Token>(tokens::create(State(state.clone()), c.user.clone(), ApiJson(b)).await)
        }
        Err(e) => Err(ApiError::field("expiresInDays", e.to_string())),
    };
    match answer(r)? {
        Answer::Saved(t) => {
            tokens_with(
                &state,
                c,
                Some(t),
                String::new(),
                FieldErrors::default(),
                Notes::default(),
                StatusCode::OK,
            )
            .await
        }
        Answer::Refused(e) => {
            let status = e.status();
            tokens_with(
                &state,
                c,
                None,
                name,
                field_problems(&e),
                Notes::default(),
                status,
            )
            .await
        }
    }
}

/// `POST /console/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    data::<_, Value>(tokens::revoke(State(state), c.user, ApiPath(id)).await)?;
    see_other("/console/tokens?done=revoked")
}
