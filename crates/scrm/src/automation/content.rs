//! Content collection (内容采集, seed 002): configured RSS/Atom feeds and plain pages fetched into
//! the material library on a schedule.
//!
//! A source is a feed (`kind: feed`, RSS 2.0 or Atom; each item becomes a link material with its
//! title, link and summary) or a page (`kind: page`; the page itself becomes one link material
//! with its `<title>`). Items are deduplicated per source by guid (Atom id), else link: a fetch
//! adds only what the source did not have before. The built-in schedule
//! `automation.content.collect` (every 5 minutes) fetches each enabled source whose interval has
//! passed; `POST …/{id}/fetch` fetches one now.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Backend, Db, DbResult, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, Schedule};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stored::{self, Stored, live};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, iso, now_ms};

/// Job kind of the collection tick.
pub const COLLECT: &str = "automation.content.collect";
/// Largest body read from a source.
const MAX_BODY: usize = 5 << 20;
/// At most this many items taken from one fetch.
const MAX_ITEMS: usize = 200;

const BASE: &str = "/api/v1/automation/content-sources";

/// The content-source routes.
pub fn routes(state: &AppState) -> Routes {
    let view = Access::Permission(perm::MATERIAL_VIEW);
    let manage = Access::Permission(perm::MATERIAL_MANAGE);
    Routes::new(state, "automation")
        .route(Method::POST, BASE, manage, "Add a content source: name, url (http/https), kind (feed: RSS/Atom, page), intervalMinutes (5-10080, default 60)", create)
        .route(Method::GET, BASE, view, "List content sources (page, size)", stored::list::<Row>)
        .route(Method::GET, "/api/v1/automation/content-sources/{id}", view, "A content source with its recent items", stored::get::<Row>)
        .route(Method::PUT, "/api/v1/automation/content-sources/{id}", manage, "Change a content source", update)
        .route(Method::DELETE, "/api/v1/automation/content-sources/{id}", manage, "Delete a content source (collected materials stay)", stored::delete::<Row>)
        .route(Method::POST, "/api/v1/automation/content-sources/{id}/fetch", manage, "Fetch a source now: {added, skipped}", fetch_now)
}

/// Startup: the collection schedule (created once; switchable through the cron-task API).
pub async fn on_startup(state: &AppState) -> anyhow::Result<()> {
    state
        .jobs
        .ensure_schedule(&Schedule::new(COLLECT, "*/5 * * * *", COLLECT))
        .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    id: i64,
    tenant_id: i64,
    name: String,
    url: String,
    kind: String,
    interval_minutes: i64,
    enabled: i64,
    next_fetch_at: i64,
    last_fetched_at: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
}

const COLUMNS: &str = "id, tenant_id, name, url, kind, interval_minutes, enabled, next_fetch_at, last_fetched_at, last_error, created_at";

// ---------------------------------------------------------------------------------------------
// Parsing

/// One collected item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// guid / Atom id, else the link: the dedupe key.
    pub key: String,
    pub title: String,
    pub link: String,
    pub summary: Option<String>,
}

#[derive(Deserialize)]
struct Rss {
    channel: RssChannel,
}

#[derive(Deserialize)]
struct RssChannel {
    #[serde(default, rename = "item")]
    items: Vec<RssItem>,
}

#[derive(Deserialize)]
struct RssItem {
    title: Option<Text>,
    link: Option<Text>,
    guid: Option<Text>,
    description: Option<Text>,
}

#[derive(Deserialize, Default)]
struct Text {
    #[serde(rename = "$text", default)]
    value: String,
}

#[derive(Deserialize)]
struct Atom {
    #[serde(default, rename = "entry")]
    entries: Vec<AtomEntry>,
}

#[derive(Deserialize)]
struct AtomEntry {
    id: Option<Text>,
    title: Option<Text>,
    #[serde(default, rename = "link")]
    links: Vec<AtomLink>,
    summary: Option<Text>,
    content: Option<Text>,
}

#[derive(Deserialize)]
struct AtomLink {
    #[serde(rename = "@href")]
    href: Option<String>,
    #[serde(rename = "@rel")]
    rel: Option<String>,
}

fn text(t: Option<Text>) -> Option<String> {
    t.map(|t| t.value.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The items of an RSS 2.0 or Atom document, in document order.
pub fn parse_feed(body: &str) -> Result<Vec<Item>, String> {
    let head: String = body.chars().take(2048).collect::<String>().to_lowercase();
    let mut out = Vec::new();
    if head.contains("<rss") {
        let rss: Rss = quick_xml::de::from_str(body).map_err(|e| format!("not RSS: {e}"))?;
        for i in rss.channel.items {
            let link = text(i.link).unwrap_or_default();
            let key = text(i.guid).unwrap_or_else(|| link.clone());
            if key.is_empty() {
                continue;
            }
            out.push(Item {
                title: text(i.title).unwrap_or_else(|| link.clone()),
                link: if link.is_empty() { key.clone() } else { link },
                summary: text(i.description),
                key,
            });
        }
    } else if head.contains("<feed") {
        let atom: Atom = quick_xml::de::from_str(body).map_err(|e| format!("not Atom: {e}"))?;
        for e in atom.entries {
            let link = e
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
                .or(e.links.first())
                .and_then(|l| l.href.clone())
                .unwrap_or_default();
            let key = text(e.id).unwrap_or_else(|| link.clone());
            if key.is_empty() {
                continue;
            }
            out.push(Item {
                title: text(e.title).unwrap_or_else(|| link.clone()),
                link: if link.is_empty() { key.clone() } else { link },
                summary: text(e.summary).or(text(e.content)),
                key,
            });
        }
    } else {
        return Err("neither RSS (<rss>) nor Atom (<feed>)".into());
    }
    out.truncate(MAX_ITEMS);
    Ok(out)
}

/// A page as one item: its `<title>` (else the URL), keyed by the URL.
pub fn parse_page(url: &str, body: &str) -> Item {
    let lower = body.to_lowercase();
    let title = lower
        .find("<title")
        .and_then(|s| lower[s..].find('>').map(|e| s + e + 1))
        .and_then(|s| lower[s..].find("</title>").map(|e| (s, s + e)))
        .and_then(|(s, e)| body.get(s..e))
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| url.to_string());
    Item {
        key: url.to_string(),
        title,
        link: url.to_string(),
        summary: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Fetching

/// The collector's client: guarded against private addresses (crate::outbound) unless
/// `SCRM_ALLOW_PRIVATE_URLS` is on.
fn client(allow_private: bool) -> &'static reqwest::Client {
    static OPEN: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    static GUARDED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let cell = if allow_private { &OPEN } else { &GUARDED };
    cell.get_or_init(|| {
        crate::outbound::client(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .user_agent("scrm-content-collector/1"),
            allow_private,
        )
    })
}

async fn download(allow_private: bool, url: &str) -> Result<String, String> {
    crate::outbound::check_fetch(allow_private, url)?;
    let mut r =
        client(allow_private).get(url).send().await.map_err(
            |e| match crate::outbound::refusal(&e) {
                Some(why) => why,
                None => format!("fetch: {e}"),
            },
        )?;
    if !r.status().is_success() {
        return Err(format!("the source answered {}", r.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| format!("fetch: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("larger than {MAX_BODY} bytes"));
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Fetch one source now: new items become link materials. Returns (added, skipped).
async fn fetch(state: &AppState, s: &Row) -> Result<(usize, usize), String> {
    let body = download(state.config.allow_private_urls, &s.url).await;
    if let Err(e) = &body
        && e.starts_with(crate::outbound::URL_NOT_ALLOWED)
    {
        tracing::warn!(source = s.id, tenant = s.tenant_id, reason = %e, "content source refused by the private-address guard");
    }
    let now = now_ms();
    let items = body.and_then(|b| {
        if s.kind == "page" {
            Ok(vec![parse_page(&s.url, &b)])
        } else {
            parse_feed(&b)
        }
    });
    let next = now + s.interval_minutes * 60_000;
    let items = match items {
        Ok(i) => i,
        Err(e) => {
            state
                .db
                .execute(
                    query("UPDATE content_source SET last_fetched_at = ?, last_error = ?, next_fetch_at = ? WHERE id = ?")
                        .bind(now)
                        .bind(e.as_str())
                        .bind(next)
                        .bind(s.id),
                )
                .await
                .map_err(|e| e.to_string())?;
            return Err(e);
        }
    };
    let (mut added, mut skipped) = (0, 0);
    let db = &state.db;
    for it in items {
        let key = clip(&it.key, 255);
        let mut tx = db.begin().await.map_err(|e| e.to_string())?;
        let seen = tx
            .fetch_i64(
                query("SELECT COUNT(*) FROM content_source_item WHERE tenant_id = ? AND source_id = ? AND item_key = ?")
                    .bind(s.tenant_id)
                    .bind(s.id)
                    .bind(key.as_str()),
            )
            .await
            .map_err(|e| e.to_string())?;
        if seen > 0 {
            skipped += 1;
            tx.rollback().await.map_err(|e| e.to_string())?;
            continue;
        }
        let mut content = json!({"url": it.link});
        if let Some(d) = &it.summary {
            content["desc"] = json!(clip(d, 500));
        }
        let material = tx
            .insert_id(
                query("INSERT INTO material (tenant_id, material_type, title, content, created_at, updated_at) VALUES (?, 'link', ?, ?, ?, ?)")
                    .bind(s.tenant_id)
                    .bind(clip(&it.title, 200))
                    .bind(content.to_string())
                    .bind(now)
                    .bind(now),
            )
            .await
            .map_err(|e| e.to_string())?;
        let insert = match tx.backend() {
            Backend::MySql => {
                "INSERT IGNORE INTO content_source_item (tenant_id, source_id, item_key, material_id, title, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            }
            _ => {
                "INSERT INTO content_source_item (tenant_id, source_id, item_key, material_id, title, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            }
        };
        let n = tx
            .execute(
                query(insert)
                    .bind(s.tenant_id)
                    .bind(s.id)
                    .bind(key.as_str())
                    .bind(material)
                    .bind(clip(&it.title, 200))
                    .bind(now),
            )
            .await
            .map_err(|e| e.to_string())?
            .rows_affected;
        if n == 0 {
            // A concurrent fetch took it: keep one material.
            tx.rollback().await.map_err(|e| e.to_string())?;
            skipped += 1;
            continue;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        added += 1;
    }
    db.execute(
        query("UPDATE content_source SET last_fetched_at = ?, last_error = NULL, next_fetch_at = ? WHERE id = ?")
            .bind(now)
            .bind(next)
            .bind(s.id),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((added, skipped))
}

/// `automation.content.collect`: fetch every enabled source whose time has come.
pub async fn run_collect(
    state: AppState,
    ctx: JobContext,
    _p: Value,
) -> Result<JobOutcome, JobError> {
    let due: Vec<Row> = state
        .db
        .fetch_all(
            query(format!(
                "SELECT {COLUMNS} FROM content_source WHERE enabled = 1 AND next_fetch_at <= ? ORDER BY next_fetch_at LIMIT 100"
            ))
            .bind(ctx.now_ms()),
        )
        .await?;
    for s in due {
        if let Err(e) = fetch(&state, &s).await {
            tracing::warn!(source = s.id, error = %e, "content source not collected");
        }
    }
    Ok(JobOutcome::Done)
}

// ---------------------------------------------------------------------------------------------
// API

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Body {
    name: Option<String>,
    url: Option<String>,
    kind: Option<String>,
    interval_minutes: Option<i64>,
    enabled: Option<bool>,
}

struct Checked {
    name: String,
    url: String,
    kind: String,
    interval: i64,
    enabled: bool,
}

fn check(b: Body) -> ApiResult<Checked> {
    let name = b
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::field("name", "1 to 100 characters"));
    }
    let url = b
        .url
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let parsed = reqwest::Url::parse(&url).ok();
    if url.len() > 1000
        || !parsed
            .as_ref()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
    {
        return Err(ApiError::field("url", "an http or https URL"));
    }
    let kind = b.kind.unwrap_or_else(|| "feed".into());
    if kind != "feed" && kind != "page" {
        return Err(ApiError::field("kind", "feed (RSS or Atom) or page"));
    }
    let interval = b.interval_minutes.unwrap_or(60);
    if !(5..=10_080).contains(&interval) {
        return Err(ApiError::field("intervalMinutes", "between 5 and 10080"));
    }
    Ok(Checked {
        name,
        url,
        kind,
        interval,
        enabled: b.enabled.unwrap_or(true),
    })
}

async fn view(db: &Db, r: &Row, items: bool) -> DbResult<Value> {
    let mut v = json!({
        "id": r.id,
        "name": r.name,
        "url": r.url,
        "kind": r.kind,
        "intervalMinutes": r.interval_minutes,
        "enabled": r.enabled == 1,
        "nextFetchAt": iso(r.next_fetch_at),
        "lastFetchedAt": r.last_fetched_at.map(iso),
        "lastError": r.last_error,
        "createdAt": iso(r.created_at),
    });
    let count = db
        .fetch_i64(
            query("SELECT COUNT(*) FROM content_source_item WHERE tenant_id = ? AND source_id = ?")
                .bind(r.tenant_id)
                .bind(r.id),
        )
        .await?;
    v["itemCount"] = json!(count);
    if items {
        let rows: Vec<(String, i64, String, i64)> = db
            .fetch_all(
                query("SELECT item_key, material_id, title, created_at FROM content_source_item WHERE tenant_id = ? AND source_id = ? ORDER BY id DESC LIMIT 50")
                    .bind(r.tenant_id)
                    .bind(r.id),
            )
            .await?;
        v["recentItems"] = rows
            .into_iter()
            .map(|(k, m, t, at)| json!({"key": k, "materialId": m, "title": t, "collectedAt": iso(at)}))
            .collect();
    }
    Ok(v)
}

impl Stored for Row {
    const TABLE: &'static str = "content_source";
    const COLUMNS: &'static str = COLUMNS;
    const NOUN: &'static str = "content source";
    const CHILDREN: &'static [(&'static str, &'static str)] =
        &[("content_source_item", "source_id")];

    fn name(&self) -> &str {
        &self.name
    }

    fn view(&self, db: &Db, items: bool) -> impl Future<Output = DbResult<Value>> + Send {
        view(db, self, items)
    }
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<Body>,
) -> ApiResult<Reply<Value>> {
    let c = check(b)?;
    crate::outbound::check_stored(state.config.allow_private_urls, "url", &c.url)?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query("INSERT INTO content_source (tenant_id, name, url, kind, interval_minutes, enabled, next_fetch_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(user.tenant_id)
                .bind(c.name.as_str())
                .bind(c.url.as_str())
                .bind(c.kind.as_str())
                .bind(c.interval)
                .bind(c.enabled as i64)
                .bind(now)
                .bind(now)
                .bind(now),
        )
        .await?;
    audit::record(
        &mut tx,
        &user,
        "content_source.create",
        "content_source",
        id,
        json!({"name": c.name, "url": c.url}),
    )
    .await?;
    tx.commit().await?;
    let r = live::<Row>(&state.db, user.tenant_id, id).await?;
    Ok(created(view(&state.db, &r, false).await?))
}

async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<Body>,
) -> ApiResult<Reply<Value>> {
    live::<Row>(&state.db, user.tenant_id, id).await?;
    let c = check(b)?;
    crate::outbound::check_stored(state.config.allow_private_urls, "url", &c.url)?;
    let mut tx = state.db.begin().await?;
    tx.execute(
        query("UPDATE content_source SET name = ?, url = ?, kind = ?, interval_minutes = ?, enabled = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(c.name.as_str())
            .bind(c.url.as_str())
            .bind(c.kind.as_str())
            .bind(c.interval)
            .bind(c.enabled as i64)
            .bind(now_ms())
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "content_source.update",
        "content_source",
        id,
        json!({"name": c.name, "url": c.url}),
    )
    .await?;
    tx.commit().await?;
    let r = live::<Row>(&state.db, user.tenant_id, id).await?;
    Ok(ok(view(&state.db, &r, false).await?))
}

pub async fn fetch_now(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let r = live::<Row>(&state.db, user.tenant_id, id).await?;
    match fetch(&state, &r).await {
        Ok((added, skipped)) => Ok(ok(json!({"id": id, "added": added, "skipped": skipped}))),
        Err(e) => Err(ApiError::domain(
            axum::http::StatusCode::BAD_GATEWAY,
            "CONTENT_SOURCE_UNREADABLE",
            format!("the source could not be collected: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_atom_items_with_keys() {
        let rss = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
            <item><title>One &amp; only</title><link>https://e.com/1</link><guid isPermaLink="false">g1</guid><description><![CDATA[<b>hi</b>]]></description></item>
            <item><title>Two</title><link>https://e.com/2</link></item></channel></rss>"#;
        let items = parse_feed(rss).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].key, "g1");
        assert_eq!(items[0].title, "One & only");
        assert_eq!(items[0].summary.as_deref(), Some("<b>hi</b>"));
        assert_eq!(items[1].key, "https://e.com/2");
        let atom = r#"<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>f</title>
            <entry><id>urn:a</id><title type="html">A</title><link rel="alternate" href="https://e.com/a"/><summary>s</summary></entry></feed>"#;
        let items = parse_feed(atom).unwrap();
        assert_eq!(
            items,
            vec![Item {
                key: "urn:a".into(),
                title: "A".into(),
                link: "https://e.com/a".into(),
                summary: Some("s".into())
            }]
        );
        assert!(parse_feed("<html></html>").is_err());
        let page = parse_page(
            "https://e.com/p",
            "<html><head><TITLE> Hello\n world </TITLE></head></html>",
        );
        assert_eq!(page.title, "Hello world");
    }
}
