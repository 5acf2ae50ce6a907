//! The `scrm` command line, run as a user would run it.

use std::process::Command;

fn scrm(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("scrm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scrm"));
    cmd.args(args)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run scrm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn config_prints_the_effective_settings_with_secrets_masked() {
    let (code, out, _) = scrm(
        &["config"],
        &[
            (
                "DATABASE_URL",
                "postgres://scrm:hunter2@db.internal:5432/scrm",
            ),
            ("SCRM_ADMIN_PASSWORD", "correct-horse"),
            ("REDIS_HOST", "cache"),
            ("REDIS_PASSWORD", "redis-secret"),
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("db.internal"), "{out}");
    assert!(out.contains("postgres"), "{out}");
    assert!(out.contains("cache:6379"), "{out}");
    for secret in ["hunter2", "correct-horse", "redis-secret"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
}

#[test]
fn a_bad_setting_stops_startup_naming_the_key() {
    let (code, _, err) = scrm(&["config"], &[("PORT", "seventy")]);
    assert_eq!(code, 2);
    assert!(err.contains("PORT"), "{err}");
    let (code, _, err) = scrm(&["serve"], &[("DATABASE_URL", "oracle://nowhere")]);
    assert_eq!(code, 2);
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[test]
fn users_are_created_listed_and_reset_from_the_command_line() {
    let db = std::env::temp_dir().join(format!("scrm-cli-users-{}.db", std::process::id()));
    let url = format!("sqlite://{}", db.display());
    let env = [("DATABASE_URL", url.as_str())];
    let (code, out, err) = scrm(
        &["user", "create", "--admin", "--password", "admin-password"],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created user admin"), "{out}");
    let (code, out, _) = scrm(
        &["user", "create", "--username", "olga", "--role", "viewer"],
        &env,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("password: "),
        "a generated password is printed once: {out}"
    );
    let (code, _, err) = scrm(
        &["user", "create", "--admin", "--password", "admin-password"],
        &env,
    );
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (_, out, _) = scrm(&["user", "list"], &env);
    assert!(
        out.contains("admin") && out.contains("olga") && out.contains("viewer"),
        "{out}"
    );
    let (code, out, _) = scrm(
        &[
            "user",
            "reset-password",
            "--username",
            "olga",
            "--password",
            "another-password",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let _ = std::fs::remove_file(db);
}

#[test]
fn callback_decrypt_prints_the_plaintext_or_the_failed_check() {
    // API-FACTS §10.1 vector A: the official sample's URL verification.
    let args = [
        "callback",
        "decrypt",
        "--token",
        "QDG6eK",
        "--aes-key",
        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "--receive-id",
        "wx5823bf96d3bd56c7",
        "--signature",
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
        "--timestamp",
        "1409659589",
        "--nonce",
        "263014780",
        "--echostr",
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
    ];
    let (code, out, err) = scrm(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "1616140317555161061");

    let mut bad_signature = args;
    bad_signature[9] = "0000000000000000000000000000000000000000";
    let (code, _, err) = scrm(&bad_signature, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("check `signature` failed"), "{err}");

    let mut other_corp = args;
    other_corp[7] = "ww-someone-else";
    let (code, _, err) = scrm(&other_corp, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("check `receive id` failed"), "{err}");
}

/// A simulated company and the environment that points `scrm` at it and at a fresh SQLite file.
fn sync_env(
    sim: &scrm_wecom_sim::SimHandle,
    name: &str,
) -> (std::path::PathBuf, Vec<(&'static str, String)>) {
    let db = std::env::temp_dir().join(format!("scrm-cli-{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let c = sim.config();
    let env = vec![
        ("DATABASE_URL", format!("sqlite://{}", db.display())),
        (
            "SCRM_MASTER_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into(),
        ),
        ("WEWORK_CORP_ID", c.creds.corp_id.clone()),
        ("WEWORK_CORP_SECRET", c.creds.app_secret.clone()),
        ("WEWORK_AGENT_ID", c.creds.agent_id.to_string()),
        ("WEWORK_CONTACTS_SECRET", c.creds.contact_secret.clone()),
        ("WEWORK_API_BASE", sim.base_url()),
    ];
    (db, env)
}

async fn count(db: &std::path::Path, sql: &'static str) -> i64 {
    let db = scrm_db::Db::connect(
        &format!("sqlite://{}", db.display()),
        &scrm_db::PoolSettings::default(),
    )
    .await
    .unwrap();
    let n = db.fetch_i64(scrm_db::query(sql)).await.unwrap();
    db.close().await;
    n
}

#[test]
fn sync_from_the_command_line_mirrors_the_company_writes_only_changes_and_fails_cleanly() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(async {
        let mut c = scrm_wecom_sim::SimConfig::default();
        c.size.customers = 300;
        c.size.staff = 12;
        c.size.group_chats = 5;
        c.callback.url = None;
        scrm_wecom_sim::Simulator::start(c).await.unwrap()
    });
    let (db, env) = sync_env(&sim, "sync");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // What the members with 客户联系 can see (the simulator's API, not its internals).
    let (customers, chats) = rt.block_on(async {
        let c = sim.config();
        let wc = scrm_wecom::WeComClient::in_memory(
            scrm_wecom::client::ClientConfig::for_simulator(sim.base_url()),
        )
        .unwrap();
        let api = wc.app(c.creds.corp_id.clone(), c.creds.app_secret.clone());
        let pairs = api
            .list_all_customers_by_user(api.get_follow_user_list().await.unwrap())
            .await
            .unwrap();
        let ids: std::collections::HashSet<String> = pairs
            .into_iter()
            .map(|p| p.external_contact.external_userid)
            .collect();
        let chats = api.groupchat_list_all(0, None).await.unwrap().len();
        (ids.len() as i64, chats as i64)
    });

    let (code, out, err) = scrm(&["sync", "--type", "full"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sync full (log "), "{out}");
    assert!(out.contains("success: fetched "), "{out}");
    rt.block_on(async {
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM customer WHERE status = 1").await,
            customers
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM group_chat WHERE status <> 4").await,
            chats
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM wework_sync_log WHERE status = 'success' AND trigger_by = 'cli'").await,
            1
        );
    });

    // Nothing changed in WeCom: nothing is written.
    let (code, out, err) = scrm(&["sync", "--type", "customer"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("success: ") && out.contains("created 0, updated 0, deleted 0"),
        "{out}"
    );

    // One remark changed: one customer updated.
    let (ext, userid) = {
        let co = sim.company();
        (0..co.customers.len() as u32)
            .find_map(|i| {
                co.follows_of(i)
                    .find(|(_, f)| {
                        let s = &co.staff[f.staff as usize];
                        s.contact_enabled && s.visible()
                    })
                    .map(|(_, f)| {
                        (
                            co.external_userid(i),
                            co.staff[f.staff as usize].userid.clone(),
                        )
                    })
            })
            .unwrap()
    };
    sim.staff_edits_contact(scrm_wecom_sim::scenarios::EditContact {
        userid,
        external_userid: ext.clone(),
        remark: Some("命令行改的".into()),
        ..Default::default()
    })
    .unwrap();
    let (code, out, err) = scrm(&["sync", "--type", "customer"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created 0, updated 1, deleted 0"), "{out}");
    rt.block_on(async {
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM customer_follow WHERE remark = '命令行改的'"
            )
            .await,
            1
        );
    });

    // The secret revoked in WeCom: the sync fails, says so, exits non-zero and changes nothing.
    sim.update_config(|c| c.creds.app_secret = "rotated-secret".into());
    let (code, out, err) = scrm(&["sync", "--type", "full"], &env);
    assert_ne!(code, 0, "{out}{err}");
    assert!(out.contains("failed: "), "{out}");
    assert!(out.contains("Nothing was changed"), "{out}");
    assert!(!out.contains("rotated-secret") && !err.contains("rotated-secret"));
    rt.block_on(async {
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM customer WHERE status = 1").await,
            customers
        );
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM wework_sync_log WHERE status = 'failed'"
            )
            .await,
            1
        );
    });

    // An unknown type is refused before anything runs.
    let (code, _, err) = scrm(&["sync", "--type", "everything"], &env);
    assert_ne!(code, 0);
    assert!(err.contains("--type must be"), "{err}");
    rt.block_on(sim.shutdown());
    let _ = std::fs::remove_file(db);
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_syncs_its_company_and_a_customer_added_in_wecom_reaches_it() {
    let dir = std::env::temp_dir().join(format!("scrm-cli-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, sim_port) = (free_port(), free_port());
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_scrm"))
            .args([
                "demo",
                "--customers",
                "120",
                "--staff",
                "6",
                "--sim-port",
                &sim_port.to_string(),
            ])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/demo.db", dir.display()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start scrm demo"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let sim = format!("http://127.0.0.1:{sim_port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let wait = || tokio::time::sleep(std::time::Duration::from_millis(100));
        // Up, and the demo's admin can log in with the printed password.
        let token = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the demo did not start"
            );
            let r = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&serde_json::json!({"username": "admin", "password": "scrm-demo-admin"}))
                .send()
                .await;
            if let Ok(r) = r
                && r.status() == 200
            {
                let v: serde_json::Value = r.json().await.unwrap();
                break v["data"]["token"].as_str().unwrap().to_string();
            }
            wait().await;
        };
        let get = |path: String| {
            let http = http.clone();
            let token = token.clone();
            async move {
                let r = http.get(path).bearer_auth(token).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json::<serde_json::Value>().await.unwrap()
            }
        };
        // The full sync the demo queued ends in success, and the customers are there.
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the demo's sync did not finish"
            );
            let logs = get(format!("{base}/api/wework/sync/logs?syncType=full")).await;
            let status = logs["data"]["list"][0]["status"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(status != "failed" && status != "partial", "{logs}");
            if status == "success" {
                break;
            }
            wait().await;
        }
        let customers = get(format!("{base}/api/v1/customers?size=1")).await;
        assert!(
            customers["data"]["total"].as_i64().unwrap() > 50,
            "{customers}"
        );
        // A customer adds a member in WeCom: the callback brings it to scrm.
        let company: serde_json::Value = http
            .get(format!("{sim}/sim/admin/company"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let userid = company["staff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["contact_enabled"] == true && s["status"] == 1)
            .unwrap()["userid"]
            .as_str()
            .unwrap()
            .to_string();
        let r = http
            .post(format!("{sim}/sim/admin/scenario/customer_adds_staff"))
            .json(&serde_json::json!({"userid": userid, "name": "演示新客"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the new customer did not reach scrm"
            );
            let found = get(format!("{base}/api/v1/customers?keyword=演示新客")).await;
            if found["data"]["total"].as_i64() == Some(1) {
                break;
            }
            wait().await;
        }
    });
    drop(_child);
    let _ = std::fs::remove_dir_all(&dir);
}
