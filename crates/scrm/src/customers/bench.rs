//! `scrm bench customers`: generate a tenant of 1,000,000 customers, 200 tags and ~3,000,000 tag
//! relations (skewed like a real company: the largest tag ~300k customers, the smallest ~4k), then
//! measure the search API's queries — the same [`search::page_with_total`] the handlers run (a
//! page of 20 and the exact total) — under concurrent load, and report p50/p99 and throughput.
//!
//! The data goes in with big multi-row INSERTs and explicit ids (one statement per 1,000 rows), so
//! generation takes a minute or two rather than an hour. A tenant that already holds the
//! requested number of customers is reused.

use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scrm_db::{Backend, Db, PoolSettings, query};
use serde::Serialize;

use super::search::{self, Filter, Keyword, grams_of};

/// What to generate and how to load it.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub database_url: String,
    pub customers: i64,
    pub tags: i64,
    /// Tag relations to aim for (each customer draws distinct tags until the average is met).
    pub relations: i64,
    pub concurrency: usize,
    /// Requests per scenario.
    pub requests: usize,
    /// The tenant id the generated data belongs to (kept apart from real tenants).
    pub tenant_id: i64,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            database_url: "sqlite://data/bench.db".into(),
            customers: 1_000_000,
            tags: 200,
            relations: 3_000_000,
            concurrency: 8,
            requests: 800,
            tenant_id: 900_001,
        }
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub per_second: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: String,
    pub customers: i64,
    pub tag_relations: i64,
    pub generated_in_s: Option<f64>,
    pub concurrency: usize,
    pub scenarios: Vec<ScenarioReport>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "backend {}: {} customers, {} tag relations{}; concurrency {}",
            self.backend,
            self.customers,
            self.tag_relations,
            self.generated_in_s
                .map(|s| format!(", generated in {s:.0} s"))
                .unwrap_or_default(),
            self.concurrency
        )?;
        writeln!(
            f,
            "{:<48} {:>8} {:>8} {:>8} {:>8}",
            "scenario", "p50 ms", "p99 ms", "max ms", "req/s"
        )?;
        for s in &self.scenarios {
            writeln!(
                f,
                "{:<48} {:>8.1} {:>8.1} {:>8.1} {:>8.0}",
                s.name, s.p50_ms, s.p99_ms, s.max_ms, s.per_second
            )?;
        }
        Ok(())
    }
}

const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤";
const GIVEN: &str = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉宇浩凯健俊帆帅旭宁龙林欣怡梓涵子轩雨欣博文思远嘉怡晨阳佳琪宇航子涵浩然";

/// Run the benchmark: generate (unless present), then measure every scenario.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let db = Db::connect(
        &args.database_url,
        &PoolSettings {
            max_connections: (args.concurrency as u32 * 2).max(4),
            ..Default::default()
        },
    )
    .await
    .context("connecting to the bench database")?;
    db.migrate().await.context("migrating")?;
    let t = args.tenant_id;
    let have = db
        .fetch_i64(query("SELECT COUNT(*) FROM customer WHERE tenant_id = ?").bind(t))
        .await?;
    let generated_in_s = if have == args.customers {
        None
    } else {
        let started = Instant::now();
        generate(&db, &args).await?;
        Some(started.elapsed().as_secs_f64())
    };
    let tags: Vec<(i64, i64)> = db
        .fetch_all(query("SELECT tag_id, customer_count FROM tag_count WHERE tenant_id = ? ORDER BY customer_count DESC").bind(t))
        .await?;
    anyhow::ensure!(tags.len() >= 4, "the bench tenant has no tags");
    // Summed here: SUM of a BIGINT is NUMERIC on PostgreSQL.
    let relations: i64 = tags.iter().map(|t| t.1).sum();
    let big = (tags[0].0, tags[1].0);
    let mid = (tags[tags.len() / 2].0, tags[tags.len() / 2 + 1].0);

    let mut scenarios = Vec::new();
    let surnames: Vec<char> = SURNAMES.chars().collect();
    let given: Vec<char> = GIVEN.chars().collect();
    let name_kw = move |rng: &mut StdRng| {
        format!(
            "{}{}",
            surnames[rng.random_range(0..surnames.len())],
            given[rng.random_range(0..given.len())]
        )
    };
    let digit_kw = |rng: &mut StdRng| format!("{:04}", rng.random_range(0..10_000));
    let name_kw2 = name_kw.clone();
    let tag_filter = move |rng: &mut StdRng| {
        if rng.random_bool(0.5) {
            vec![big.0, big.1]
        } else {
            vec![mid.0, mid.1]
        }
    };

    let specs: Vec<(&str, MakeFilter)> = vec![
        (
            "tags (any of 2) + keyword (2 Chinese chars)",
            Box::new(move |r| Filter {
                tag_ids: tag_filter(r),
                keyword: Keyword::parse(&name_kw(r)),
                ..Default::default()
            }),
        ),
        (
            "tags (any of 2) + keyword (4 digits)",
            Box::new(move |r| Filter {
                tag_ids: tag_filter(r),
                keyword: Keyword::parse(&digit_kw(r)),
                ..Default::default()
            }),
        ),
        (
            "tags (any of 2 largest), no keyword",
            Box::new(move |_| Filter {
                tag_ids: vec![big.0, big.1],
                ..Default::default()
            }),
        ),
        (
            "tags (all of 2 largest)",
            Box::new(move |_| Filter {
                tag_ids: vec![big.0, big.1],
                tag_all: true,
                ..Default::default()
            }),
        ),
        (
            "keyword only (2 Chinese chars)",
            Box::new(move |r| Filter {
                keyword: Keyword::parse(&name_kw2(r)),
                ..Default::default()
            }),
        ),
        (
            "by staff + status",
            Box::new(move |r| Filter {
                follow_user_id: Some(r.random_range(1..=50)),
                status: Some(1),
                ..Default::default()
            }),
        ),
    ];
    for (name, make) in specs {
        let make = std::sync::Arc::new(make);
        let s = measure(&db, &args, name, move |rng| make(rng)).await?;
        scenarios.push(s);
    }
    // Seed 004's tag list with counts.
    let tag_list = measure_raw(&db, &args, "tag list with counts (seed 004)", |db, t, _| {
        Box::pin(async move { super::tags::list_tags(&db, t, None).await.map(|_| ()) })
    })
    .await?;
    scenarios.push(tag_list);
    Ok(Report {
        backend: db.backend().to_string(),
        customers: args.customers,
        tag_relations: relations,
        generated_in_s,
        concurrency: args.concurrency,
        scenarios,
    })
}

/// Makes one request's filter from the worker's random source.
type MakeFilter = Box<dyn Fn(&mut StdRng) -> Filter + Send + Sync>;

type Fut = std::pin::Pin<Box<dyn std::future::Future<Output = scrm_db::DbResult<()>> + Send>>;

async fn measure<F>(
    db: &Db,
    args: &BenchArgs,
    name: &str,
    make: F,
) -> anyhow::Result<ScenarioReport>
where
    F: Fn(&mut StdRng) -> Filter + Send + Sync + Clone + 'static,
{
    measure_raw(db, args, name, move |db, t, rng| {
        let f = make(rng);
        Box::pin(async move {
            // What the handlers do: the page of 20 and the exact total.
            search::page_with_total(&db, t, &f, 0, 20).await?;
            Ok(())
        })
    })
    .await
}

async fn measure_raw<F>(
    db: &Db,
    args: &BenchArgs,
    name: &str,
    op: F,
) -> anyhow::Result<ScenarioReport>
where
    F: Fn(Db, i64, &mut StdRng) -> Fut + Send + Sync + Clone + 'static,
{
    let per_worker = args.requests.div_ceil(args.concurrency.max(1));
    // Warm-up: a few requests per worker, not measured.
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let (db, op, t) = (db.clone(), op.clone(), args.tenant_id);
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64 + 7);
            let mut times = Vec::with_capacity(per_worker);
            for i in 0..per_worker + 5 {
                let t0 = Instant::now();
                op(db.clone(), t, &mut rng).await?;
                if i >= 5 {
                    times.push(t0.elapsed());
                }
            }
            Ok::<_, scrm_db::DbError>(times)
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Ok(ScenarioReport {
        name: name.to_string(),
        requests: all.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        per_second: all.len() as f64 / elapsed,
    })
}

/// Rows per INSERT statement (well under every backend's placeholder limit).
const BATCH: usize = 1000;

async fn generate(db: &Db, args: &BenchArgs) -> anyhow::Result<()> {
    let t = args.tenant_id;
    for table in [
        "customer",
        "customer_gram",
        "customer_tag",
        "tag_count",
        "tag_pair_count",
        "tag",
        "tag_group",
        "staff",
    ] {
        db.execute(query(format!("DELETE FROM {table} WHERE tenant_id = ?")).bind(t))
            .await?;
    }
    let now = crate::state::now_ms();
    let mut rng = StdRng::seed_from_u64(42);
    // Staff 1..=50 of this tenant (ids are the tenant's own rows; the filter uses follow_user_id).
    for s in 1..=50 {
        db.execute(query("INSERT INTO staff (tenant_id, userid, name, department_ids, status, created_at, updated_at) VALUES (?, ?, ?, '[]', 1, ?, ?)").bind(t).bind(format!("bench{s}")).bind(format!("员工{s}")).bind(now).bind(now)).await?;
    }
    let group = db.insert_id(query("INSERT INTO tag_group (tenant_id, name, sort_order, created_at, updated_at) VALUES (?, 'bench', 1, ?, ?)").bind(t).bind(now).bind(now)).await?;
    let mut tag_ids = Vec::new();
    for i in 0..args.tags {
        tag_ids.push(db.insert_id(query("INSERT INTO tag (tenant_id, group_id, name, sort_order, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)").bind(t).bind(group).bind(format!("标签{i:03}")).bind(i).bind(now).bind(now)).await?);
    }
    let first_id = db
        .fetch_i64(query("SELECT COALESCE(MAX(id), 0) + 1 FROM customer"))
        .await?;
    let surnames: Vec<char> = SURNAMES.chars().collect();
    let given: Vec<char> = GIVEN.chars().collect();
    let channels = [
        "qrcode", "search", "group", "card", "moments", "ads", "import", "h5",
    ];
    // Zipf-like tag weights (exponent 0.8): the largest tag ~10% of relations, the smallest ~0.15%.
    let weights: Vec<f64> = (1..=args.tags).map(|k| (k as f64).powf(-0.8)).collect();
    let total_w: f64 = weights.iter().sum();
    let cumulative: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / total_w;
            Some(*acc)
        })
        .collect();
    let per_customer = args.relations as f64 / args.customers as f64;
    let mut tag_lists: Vec<Vec<i64>> = vec![Vec::new(); tag_ids.len()];
    let mut pairs: std::collections::BTreeMap<(i64, i64), i64> = Default::default();

    let mut c_q = query("");
    let mut g_q = query("");
    let (mut c_n, mut g_n) = (0usize, 0usize);
    for i in 0..args.customers {
        let id = first_id + i;
        let given_len = if rng.random_bool(0.7) { 2 } else { 1 };
        let mut name = String::new();
        name.push(surnames[rng.random_range(0..surnames.len())]);
        for _ in 0..given_len {
            name.push(given[rng.random_range(0..given.len())]);
        }
        let mobile = format!(
            "1{}{:09}",
            rng.random_range(3..=9),
            rng.random_range(0..1_000_000_000u64)
        );
        if c_n == 0 {
            c_q = query(
                "INSERT INTO customer (id, tenant_id, external_userid, name, type, mobile, follow_user_id, add_time, channel, stage, blacklisted, status, version, created_at, updated_at) VALUES ",
            );
        } else {
            c_q.push_sql(", ");
        }
        c_q.push_sql("(?, ?, ?, ?, 1, ?, ?, ?, ?, 'new', 0, ?, 1, ?, ?)")
            .push_bind(id)
            .push_bind(t)
            .push_bind(format!("wmb{id}"))
            .push_bind(name.as_str())
            .push_bind(mobile.as_str())
            .push_bind(rng.random_range(1..=50i64))
            .push_bind(now - rng.random_range(0..31_536_000_000i64))
            .push_bind(channels[rng.random_range(0..channels.len())])
            .push_bind(if rng.random_bool(0.9) { 1i64 } else { 2 })
            .push_bind(now)
            .push_bind(now);
        c_n += 1;
        if c_n == BATCH {
            db.execute(std::mem::replace(&mut c_q, query(""))).await?;
            c_n = 0;
        }
        for g in grams_of(Some(&name), Some(&mobile)) {
            if g_n == 0 {
                g_q = query("INSERT INTO customer_gram (tenant_id, gram, customer_id) VALUES ");
            } else {
                g_q.push_sql(", ");
            }
            g_q.push_sql("(?, ?, ?)")
                .push_bind(t)
                .push_bind(g)
                .push_bind(id);
            g_n += 1;
            if g_n == BATCH * 3 {
                db.execute(std::mem::replace(&mut g_q, query(""))).await?;
                g_n = 0;
            }
        }
        // Distinct tags for this customer: the average is relations / customers.
        let k = per_customer.floor() as usize + usize::from(rng.random_bool(per_customer.fract()));
        let mut mine: Vec<usize> = Vec::with_capacity(k);
        while mine.len() < k.min(tag_ids.len()) {
            let x: f64 = rng.random();
            let idx = cumulative
                .partition_point(|c| *c < x)
                .min(tag_ids.len() - 1);
            if !mine.contains(&idx) {
                mine.push(idx);
            }
        }
        let carried: Vec<i64> = mine.iter().map(|i| tag_ids[*i]).collect();
        super::tags::pair_deltas(&mut pairs, &carried, &carried, 1);
        for idx in mine {
            tag_lists[idx].push(id);
        }
    }
    if c_n > 0 {
        db.execute(c_q).await?;
    }
    if g_n > 0 {
        db.execute(g_q).await?;
    }
    // Tag rows in primary-key order (tag, customer): appends to the clustered index.
    for (idx, list) in tag_lists.iter().enumerate() {
        for chunk in list.chunks(BATCH * 2) {
            let mut q = query(
                "INSERT INTO customer_tag (tenant_id, tag_id, customer_id, tagged_at) VALUES ",
            );
            for (j, cid) in chunk.iter().enumerate() {
                if j > 0 {
                    q.push_sql(", ");
                }
                q.push_sql("(?, ?, ?, ?)")
                    .push_bind(t)
                    .push_bind(tag_ids[idx])
                    .push_bind(*cid)
                    .push_bind(now);
            }
            db.execute(q).await?;
        }
        db.execute(
            query("INSERT INTO tag_count (tenant_id, tag_id, customer_count) VALUES (?, ?, ?)")
                .bind(t)
                .bind(tag_ids[idx])
                .bind(list.len() as i64),
        )
        .await?;
    }
    let pairs: Vec<((i64, i64), i64)> = pairs.into_iter().collect();
    for chunk in pairs.chunks(BATCH) {
        let mut q =
            query("INSERT INTO tag_pair_count (tenant_id, tag_a, tag_b, customer_count) VALUES ");
        for (j, ((a, b), n)) in chunk.iter().enumerate() {
            if j > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?)")
                .push_bind(t)
                .push_bind(*a)
                .push_bind(*b)
                .push_bind(*n);
        }
        db.execute(q).await?;
    }
    // The rows went in directly: the tenant's customer counter is set from them.
    super::store::recount_customers(db, t).await?;
    match db.backend() {
        Backend::Postgres => {
            db.execute(query("SELECT setval(pg_get_serial_sequence('customer', 'id'), (SELECT MAX(id) FROM customer))")).await?;
            for table in [
                "customer",
                "customer_gram",
                "customer_tag",
                "tag_count",
                "tag_pair_count",
            ] {
                db.execute(query(format!("VACUUM ANALYZE {table}"))).await?;
            }
        }
        Backend::MySql => {
            for table in [
                "customer",
                "customer_gram",
                "customer_tag",
                "tag_count",
                "tag_pair_count",
            ] {
                db.execute(query(format!("ANALYZE TABLE {table}"))).await?;
            }
        }
        Backend::Sqlite => {
            db.execute(query("ANALYZE")).await?;
        }
    }
    Ok(())
}
