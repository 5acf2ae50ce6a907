//! `POST /api/wework/config/test`: call WeCom with the saved configuration and report, per
//! capability, what works, and for what does not, WeCom's errcode and what to do about it.

use axum::extract::State;
use scrm_wecom::WeComError;
use serde::Serialize;

use super::client;
use super::config::{self, WeworkConfig};
use crate::auth::CurrentUser;
use crate::http::envelope::{Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::state::{AppState, iso_opt};

/// One capability's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `token`, `customerContact`, `contacts`, `callback`.
    pub name: &'static str,
    pub ok: bool,
    /// WeCom's errcode when WeCom refused.
    pub errcode: Option<i64>,
    /// What happened.
    pub message: String,
    /// What to do about it (empty when fine).
    pub advice: String,
}

/// The whole report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every check passed.
    pub ok: bool,
    pub corp_id: String,
    pub checks: Vec<Check>,
}

/// What an errcode means for an operator.
pub fn advice(errcode: Option<i64>, what: &str) -> String {
    match errcode {
        Some(40001 | 40091) => format!(
            "The secret for {what} is wrong, was reset, or the app is disabled: copy it again from WeCom's admin console (应用管理 → the app → Secret) and save the configuration."
        ),
        Some(40013) => "The corpId is wrong: copy it from 我的企业 → 企业信息 → 企业ID.".into(),
        Some(60020) => "WeCom refuses calls from this server's IP: add the server's public IP to the app's 企业可信IP list (takes about a minute to apply).".into(),
        Some(48002) => format!(
            "The app has no permission for {what}: in 客户联系 → API → 可调用接口的应用, add this app (or set contactSecret to the 客户联系 secret)."
        ),
        Some(60011) => "The app cannot see these members or departments: widen its 可见范围 (visible range) or set contactsSecret to the 通讯录同步 secret.".into(),
        Some(45009 | 45033 | -1) => "WeCom is busy or throttling: try again in a minute.".into(),
        Some(_) => format!("See WeCom's error code reference for {what}."),
        None => "WeCom could not be reached: check apiBase, DNS, the firewall and any egress proxy.".into(),
    }
}

fn check(name: &'static str, what: &str, r: Result<String, WeComError>) -> Check {
    match r {
        Ok(message) => Check {
            name,
            ok: true,
            errcode: None,
            message,
            advice: String::new(),
        },
        Err(e) => Check {
            name,
            ok: false,
            errcode: e.errcode(),
            message: e.to_string(),
            advice: advice(e.errcode(), what),
        },
    }
}

/// Run every check against WeCom.
pub async fn run(state: &AppState, c: &WeworkConfig) -> anyhow::Result<Report> {
    let conn = client::connect(state, c)?;
    let mut checks = Vec::new();
    let token = conn
        .customers
        .access_token()
        .await
        .map(|_| "access token obtained".to_string());
    checks.push(check("token", "the app", token));
    let contact = conn
        .customers
        .get_follow_user_list()
        .await
        .map(|users| format!("{} members can have customers", users.len()));
    checks.push(check(
        "customerContact",
        "customer contact (客户联系)",
        contact,
    ));
    let dirs = conn
        .directory
        .department_list(None)
        .await
        .map(|d| format!("{} departments visible", d.len()));
    checks.push(check("contacts", "the contacts directory (通讯录)", dirs));
    checks.push(callback_check(c));
    Ok(Report {
        ok: checks.iter().all(|c| c.ok),
        corp_id: c.corp_id.clone(),
        checks,
    })
}

fn callback_check(c: &WeworkConfig) -> Check {
    let path = format!("/api/wework/callback/{}", c.id);
    let (ok, message, advice) = match (&c.token, c.callback_verified_at) {
        (None, _) => (
            false,
            "callback not configured".to_string(),
            format!(
                "Set token and encodingAesKey here and the same in WeCom (应用 → 接收消息 → 设置API接收) with the URL https://<this host>{path}."
            ),
        ),
        (Some(_), None) => (
            false,
            "callback not verified yet: WeCom has not called the URL".to_string(),
            format!(
                "In WeCom's admin console save https://<this host>{path} with the same token and EncodingAESKey; WeCom verifies it on save."
            ),
        ),
        (Some(_), Some(at)) => (
            true,
            format!(
                "verified by WeCom at {}",
                iso_opt(Some(at)).unwrap_or_default()
            ),
            String::new(),
        ),
    };
    Check {
        name: "callback",
        ok,
        errcode: None,
        message,
        advice,
    }
}

/// `POST /api/wework/config/test`.
pub async fn handler(State(state): State<AppState>, user: CurrentUser) -> ApiResult<Reply<Report>> {
    let c = config::for_tenant(&state, user.tenant_id)
        .await?
        .ok_or_else(not_configured)?;
    Ok(ok(run(&state, &c).await?))
}

/// The error every WeCom action answers when the tenant has no configuration.
pub fn not_configured() -> ApiError {
    ApiError::domain(
        axum::http::StatusCode::NOT_FOUND,
        "WEWORK_CONFIG_NOT_FOUND",
        "no WeCom configuration: create one with POST /api/wework/config",
    )
}
