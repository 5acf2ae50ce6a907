use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use parking_lot::Mutex;
use scrm_wecom::crypto::CallbackCrypto;
use scrm_wecom::events::{ChatChange, Event, ExternalContactChange, parse_event};
use scrm_wecom_sim::callbacks::CallbackStatus;
use scrm_wecom_sim::scenarios::{AddContact, ConsoleAddTags, JoinGroup, Pair};
use serde_json::json;

use crate::helpers::*;

/// A tiny receiver: verifies and decrypts with the client crate's crypto, answers with the
/// scripted statuses (then 200).
#[derive(Clone)]
struct Receiver {
    crypto: Arc<CallbackCrypto>,
    got: Arc<Mutex<Vec<String>>>,
    failures_left: Arc<AtomicUsize>,
}

async fn receive(
    State(r): State<Receiver>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> StatusCode {
    if r.failures_left.load(Ordering::SeqCst) > 0 {
        r.failures_left.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    match r
        .crypto
        .decrypt_message(&q["msg_signature"], &q["timestamp"], &q["nonce"], &body)
    {
        Ok(xml) => {
            r.got.lock().push(xml);
            StatusCode::OK
        }
        Err(_) => StatusCode::FORBIDDEN,
    }
}

async fn receiver(failures: usize) -> (String, Receiver) {
    let cfg = cfg();
    let crypto = CallbackCrypto::new(
        cfg.callback.token.clone(),
        &cfg.callback.encoding_aes_key,
        cfg.creds.corp_id.clone(),
    )
    .unwrap();
    let r = Receiver {
        crypto: Arc::new(crypto),
        got: Arc::default(),
        failures_left: Arc::new(AtomicUsize::new(failures)),
    };
    let app = axum::Router::new()
        .route("/cb", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, r)
}

#[tokio::test]
async fn a_scenario_sends_a_callback_the_client_crypto_verifies_and_decrypts() {
    let (url, rx) = receiver(0).await;
    let mut cfg = cfg();
    cfg.callback.url = Some(url);
    let t = T::with(cfg).await;
    let uid = t.staff_with(0);
    let added = t
        .sim
        .customer_adds_staff(AddContact {
            userid: uid.clone(),
            state: Some("qr_a".into()),
            ..Default::default()
        })
        .unwrap();
    t.sim.flush_callbacks().await;
    let got = rx.got.lock().clone();
    assert_eq!(got.len(), 1);
    let ev = parse_event(&got[0]).unwrap();
    assert_eq!(ev.to_user_name, t.sim.config().creds.corp_id);
    assert_eq!(ev.from_user_name, "sys");
    match ev.event {
        Event::ExternalContact(e) => {
            assert_eq!(e.change, ExternalContactChange::Add);
            assert_eq!(e.user_id, uid);
            assert_eq!(e.external_user_id, added.external_userid);
            assert_eq!(e.state.as_deref(), Some("qr_a"));
            assert_eq!(e.welcome_code, added.welcome_code);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.sim.callbacks()[0].status, CallbackStatus::Delivered);
}

#[tokio::test]
async fn failed_deliveries_are_retried_like_wecom() {
    let (url, rx) = receiver(2).await;
    let mut cfg = cfg();
    cfg.callback.url = Some(url);
    let t = T::with(cfg).await;
    let chat = t.sim.company().chat_id(0);
    t.sim
        .member_joins_group(JoinGroup {
            chat_id: chat.clone(),
            member: None,
            join_scene: 3,
        })
        .unwrap();
    t.sim.flush_callbacks().await;
    let rec = &t.sim.callbacks()[0];
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.status, CallbackStatus::Delivered);
    let ev = parse_event(&rx.got.lock()[0]).unwrap();
    match ev.event {
        Event::ExternalChat(e) => {
            assert_eq!(e.chat_id, chat);
            match e.change {
                ChatChange::Update(u) => {
                    assert_eq!(u.join_scene, Some(3));
                    assert_eq!(u.mem_change_list.len(), 1);
                    let g = t
                        .post(
                            "/cgi-bin/externalcontact/groupchat/get",
                            json!({"chat_id": chat}),
                        )
                        .await;
                    assert_eq!(
                        u.cur_mem_ver.as_deref(),
                        g["group_chat"]["member_version"].as_str()
                    );
                    assert_ne!(u.last_mem_ver, u.cur_mem_ver);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_200_exhausts_the_retries() {
    let (url, _rx) = receiver(100).await;
    let mut cfg = cfg();
    cfg.callback.url = Some(url);
    let t = T::with(cfg).await;
    let uid = t.staff_with(1);
    let ext = t.customers_of(&uid)[0].clone();
    t.sim
        .staff_deletes_customer(Pair {
            userid: uid,
            external_userid: ext,
        })
        .unwrap();
    t.sim.flush_callbacks().await;
    let rec = &t.sim.callbacks()[0];
    assert_eq!(rec.status, CallbackStatus::Failed);
    assert_eq!(rec.attempts, 4, "first attempt plus 3 retries");
}

#[tokio::test]
async fn admin_scenario_routes_emit_events_and_api_calls_do_not() {
    let t = T::start().await;
    let uid = t.staff_with(0);
    let r = t
        .admin_post(
            "/sim/admin/scenario/customer_adds_staff",
            json!({"userid": uid, "name": "张三😀"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let ext = r["result"]["external_userid"].as_str().unwrap().to_string();
    let g = t
        .get("/cgi-bin/externalcontact/get", &[("external_userid", &ext)])
        .await;
    assert_eq!(g["external_contact"]["name"], "张三😀");
    assert_eq!(g["follow_user"][0]["oper_userid"], ext.as_str());
    let r = t
        .admin_post(
            "/sim/admin/scenario/staff_edits_contact",
            json!({"userid": uid, "external_userid": ext, "remark": "备注"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let ids = t
        .sim
        .console_add_tags(ConsoleAddTags {
            group_name: Some("新组".into()),
            tags: vec!["a".into(), "b".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids.len(), 2);
    let r = t
        .admin_post(
            "/sim/admin/scenario/group_created",
            json!({"owner": uid, "name": "新群", "members": [ext]}),
        )
        .await;
    let chat = r["result"].as_str().unwrap().to_string();
    t.admin_post(
        "/sim/admin/scenario/group_renamed",
        json!({"chat_id": chat, "name": "改名"}),
    )
    .await;
    t.admin_post(
        "/sim/admin/scenario/group_dismissed",
        json!({"chat_id": chat}),
    )
    .await;
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/groupchat/get",
            json!({"chat_id": chat})
        )
        .await["errcode"],
        40050
    );
    let kinds: Vec<String> = t
        .sim
        .callbacks()
        .iter()
        .map(|c| {
            let v = serde_json::to_value(&c.event).unwrap();
            format!(
                "{}/{}",
                v["event"].as_str().unwrap(),
                v["change_type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "change_external_contact/add_external_contact",
            "change_external_contact/edit_external_contact",
            "change_external_tag/create",
            "change_external_tag/create",
            "change_external_tag/create",
            "change_external_chat/create",
            "change_external_chat/update",
            "change_external_chat/dismiss",
        ]
    );
    assert!(
        t.sim
            .callbacks()
            .iter()
            .all(|c| c.status != CallbackStatus::Delivered)
    );
    // An API-made tag change emits nothing.
    t.post(
        "/cgi-bin/externalcontact/add_corp_tag",
        json!({"group_name": "API组", "tag": [{"name": "x"}]}),
    )
    .await;
    assert_eq!(t.sim.callbacks().len(), 8);
    let via_http: serde_json::Value = t
        .http
        .get(t.url("/sim/admin/callbacks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_http.as_array().unwrap().len(), 8);
}
