//! Customer search shaped the way `perf/SEARCH.md` measured to be fast at 1,000,000 customers
//! on all three databases:
//!
//! - The page walks the customer key newest-first and probes tags, group chats and keyword
//!   grams with correlated `EXISTS`, stopping at the page size.
//! - The exact total is computed separately, from the smallest source that answers it: the
//!   per-tag counter (one tag), |A|+|B|−|A∩B| from the per-tag and per-pair counters (any or all
//!   of two tags), the smaller tag's list probed for the others (all of three or more tags), the gram list (keyword), the group member list; never a
//!   join of the whole customer table when something smaller answers.
//! - Keywords go through `customer_gram`: name 2-grams and mobile 4-grams looked up by equality,
//!   with a `LIKE` recheck, because no built-in full-text index handles 2-character Chinese names
//!   on all three.
//! - MariaDB turns `EXISTS` into a materialised `IN`; the statement switches that off.

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
    /// Grams that must all be present (at most three probes) plus the `LIKE` recheck, per
    /// alternative: the name, and for 4+ digits the mobile as well.
    Grams(Vec<GramMatch>),
    /// Too short for a gram (one character, or 2-3 digits): a `LIKE` over name and mobile.
    Scan(String),
}

/// One way a keyword can match: grams to probe and the column to recheck.
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
fn like_pattern(s: &str) -> String {
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
        let alt = if digits_only {
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
        let alts = vec![alt];
        Some(Keyword::Grams(alts))
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

/// ` AND …` conditions on customer `c` for this filter (the tenant condition is the caller's).
fn conditions(tenant_id: i64, f: &Filter) -> Query {
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
    if !f.tag_ids.is_empty() {
        if f.tag_all {
            for t in &f.tag_ids {
                q.push_sql(
                    " AND EXISTS (SELECT 1 FROM customer_tag ct WHERE ct.tenant_id = ? AND ct.tag_id = ? AND ct.customer_id = c.id)",
                )
                .push_bind(tenant_id)
                .push_bind(*t);
            }
        } else {
            q.push_sql(
                " AND EXISTS (SELECT 1 FROM customer_tag ct WHERE ct.tenant_id = ? AND ct.tag_id IN ",
            )
            .push_bind(tenant_id);
            q.push_in_list(f.tag_ids.iter().copied());
            q.push_sql(" AND ct.customer_id = c.id)");
        }
    }
    if !f.group_ids.is_empty() {
        q.push_sql(
            " AND EXISTS (SELECT 1 FROM group_chat_member m WHERE m.tenant_id = ? AND m.customer_id = c.id AND m.status = 1 AND m.group_id IN ",
        )
        .push_bind(tenant_id);
        q.push_in_list(f.group_ids.iter().copied());
        q.push_sql(")");
    }
    match &f.keyword {
        None => {}
        Some(Keyword::Scan(p)) => {
            q.push_sql(" AND (LOWER(c.name) LIKE ? ESCAPE '!' OR c.mobile LIKE ? ESCAPE '!')")
                .push_bind(p.as_str())
                .push_bind(p.as_str());
        }
        Some(Keyword::Grams(alts)) => {
            q.push_sql(" AND (");
            for (i, alt) in alts.iter().enumerate() {
                if i > 0 {
                    q.push_sql(" OR ");
                }
                q.push_sql("(");
                for g in &alt.grams {
                    q.push_sql(
                        "EXISTS (SELECT 1 FROM customer_gram g WHERE g.tenant_id = ? AND g.gram = ? AND g.customer_id = c.id) AND ",
                    )
                    .push_bind(tenant_id)
                    .push_bind(g.as_str());
                }
                if alt.exact {
                    q.push_sql("1 = 1)");
                } else {
                    q.push_sql(alt.column);
                    q.push_sql(" LIKE ? ESCAPE '!')")
                        .push_bind(alt.pattern.as_str());
                }
            }
            q.push_sql(")");
        }
    }
    q
}

/// MariaDB: keep `EXISTS` as a correlated probe (its `exists_to_in` rewrite materialises the
/// whole tag list first).
fn dialect(backend: Backend, sql: &str) -> Query {
    match backend {
        Backend::MySql => query(format!(
            "SET STATEMENT optimizer_switch='exists_to_in=off' FOR {sql}"
        )),
        _ => query(sql.to_string()),
    }
}

/// One page of matching customers, newest first.
pub async fn page(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    offset: i64,
    limit: i64,
) -> DbResult<Vec<CustomerRow>> {
    page_query(db, tenant_id, f, None, offset, limit).await
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
    page_query(db, tenant_id, f, before, 0, limit).await
}

async fn page_query(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    before: Option<i64>,
    offset: i64,
    limit: i64,
) -> DbResult<Vec<CustomerRow>> {
    let mut q = dialect(
        db.backend(),
        &format!("SELECT {COLUMNS} FROM customer c WHERE c.tenant_id = ?"),
    )
    .bind(tenant_id);
    // A keyword is selective (a few hundred customers per gram of a million): start from its
    // gram list instead of walking the whole key newest-first looking for rare matches.
    if let Some(Keyword::Grams(alts)) = &f.keyword {
        q.push_sql(" AND c.id IN (SELECT g0.customer_id FROM customer_gram g0 WHERE g0.tenant_id = ? AND g0.gram IN ")
            .push_bind(tenant_id);
        q.push_in_list(alts.iter().filter_map(|a| a.grams.first().cloned()));
        q.push_sql(")");
    }
    if let Some(b) = before {
        q.push_sql(" AND c.id < ?").push_bind(b);
    }
    q.append(&conditions(tenant_id, f));
    q.push_sql(" ORDER BY c.id DESC LIMIT ? OFFSET ?")
        .push_bind(limit)
        .push_bind(offset);
    db.fetch_all(q).await
}

/// The exact number of matching customers, from the smallest source that answers it.
pub async fn count(db: &Db, tenant_id: i64, f: &Filter) -> DbResult<i64> {
    let b = db.backend();
    let cond = conditions(tenant_id, f);
    // An exact keyword and no column filters: count gram rows, probing tags and groups by
    // customer id, without reading a single customer row.
    if let Some(Keyword::Grams(alts)) = &f.keyword
        && alts.iter().all(|a| a.exact)
        && !f.has_column_filters()
    {
        let mut q = dialect(
            b,
            "SELECT COUNT(DISTINCT g0.customer_id) FROM customer_gram g0 WHERE g0.tenant_id = ? AND g0.gram IN ",
        )
        .bind(tenant_id);
        q.push_in_list(alts.iter().filter_map(|a| a.grams.first().cloned()));
        let only_sets = Filter {
            tag_ids: f.tag_ids.clone(),
            tag_all: f.tag_all,
            group_ids: f.group_ids.clone(),
            ..Default::default()
        };
        let cond = conditions(tenant_id, &only_sets);
        q.push_sql(&cond.sql().replace("c.id", "g0.customer_id"));
        for v in cond.args() {
            q.push_bind(v.clone());
        }
        return db.fetch_i64(q).await;
    }
    // Keyword: drive from the first gram of each alternative.
    if let Some(Keyword::Grams(alts)) = &f.keyword {
        let mut q = dialect(
            b,
            "SELECT COUNT(DISTINCT c.id) FROM customer_gram g0 JOIN customer c ON c.id = g0.customer_id \
             WHERE g0.tenant_id = ? AND c.tenant_id = ? AND g0.gram IN ",
        )
        .bind(tenant_id)
        .bind(tenant_id);
        q.push_in_list(alts.iter().filter_map(|a| a.grams.first().cloned()));
        q.append(&cond);
        return db.fetch_i64(q).await;
    }
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
    fn keywords_pick_grams_or_a_scan() {
        assert_eq!(Keyword::parse(" "), None);
        assert!(matches!(Keyword::parse("张"), Some(Keyword::Scan(_))));
        assert!(matches!(Keyword::parse("138"), Some(Keyword::Scan(_))));
        let Some(Keyword::Grams(alts)) = Keyword::parse("8000") else {
            panic!("grams expected")
        };
        assert_eq!(alts.len(), 1);
        assert_eq!(alts[0].grams, vec!["m8000"]);
        assert!(alts[0].exact);
        let Some(Keyword::Grams(alts)) = Keyword::parse("Zhang San Feng") else {
            panic!("grams expected")
        };
        assert_eq!(alts.len(), 1);
        assert_eq!(alts[0].grams.len(), 3);
        assert_eq!(like_pattern("50%_!"), "%50!%!_!!%");
    }
}
