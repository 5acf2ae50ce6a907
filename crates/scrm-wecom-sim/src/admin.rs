//! The admin API under `/sim/admin` (JSON): inspect the company, change faults/limits/quota at
//! runtime, revoke secrets, expire tokens, move the clock, confirm mass sends, read deliveries
//! and callbacks, reset, and run scenarios. Errors are HTTP 400 `{"error": "..."}` — this is
//! our API, not WeCom's. Admin calls bypass faults, latency and rate limits.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;

use crate::deliveries::DeliveryQuery;
use crate::scenarios::*;
use crate::state::{SecretKind, Sim};

/// The `/sim/admin` router.
pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route("/sim/admin/company", get(company))
        .route("/sim/admin/config", get(get_config).put(put_config))
        .route("/sim/admin/secrets", post(secrets))
        .route("/sim/admin/tokens/expire", post(expire_tokens))
        .route("/sim/admin/clock/advance", post(advance_clock))
        .route("/sim/admin/reset", post(reset))
        .route("/sim/admin/calls", get(calls))
        .route("/sim/admin/deliveries", get(deliveries))
        .route("/sim/admin/deliveries/summary", get(delivery_summary))
        .route("/sim/admin/callbacks", get(callbacks))
        .route("/sim/admin/mass_sends", get(mass_sends))
        .route("/sim/admin/mass_sends/{msgid}/confirm", post(confirm))
        .route(
            "/sim/admin/scenario/customer_adds_staff",
            post(customer_adds_staff),
        )
        .route(
            "/sim/admin/scenario/staff_edits_contact",
            post(staff_edits_contact),
        )
        .route(
            "/sim/admin/scenario/customer_deletes_staff",
            post(customer_deletes_staff),
        )
        .route(
            "/sim/admin/scenario/staff_deletes_customer",
            post(staff_deletes_customer),
        )
        .route(
            "/sim/admin/scenario/customer_refuses_transfer",
            post(customer_refuses_transfer),
        )
        .route("/sim/admin/scenario/staff_resigns", post(staff_resigns))
        .route(
            "/sim/admin/scenario/member_joins_group",
            post(member_joins_group),
        )
        .route(
            "/sim/admin/scenario/member_leaves_group",
            post(member_leaves_group),
        )
        .route("/sim/admin/scenario/group_created", post(group_created))
        .route("/sim/admin/scenario/group_renamed", post(group_renamed))
        .route("/sim/admin/scenario/group_dismissed", post(group_dismissed))
        .route("/sim/admin/scenario/tags_created", post(tags_created))
        .route("/sim/admin/scenario/tag_changed", post(tag_changed))
        .route("/sim/admin/scenario/tags_deleted", post(tags_deleted))
}

fn reply<T: serde::Serialize>(r: anyhow::Result<T>) -> Response {
    match r {
        Ok(v) => Json(serde_json::json!({ "ok": true, "result": v })).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": format!("{e:#}") })),
        )
            .into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SampleQ {
    sample: Option<usize>,
}

/// Sizes, all members, and a sample of customers and chats (ids to drive tests and demos).
async fn company(State(sim): State<Sim>, Query(q): Query<SampleQ>) -> Response {
    let n = q.sample.unwrap_or(10);
    let c = sim.company();
    let staff: Vec<serde_json::Value> = c
        .staff
        .iter()
        .map(|s| {
            serde_json::json!({"userid": s.userid, "name": s.name, "status": s.status,
            "contact_enabled": s.contact_enabled, "customers": s.customers.len()})
        })
        .collect();
    let customers: Vec<serde_json::Value> = (0..c.customers.len().min(n) as u32)
        .map(|i| {
            let follows: Vec<&str> = c.follows_of(i).map(|(_, f)| c.staff[f.staff as usize].userid.as_str()).collect();
            serde_json::json!({"external_userid": c.external_userid(i), "name": c.customer_name(i), "follow_users": follows})
        })
        .collect();
    let chats: Vec<String> = (0..c.chats.len().min(n) as u32)
        .map(|i| c.chat_id(i))
        .collect();
    let tags: Vec<serde_json::Value> = c
        .tags
        .iter()
        .filter(|t| !t.deleted)
        .map(|t| serde_json::json!({"id": t.id, "name": t.name, "group_id": c.tag_groups[t.group as usize].id}))
        .collect();
    Json(serde_json::json!({
        "corp_name": c.corp_name,
        "departments": c.departments.len(),
        "staff": staff,
        "customer_count": c.customers.len(),
        "follow_count": c.follow_count(),
        "chat_count": c.chats.len(),
        "customers": customers,
        "chats": chats,
        "tags": tags,
    }))
    .into_response()
}

async fn get_config(State(sim): State<Sim>) -> Response {
    Json(sim.config()).into_response()
}

/// Merges a partial SimConfig (JSON) into the running one, e.g.
/// `{"faults":{"busy":0.1},"mass_send":{"confirm_delay_ms":-1}}`.
async fn put_config(State(sim): State<Sim>, Json(patch): Json<serde_json::Value>) -> Response {
    let mut current = match serde_json::to_value(sim.config()) {
        Ok(v) => v,
        Err(e) => return reply::<()>(Err(e.into())),
    };
    merge(&mut current, patch);
    match serde_json::from_value(current) {
        Ok(cfg) => {
            sim.update_config(|c| *c = cfg);
            Json(sim.config()).into_response()
        }
        Err(e) => reply::<()>(Err(e.into())),
    }
}

fn merge(dst: &mut serde_json::Value, patch: serde_json::Value) {
    match (dst, patch) {
        (serde_json::Value::Object(d), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(d.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (d, p) => *d = p,
    }
}

#[derive(Deserialize)]
struct SecretReq {
    secret: SecretKind,
    revoked: Option<bool>,
    errcode: Option<i32>,
}

/// `{"secret":"app","revoked":true}` or `{"secret":"contact","errcode":60020}` (0 clears).
async fn secrets(State(sim): State<Sim>, Json(r): Json<SecretReq>) -> Response {
    if let Some(rev) = r.revoked {
        sim.set_secret_revoked(r.secret, rev);
    }
    if let Some(code) = r.errcode {
        sim.set_secret_errcode(r.secret, code);
    }
    reply(Ok(()))
}

async fn expire_tokens(State(sim): State<Sim>) -> Response {
    sim.expire_tokens();
    reply(Ok(()))
}

#[derive(Deserialize)]
struct AdvanceReq {
    secs: i64,
}

/// Moves the clock and settles transfers that came due.
async fn advance_clock(State(sim): State<Sim>, Json(r): Json<AdvanceReq>) -> Response {
    sim.advance_clock(r.secs);
    let settled = sim.settle_transfers();
    reply(Ok(
        serde_json::json!({ "now": sim.now(), "transfers_settled": settled }),
    ))
}

async fn reset(State(sim): State<Sim>) -> Response {
    sim.reset();
    reply(Ok(()))
}

async fn calls(State(sim): State<Sim>) -> Response {
    Json(sim.call_counts()).into_response()
}

async fn deliveries(State(sim): State<Sim>, Query(q): Query<DeliveryQuery>) -> Response {
    Json(sim.query_deliveries(&q)).into_response()
}

/// Total, distinct recipients, per-recipient counts (omitted above 10,000 recipients) and
/// duplicates.
async fn delivery_summary(State(sim): State<Sim>) -> Response {
    let per = sim.deliveries_per_recipient();
    let mut histogram = std::collections::BTreeMap::<usize, usize>::new();
    for n in per.values() {
        *histogram.entry(*n).or_default() += 1;
    }
    Json(serde_json::json!({
        "total": sim.delivery_count(),
        "recipients": per.len(),
        "messages_per_recipient_histogram": histogram,
        "per_recipient": if per.len() <= 10_000 { serde_json::to_value(&per).unwrap_or_default() } else { serde_json::Value::Null },
        "duplicates": sim.duplicate_deliveries(),
    }))
    .into_response()
}

async fn callbacks(State(sim): State<Sim>) -> Response {
    Json(sim.callbacks()).into_response()
}

async fn mass_sends(State(sim): State<Sim>) -> Response {
    Json(sim.mass_sends()).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfirmReq {
    userid: Option<String>,
}

/// Confirms a mass send now, for all senders or one (`{"userid":"..."}`).
async fn confirm(
    State(sim): State<Sim>,
    Path(msgid): Path<String>,
    body: Option<Json<ConfirmReq>>,
) -> Response {
    let userid = body.and_then(|b| b.0.userid);
    reply(
        sim.confirm_mass_send(&msgid, userid.as_deref())
            .map(|n| serde_json::json!({ "delivered": n })),
    )
}

async fn customer_adds_staff(State(sim): State<Sim>, Json(r): Json<AddContact>) -> Response {
    reply(sim.customer_adds_staff(r))
}

async fn staff_edits_contact(State(sim): State<Sim>, Json(r): Json<EditContact>) -> Response {
    reply(sim.staff_edits_contact(r))
}

async fn customer_deletes_staff(State(sim): State<Sim>, Json(r): Json<Pair>) -> Response {
    reply(sim.customer_deletes_staff(r))
}

async fn staff_deletes_customer(State(sim): State<Sim>, Json(r): Json<Pair>) -> Response {
    reply(sim.staff_deletes_customer(r))
}

async fn customer_refuses_transfer(State(sim): State<Sim>, Json(r): Json<Pair>) -> Response {
    reply(sim.customer_refuses_transfer(r))
}

#[derive(Deserialize)]
struct UserReq {
    userid: String,
}

async fn staff_resigns(State(sim): State<Sim>, Json(r): Json<UserReq>) -> Response {
    reply(sim.staff_resigns(&r.userid))
}

async fn member_joins_group(State(sim): State<Sim>, Json(r): Json<JoinGroup>) -> Response {
    reply(
        sim.member_joins_group(r)
            .map(|(member, seq)| serde_json::json!({"member": member, "callback_seq": seq})),
    )
}

async fn member_leaves_group(State(sim): State<Sim>, Json(r): Json<LeaveGroup>) -> Response {
    reply(sim.member_leaves_group(r))
}

async fn group_created(State(sim): State<Sim>, Json(r): Json<CreateGroup>) -> Response {
    reply(sim.group_created(r))
}

#[derive(Deserialize)]
struct RenameReq {
    chat_id: String,
    name: String,
}

async fn group_renamed(State(sim): State<Sim>, Json(r): Json<RenameReq>) -> Response {
    reply(sim.group_renamed(&r.chat_id, &r.name))
}

#[derive(Deserialize)]
struct ChatReq {
    chat_id: String,
}

async fn group_dismissed(State(sim): State<Sim>, Json(r): Json<ChatReq>) -> Response {
    reply(sim.group_dismissed(&r.chat_id))
}

async fn tags_created(State(sim): State<Sim>, Json(r): Json<ConsoleAddTags>) -> Response {
    reply(sim.console_add_tags(r))
}

async fn tag_changed(State(sim): State<Sim>, Json(r): Json<ConsoleEditTag>) -> Response {
    reply(sim.console_edit_tag(r))
}

async fn tags_deleted(State(sim): State<Sim>, Json(r): Json<ConsoleDeleteTags>) -> Response {
    reply(sim.console_delete_tags(r))
}
