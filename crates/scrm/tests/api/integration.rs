//! Integration (seed 003): WeCom configuration (CRUD, masking, tenant isolation, validation,
//! config/test) and callbacks (URL verification, decryption, dedupe, refusals), against the
//! WeCom simulator.

use std::time::{Duration, Instant};

use scrm_wecom::crypto::CallbackCrypto;
use scrm_wecom_sim::{SecretKind, SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A simulator with a small company whose callbacks retry quickly.
pub async fn sim(customers: u32) -> SimHandle {
    let mut c = SimConfig::default();
    c.size.customers = customers;
    c.size.staff = 12;
    c.size.group_chats = 6;
    c.callback.retry_delay_ms = 50;
    c.callback.timeout_ms = 2_000;
    Simulator::start(c).await.expect("simulator")
}

/// The config body that points scrm at the simulator.
pub fn body_for(sim: &SimHandle) -> Value {
    let c = sim.config();
    json!({
        "corpId": c.creds.corp_id,
        "corpSecret": c.creds.app_secret,
        "agentId": c.creds.agent_id,
        "contactsSecret": c.creds.contact_secret,
        "token": c.callback.token,
        "encodingAesKey": c.callback.encoding_aes_key,
        "apiBase": sim.base_url(),
        "enabled": true,
    })
}

/// Configure scrm for the simulator and the simulator's callbacks for scrm; the config id.
pub async fn connect(app: &TestApp, sim: &SimHandle) -> i64 {
    let r = app
        .post("/api/wework/config", &app.admin_token, body_for(sim))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let url = format!("{}/api/wework/callback/{id}", app.base);
    sim.update_config(|c| c.callback.url = Some(url));
    id
}

fn crypto(sim: &SimHandle) -> CallbackCrypto {
    let c = sim.config();
    CallbackCrypto::new(
        c.callback.token.as_str(),
        &c.callback.encoding_aes_key,
        c.creds.corp_id,
    )
    .unwrap()
}

async fn config_is_created_masked_validated_and_tenant_scoped(app: TestApp) {
    let sim = sim(20).await;
    let secret = sim.config().creds.app_secret;
    let mut bad = body_for(&sim);
    bad["encodingAesKey"] = json!("too-short");
    let r = app.post("/api/wework/config", &app.admin_token, bad).await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("encodingAesKey")),
        "{:?}",
        r.body
    );
    let mut bad = body_for(&sim);
    bad.as_object_mut().unwrap().remove("corpSecret");
    assert_eq!(
        app.post("/api/wework/config", &app.admin_token, bad)
            .await
            .status,
        400
    );

    let r = app
        .post("/api/wework/config", &app.admin_token, body_for(&sim))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let text = r.body.to_string();
    assert!(
        !text.contains(&secret) && !text.contains("jWmYm7qr5nMoAUwZ"),
        "secret leaked: {text}"
    );
    assert_eq!(r.data()["corpSecret"], "si***et", "only the ends show");
    assert_eq!(
        r.data()["callbackPath"],
        format!("/api/wework/callback/{id}")
    );
    assert_eq!(
        app.post("/api/wework/config", &app.admin_token, body_for(&sim))
            .await
            .status,
        409
    );

    // At rest: ciphertext only.
    let (stored,): (String,) = app
        .state
        .db
        .fetch_one(
            scrm_db::query("SELECT corp_secret_enc FROM wework_config WHERE id = ?").bind(id),
        )
        .await
        .unwrap();
    assert!(!stored.contains(&secret));

    let got = app.get("/api/wework/config", &app.admin_token).await;
    assert_eq!(got.data()["agentId"], sim.config().creds.agent_id);
    assert!(!got.body.to_string().contains(&secret));

    let up = app
        .put(
            &format!("/api/wework/config/{id}"),
            &app.admin_token,
            json!({"corpSecret": "a-much-longer-new-secret-value", "enabled": false}),
        )
        .await;
    assert_eq!(up.status, 200, "{:?}", up.body);
    assert_eq!(up.data()["corpSecret"], "a-***ue");
    assert_eq!(up.data()["enabled"], false);
    let audit = app
        .get(
            "/api/v1/system/audit-logs?action=wework.config.update",
            &app.admin_token,
        )
        .await;
    assert_eq!(audit.data()["total"], 1);
    assert!(
        !audit.body.to_string().contains("a-much-longer"),
        "audit holds no secret"
    );

    let (_, other) = app.other_tenant_admin("acme", "acme-admin").await;
    assert_eq!(
        app.get("/api/wework/config", &other).await.data(),
        &Value::Null
    );
    assert_eq!(
        app.put(
            &format!("/api/wework/config/{id}"),
            &other,
            json!({"enabled": true})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/wework/config/{id}"), &other)
            .await
            .status,
        404
    );
    let (_, viewer) = app.user_with_role("vic", "viewer").await;
    assert_eq!(app.get("/api/wework/config", &viewer).await.status, 200);
    assert_eq!(
        app.post("/api/wework/config", &viewer, body_for(&sim))
            .await
            .status,
        403
    );

    assert_eq!(
        app.delete(&format!("/api/wework/config/{id}"), &app.admin_token)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get("/api/wework/config", &app.admin_token).await.data(),
        &Value::Null
    );
    sim.shutdown().await;
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

async fn config_test_names_the_errcode_and_what_to_do(app: TestApp) {
    let sim = sim(20).await;
    assert_eq!(
        app.post("/api/wework/config/test", &app.admin_token, json!({}))
            .await
            .error(),
        "WEWORK_CONFIG_NOT_FOUND"
    );
    let mut body = body_for(&sim);
    body["corpSecret"] = json!("wrong-secret");
    let id = app
        .post("/api/wework/config", &app.admin_token, body)
        .await
        .data()["id"]
        .as_i64()
        .unwrap();
    let r = app
        .post("/api/wework/config/test", &app.admin_token, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["ok"], false);
    assert_eq!(check(r.data(), "token")["errcode"], 40001, "{}", r.body);
    assert!(
        check(r.data(), "token")["advice"]
            .as_str()
            .unwrap()
            .contains("secret")
    );

    let good = sim.config().creds.app_secret;
    app.put(
        &format!("/api/wework/config/{id}"),
        &app.admin_token,
        json!({"corpSecret": good}),
    )
    .await;
    let r = app
        .post("/api/wework/config/test", &app.admin_token, json!({}))
        .await;
    assert_eq!(check(r.data(), "token")["ok"], true, "{}", r.body);
    assert_eq!(check(r.data(), "customerContact")["ok"], true, "{}", r.body);
    assert_eq!(check(r.data(), "contacts")["ok"], true, "{}", r.body);
    assert_eq!(
        check(r.data(), "callback")["ok"],
        false,
        "not verified by WeCom yet"
    );
    assert!(
        check(r.data(), "callback")["advice"]
            .as_str()
            .unwrap()
            .contains(&format!("/api/wework/callback/{id}"))
    );

    sim.set_secret_errcode(SecretKind::App, 48002);
    let r = app
        .post("/api/wework/config/test", &app.admin_token, json!({}))
        .await;
    assert_eq!(
        check(r.data(), "customerContact")["errcode"],
        48002,
        "{}",
        r.body
    );
    assert!(
        check(r.data(), "customerContact")["advice"]
            .as_str()
            .unwrap()
            .contains("客户联系")
    );
    sim.set_secret_errcode(SecretKind::App, 60020);
    sim.set_secret_errcode(SecretKind::Contact, 60020);
    let r = app
        .post("/api/wework/config/test", &app.admin_token, json!({}))
        .await;
    assert_eq!(check(r.data(), "contacts")["errcode"], 60020, "{}", r.body);
    assert!(
        check(r.data(), "contacts")["advice"]
            .as_str()
            .unwrap()
            .contains("IP")
    );
    sim.shutdown().await;
}

async fn callbacks_verify_decrypt_dedupe_and_refuse(app: TestApp) {
    let sim = sim(20).await;
    let id = connect(&app, &sim).await;
    let cr = crypto(&sim);
    // URL verification answers the plaintext echostr.
    let echostr = cr.encrypt("1616140317555161061");
    let sig = cr.signature("1409659589", "263014780", &echostr);
    let url = format!("{}/api/wework/callback/{id}", app.base);
    let r = app
        .client
        .get(&url)
        .query(&[
            ("msg_signature", sig.as_str()),
            ("timestamp", "1409659589"),
            ("nonce", "263014780"),
            ("echostr", echostr.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1616140317555161061");
    let r = app
        .client
        .get(&url)
        .query(&[
            ("msg_signature", "0000"),
            ("timestamp", "1"),
            ("nonce", "2"),
            ("echostr", echostr.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // An event delivered twice (WeCom's retry: new nonce, same event) is stored once.
    let xml = "<xml><ToUserName><![CDATA[wwsim00000000000001]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[etX]]></Id><TagType><![CDATA[tag]]></TagType><ChangeType><![CDATA[create]]></ChangeType></xml>";
    for nonce in ["111", "222"] {
        let sealed = cr.seal_callback(xml, "1700000001", nonce, Some("1000002"));
        let r = app
            .client
            .post(format!("{url}?{}", sealed.query()))
            .body(sealed.body_xml)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "success");
    }
    let count = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            db.fetch_i64(scrm_db::query("SELECT COUNT(*) FROM wework_callback_event"))
                .await
                .unwrap()
        }
    };
    assert_eq!(count(&app).await, 1);

    // A bad signature is refused and nothing is stored; so is a DTD.
    let sealed = cr.seal_callback(&xml.replace("etX", "etY"), "1700000002", "333", None);
    let tampered = sealed
        .query()
        .replace(&sealed.msg_signature, &"0".repeat(40));
    let r = app
        .client
        .post(format!("{url}?{tampered}"))
        .body(sealed.body_xml.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let dtd = format!("<!DOCTYPE x [<!ENTITY e \"x\">]>{}", sealed.body_xml);
    let r = app
        .client
        .post(format!("{url}?{}", sealed.query()))
        .body(dtd)
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 403, "{}", r.status());
    let r = app
        .client
        .post(format!("{url}?{}", sealed.query()))
        .body(vec![b'a'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(count(&app).await, 1);

    // The stored event is processed (tags re-synced) and listed (the limit is for a loaded CI
    // machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app
            .get("/api/wework/callback/events", &app.admin_token)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let st = r.data()["list"][0]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if st == "done" {
            assert_eq!(r.data()["list"][0]["event"], "change_external_tag");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "event not processed: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tags = app
        .state
        .db
        .fetch_i64(scrm_db::query(
            "SELECT COUNT(*) FROM tag WHERE wecom_tag_id IS NOT NULL",
        ))
        .await
        .unwrap();
    assert!(tags > 0, "tags re-synced on change_external_tag");
    let ev = app
        .get("/api/wework/callback/events", &app.admin_token)
        .await
        .data()["list"][0]["id"]
        .as_i64()
        .unwrap();
    let r = app
        .post(
            &format!("/api/wework/callback/events/{ev}/replay"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    sim.shutdown().await;
}

/// Entities and DTDs inside a correctly signed and encrypted event (XXE, billion laughs) are
/// refused with 400 and nothing is stored; the very same request replayed — same signature,
/// timestamp, nonce and body — is answered `success` each time and stored once; a forged
/// ciphertext in a well-formed envelope is refused with 403.
async fn callbacks_refuse_entities_inside_the_ciphertext_and_store_a_replay_once(app: TestApp) {
    let sim = sim(20).await;
    let id = connect(&app, &sim).await;
    let cr = crypto(&sim);
    let url = format!("{}/api/wework/callback/{id}", app.base);
    let stored = || {
        let db = app.state.db.clone();
        async move {
            db.fetch_i64(scrm_db::query("SELECT COUNT(*) FROM wework_callback_event"))
                .await
                .unwrap()
        }
    };
    let post =
        |query: String, body: String| app.client.post(format!("{url}?{query}")).body(body).send();
    for (i, evil) in [
        "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><ToUserName><![CDATA[wwsim00000000000001]]></ToUserName><FromUserName>&x;</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_tag]]></Event><Id>etZ</Id><TagType>tag</TagType><ChangeType>create</ChangeType></xml>",
        "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]><xml><ToUserName>&lol2;</ToUserName><MsgType>event</MsgType><Event>change_external_tag</Event></xml>",
    ]
    .iter()
    .enumerate()
    {
        let sealed = cr.seal_callback(evil, "1700000001", &format!("evil{i}"), Some("1000002"));
        let r = post(sealed.query(), sealed.body_xml.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{}", r.text().await.unwrap_or_default());
    }
    assert_eq!(stored().await, 0);

    let xml = "<xml><ToUserName><![CDATA[wwsim00000000000001]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[etR]]></Id><TagType><![CDATA[tag]]></TagType><ChangeType><![CDATA[create]]></ChangeType></xml>";
    let sealed = cr.seal_callback(xml, "1700000005", "replayed", Some("1000002"));
    for _ in 0..3 {
        let r = post(sealed.query(), sealed.body_xml.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "success");
    }
    assert_eq!(stored().await, 1);

    // A ciphertext the attacker made up, signed with a guess: refused before decryption.
    let forged = sealed.body_xml.replace(
        &scrm_wecom::crypto::parse_envelope(&sealed.body_xml)
            .unwrap()
            .encrypt,
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
    );
    let r = post(sealed.query(), forged).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(stored().await, 1);
    sim.shutdown().await;
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    callbacks_refuse_entities_inside_the_ciphertext_and_store_a_replay_once,
    config_is_created_masked_validated_and_tenant_scoped,
    config_test_names_the_errcode_and_what_to_do,
    callbacks_verify_decrypt_dedupe_and_refuse,
);
