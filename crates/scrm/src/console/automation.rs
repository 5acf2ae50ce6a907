//! Channel codes (渠道活码): the list, the create / edit form (members with daily limits, backup
//! members, tags, owner, welcome text and materials), and a code's page with its QR code and
//! statistics; welcome messages (欢迎语) with their create / edit form. Every write is the API's
//! own handler, so validation, audit and the push to WeCom are the API's.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::staff_picker::{By, Columns, Picks, Spec, StaffPicker, search, staff_with};
use super::{
    Chrome, FieldErrors, Form, MaterialOption, Notes, PageResult, arg, data, field_problems,
    is_refusal, material_options, page_param, pages_of, query_param, reshow, see_other,
};
use crate::auth::permissions as perm;
use crate::automation::{channel_codes as codes, welcome};
use crate::customers::staff::StaffRow;
use crate::customers::tags::{self, TagRow};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

/// A member on a code, with today's adds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeStaff {
    pub userid: String,
    pub daily_limit: i64,
    #[serde(default)]
    pub adds_today: i64,
    /// Working hours set through the API (the form does not edit them; a save keeps them).
    #[serde(default)]
    pub work_days: Option<Value>,
    #[serde(default)]
    pub work_start: Option<Value>,
    #[serde(default)]
    pub work_end: Option<Value>,
}

/// A welcome's content.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Welcome {
    pub text: Option<String>,
    pub material_ids: Vec<i64>,
}

/// A channel code as the API shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Code {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub staff: Vec<CodeStaff>,
    pub backup_staff: Vec<String>,
    pub active_users: Vec<String>,
    pub skip_verify: bool,
    pub tag_ids: Vec<i64>,
    pub owner_staff_id: Option<i64>,
    pub welcome: Option<Welcome>,
    pub remark: Option<String>,
    pub qr_code: Option<String>,
    pub sync_status: String,
    pub sync_error: Option<String>,
    pub create_time: String,
}

impl Code {
    pub fn adds_today(&self) -> i64 {
        self.staff.iter().map(|s| s.adds_today).sum()
    }
}

#[derive(Deserialize)]
struct Listed<T> {
    list: Vec<T>,
    total: i64,
}

#[derive(Template)]
#[template(path = "console/channel_codes.html")]
struct CodesPage {
    c: Chrome,
    codes: Vec<Code>,
    total: i64,
    page: i64,
    pages: i64,
    keyword: String,
    notes: Notes,
}

impl CodesPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("keyword", &self.keyword)])
    }
}

/// `GET /console/channel-codes?keyword&page`.
pub async fn codes_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let keyword = query_param(raw.as_deref(), "keyword").unwrap_or_default();
    let page = page_param(raw.as_deref());
    let l: Listed<Code> = data(
        codes::list_codes(
            State(state),
            c.user.clone(),
            ApiQuery(arg(
                json!({"keyword": keyword, "page": page, "size": PAGE_SIZE}),
            )?),
        )
        .await,
    )?;
    let notes = Notes::from_query(&c.l, raw.as_deref());
    super::page(&CodesPage {
        c,
        pages: pages_of(l.total, PAGE_SIZE),
        codes: l.list,
        total: l.total,
        page,
        keyword,
        notes,
    })
}

/// What the code form holds (shown again with the API's problems when refused).
#[derive(Default)]
pub struct CodeDraft {
    pub name: String,
    pub state: String,
    pub staff: Vec<(String, i64)>,
    pub backup: Vec<String>,
    pub skip_verify: bool,
    pub tag_ids: Vec<i64>,
    pub owner_staff_id: Option<i64>,
    pub welcome_text: String,
    pub material_ids: Vec<i64>,
    pub remark: String,
}

impl CodeDraft {
    fn of(code: &Code) -> CodeDraft {
        let w = code.welcome.as_ref();
        CodeDraft {
            name: code.name.clone(),
            state: code.state.clone(),
            staff: code
                .staff
                .iter()
                .map(|s| (s.userid.clone(), s.daily_limit))
                .collect(),
            backup: code.backup_staff.clone(),
            skip_verify: code.skip_verify,
            tag_ids: code.tag_ids.clone(),
            owner_staff_id: code.owner_staff_id,
            welcome_text: w.and_then(|w| w.text.clone()).unwrap_or_default(),
            material_ids: w.map(|w| w.material_ids.clone()).unwrap_or_default(),
            remark: code.remark.clone().unwrap_or_default(),
        }
    }

    fn parse(form: &Form) -> CodeDraft {
        let staff = form
            .0
            .iter()
            .filter(|(k, _)| k == "staff")
            .map(|(_, u)| {
                let limit = form
                    .get(&format!("limit.{u}"))
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                (u.clone(), limit)
            })
            .collect();
        CodeDraft {
            name: form.get("name").unwrap_or_default(),
            state: form.get("state").unwrap_or_default(),
            staff,
            backup: form
                .0
                .iter()
                .filter(|(k, _)| k == "backup")
                .map(|(_, v)| v.clone())
                .collect(),
            skip_verify: form.get("skipVerify").is_some(),
            tag_ids: form.ids("tagIds"),
            owner_staff_id: form.ids("ownerStaffId").first().copied(),
            welcome_text: form.get("welcomeText").unwrap_or_default(),
            material_ids: form.ids("materialIds"),
            remark: form.get("remark").unwrap_or_default(),
        }
    }

    /// The API's body; a daily limit the form could not read is sent as given so the API
    /// names it.
    fn body(&self) -> Value {
        let welcome = if self.welcome_text.is_empty() && self.material_ids.is_empty() {
            Value::Null
        } else {
            json!({"text": Some(&self.welcome_text).filter(|t| !t.is_empty()), "materialIds": self.material_ids})
        };
        json!({
            "name": self.name,
            "state": Some(&self.state).filter(|s| !s.is_empty()),
            "staff": self.staff.iter().map(|(u, l)| json!({"userid": u, "dailyLimit": l})).collect::<Vec<_>>(),
            "backupStaff": self.backup,
            "skipVerify": self.skip_verify,
            "tagIds": self.tag_ids,
            "ownerStaffId": self.owner_staff_id,
            "welcome": welcome,
            "remark": Some(&self.remark).filter(|r| !r.is_empty()),
        })
    }

    /// The member picker's choices: members with their limits, and backups.
    fn picks(&self) -> Picks {
        Picks {
            values: self.staff.iter().map(|(u, _)| u.clone()).collect(),
            limits: self.staff.clone(),
            backup: self.backup.clone(),
        }
    }

    pub fn has_tag(&self, id: &i64) -> bool {
        self.tag_ids.contains(id)
    }

    pub fn has_material(&self, id: &i64) -> bool {
        self.material_ids.contains(id)
    }

    pub fn is_owner(&self, id: &i64) -> bool {
        self.owner_staff_id == Some(*id)
    }
}

#[derive(Template)]
#[template(path = "console/channel_code_form.html")]
struct CodeForm {
    c: Chrome,
    /// None for a new code.
    id: Option<i64>,
    d: CodeDraft,
    /// The member picker (HTML): members and backups with their daily limits, suggestions and a
    /// search box.
    staff_picker: String,
    /// Choices for the owner: the members above and the current owner.
    owners: Vec<StaffRow>,
    tags: Vec<TagRow>,
    materials: Vec<MaterialOption>,
    errors: FieldErrors,
}

/// The tenant's staff with these userids or this id (the picker's chosen rows, the owner).
async fn staff_named(
    state: &AppState,
    tenant_id: i64,
    userids: &[String],
    id: Option<i64>,
) -> Result<Vec<StaffRow>, ApiError> {
    let mut out = staff_with(state, tenant_id, By::Userid, userids).await?;
    if let Some(id) = id.filter(|id| !out.iter().any(|s| s.id == *id)) {
        out.extend(staff_with(state, tenant_id, By::Id, &[id.to_string()]).await?);
    }
    Ok(out)
}

/// The member picker for a draft (every member and backup, a userid the company does not know
/// shown as it is, so the API's refusal names it; the first staff as suggestions), and the
/// owner's choices: those members, the current owner and the first staff.
async fn picker(
    state: &AppState,
    c: &Chrome,
    d: &CodeDraft,
) -> Result<(String, Vec<StaffRow>), super::PageError> {
    let spec = Spec {
        field: "staff".into(),
        dom: "code-staff".into(),
        by: By::Userid,
        multiple: true,
        none: None,
        suggest: true,
        columns: Columns::LimitBackup,
    };
    let picks = d.picks();
    let html = StaffPicker::build_picks(state, c, spec, &picks, "")
        .await?
        .html()?;
    let userids: Vec<String> = picks.values.iter().chain(&picks.backup).cloned().collect();
    let mut owners = staff_named(state, c.user.tenant_id, &userids, d.owner_staff_id).await?;
    for s in search(state, c, "").await? {
        if !owners.iter().any(|o| o.id == s.id) {
            owners.push(s);
        }
    }
    Ok((html, owners))
}

async fn code_form(
    state: &AppState,
    c: Chrome,
    id: Option<i64>,
    d: CodeDraft,
    errors: FieldErrors,
    status: StatusCode,
) -> PageResult {
    let (staff_picker, owners) = picker(state, &c, &d).await?;
    let tags = tags::list_tags(&state.db, c.user.tenant_id, None).await?;
    let materials = material_options(state, &c.user).await?;
    reshow(
        status,
        &CodeForm {
            c,
            id,
            d,
            staff_picker,
            owners,
            tags,
            materials,
            errors,
        },
    )
}

/// `GET /console/channel-codes/new`.
pub async fn new_code(State(state): State<AppState>, c: Chrome) -> PageResult {
    code_form(
        &state,
        c,
        None,
        CodeDraft::default(),
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn one_code(state: &AppState, c: &Chrome, id: i64) -> Result<Code, ApiError> {
    data(codes::get_code(State(state.clone()), c.user.clone(), ApiPath(id)).await)
}

/// `GET /console/channel-codes/{id}/edit`.
pub async fn edit_code(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    let code = one_code(&state, &c, id).await?;
    code_form(
        &state,
        c,
        Some(id),
        CodeDraft::of(&code),
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
struct Saved {
    id: i64,
}

/// `POST /console/channel-codes`: create through the API; refused input comes back with the
/// problems next to their fields.
pub async fn create_code(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let d = CodeDraft::parse(&Form::parse(&body));
    let r = codes::create_code(
        State(state.clone()),
        c.user.clone(),
        ApiJson(arg(d.body())?),
    )
    .await;
    match data::<_, Saved>(r) {
        Ok(s) => see_other(&format!("/console/channel-codes/{}?done=created", s.id)),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            code_form(&state, c, None, d, code_problems(&e), status).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A 409 on a code is about its state (a state is never reused).
fn code_problems(e: &ApiError) -> FieldErrors {
    match e {
        ApiError::Conflict(m) => FieldErrors(vec![("state".into(), m.clone())]),
        other => field_problems(other),
    }
}

/// `POST /console/channel-codes/{id}` (action save|delete).
pub async fn update_code(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    if form.get("action").as_deref() == Some("delete") {
        data::<_, Value>(codes::delete_code(State(state), c.user, ApiPath(id)).await)?;
        return see_other("/console/channel-codes?done=deleted");
    }
    let d = CodeDraft::parse(&form);
    let mut body = d.body();
    // The form edits members and limits, not working hours: a member who stays keeps theirs.
    if let Ok(stored) = one_code(&state, &c, id).await
        && let Some(staff) = body["staff"].as_array_mut()
    {
        for m in staff {
            if let Some(s) = stored
                .staff
                .iter()
                .find(|s| m["userid"] == s.userid.as_str())
            {
                for (k, v) in [
                    ("workDays", &s.work_days),
                    ("workStart", &s.work_start),
                    ("workEnd", &s.work_end),
                ] {
                    if let Some(v) = v {
                        m[k] = v.clone();
                    }
                }
            }
        }
    }
    let r = codes::update_code(
        State(state.clone()),
        c.user.clone(),
        ApiPath(id),
        ApiJson(arg(body)?),
    )
    .await;
    match data::<_, Value>(r) {
        Ok(_) => see_other(&format!("/console/channel-codes/{id}?done=saved")),
        Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound(_)) => {
            let status = e.status();
            code_form(&state, c, Some(id), d, code_problems(&e), status).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A day of a code's statistics.
#[derive(Deserialize)]
pub struct Day {
    pub date: String,
    pub adds: i64,
    pub losses: i64,
}

/// A member's adds and losses on a code.
#[derive(Deserialize)]
pub struct StaffStat {
    pub userid: String,
    pub adds: i64,
    pub losses: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total_adds: i64,
    pub total_losses: i64,
    pub net_adds: i64,
    pub daily: Vec<Day>,
    pub staff: Vec<StaffStat>,
}

impl Stats {
    /// The largest daily figure (the chart's scale).
    pub fn peak(&self) -> i64 {
        self.daily
            .iter()
            .map(|d| d.adds.max(d.losses))
            .max()
            .unwrap_or(0)
            .max(1)
    }

    /// A bar's height in the 100-pixel chart.
    pub fn bar(&self, n: &i64) -> i64 {
        n * 100 / self.peak()
    }
}

#[derive(Template)]
#[template(path = "console/channel_code.html")]
struct CodePage {
    c: Chrome,
    code: Code,
    stats: Stats,
    days: i64,
    tag_names: Vec<String>,
    materials: Vec<MaterialOption>,
    notes: Notes,
}

/// `GET /console/channel-codes/{id}?days`: the code, its QR code and its statistics.
pub async fn code_page(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let days: i64 = query_param(raw.as_deref(), "days")
        .and_then(|d| d.parse().ok())
        .unwrap_or(30);
    let code = one_code(&state, &c, id).await?;
    let stats: Stats = data(
        codes::statistics(
            State(state.clone()),
            c.user.clone(),
            ApiPath(id),
            ApiQuery(arg(json!({"days": days}))?),
        )
        .await,
    )?;
    let all = tags::list_tags(&state.db, c.user.tenant_id, None).await?;
    let tag_names = code
        .tag_ids
        .iter()
        .filter_map(|t| all.iter().find(|x| x.id == *t).map(|x| x.name.clone()))
        .collect();
    let materials = material_options(&state, &c.user)
        .await?
        .into_iter()
        .filter(|m| {
            code.welcome
                .as_ref()
                .is_some_and(|w| w.material_ids.contains(&m.material_id))
        })
        .collect();
    let notes = Notes::from_query(&c.l, raw.as_deref());
    super::page(&CodePage {
        c,
        code,
        stats,
        days,
        tag_names,
        materials,
        notes,
    })
}

/// A welcome message as the API shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: i64,
    pub name: String,
    pub staff_userids: Vec<String>,
    pub text: Option<String>,
    pub material_ids: Vec<i64>,
    pub enabled: bool,
    pub update_time: String,
}

/// A welcome send (sent / failed / skipped).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRow {
    pub external_userid: String,
    pub staff_userid: String,
    pub source: String,
    pub status: String,
    pub error: Option<String>,
    pub create_time: String,
}

/// The welcome form's content.
#[derive(Default)]
pub struct MessageDraft {
    pub name: String,
    pub staff: Vec<String>,
    pub text: String,
    pub material_ids: Vec<i64>,
    pub enabled: bool,
}

impl MessageDraft {
    fn parse(form: &Form) -> MessageDraft {
        MessageDraft {
            name: form.get("name").unwrap_or_default(),
            staff: form
                .0
                .iter()
                .filter(|(k, _)| k == "staffUserids")
                .map(|(_, v)| v.clone())
                .collect(),
            text: form
                .0
                .iter()
                .find(|(k, _)| k == "text")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            material_ids: form.ids("materialIds"),
            enabled: form.get("enabled").is_some(),
        }
    }

    fn of(m: &Message) -> MessageDraft {
        MessageDraft {
            name: m.name.clone(),
            staff: m.staff_userids.clone(),
            text: m.text.clone().unwrap_or_default(),
            material_ids: m.material_ids.clone(),
            enabled: m.enabled,
        }
    }

    fn body(&self) -> Value {
        json!({
            "name": self.name,
            "staffUserids": self.staff,
            "text": Some(&self.text).filter(|t| !t.trim().is_empty()),
            "materialIds": self.material_ids,
            "enabled": self.enabled,
        })
    }

    pub fn has_material(&self, id: &i64) -> bool {
        self.material_ids.contains(id)
    }
}

#[derive(Template)]
#[template(path = "console/welcome.html")]
struct WelcomePage {
    c: Chrome,
    messages: Vec<Message>,
    sends: Vec<SendRow>,
    send_total: i64,
    /// The message being edited (None: the form creates one).
    editing: Option<i64>,
    d: MessageDraft,
    /// The members picker (HTML): the chosen members, suggestions and a search box.
    staff_picker: String,
    materials: Vec<MaterialOption>,
    errors: FieldErrors,
    notes: Notes,
}

#[allow(clippy::too_many_arguments)]
async fn welcome_page_with(
    state: &AppState,
    c: Chrome,
    editing: Option<i64>,
    d: Option<MessageDraft>,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let l: Listed<Message> = data(
        welcome::list_messages(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"size": 100}))?),
        )
        .await,
    )?;
    let s: Listed<SendRow> = data(
        welcome::list_sends(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"size": 20}))?),
        )
        .await,
    )?;
    let d = match (d, editing) {
        (Some(d), _) => d,
        (None, Some(id)) => l
            .list
            .iter()
            .find(|m| m.id == id)
            .map(MessageDraft::of)
            .ok_or(ApiError::NotFound("welcome message"))?,
        (None, None) => MessageDraft {
            enabled: true,
            ..Default::default()
        },
    };
    let (staff_picker, materials) = if c.can(perm::WELCOME_MANAGE) {
        let spec = Spec {
            field: "staffUserids".into(),
            dom: "welcome-staff".into(),
            by: By::Userid,
            multiple: true,
            none: None,
            suggest: true,
            columns: Columns::None,
        };
        (
            StaffPicker::build(state, &c, spec, &d.staff, "")
                .await?
                .html()?,
            material_options(state, &c.user).await?,
        )
    } else {
        (String::new(), Vec::new())
    };
    reshow(
        status,
        &WelcomePage {
            c,
            messages: l.list,
            send_total: s.total,
            sends: s.list,
            editing,
            d,
            staff_picker,
            materials,
            errors,
            notes,
        },
    )
}

/// `GET /console/welcome?edit=`: welcome messages, the create / edit form, recent sends.
pub async fn welcome_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let editing = query_param(raw.as_deref(), "edit").and_then(|e| e.parse().ok());
    let notes = Notes::from_query(&c.l, raw.as_deref());
    welcome_page_with(
        &state,
        c,
        editing,
        None,
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/welcome` (id for an edit; action save|delete).
pub async fn save_welcome(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let id = form.ids("id").first().copied();
    let s = State(state.clone());
    let u = c.user.clone();
    if let (Some(id), Some("delete")) = (id, form.get("action").as_deref()) {
        data::<_, Value>(welcome::delete_message(s, u, ApiPath(id)).await)?;
        return see_other("/console/welcome?done=deleted");
    }
    let d = MessageDraft::parse(&form);
    let body = ApiJson(arg(d.body())?);
    let r: Result<Value, ApiError> = match id {
        Some(id) => data(welcome::update_message(s, u, ApiPath(id), body).await),
        None => data(welcome::create_message(s, u, body).await),
    };
    match r {
        Ok(_) => see_other(&format!(
            "/console/welcome?done={}",
            if id.is_some() { "saved" } else { "created" }
        )),
        Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound(_)) => {
            let status = e.status();
            welcome_page_with(
                &state,
                c,
                id,
                Some(d),
                field_problems(&e),
                Notes::default(),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
