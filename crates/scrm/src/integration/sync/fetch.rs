//! The fetch half of a sync: read what WeCom has into memory ([`Staged`]), touching nothing in
//! the database, so a failure here (WeCom unreachable, secret revoked) leaves scrm unchanged.
//!
//! Customers come from `batch/get_by_user` (100 per page), with the members split into chunks
//! fetched concurrently; group chats from `groupchat/list` then `groupchat/get` per chat,
//! concurrently. The client retries WeCom's transient errors itself (token refresh, -1, 45009,
//! 45033, transport); what still fails here fails the sync, except a single chat that WeCom
//! refuses for itself, which is left out and reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::{StreamExt, TryStreamExt};
use scrm_wecom::WeComError;
use scrm_wecom::client::{
    CustomerWithFollowInfo, Department, ExternalContact, FollowInfo, GetCorpTagListRequest,
    GroupChat, TagGroup, User,
};
use tokio::sync::Semaphore;

use super::SyncType;
use crate::integration::client::Conn;

/// How many WeCom requests one sync keeps in flight.
pub const FETCH_CONCURRENCY: usize = 8;

/// A customer and every member following it.
#[derive(Debug, Clone)]
pub struct StagedCustomer {
    pub contact: ExternalContact,
    pub follows: Vec<FollowInfo>,
}

/// One object that could not be fetched or applied; the sync goes on without it (`partial`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemError {
    pub item: String,
    pub reason: String,
}

/// Everything a sync fetched, per type (None: that type is not part of this sync).
#[derive(Debug, Default)]
pub struct Staged {
    pub departments: Option<Vec<Department>>,
    pub users: Option<Vec<User>>,
    pub tags: Option<Vec<TagGroup>>,
    pub customers: Option<Vec<StagedCustomer>>,
    pub groups: Option<Vec<(GroupChat, i64)>>,
    /// Chats WeCom lists but refused to show (60011 …): left as they are, not taken for gone.
    pub unreadable_chats: std::collections::HashSet<String>,
    pub errors: Vec<ItemError>,
}

impl Staged {
    /// Objects fetched.
    pub fn fetched(&self) -> i64 {
        let n = |v: Option<usize>| v.unwrap_or(0) as i64;
        n(self.departments.as_ref().map(Vec::len))
            + n(self.users.as_ref().map(Vec::len))
            + n(self
                .tags
                .as_ref()
                .map(|g| g.iter().map(|g| g.tag.len() + 1).sum()))
            + n(self.customers.as_ref().map(Vec::len))
            + n(self.groups.as_ref().map(Vec::len))
    }
}

/// Progress reporting: phase name and counts, read by the log writer. The group chats, fetched
/// beside the customers, count on their own.
#[derive(Debug)]
pub struct Progress {
    pub done: AtomicI64,
    pub total: AtomicI64,
    pub phase: std::sync::Mutex<String>,
    pub groups_done: AtomicI64,
    pub groups_total: AtomicI64,
    /// Whether the log writer may write the progress to the log (not while the apply's
    /// transaction holds the database).
    pub db_writes: std::sync::atomic::AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            done: AtomicI64::new(0),
            total: AtomicI64::new(0),
            phase: std::sync::Mutex::new(String::new()),
            groups_done: AtomicI64::new(0),
            groups_total: AtomicI64::new(0),
            db_writes: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl Progress {
    pub fn phase(&self, name: &str, total: i64) {
        if let Ok(mut p) = self.phase.lock() {
            *p = name.to_string();
        }
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }
    pub fn add(&self, n: i64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

/// The WeCom calls one part of a sync may have in flight: [`FETCH_CONCURRENCY`]. WeCom limits
/// concurrent calls per API (45033), so the customers' fetch and the group chats' fetch (other
/// APIs) each have their own; under a rate limit a call waiting for its permit holds its slot,
/// and a shared budget would leave the group chats waiting for the customers to finish.
#[derive(Clone)]
pub struct Slots {
    sem: Arc<Semaphore>,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            sem: Arc::new(Semaphore::new(FETCH_CONCURRENCY)),
        }
    }
}

impl Slots {
    /// Make one call (with [`again`]'s second chances) in a slot.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, WeComError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, WeComError>>,
    {
        let _slot = self.sem.acquire().await.map_err(|_| WeComError::Decode {
            api: "sync",
            message: "fetch slots closed".into(),
        })?;
        again(call).await
    }
}

/// Fetch what the given phases need except group chats ([`groups`], fetched beside it): the
/// directory and tags, then customers.
pub async fn head(
    conn: &Conn,
    phases: &[SyncType],
    progress: &Arc<Progress>,
    slots: &Slots,
) -> Result<Staged, WeComError> {
    let mut staged = Staged::default();
    for phase in phases {
        match phase {
            SyncType::Department => {
                progress.phase("fetch:department", 1);
                staged.departments =
                    Some(slots.call(|| conn.directory.department_list(None)).await?);
            }
            SyncType::User => {
                progress.phase("fetch:user", 1);
                staged.users = Some(slots.call(|| conn.directory.user_list(1, true)).await?);
            }
            SyncType::Tag => {
                progress.phase("fetch:tag", 1);
                let all = GetCorpTagListRequest::default();
                staged.tags = Some(
                    slots
                        .call(|| conn.customers.get_corp_tag_list(&all))
                        .await?,
                );
            }
            SyncType::Customer => {
                staged.customers = Some(customers(conn, progress, slots).await?);
            }
            SyncType::Groupchat | SyncType::Full => {}
        }
    }
    Ok(staged)
}

impl Staged {
    /// Take in the group chats fetched beside the rest.
    pub fn add_groups(&mut self, (groups, errors): GroupsFetched) {
        self.groups = Some(groups);
        for (chat_id, e) in errors {
            self.unreadable_chats.insert(chat_id);
            self.errors.push(e);
        }
    }
}

/// One call of a sync's fetch, given a second chance beyond the client's own retries, so one
/// unlucky page does not send a whole run (thousands of calls) back to the start:
/// - refused for its token although the client had just fetched a new one (WeCom dropped it
///   early, or it expired at once): made once more; the token is then still cached, so the call
///   either works with it or is refused again, and the client drops it, fetches another and
///   calls a last time. A bad or revoked secret still fails (gettoken itself is refused).
/// - a transient failure that outlasted the client's retries (-1 three times in a row …): made
///   up to twice more after a pause.
async fn again<T, F, Fut>(mut call: F) -> Result<T, WeComError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, WeComError>>,
{
    let mut transient = 0u32;
    let mut token = false;
    loop {
        match call().await {
            Err(e) if e.is_token_invalid() && !token => {
                token = true;
                tracing::warn!(error = %e, "a WeCom call was refused for its token twice; once more");
            }
            Err(e) if e.is_transient() && transient < 2 => {
                transient += 1;
                tracing::warn!(error = %e, "a WeCom call failed after the client's retries; again");
                tokio::time::sleep(std::time::Duration::from_millis(250 * u64::from(transient)))
                    .await;
            }
            r => return r,
        }
    }
}

/// Every customer of every member with 客户联系, grouped by customer. Every chunk of members
/// pages on its own; the slots bound the calls in flight.
pub async fn customers(
    conn: &Conn,
    progress: &Arc<Progress>,
    slots: &Slots,
) -> Result<Vec<StagedCustomer>, WeComError> {
    let pairs = customer_pages(conn, progress, slots, None).await?;
    Ok(group_pairs(pairs))
}

/// Pages of (customer, one follow relation) as WeCom returns them, one per member following the
/// customer: handed to `sink` page by page as they arrive when there is one (the apply of a
/// first sync writes them while the rest is still fetched), else returned together.
pub async fn customer_pages(
    conn: &Conn,
    progress: &Arc<Progress>,
    slots: &Slots,
    sink: Option<tokio::sync::mpsc::UnboundedSender<Vec<CustomerWithFollowInfo>>>,
) -> Result<Vec<CustomerWithFollowInfo>, WeComError> {
    let users = slots.call(|| conn.customers.get_follow_user_list()).await?;
    // Chunks small enough that every slot has work, at most 100 (WeCom's limit per request).
    let size = users.len().div_ceil(FETCH_CONCURRENCY * 4).clamp(1, 100);
    let chunks: Vec<Vec<String>> = users.chunks(size).map(<[String]>::to_vec).collect();
    let n = chunks.len();
    progress.phase("fetch:customer", n as i64);
    let pairs: Vec<Vec<CustomerWithFollowInfo>> = futures::stream::iter(chunks)
        .map(|chunk| {
            let app = conn.customers.clone();
            let progress = progress.clone();
            let sink = sink.clone();
            async move {
                // Page by page (a chunk is at most 100 members, WeCom's limit per request), so
                // a page refused for its token is fetched once more, not the whole chunk.
                let mut out = Vec::new();
                let mut cursor = String::new();
                loop {
                    let page = slots
                        .call(|| app.batch_get_by_user(&chunk, &cursor, 100))
                        .await?;
                    match &sink {
                        // The receiver only goes away when the run has failed.
                        Some(sink) => {
                            let _ = sink.send(page.external_contact_list);
                        }
                        None => out.extend(page.external_contact_list),
                    }
                    if page.next_cursor.is_empty() {
                        break;
                    }
                    if page.next_cursor == cursor {
                        return Err(WeComError::Decode {
                            api: "externalcontact/batch/get_by_user",
                            message: "next_cursor repeated".into(),
                        });
                    }
                    cursor = page.next_cursor;
                }
                progress.add(1);
                Ok::<_, WeComError>(out)
            }
        })
        .buffer_unordered(n.max(1))
        .try_collect()
        .await?;
    Ok(pairs.into_iter().flatten().collect())
}

/// The pairs grouped by customer: each customer with its follow relations, earliest first (one
/// per member), customers in external_userid order.
pub fn group_pairs(pairs: impl IntoIterator<Item = CustomerWithFollowInfo>) -> Vec<StagedCustomer> {
    let mut by_id: HashMap<String, StagedCustomer> = HashMap::new();
    for pair in pairs {
        let id = pair.external_contact.external_userid.clone();
        by_id
            .entry(id)
            .or_insert_with(|| StagedCustomer {
                contact: pair.external_contact,
                follows: Vec::new(),
            })
            .follows
            .push(pair.follow_info);
    }
    let mut out: Vec<StagedCustomer> = by_id.into_values().collect();
    out.iter_mut().for_each(StagedCustomer::order_follows);
    out.sort_by(|a, b| a.contact.external_userid.cmp(&b.contact.external_userid));
    out
}

impl StagedCustomer {
    /// Follow relations earliest first (the first is the customer's owner), one per member.
    pub fn order_follows(&mut self) {
        self.follows
            .sort_by(|a, b| (a.createtime, &a.userid).cmp(&(b.createtime, &b.userid)));
        self.follows.dedup_by(|a, b| a.userid == b.userid);
    }
}

/// Errcodes about one chat alone (it vanished or is out of range): skip the chat, not the sync.
fn chat_level(e: &WeComError) -> bool {
    matches!(
        e.errcode(),
        Some(40050 | 90500..=90511 | 60011 | 86001..=86999)
    )
}

/// The group chats fetched, and the chats WeCom listed but would not show, each with why.
pub type GroupsFetched = (Vec<(GroupChat, i64)>, Vec<(String, ItemError)>);

/// Every group chat with its members, and its list status (0-3, the owner-transfer states);
/// and the chats WeCom listed but would not show, each with why. Counted in `progress`'s
/// `groups_done` / `groups_total`.
pub async fn groups(
    conn: &Conn,
    progress: &Arc<Progress>,
    slots: &Slots,
) -> Result<GroupsFetched, WeComError> {
    let list = slots
        .call(|| conn.customers.groupchat_list_all(0, None))
        .await?;
    progress
        .groups_total
        .store(list.len() as i64, Ordering::Relaxed);
    let results: Vec<Result<(GroupChat, i64), (String, ItemError)>> = futures::stream::iter(list)
        .map(|item| {
            let app = conn.customers.clone();
            let progress = progress.clone();
            async move {
                let r = slots.call(|| app.groupchat_get(&item.chat_id, true)).await;
                progress.groups_done.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(chat) => Ok(Ok((chat, item.status))),
                    Err(e) if chat_level(&e) => Ok(Err((
                        item.chat_id.clone(),
                        ItemError {
                            item: format!("groupchat {}", item.chat_id),
                            reason: e.to_string(),
                        },
                    ))),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(FETCH_CONCURRENCY * 4)
        .try_collect()
        .await?;
    let mut chats = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(c) => chats.push(c),
            Err(e) => errors.push(e),
        }
    }
    chats.sort_by(|a, b| a.0.chat_id.cmp(&b.0.chat_id));
    Ok((chats, errors))
}

/// One customer with all its follow members (`externalcontact/get`), for callbacks and repair;
/// `None` when WeCom says it is no longer anyone's customer.
pub async fn one_customer(
    conn: &Conn,
    external_userid: &str,
) -> Result<Option<StagedCustomer>, WeComError> {
    match conn
        .customers
        .get_customer_all_follow_users(external_userid)
        .await
    {
        Ok(d) => Ok(Some(StagedCustomer {
            contact: d.external_contact,
            follows: d
                .follow_user
                .into_iter()
                .map(|f| FollowInfo {
                    tag_id: f.tags.iter().filter_map(|t| t.tag_id.clone()).collect(),
                    userid: f.userid,
                    remark: f.remark,
                    description: f.description,
                    createtime: f.createtime,
                    remark_corp_name: f.remark_corp_name,
                    remark_mobiles: f.remark_mobiles,
                    oper_userid: f.oper_userid,
                    add_way: f.add_way,
                    state: f.state,
                    wechat_channels: f.wechat_channels,
                })
                .collect(),
        })),
        Err(e) if matches!(e.errcode(), Some(84061 | 40096)) => Ok(None),
        Err(e) => Err(e),
    }
}
