//! A sender account's page: its daily health history and its AI auto-reply settings, with the
//! form that changes them (`PUT /api/v1/devices/accounts/{accountId}/ai-reply`'s own handler,
//! so its checks are the page's, shown next to each field). The API key is never shown: the
//! form says whether one is set, keeps it when left blank, and removes it when asked to.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::devices::accounts;
use super::{
    Answer, Chrome, FieldErrors, Form, Notes, PageResult, answer_found, arg, data, field_problems,
};
use crate::auth::permissions as perm;
use crate::devices::{ai, health};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// One day of an account's health.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthDay {
    pub day: String,
    pub score: i64,
    pub relations: i64,
    pub adds: i64,
    pub losses: i64,
    pub deletions: i64,
    pub sends: i64,
    pub send_failures: i64,
}

/// An account's health as the API answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub account_id: String,
    pub account_name: String,
    pub account_type: String,
    pub score: Option<i64>,
    pub history: Vec<HealthDay>,
}

/// An account's AI auto-reply settings as the API answers them (the key never).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiConfig {
    pub enabled: bool,
    pub endpoint: String,
    pub api_key_set: bool,
    pub model: String,
    pub system_prompt: String,
    pub history_size: i64,
    pub max_replies_per_hour: i64,
    pub work_start: String,
    pub work_end: String,
    pub handover_keyword: String,
}

/// What the AI form holds (numbers as typed, so a refusal shows them again).
pub struct AiDraft {
    pub enabled: bool,
    pub endpoint: String,
    pub model: String,
    pub system_prompt: String,
    pub history_size: String,
    pub max_replies_per_hour: String,
    pub work_start: String,
    pub work_end: String,
    pub handover_keyword: String,
    /// Whether a key is stored (the form never holds it).
    pub api_key_set: bool,
}

impl AiDraft {
    /// The API's defaults for an account not configured yet.
    fn new() -> AiDraft {
        AiDraft {
            enabled: true,
            endpoint: String::new(),
            model: String::new(),
            system_prompt: String::new(),
            history_size: "10".into(),
            max_replies_per_hour: "20".into(),
            work_start: "00:00".into(),
            work_end: "24:00".into(),
            handover_keyword: String::new(),
            api_key_set: false,
        }
    }

    fn of(a: &AiConfig) -> AiDraft {
        AiDraft {
            enabled: a.enabled,
            endpoint: a.endpoint.clone(),
            model: a.model.clone(),
            system_prompt: a.system_prompt.clone(),
            history_size: a.history_size.to_string(),
            max_replies_per_hour: a.max_replies_per_hour.to_string(),
            work_start: a.work_start.clone(),
            work_end: a.work_end.clone(),
            handover_keyword: a.handover_keyword.clone(),
            api_key_set: a.api_key_set,
        }
    }

    fn parse(form: &Form, api_key_set: bool) -> AiDraft {
        let raw = |k: &str| {
            form.0
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        AiDraft {
            enabled: form.get("enabled").is_some(),
            endpoint: form.get("endpoint").unwrap_or_default(),
            model: form.get("model").unwrap_or_default(),
            system_prompt: raw("systemPrompt"),
            history_size: form.get("historySize").unwrap_or_default(),
            max_replies_per_hour: form.get("maxRepliesPerHour").unwrap_or_default(),
            work_start: form.get("workStart").unwrap_or_default(),
            work_end: form.get("workEnd").unwrap_or_default(),
            handover_keyword: form.get("handoverKeyword").unwrap_or_default(),
            api_key_set,
        }
    }

    /// The API's body, or the numbers the form could not read (the one check the page makes:
    /// the API's body takes numbers).
    fn body(&self, api_key: Option<String>) -> Result<Value, FieldErrors> {
        let mut bad = Vec::new();
        let mut num = |field: &str, v: &str| match v.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) if v.trim().is_empty() => None,
            Err(_) => {
                bad.push((field.to_string(), format!("{field}: a whole number")));
                None
            }
        };
        let history = num("historySize", &self.history_size);
        let max = num("maxRepliesPerHour", &self.max_replies_per_hour);
        if !bad.is_empty() {
            return Err(FieldErrors(bad));
        }
        let mut b = Map::new();
        b.insert("enabled".into(), json!(self.enabled));
        b.insert("endpoint".into(), json!(self.endpoint));
        b.insert("model".into(), json!(self.model));
        b.insert("systemPrompt".into(), json!(self.system_prompt));
        b.insert("historySize".into(), json!(history));
        b.insert("maxRepliesPerHour".into(), json!(max));
        let time = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
        b.insert("workStart".into(), json!(time(&self.work_start)));
        b.insert("workEnd".into(), json!(time(&self.work_end)));
        b.insert("handoverKeyword".into(), json!(self.handover_keyword));
        if let Some(k) = api_key {
            b.insert("apiKey".into(), json!(k));
        }
        // Absent numbers and times take the API's defaults.
        b.retain(|_, v| !v.is_null());
        Ok(Value::Object(b))
    }
}

#[derive(Template)]
#[template(path = "console/device_account.html")]
struct AccountPage {
    c: Chrome,
    status: String,
    h: Health,
    ai: Option<AiConfig>,
    /// The form (for a role that may change the settings).
    d: AiDraft,
    errors: FieldErrors,
    notes: Notes,
}

async fn stored(state: &AppState, c: &Chrome, account: &str) -> Result<Option<AiConfig>, ApiError> {
    match data::<_, AiConfig>(
        ai::get_config(
            State(state.clone()),
            c.user.clone(),
            ApiPath(account.to_string()),
        )
        .await,
    ) {
        Ok(cfg) => Ok(Some(cfg)),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn render(
    state: &AppState,
    c: Chrome,
    account: String,
    draft: Option<AiDraft>,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let h: Health = data(
        health::get_health(
            State(state.clone()),
            c.user.clone(),
            ApiPath(account.clone()),
            ApiQuery(arg(json!({"days": 30}))?),
        )
        .await,
    )?;
    let (one, _) = accounts(state, &c, &h.account_type, Some(&account), 0, 1).await?;
    let state_now = one.into_iter().next().map(|a| a.status).unwrap_or_default();
    let ai = stored(state, &c, &account).await?;
    let d = draft.unwrap_or_else(|| ai.as_ref().map_or_else(AiDraft::new, AiDraft::of));
    super::reshow(
        status,
        &AccountPage {
            c,
            status: state_now,
            h,
            ai,
            d,
            errors,
            notes,
        },
    )
}

/// `GET /console/devices/accounts/{accountId}`: health history and AI auto-reply settings.
pub async fn account_page(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(account): ApiPath<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> PageResult {
    let notes = Notes::from_query(&c.l, raw.as_deref());
    render(
        &state,
        c,
        account,
        None,
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/devices/accounts/{accountId}/ai-reply`: save the settings through the API;
/// refused input comes back with the problems next to their fields.
pub async fn save_ai(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(account): ApiPath<String>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let key_set = stored(&state, &c, &account)
        .await?
        .is_some_and(|a| a.api_key_set);
    let d = AiDraft::parse(&form, key_set);
    // A new key replaces the stored one; "remove" sends an empty one; blank keeps it.
    let api_key = match (form.get("apiKey"), form.get("removeKey")) {
        (Some(k), _) => Some(k),
        (None, Some(_)) => Some(String::new()),
        (None, None) => None,
    };
    let body = match d.body(api_key) {
        Ok(b) => b,
        Err(errors) => {
            return render(
                &state,
                c,
                account,
                Some(d),
                errors,
                Notes::default(),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let r = data::<_, Value>(
        ai::put_config(
            State(state.clone()),
            c.user.clone(),
            ApiPath(account.clone()),
            ApiJson(arg(body)?),
        )
        .await,
    );
    match answer_found(r)? {
        Answer::Saved(_) => super::see_other(&format!(
            "/console/devices/accounts/{}?done=saved",
            url::form_urlencoded::byte_serialize(account.as_bytes()).collect::<String>()
        )),
        Answer::Refused(e) => {
            let status = e.status();
            render(
                &state,
                c,
                account,
                Some(d),
                field_problems(&e),
                Notes::default(),
                status,
            )
            .await
        }
    }
}

/// Whether the user may change an account's AI settings (the template's form).
pub fn can_manage(c: &Chrome) -> bool {
    c.can(perm::DEVICE_MANAGE)
}
