//! Customer search shaped the way `perf/SEARCH.md` measured to be fast at 1,000,000 customers
//! on all three databases:
//!
//! - Without a keyword, the page walks the customer key newest-first and probes tags and group
//!   chats with correlated `EXISTS`, stopping at the page size.
//! - With a keyword, the rarest of its grams drives (a few hundred customers of a million): its
//!   list is walked newest-first on the gram key, the other grams, tags and groups probed by
//!   customer id, and customer rows read only for the page (or for the `LIKE` recheck).
//! - The exact total is computed separately, from the smallest source that answers it: the
//!   per-tag counter (one tag), |A|+|B|−|A∩B| from the per-tag and per-pair counters (any or all
//!   of two tags), the smaller tag's list probed for the others (all of three or more tags), the
//!   driving gram's list (keyword), the group member list; never a join of the whole customer
//!   table when something smaller answers.
//! - Keywords go through `customer_gram`: name 2-grams and mobile 4-grams looked up by equality,
//!   with a `LIKE` recheck, because no built-in full-text index handles 2-character Chinese names
//!   on all three.
//! - PostgreSQL plans every search for its values; MariaDB's `EXISTS`-to-`IN` rewrite is off
//!   (see [`dialect`]).
//! - A gram list joins the customer table as `g0 CROSS JOIN customer c WHERE c.id = …`: an inner
//!   join on PostgreSQL and MariaDB, and on SQLite the written order (3.51 otherwise made the
//!   tenant's whole customer index the outer loop and re-ran the gram walk for every customer).

use scrm_db::{Backend, Db, DbResult, Query, query};

use super::model::{COLUMNS, CustomerRow};

/// The grams stored for a customer: `n` + each 2 characters of the lower-cased name, and `m` +
/// each 4 digits of the mobile.
pub fn grams_of(name: Option<&str>, mobile: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(name) = name {
        let chars: Vec<char> = name.to_lowercase().chars().collect();
        for w in chars.windows(2) {
            out.push(format!("n{}{}", w[0], w[1]));
        }
    }
    if let Some(mobile) = mobile {
        let digits: Vec<char> = mobile.chars().filter(char::is_ascii_digit).collect();
        for w in digits.windows(4) {
            out.push(format!("m{}", w.iter().collect::<String>()));
        }
    }
    out.sort();
    out.dedup();
    // A gram must fit the column (VARCHAR(16)); 2 characters of up to 4 bytes always do.
    out.retain(|g| g.chars().count() <= 16);
    out
}

/// How a keyword is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum Keyword {
    /// Grams that must all be present (at most three probes) plus the `LIKE` recheck: name
    /// 2-grams, or mobile 4-grams for 4+ digits.
    Grams(GramMatch),
    /// Too short for a gram (one character, or 2-3 digits): a `LIKE` over name and mobile.
    Scan(String),
}

/// How a gram keyword matches: grams to probe and the column to recheck.
#[derive(Debug, Clone, PartialEq)]
pub struct GramMatch {
    pub grams: Vec<String>,
    /// `LOWER(c.name)` or `c.mobile`.
    pub column: &'static str,
    pub pattern: String,
    /// The keyword is exactly one gram long: the gram's presence is the match, no recheck (and
    /// the count needs no customer row at all).
    pub exact: bool,
}

/// `%keyword%` with `LIKE` wildcards escaped by `!` (a backslash is itself an escape in MySQL
/// string literals, so it cannot be the `ESCAPE` character portably).
pub(crate) fn like_pattern(s: &str) -> String {
    let mut p = String::from("%");
    for c in s.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// At most three of the grams: the first, a middle one and the last (the recheck makes the
/// rest redundant; each probe costs).
fn pick(grams: Vec<String>) -> Vec<String> {
    if grams.len() <= 3 {
        return grams;
    }
    let mid = grams.len() / 2;
    vec![
        grams[0].clone(),
        grams[mid].clone(),
        grams[grams.len() - 1].clone(),
    ]
}

impl Keyword {
    /// Classify a keyword; `None` for an empty one.
    pub fn parse(raw: &str) -> Option<Keyword> {
        let kw = raw.trim().to_lowercase();
        if kw.is_empty() {
            return None;
        }
        let chars: Vec<char> = kw.chars().collect();
        let digits_only = chars.iter().all(char::is_ascii_digit);
        if chars.len() < 2 || (digits_only && chars.len() < 4) {
            return Some(Keyword::Scan(like_pattern(&kw)));
        }
        // Four digits or more are a mobile fragment (a name with four digits in a row is not
        // worth a second probe per search); anything else is a name fragment.
        let m = if digits_only {
            let grams: Vec<String> = chars
                .windows(4)
                .map(|w| format!("m{}", w.iter().collect::<String>()))
                .collect();
            GramMatch {
                grams: pick(dedup(grams)),
                column: "c.mobile",
                pattern: like_pattern(&kw),
                exact: chars.len() == 4,
            }
        } else {
            let grams: Vec<String> = chars
                .windows(2)
                .map(|w| format!("n{}{}", w[0], w[1]))
                .collect();
            GramMatch {
                grams: pick(dedup(grams)),
                column: "LOWER(c.name)",
                pattern: like_pattern(&kw),
                exact: chars.len() == 2,
            }
        };
        Some(Keyword::Grams(m))
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|g| seen.insert(g.clone()));
    v
}

/// Everything a customer list can be filtered by (seed 001's list and seed 004's search).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tag_ids: Vec<i64>,
    /// All of the tags instead of any of them.
    pub tag_all: bool,
    /// Customers in any of these group chats (seed 004's 分组).
    pub group_ids: Vec<i64>,
    pub keyword: Option<Keyword>,
    pub channel: Option<String>,
    pub status: Option<i64>,
    pub follow_user_id: Option<i64>,
    pub stage: Option<String>,
    pub blacklisted: Option<bool>,
}

impl Filter {
    /// Whether any filter on the customer's own columns is set.
    fn has_column_filters(&self) -> bool {
        self.channel.is_some()
            || self.status.is_some()
            || self.follow_user_id.is_some()
            || self.stage.is_some()
            || self.blacklisted.is_some()
    }
}

/// ` AND …` conditions on the customer's own columns (they need the customer row).
fn column_conditions(f: &Filter) -> Query {
    let mut q = query("");
    if let Some(ch) = &f.channel {
        q.push_sql(" AND c.channel = ?").push_bind(ch.as_str());
    }
    if let Some(s) = f.status {
        q.push_sql(" AND c.status = ?").push_bind(s);
    }
    if let Some(u) = f.follow_user_id {
        q.push_sql(" AND c.follow_user_id = ?").push_bind(u);
    }
    if let Some(s) = &f.stage {
        q.push_sql(" AND c.stage = ?").push_bind(s.as_str());
    }
    if let Some(b) = f.blacklisted {
        q.push_sql(" AND c.blacklisted = ?").push_bind(i64::from(b));
    }
    q
}

/// How an `EXISTS` probe with an `IN` list ends: `LIMIT 1` on SQLite, which keeps SQLite 3.51's
/// EXISTS-to-JOIN rewrite off it (the rewrite joins the probed table in, and with an `IN` list a
/// customer carrying two of the tags came out twice: a page's `OFFSET` then skipped too few
/// customers). A constant `LIMIT 1` does not change what `EXISTS` means. Probes by one key value
/// are left to the rewrite (at most one row matches).
fn exists_end(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => " LIMIT 1)",
        Backend::MySql | Backend::Postgres => ")",
    }
}

/// "Any of the tags" is probed tag by tag on MariaDB up to this many tags.
const ANY_TAG_PROBES: usize = 4;

/// ` AND …` probes of the tag and group-member keys for the customer whose id is `id`: `c.id`,
/// or `g0.customer_id` when a gram list drives and no customer row has been read yet.
fn set_conditions(b: Backend, tenant_id: i64, f: &Filter, id: &str) -> Query {
    let end = exists_end(b);
    let mut q = query("");
    if !f.tag_ids.is_empty() {
        if f.tag_all {
            for t in &f.tag_ids {
                q.push_sql(&format!(
                    " AND EXISTS (SELECT 1 FROM customer_tag ct WHERE ct.tenant_id = ? AND ct.tag_id = ? AND ct.customer_id = {id})"
                ))
                .push_bind(tenant_id)
                .push_bind(*t);
            }
        } else if matches!(b, Backend::MySql) && f.tag_ids.len() <= ANY_TAG_PROBES {
            // MariaDB: one primary-key lookup per tag, (tenant, tag, customer), in the few
            // tags' part of the key, which stays in the buffer pool; `tag_id IN (…)` reads all of
            // the customer's tags through the (tenant, customer) index instead, a random page of
            // a 3M-row index per customer (744 probes: 60-85 ms against 6-8 ms).
            for (i, t) in f.tag_ids.iter().enumerate() {
                q.push_sql(if i == 0 { " AND (" } else { " OR " });
                q.push_sql(&format!(
                    "EXISTS (SELECT 1 FROM customer_tag ct WHERE ct.tenant_id = ? AND ct.tag_id = ? AND ct.customer_id = {id})"
                ))
                .push_bind(tenant_id)
                .push_bind(*t);
            }
            q.push_sql(")");
        } else {
            q.push_sql(
                " AND EXISTS (SELECT 1 FROM customer_tag ct WHERE ct.tenant_id = ? AND ct.tag_id IN ",
            )
            .push_bind(tenant_id);
            q.push_in_list(f.tag_ids.iter().copied());
            q.push_sql(&format!(" AND ct.customer_id = {id}{end}"));
        }
    }
    if !f.group_ids.is_empty() {
        q.push_sql(&format!(
            " AND EXISTS (SELECT 1 FROM group_chat_member m WHERE m.tenant_id = ? AND m.customer_id = {id} AND m.status = 1 AND m.group_id IN "
        ))
        .push_bind(tenant_id);
        q.push_in_list(f.group_ids.iter().copied());
        q.push_sql(end);
    }
    q
}

/// ` AND …` for a gram keyword: the grams other than `driver` probed on `id`, then the `LIKE`
/// recheck on the customer row (none when the keyword is exactly one gram).
fn gram_conditions(tenant_id: i64, m: &GramMatch, id: &str, driver: Option<&str>) -> Query {
    let mut q = query("");
    for g in m.grams.iter().filter(|g| Some(g.as_str()) != driver) {
        q.push_sql(&format!(
            " AND EXISTS (SELECT 1 FROM customer_gram g WHERE g.tenant_id = ? AND g.gram = ? AND g.customer_id = {id})"
        ))
        .push_bind(tenant_id)
        .push_bind(g.as_str());
    }
    if !m.exact {
        q.push_sql(&format!(" AND {} LIKE ? ESCAPE '!'", m.column))
            .push_bind(m.pattern.as_str());
    }
    q
}

/// Every condition of the filter on customer `c` (the tenant condition is the caller's).
fn conditions(b: Backend, tenant_id: i64, f: &Filter) -> Query {
    let mut q = column_conditions(f);
    q.append(&set_conditions(b, tenant_id, f, "c.id"));
    match &f.keyword {
        None => {}
        Some(Keyword::Scan(p)) => {
            q.push_sql(" AND (LOWER(c.name) LIKE ? ESCAPE '!' OR c.mobile LIKE ? ESCAPE '!')")
                .push_bind(p.as_str())
                .push_bind(p.as_str());
        }
        Some(Keyword::Grams(m)) => {
            q.append(&gram_conditions(tenant_id, m, "c.id", None));
        }
    }
    q
}

/// Per-statement settings:
/// - PostgreSQL plans each search for its values ([`scrm_db::Query::planned_per_call`]): a
///   cached generic plan of the tags + keyword count hashed both whole tag lists (440,000 rows,
///   1.2 s) where the custom plan probes the keyword's few hundred customers (1 ms).
/// - MariaDB keeps `EXISTS` as a correlated probe (its `exists_to_in` rewrite materialises the
///   whole tag list first).
fn dialect(backend: Backend, sql: &str) -> Query {
    match backend {
        Backend::MySql => query(format!(
            "SET STATEMENT optimizer_switch='exists_to_in=off' FOR {sql}"
        )),
        Backend::Postgres => query(sql.to_string()).planned_per_call(),
        Backend::Sqlite => query(sql.to_string()),
    }
}

/// Customers a gram list is looked at for when choosing the rarest (a longer list is "common").
const GRAM_PROBE_CAP: i64 = 5000;

/// The gram to drive a keyword search from: the rarest of its grams, from capped counts of each
/// (one small statement, only when there is a choice). `None` when some gram has no customer at
/// all: nothing can match.
async fn driver(db: &Db, tenant_id: i64, m: &GramMatch) -> DbResult<Option<String>> {
    Ok(sized_driver(db, tenant_id, m).await?.map(|(g, _)| g))
}

/// [`driver`] with the size of its list when it was counted (capped at [`GRAM_PROBE_CAP`]; not
/// counted when the keyword has one gram).
async fn sized_driver(
    db: &Db,
    tenant_id: i64,
    m: &GramMatch,
) -> DbResult<Option<(String, Option<i64>)>> {
    if m.grams.len() == 1 {
        return Ok(m.grams.first().map(|g| (g.clone(), None)));
    }
    // Three columns always (pick() gives two or three grams; a missing third repeats the last).
    let mut three: Vec<&String> = m.grams.iter().take(3).collect();
    while three.len() < 3 {
        three.push(three[three.len() - 1]);
    }
    let mut q = dialect(db.backend(), "SELECT ");
    for (i, g) in three.iter().enumerate() {
        if i > 0 {
            q.push_sql(", ");
        }
        q.push_sql(&format!(
            "(SELECT COUNT(*) FROM (SELECT 1 AS one FROM customer_gram WHERE tenant_id = ? AND gram = ? LIMIT ?) x{i})"
        ))
        .push_bind(tenant_id)
        .push_bind(g.as_str())
        .push_bind(GRAM_PROBE_CAP);
    }
    let (a, b, c): (i64, i64, i64) = db.fetch_one(q).await?;
    let sized = [(a, three[0]), (b, three[1]), (c, three[2])];
    if sized.iter().any(|s| s.0 == 0) {
        return Ok(None);
    }
    Ok(sized
        .iter()
        .min_by_key(|s| s.0)
        .map(|s| (s.1.clone(), Some(s.0))))
}

/// Customers a driving gram list may hold for [`page_with_total`] to settle page and total from
/// it in one statement (past this, the page and the count run as their own statements).
const GRAM_LIST_CAP: i64 = 5000;

/// A page of matching customers, newest first, and the exact total: what every list shows.
///
/// With a gram keyword whose driving list is short (at most [`GRAM_LIST_CAP`] customers), one
/// statement reads that list once and says which of its customers match (the other grams, the
/// `LIKE` recheck, tags, groups and column filters, all probed per customer id); the total is the
/// number that match and the page's at most `limit` customer rows are read by id. Otherwise the
/// page and the count run in parallel ([`page`], [`count`]), each shaped for its own job.
pub async fn page_with_total(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<CustomerRow>, i64)> {
    page_with_total_at(db, tenant_id, f, Cursor::Offset(offset), limit).await
}

/// Where a page of a customer list starts. Page numbers ([`Cursor::Offset`]) read every
/// customer they skip (page 40,000 of a million: 174-284 ms); the keyset cursors read only the
/// page, at any depth, which is what the console's "next" and "previous" links carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Skip this many matching customers.
    Offset(i64),
    /// The matching customers with ids below this one: the page after a page ending with it.
    Before(i64),
    /// The matching customers with ids above this one, the nearest ones: the page before a page
    /// starting with it (still returned newest first).
    After(i64),
}

impl Cursor {
    /// ` AND <col> < ?` / ` AND <col> > ?` for a keyset cursor.
    fn bound(self, col: &str) -> Query {
        let mut q = query("");
        match self {
            Cursor::Offset(_) => {}
            Cursor::Before(id) => {
                q.push_sql(&format!(" AND {col} < ?")).push_bind(id);
            }
            Cursor::After(id) => {
                q.push_sql(&format!(" AND {col} > ?")).push_bind(id);
            }
        }
        q
    }

    /// ` ORDER BY <col> … LIMIT ? [OFFSET ?]`: newest first, or for [`Cursor::After`] oldest
    /// first from the cursor (the caller turns the page round: [`Cursor::newest_first`]).
    fn order(self, col: &str, limit: i64) -> Query {
        let mut q = query("");
        match self {
            Cursor::Offset(o) => {
                q.push_sql(&format!(" ORDER BY {col} DESC LIMIT ? OFFSET ?"))
                    .push_bind(limit)
                    .push_bind(o);
            }
            Cursor::Before(_) => {
                q.push_sql(&format!(" ORDER BY {col} DESC LIMIT ?"))
                    .push_bind(limit);
            }
            Cursor::After(_) => {
                q.push_sql(&format!(" ORDER BY {col} ASC LIMIT ?"))
                    .push_bind(limit);
            }
        }
        q
    }

    fn newest_first(self, mut rows: Vec<CustomerRow>) -> Vec<CustomerRow> {
        if matches!(self, Cursor::After(_)) {
            rows.reverse();
        }
        rows
    }

    /// The page of a list of matching ids held newest first.
    fn pick(self, ids: Vec<i64>, limit: i64) -> Vec<i64> {
        let take = usize::try_from(limit.max(0)).unwrap_or(0);
        match self {
            Cursor::Offset(o) => {
                let from = usize::try_from(o.max(0)).unwrap_or(usize::MAX);
                ids.into_iter().skip(from).take(take).collect()
            }
            Cursor::Before(b) => ids.into_iter().filter(|id| *id < b).take(take).collect(),
            Cursor::After(a) => {
                let above: Vec<i64> = ids.into_iter().take_while(|id| *id > a).collect();
                let from = above.len().saturating_sub(take);
                above[from..].to_vec()
            }
        }
    }
}

/// [`page_with_total`] from any [`Cursor`].
pub async fn page_with_total_at(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    at: Cursor,
    limit: i64,
) -> DbResult<(Vec<CustomerRow>, i64)> {
    if let Some(Keyword::Grams(m)) = &f.keyword {
        let Some((drive, size)) = sized_driver(db, tenant_id, m).await? else {
            return Ok((Vec::new(), 0));
        };
        // A list already counted at the cap is long: do not read it whole only to give up.
        let short = size.is_none_or(|n| n < GRAM_LIST_CAP);
        if short && let Some(ids) = gram_matches(db, tenant_id, f, m, &drive).await? {
            let total = ids.len() as i64;
            let shown = at.pick(ids, limit);
            return Ok((rows_by_id(db, tenant_id, &shown).await?, total));
        }
        return tokio::try_join!(
            gram_page(db, tenant_id, f, m, &drive, at, limit),
            gram_count(db, tenant_id, f, m, &drive)
        );
    }
    tokio::try_join!(
        page_query(db, tenant_id, f, at, limit),
        count(db, tenant_id, f)
    )
}

/// Every matching customer id on the driving gram's list, newest first; `None` when the list
/// holds more than [`GRAM_LIST_CAP`] customers. The list is read once, whole (no `ORDER BY`, no
/// page): each row carries its customer id when every condition holds, NULL when not.
async fn gram_matches(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    m: &GramMatch,
    drive: &str,
) -> DbResult<Option<Vec<i64>>> {
    let id = "g0.customer_id";
    let reads_row = !m.exact || f.has_column_filters();
    let b = db.backend();
    let mut q = dialect(b, "SELECT CASE WHEN 1 = 1");
    // Cheapest first: the customer row's own columns and the recheck, then the key probes.
    if reads_row {
        q.append(&column_conditions(f));
        q.append(&gram_conditions(tenant_id, m, id, Some(drive)));
    }
    q.append(&set_conditions(b, tenant_id, f, id));
    if reads_row {
        q.push_sql(
            " THEN g0.customer_id END AS hit FROM customer_gram g0 CROSS JOIN customer c \
             WHERE c.id = g0.customer_id AND g0.tenant_id = ? AND g0.gram = ? AND c.tenant_id = ? LIMIT ?",
        )
        .push_bind(tenant_id)
        .push_bind(drive)
        .push_bind(tenant_id);
    } else {
        q.push_sql(
            " THEN g0.customer_id END AS hit FROM customer_gram g0 \
             WHERE g0.tenant_id = ? AND g0.gram = ? LIMIT ?",
        )
        .push_bind(tenant_id)
        .push_bind(drive);
    }
    q.push_bind(GRAM_LIST_CAP + 1);
    let rows: Vec<(Option<i64>,)> = db.fetch_all(q).await?;
    if rows.len() as i64 > GRAM_LIST_CAP {
        return Ok(None);
    }
    let mut ids: Vec<i64> = rows.into_iter().filter_map(|r| r.0).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(Some(ids))
}

/// The customers with these ids (the tenant's), newest first.
async fn rows_by_id(db: &Db, tenant_id: i64, ids: &[i64]) -> DbResult<Vec<CustomerRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = query(format!(
        "SELECT {COLUMNS} FROM customer c WHERE c.tenant_id = ? AND c.id IN "
    ))
    .bind(tenant_id);
    q.push_in_list(ids.iter().copied());
    q.push_sql(" ORDER BY c.id DESC");
    db.fetch_all(q).await
}

/// One page of matching customers, newest first.
pub async fn page(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    offset: i64,
    limit: i64,
) -> DbResult<Vec<CustomerRow>> {
    page_query(db, tenant_id, f, Cursor::Offset(offset), limit).await
}

/// The next `limit` matching customers with ids below `before` (all when None), newest first:
/// keyset paging for walking a whole list (exports) without re-reading what came before.
pub async fn page_before(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> DbResult<Vec<CustomerRow>> {
    let at = before.map_or(Cursor::Offset(0), Cursor::Before);
    page_query(db, tenant_id, f, at, limit).await
}

async fn page_query(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    at: Cursor,
    limit: i64,
) -> DbResult<Vec<CustomerRow>> {
    if let Some(Keyword::Grams(m)) = &f.keyword {
        let Some(drive) = driver(db, tenant_id, m).await? else {
            return Ok(Vec::new());
        };
        return gram_page(db, tenant_id, f, m, &drive, at, limit).await;
    }
    let b = db.backend();
    let mut q = dialect(
        b,
        &format!("SELECT {COLUMNS} FROM customer c WHERE c.tenant_id = ?"),
    )
    .bind(tenant_id);
    q.append(&at.bound("c.id"));
    q.append(&conditions(b, tenant_id, f));
    q.append(&at.order("c.id", limit));
    Ok(at.newest_first(db.fetch_all(q).await?))
}

/// A keyword page, driven by the gram list (a few hundred customers of a million) walked
/// newest-first on its key (tenant, gram, customer), tags and groups probed per customer id.
/// An exact keyword with no column filter settles the page's ids before reading a customer row,
/// so at most `limit` rows are read; otherwise each candidate's row is read for the recheck.
#[allow(clippy::too_many_arguments)]
async fn gram_page(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    m: &GramMatch,
    drive: &str,
    at: Cursor,
    limit: i64,
) -> DbResult<Vec<CustomerRow>> {
    let b = db.backend();
    let id = "g0.customer_id";
    let mut q = if m.exact && !f.has_column_filters() {
        dialect(
            b,
            &format!(
                "SELECT {COLUMNS} FROM (SELECT g0.customer_id FROM customer_gram g0 WHERE g0.tenant_id = ? AND g0.gram = ?"
            ),
        )
    } else {
        dialect(
            b,
            &format!(
                "SELECT {COLUMNS} FROM customer_gram g0 CROSS JOIN customer c \
                 WHERE c.id = g0.customer_id AND g0.tenant_id = ? AND g0.gram = ?"
            ),
        )
    }
    .bind(tenant_id)
    .bind(drive);
    q.append(&at.bound(id));
    q.append(&set_conditions(b, tenant_id, f, id));
    if m.exact && !f.has_column_filters() {
        q.append(&at.order(id, limit));
        q.push_sql(
            ") k CROSS JOIN customer c WHERE c.id = k.customer_id AND c.tenant_id = ? ORDER BY c.id DESC",
        )
        .push_bind(tenant_id);
        // Already newest first (the outer ORDER BY).
        return db.fetch_all(q).await;
    }
    q.push_sql(" AND c.tenant_id = ?").push_bind(tenant_id);
    q.append(&gram_conditions(tenant_id, m, id, Some(drive)));
    q.append(&column_conditions(f));
    q.append(&at.order(id, limit));
    Ok(at.newest_first(db.fetch_all(q).await?))
}

/// The exact number of matching customers, from the smallest source that answers it.
pub async fn count(db: &Db, tenant_id: i64, f: &Filter) -> DbResult<i64> {
    let b = db.backend();
    // Keyword: count the rarest gram's list ([`gram_count`]).
    if let Some(Keyword::Grams(m)) = &f.keyword {
        let Some(drive) = driver(db, tenant_id, m).await? else {
            return Ok(0);
        };
        return gram_count(db, tenant_id, f, m, &drive).await;
    }
    if f.keyword.is_none()
        && f.tag_ids.is_empty()
        && f.group_ids.is_empty()
        && !f.has_column_filters()
    {
        // Every customer of the tenant: the counter kept with each insert and delete.
        return super::store::customer_total(db, tenant_id).await;
    }
    let cond = conditions(b, tenant_id, f);
    if f.keyword.is_none() && !f.group_ids.is_empty() {
        let mut q = dialect(
            b,
            "SELECT COUNT(DISTINCT c.id) FROM group_chat_member m0 JOIN customer c ON c.id = m0.customer_id \
             WHERE m0.tenant_id = ? AND c.tenant_id = ? AND m0.status = 1 AND m0.group_id IN ",
        )
        .bind(tenant_id)
        .bind(tenant_id);
        q.push_in_list(f.group_ids.iter().copied());
        q.append(&cond);
        return db.fetch_i64(q).await;
    }
    if f.keyword.is_none() && !f.tag_ids.is_empty() && !f.has_column_filters() {
        return count_tags(db, tenant_id, &f.tag_ids, f.tag_all).await;
    }
    let mut q = dialect(b, "SELECT COUNT(*) FROM customer c WHERE c.tenant_id = ?").bind(tenant_id);
    q.append(&cond);
    db.fetch_i64(q).await
}

/// The exact number of customers matching a gram keyword, counted on the driving gram's list
/// with tags and groups probed by customer id. An exact keyword with no column filter needs no
/// customer row at all (gram and tag rows never outlive their customer: `store::delete` removes
/// them in the same transaction).
async fn gram_count(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    m: &GramMatch,
    drive: &str,
) -> DbResult<i64> {
    let b = db.backend();
    let id = "g0.customer_id";
    if m.exact && !f.has_column_filters() {
        let mut q = dialect(
            b,
            "SELECT COUNT(*) FROM customer_gram g0 WHERE g0.tenant_id = ? AND g0.gram = ?",
        )
        .bind(tenant_id)
        .bind(drive);
        q.append(&set_conditions(b, tenant_id, f, id));
        return db.fetch_i64(q).await;
    }
    let mut q = dialect(
        b,
        "SELECT COUNT(*) FROM customer_gram g0 CROSS JOIN customer c \
         WHERE c.id = g0.customer_id AND g0.tenant_id = ? AND g0.gram = ? AND c.tenant_id = ?",
    )
    .bind(tenant_id)
    .bind(drive)
    .bind(tenant_id);
    q.append(&set_conditions(b, tenant_id, f, id));
    q.append(&gram_conditions(tenant_id, m, id, Some(drive)));
    q.append(&column_conditions(f));
    db.fetch_i64(q).await
}

/// Per-tag counts from the counter table, smallest first.
async fn tag_sizes(db: &Db, tenant_id: i64, tag_ids: &[i64]) -> DbResult<Vec<(i64, i64)>> {
    let mut q =
        query("SELECT tag_id, customer_count FROM tag_count WHERE tenant_id = ? AND tag_id IN ")
            .bind(tenant_id);
    q.push_in_list(tag_ids.iter().copied());
    let mut sizes: Vec<(i64, i64)> = db.fetch_all(q).await?;
    sizes.sort_by_key(|s| s.1);
    Ok(sizes)
}

/// Customers carrying both tags, from the pair counter (`tags::bump_pairs` keeps it exact).
async fn pair_count(db: &Db, tenant_id: i64, a: i64, b: i64) -> DbResult<i64> {
    let n: Option<(i64,)> = db
        .fetch_optional(
            query(
                "SELECT customer_count FROM tag_pair_count WHERE tenant_id = ? AND tag_a = ? AND tag_b = ?",
            )
            .bind(tenant_id)
            .bind(a.min(b))
            .bind(a.max(b)),
        )
        .await?;
    Ok(n.map_or(0, |n| n.0))
}

/// Customers carrying any (or all) of the tags, without touching the customer table (tag rows
/// never outlive their customer: [`super::store::delete`] removes them).
async fn count_tags(db: &Db, tenant_id: i64, tag_ids: &[i64], all: bool) -> DbResult<i64> {
    let mut ids = tag_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let sizes = tag_sizes(db, tenant_id, &ids).await?;
    if all {
        // A tag that is not the tenant's (no counter) matches nobody.
        if sizes.len() < ids.len() || sizes.first().is_some_and(|s| s.1 == 0) {
            return Ok(0);
        }
        if let [a, b] = ids.as_slice() {
            return pair_count(db, tenant_id, *a, *b).await;
        }
        let mut q = dialect(
            db.backend(),
            "SELECT COUNT(*) FROM customer_tag a WHERE a.tenant_id = ? AND a.tag_id = ?",
        )
        .bind(tenant_id)
        .bind(sizes[0].0);
        for (t, _) in &sizes[1..] {
            q.push_sql(
                " AND EXISTS (SELECT 1 FROM customer_tag b WHERE b.tenant_id = ? AND b.tag_id = ? AND b.customer_id = a.customer_id)",
            )
            .push_bind(tenant_id)
            .push_bind(*t);
        }
        return db.fetch_i64(q).await;
    }
    let sizes: Vec<(i64, i64)> = sizes.into_iter().filter(|s| s.1 > 0).collect();
    match sizes.as_slice() {
        [] => Ok(0),
        [(_, n)] => Ok(*n),
        [(x, a), (y, b)] => {
            // |A ∪ B| = |A| + |B| − |A ∩ B|, all three from counters.
            Ok(a + b - pair_count(db, tenant_id, *x, *y).await?)
        }
        many => {
            let mut q = query(
                "SELECT COUNT(DISTINCT customer_id) FROM customer_tag WHERE tenant_id = ? AND tag_id IN ",
            )
            .bind(tenant_id);
            q.push_in_list(many.iter().map(|s| s.0));
            db.fetch_i64(q).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_2_grams_and_mobiles_4_grams() {
        assert_eq!(
            grams_of(Some("张三丰"), Some("+8613800")),
            vec!["m1380", "m3800", "m6138", "m8613", "n三丰", "n张三"]
        );
        assert!(grams_of(Some("张"), None).is_empty());
    }

    #[test]
    fn cursors_pick_pages_of_a_list_held_newest_first() {
        let ids: Vec<i64> = (1..=10).rev().collect();
        assert_eq!(Cursor::Offset(3).pick(ids.clone(), 3), vec![7, 6, 5]);
        assert_eq!(Cursor::Offset(9).pick(ids.clone(), 3), vec![1]);
        assert_eq!(Cursor::Before(5).pick(ids.clone(), 3), vec![4, 3, 2]);
        assert_eq!(Cursor::Before(2).pick(ids.clone(), 3), vec![1]);
        // The page before the one starting at 4: the three nearest above it, newest first.
        assert_eq!(Cursor::After(4).pick(ids.clone(), 3), vec![7, 6, 5]);
        assert_eq!(Cursor::After(8).pick(ids.clone(), 3), vec![10, 9]);
        assert!(Cursor::After(10).pick(ids, 3).is_empty());
    }

    #[test]
    fn keywords_pick_grams_or_a_scan() {
        assert_eq!(Keyword::parse(" "), None);
        assert!(matches!(Keyword::parse("张"), Some(Keyword::Scan(_))));
        assert!(matches!(Keyword::parse("138"), Some(Keyword::Scan(_))));
        let Some(Keyword::Grams(m)) = Keyword::parse("8000") else {
            panic!("grams expected")
        };
        assert_eq!(m.grams, vec!["m8000"]);
        assert!(m.exact);
        let Some(Keyword::Grams(m)) = Keyword::parse("Zhang San Feng") else {
            panic!("grams expected")
        };
        assert_eq!(m.grams.len(), 3);
        assert!(!m.exact);
        assert_eq!(like_pattern("50%_!"), "%50!%!_!!%");
    }
}
