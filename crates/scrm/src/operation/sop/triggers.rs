//! SOP triggers from domain events (seed 000: add friend, tag added, joined group): the events
//! relay hands each `customer.created`, `customer.tag.added` and `group.member.joined` to
//! [`on_event`], which starts every enabled template of that trigger whose condition matches.
//! Starting is idempotent per (template, target) while a run is active, as the relay requires.
//! A template reacts to events that happened after it was created only.

use std::sync::OnceLock;

use serde_json::Value;

use super::store;
use crate::events::{self, Event, kind};
use crate::state::AppState;

/// Subscribe once per process (several engines may be built, e.g. in tests).
pub fn subscribe(state: &AppState) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    for pattern in [
        kind::CUSTOMER_CREATED,
        kind::CUSTOMER_TAG_ADDED,
        kind::GROUP_MEMBER_JOINED,
    ] {
        let s = state.clone();
        events::subscribe(
            pattern,
            std::sync::Arc::new(move |e: Event| {
                let s = s.clone();
                Box::pin(async move { on_event(&s, &e).await.map(|_| ()) })
            }),
        );
    }
}

fn ids(v: &Value, key: &str) -> Vec<i64> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// Whether a template's trigger condition accepts the event.
type Matcher = Box<dyn Fn(&Value) -> bool + Send>;

/// Start the SOPs an event triggers. Returns how many executions started.
pub async fn on_event(state: &AppState, e: &Event) -> anyhow::Result<usize> {
    let (trigger, customer_id, matches): (i64, Option<i64>, Matcher) = match e.event_type.as_str() {
        kind::CUSTOMER_CREATED => (1, e.aggregate_id.parse().ok(), Box::new(|_| true)),
        kind::CUSTOMER_TAG_ADDED => {
            let tags = ids(&e.data, "tagIds");
            (
                2,
                e.data
                    .get("customerId")
                    .and_then(Value::as_i64)
                    .or(e.aggregate_id.parse().ok()),
                Box::new(move |cfg: &Value| {
                    let want = ids(cfg, "tagIds");
                    want.is_empty() || want.iter().any(|t| tags.contains(t))
                }),
            )
        }
        kind::GROUP_MEMBER_JOINED => {
            let group = e.data.get("groupId").and_then(Value::as_i64);
            (
                3,
                e.data.get("customerId").and_then(Value::as_i64),
                Box::new(move |cfg: &Value| {
                    let want = ids(cfg, "groupIds");
                    want.is_empty() || group.is_some_and(|g| want.contains(&g))
                }),
            )
        }
        _ => return Ok(0),
    };
    let Some(customer_id) = customer_id else {
        return Ok(0);
    };
    // When the event happened: a template starts for what happens after it was created, not
    // for events still in the outbox from before (a sync's backlog, say).
    let happened_at = match state
        .db
        .fetch_optional::<(i64,)>(
            scrm_db::query("SELECT created_at FROM event_outbox WHERE id = ?").bind(e.seq),
        )
        .await?
    {
        Some((at,)) => at,
        None => chrono::DateTime::parse_from_rfc3339(&e.timestamp)
            .map(|t| t.timestamp_millis() + 999)
            .unwrap_or(i64::MAX),
    };
    let mut started = 0;
    for t in store::templates_for_trigger(&state.db, e.tenant_id, trigger).await? {
        if t.created_at > happened_at {
            continue;
        }
        let cfg: Value =
            serde_json::from_str(t.trigger_config.as_deref().unwrap_or("{}")).unwrap_or_default();
        if t.template_type != 1 || !matches(&cfg) {
            continue;
        }
        let steps = store::steps_of(&state.db, e.tenant_id, &[t.id]).await?;
        let s = store::start_executions(
            &state.db,
            &state.jobs,
            &t,
            &steps,
            1,
            &[customer_id],
            trigger,
            crate::state::now_ms(),
        )
        .await?;
        started += s.execution_ids.len();
    }
    Ok(started)
}
