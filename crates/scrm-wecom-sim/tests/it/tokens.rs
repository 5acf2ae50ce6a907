use serde_json::json;

use crate::helpers::*;
use scrm_wecom_sim::SecretKind;

#[tokio::test]
async fn gettoken_returns_the_same_token_while_it_is_valid() {
    let t = T::start().await;
    let again = t.token_for(&t.sim.config().creds.app_secret).await;
    assert_eq!(again, t.token);
    assert!(t.token.len() <= 512);
}

#[tokio::test]
async fn gettoken_rejects_bad_credentials_with_wecom_codes() {
    let t = T::start().await;
    let corp = t.sim.config().creds.corp_id;
    let v = t
        .raw_get(
            "/cgi-bin/gettoken",
            &[("corpid", &corp), ("corpsecret", "nope")],
        )
        .await;
    assert_eq!(v["errcode"], 40001);
    assert!(
        v["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("invalid credential")
    );
    let v = t
        .raw_get(
            "/cgi-bin/gettoken",
            &[("corpid", "wwother"), ("corpsecret", "nope")],
        )
        .await;
    assert_eq!(v["errcode"], 40013);
    let v = t.raw_get("/cgi-bin/gettoken", &[("corpid", &corp)]).await;
    assert_eq!(v["errcode"], 41004);
}

#[tokio::test]
async fn missing_and_fake_tokens_are_41001_and_40014_with_list_fields() {
    let t = T::start().await;
    let v = t
        .raw_get("/cgi-bin/externalcontact/get_follow_user_list", &[])
        .await;
    assert_eq!(v["errcode"], 41001);
    let v = t
        .raw_get(
            "/cgi-bin/externalcontact/get_follow_user_list",
            &[("access_token", "fake")],
        )
        .await;
    assert_eq!(v["errcode"], 40014);
    assert_eq!(v["follow_user"], json!([]));
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let mut cfg = cfg();
    cfg.creds.token_lifetime_secs = 1;
    let t = T::with(cfg).await;
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        42001
    );
    let fresh = t.token_for(&t.sim.config().creds.app_secret).await;
    assert_ne!(fresh, t.token);
}

#[tokio::test]
async fn admin_can_expire_tokens_and_move_the_clock() {
    let t = T::start().await;
    t.admin_post("/sim/admin/tokens/expire", json!({})).await;
    assert_eq!(
        t.get("/cgi-bin/user/get", &[("userid", "x")]).await["errcode"],
        42001
    );
    let t = T::start().await;
    t.sim.advance_clock(7200);
    assert_eq!(
        t.get("/cgi-bin/user/get", &[("userid", "x")]).await["errcode"],
        42001
    );
}

#[tokio::test]
async fn a_revoked_secret_fails_gettoken_and_kills_its_tokens() {
    let t = T::start().await;
    let v = t
        .admin_post(
            "/sim/admin/secrets",
            json!({"secret": "app", "revoked": true}),
        )
        .await;
    assert_eq!(v["ok"], true);
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        40014
    );
    let corp = t.sim.config().creds.corp_id;
    let secret = t.sim.config().creds.app_secret;
    let v = t
        .raw_get(
            "/cgi-bin/gettoken",
            &[("corpid", &corp), ("corpsecret", &secret)],
        )
        .await;
    assert_eq!(v["errcode"], 40001);
    t.sim.set_secret_revoked(SecretKind::App, false);
    assert_ne!(t.token_for(&secret).await, t.token);
}

#[tokio::test]
async fn forced_secret_errors_answer_every_call() {
    let t = T::start().await;
    t.sim.set_secret_errcode(SecretKind::App, 60020);
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        60020
    );
    t.admin_post(
        "/sim/admin/secrets",
        json!({"secret": "app", "errcode": 48002}),
    )
    .await;
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        48002
    );
    t.sim.set_secret_errcode(SecretKind::App, 0);
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        0
    );
}

#[tokio::test]
async fn each_secret_only_reaches_its_own_apis() {
    let t = T::start().await;
    let contact = t.token_for(&t.sim.config().creds.contact_secret).await;
    let v = t
        .raw_get(
            "/cgi-bin/externalcontact/get_follow_user_list",
            &[("access_token", &contact)],
        )
        .await;
    assert_eq!(v["errcode"], 48002);
    let v = t.post("/cgi-bin/user/list_id", json!({})).await;
    assert_eq!(v["errcode"], 48002);
    let v = t
        .post_with(&contact, "/cgi-bin/user/list_id", json!({}))
        .await;
    assert_eq!(v["errcode"], 0);
}

#[tokio::test]
async fn the_wrong_http_method_is_40058() {
    let t = T::start().await;
    let v = t
        .get("/cgi-bin/externalcontact/batch/get_by_user", &[])
        .await;
    assert_eq!(v["errcode"], 40058);
    assert_eq!(v["external_contact_list"], json!([]));
}
