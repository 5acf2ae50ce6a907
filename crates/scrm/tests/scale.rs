//! scrm deployed as it scales out — two `scrm serve --role api` and three `--role worker`
//! processes of the real binary on loopback ports, one PostgreSQL or MySQL database, Redis —
//! against the WeCom simulator, through the chaos harness (`scrm::chaos`, also `scrm chaos`).
//!
//! - `scale_out_*`: a mass send to every customer through one API process and SOP sends
//!   through the other; every customer gets exactly one message (the simulator's delivery log),
//!   every result is final and agrees with the log.
//! - `chaos_*`: the same at 1,000 customers while workers are SIGKILLed and restarted, 10 % of
//!   WeCom calls fail and the database connections are cut once; nothing lost, nothing twice,
//!   nothing stuck — and the processes' logs hold none of the run's secrets. Then a storm of
//!   300 WeCom callbacks with replays and retries while workers are killed: each event stored
//!   once, processed by one job, one deletion record each.
//! - `scale_out_*` also puts 5 s of API load (8 clients: customer search, task creation,
//!   signed callbacks) on the API processes while the workers send: no 5xx, no request
//!   without an answer.
//!
//! They run on the backends `SCRM_TEST_DB` selects among mysql and postgres (SQLite is one
//! process's file); Redis is `SCRM_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::path::PathBuf;
use std::time::Duration;

use scrm::chaos::{self, ChaosArgs, Report};
use scrm_db::Backend;
use scrm_db::testing::{fresh_url, selected_backends};

async fn args(backend: Backend, name: &str, customers: u32) -> Option<ChaosArgs> {
    if !selected_backends().contains(&backend) {
        eprintln!("skipped: backend {backend} not selected by SCRM_TEST_DB");
        return None;
    }
    let url = fresh_url(backend).await.expect("a test database");
    let dir = std::env::temp_dir().join(format!(
        "scrm-scale-{name}-{backend}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let mut a = ChaosArgs::new(
        PathBuf::from(env!("CARGO_BIN_EXE_scrm")),
        url,
        customers,
        dir,
    );
    a.redis_url = Some(
        std::env::var("SCRM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    );
    // A killed worker's jobs are taken over after 3 s; failed sends are retried after 1-3 s.
    a.lease_secs = 3;
    a.retry_secs = "1,2,3".into();
    a.worker_concurrency = 16;
    a.db_connections = 6;
    // Generous: a loaded CI machine is slow, and only a real hang should end the test.
    a.timeout = Duration::from_secs(400);
    Some(a)
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// Every intended message exactly once, every result final and matching the log.
fn assert_exactly_once(r: &Report) {
    eprintln!("{r}");
    assert!(r.problems().is_empty(), "{:?}\n{r}", r.problems());
    assert_eq!(r.duplicates, 0, "{r}");
    assert_eq!(r.losses, 0, "{r}");
    assert_eq!(r.delivered, r.intended_messages, "{r}");
    assert!(r.mass_recipients > 0 && r.sop_executions > 0, "{r}");
    assert_eq!(r.results_success as usize, r.mass_recipients, "{r}");
    assert_eq!(r.sop_steps_done as usize, 2 * r.sop_executions, "{r}");
    assert_eq!(r.results_open + r.sop_steps_open + r.stuck_jobs, 0, "{r}");
}

async fn scale_out(backend: Backend) {
    let Some(mut a) = args(backend, "scale", 400).await else {
        return;
    };
    a.sop = 40;
    // API load while the workers send: customer search, task creation, signed callbacks.
    a.load_secs = 5;
    a.load_concurrency = 8;
    let r = chaos::run(a).await.expect("the run");
    assert_exactly_once(&r);
    let load = r.load.as_ref().expect("the load phase");
    for route in chaos::load::ROUTES {
        let s = &load.routes[route];
        assert!(s.requests > 0 && s.ok == s.requests, "{route}: {load}");
    }
    assert_eq!(load.server_errors + load.transport_errors, 0, "{load}");
    assert_eq!((r.apis, r.workers, r.kills), (2, 3, 0));
    // Customers whose followers all left have no owner to send: recorded FAILED.
    let expected = if r.results_failed > 0 {
        "PARTIAL_SUCCESS"
    } else {
        "COMPLETED"
    };
    assert_eq!(r.task_status, expected, "{r}");
    let _ = std::fs::remove_dir_all(&r.log_dir);
}

async fn chaos_run(backend: Backend) {
    let Some(mut a) = args(backend, "chaos", 1_000).await else {
        return;
    };
    a.sop = 100;
    a.kills = 3;
    a.fault_rate = 0.10;
    a.cut_db = true;
    // Then a storm of 300 callbacks with duplicates while workers are killed.
    a.callbacks = 300;
    a.load_concurrency = 16;
    let r = chaos::run(a).await.expect("the run");
    assert_exactly_once(&r);
    assert_eq!(r.kills, 3, "{r}");
    let storm = r.storm.as_ref().expect("the storm");
    assert_eq!(storm.events, 300, "{storm}");
    assert!(
        storm.deliveries > storm.events && storm.exact_replays + storm.wecom_retries > 0,
        "{storm}"
    );
    assert!(
        storm.problems().is_empty(),
        "{:?}\n{storm}",
        storm.problems()
    );
    assert_eq!(
        (storm.done, storm.jobs, storm.deletion_records),
        (300, 300, 300),
        "{storm}"
    );
    assert!(r.db_connections_cut > 0, "{r}");

    // The logs of the whole run — retries, failures, takeovers — hold none of its secrets.
    let mut logged = 0;
    for entry in std::fs::read_dir(&r.log_dir).expect("log dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("log");
        logged += text.len();
        assert!(
            text.contains("scrm listening"),
            "{} is a process log",
            path.display()
        );
        for secret in &r.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret ({}…) is in {}",
                &secret[..4.min(secret.len())],
                path.display()
            );
        }
    }
    assert!(
        logged > 0 && r.secrets.len() >= 5,
        "{} secrets",
        r.secrets.len()
    );
    let _ = std::fs::remove_dir_all(&r.log_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_postgres() {
    scale_out(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_mysql() {
    scale_out(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres() {
    chaos_run(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_mysql() {
    chaos_run(Backend::MySql).await;
}
