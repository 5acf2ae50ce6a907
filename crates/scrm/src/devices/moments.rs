//! Friends' moments (朋友圈) the device accounts have seen: stored by `moment_posted` events and
//! by moments collection (`devices.moments.collect`, seed 002's `moments:collect`, every 30 min;
//! see `events::store_moments`), listed here newest first with whether the account liked them.

use axum::extract::State;
use axum::http::Method;
use scrm_db::query;
use serde::Deserialize;
use serde_json::{Value, json};

use super::provider::{Capability, Provider, resolve};
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::extract::ApiQuery;
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::tasks::parse_time;
use crate::state::{AppState, iso};

/// The moments route.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "devices").route(
        Method::GET,
        "/api/v1/devices/moments",
        Access::Permission(perm::DEVICE_VIEW),
        "Friends' moments seen by device accounts, newest first, with like status (?account=&author=&since=&page=&size=)",
        list_moments,
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MomentsQuery {
    /// A device account's wxid: only the moments it saw.
    account: Option<String>,
    /// A friend's wxid: only the moments they posted.
    author: Option<String>,
    /// ISO 8601: only moments posted at or after it.
    since: Option<String>,
    page: Option<i64>,
    size: Option<i64>,
}

pub async fn list_moments(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<MomentsQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let mut cond = query(" WHERE m.tenant_id = ?").bind(user.tenant_id);
    if let Some(a) = q.account.as_deref().filter(|a| !a.is_empty()) {
        let acc = resolve(&state.db, user.tenant_id, a, "account").await?;
        acc.require(Capability::FetchMoments, "account")?;
        debug_assert_eq!(acc.provider, Provider::Device);
        cond.push_sql(" AND m.account_wxid = ?")
            .push_bind(a.to_string());
    }
    if let Some(a) = q.author.as_deref().filter(|a| !a.is_empty()) {
        if a.chars().count() > 64 {
            return Err(ApiError::field("author", "at most 64 characters"));
        }
        cond.push_sql(" AND m.author_wxid = ?")
            .push_bind(a.to_string());
    }
    if let Some(s) = q.since.as_deref().filter(|s| !s.is_empty()) {
        cond.push_sql(" AND m.posted_at >= ?")
            .push_bind(parse_time("since", s)?);
    }
    let mut count = query("SELECT COUNT(*) FROM device_moment m");
    count.append(&cond);
    // The author's nickname from the account's friend list, when the author is a friend.
    let mut page = query(
        "SELECT m.moment_id, m.account_wxid, m.author_wxid, f.nickname, m.text, m.liked, m.posted_at, m.seen_at \
         FROM device_moment m LEFT JOIN device_friend f ON f.tenant_id = m.tenant_id \
         AND f.account_wxid = m.account_wxid AND f.friend_wxid = m.author_wxid",
    );
    page.append(&cond);
    page.push_sql(" ORDER BY m.posted_at DESC, m.id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    // One snapshot: the total and the page agree while a collection is storing moments.
    let mut tx = state.db.begin_read().await?;
    let total = tx.fetch_i64(count).await?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        String,
        String,
        Option<String>,
        String,
        i64,
        i64,
        i64,
    )> = tx.fetch_all(page).await?;
    tx.commit().await?;
    let list = rows
        .into_iter()
        .map(
            |(id, account, author, nickname, text, liked, posted, seen)| {
                json!({"momentId": id, "accountId": account, "author": author,
                   "authorNickname": nickname, "text": text, "liked": liked != 0,
                   "postedAt": iso(posted), "seenAt": iso(seen)})
            },
        )
        .collect();
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}
