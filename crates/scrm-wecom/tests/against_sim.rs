//! The client against the WeCom simulator (crates/scrm-wecom-sim): every endpoint, the
//! pagination helpers, and a full read of a 10,000-customer company under 20% faults with
//! tokens expiring mid-run.

use std::collections::HashSet;
use std::time::Duration;

use scrm_wecom::client::{
    AddCorpTagRequest, AppClient, AppMessage, AppMessageContent, Attachment, ClientConfig,
    ContactWay, DelCorpTagRequest, EditCorpTagRequest, GetCorpTagListRequest,
    GroupChatTransferRequest, GroupMsgListRequest, LinkAttachment, MarkTagRequest, MediaFile,
    MediaType, MsgTemplate, NewTag, OwnerFilter, RetryConfig, Text, TransferCustomerRequest,
    WeComClient, WelcomeMsg,
};
use scrm_wecom_sim::scenarios::AddContact;
use scrm_wecom_sim::{SimConfig, SimHandle, Simulator};

async fn sim_with(customers: u32, f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig::default();
    config.size.customers = customers;
    f(&mut config);
    Simulator::start(config).await.unwrap()
}

fn client(sim: &SimHandle) -> WeComClient {
    WeComClient::in_memory(ClientConfig::for_simulator(sim.base_url())).unwrap()
}

fn app(sim: &SimHandle, client: &WeComClient) -> AppClient {
    let creds = sim.config().creds;
    client.app(creds.corp_id, creds.app_secret)
}

/// A member with 客户联系 enabled who has at least `n` customers.
fn member_with_customers(sim: &SimHandle, n: usize) -> String {
    let company = sim.company();
    company
        .staff
        .iter()
        .find(|s| s.status == 1 && s.contact_enabled && s.customers.len() >= n)
        .map(|s| s.userid.clone())
        .expect("a member with customers")
}

#[tokio::test]
async fn contacts_endpoints() {
    let sim = sim_with(200, |_| {}).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let departments = app.department_list(None).await.unwrap();
    assert_eq!(departments.len(), sim.company().departments.len());
    assert!(departments.iter().any(|d| d.id == 1));
    let users = app.user_list(1, true).await.unwrap();
    assert!(!users.is_empty());
    let user = app.user_get(&users[0].userid).await.unwrap();
    assert_eq!(user.userid, users[0].userid);
    assert_eq!(
        app.user_get("nobody-here").await.unwrap_err().errcode(),
        Some(60111)
    );

    // user/list_id needs the 通讯录同步 secret.
    assert_eq!(
        app.user_list_id("", 10).await.unwrap_err().errcode(),
        Some(48002)
    );
    let creds = sim.config().creds;
    let contacts = client.app(creds.corp_id, creds.contact_secret);
    let rows = contacts.user_list_id_all().await.unwrap();
    let ids: HashSet<_> = rows.iter().map(|r| r.userid.as_str()).collect();
    assert!(ids.contains(users[0].userid.as_str()));
    let first = contacts.user_list_id("", 5).await.unwrap();
    assert_eq!(first.dept_user.len(), 5);
    assert!(!first.next_cursor.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn customer_endpoints_and_pagination() {
    let sim = sim_with(500, |_| {}).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let followers = app.get_follow_user_list().await.unwrap();
    assert!(!followers.is_empty());
    let member = member_with_customers(&sim, 2);
    let customers = app.list_customers(&member).await.unwrap();
    assert_eq!(
        customers.len(),
        sim.company()
            .staff
            .iter()
            .find(|s| s.userid == member)
            .unwrap()
            .customers
            .len()
    );
    let detail = app
        .get_customer_all_follow_users(&customers[0])
        .await
        .unwrap();
    assert_eq!(detail.external_contact.external_userid, customers[0]);
    assert!(detail.follow_user.iter().any(|f| f.userid == member));

    let page = app
        .batch_get_by_user(std::slice::from_ref(&member), "", 1)
        .await
        .unwrap();
    assert_eq!(page.external_contact_list.len(), 1);
    assert!(!page.next_cursor.is_empty());
    let all = app
        .list_all_customers_by_user(vec![member.clone()])
        .await
        .unwrap();
    assert_eq!(all.len(), customers.len());
    let listed: HashSet<_> = all
        .iter()
        .map(|c| c.external_contact.external_userid.clone())
        .collect();
    assert_eq!(listed, customers.iter().cloned().collect());
    sim.shutdown().await;
}

#[tokio::test]
async fn tag_endpoints() {
    let sim = sim_with(100, |_| {}).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let groups = app
        .get_corp_tag_list(&GetCorpTagListRequest::default())
        .await
        .unwrap();
    assert_eq!(groups.len(), sim.company().tag_groups.len());
    let created = app
        .add_corp_tag(&AddCorpTagRequest {
            group_name: Some("测试组".into()),
            tag: vec![
                NewTag {
                    name: "VIP".into(),
                    order: Some(1),
                },
                NewTag {
                    name: "潜在".into(),
                    order: None,
                },
            ],
            ..AddCorpTagRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(created.tag.len(), 2);
    let tag_id = created.tag[0].id.clone();
    app.edit_corp_tag(&EditCorpTagRequest {
        id: tag_id.clone(),
        name: Some("VVIP".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let fetched = app
        .get_corp_tag_list(&GetCorpTagListRequest {
            tag_id: vec![tag_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fetched[0].tag[0].name, "VVIP");

    let member = member_with_customers(&sim, 1);
    let customer = app.list_customers(&member).await.unwrap()[0].clone();
    let mark = MarkTagRequest {
        userid: member.clone(),
        external_userid: customer.clone(),
        add_tag: vec![tag_id.clone()],
        ..Default::default()
    };
    app.mark_tag(&mark).await.unwrap();
    let detail = app.get_customer(&customer, "").await.unwrap();
    let follow = detail
        .follow_user
        .iter()
        .find(|f| f.userid == member)
        .unwrap();
    assert!(
        follow
            .tags
            .iter()
            .any(|t| t.tag_id.as_deref() == Some(tag_id.as_str()))
    );
    app.del_corp_tag(&DelCorpTagRequest {
        group_id: vec![created.group_id.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        app.edit_corp_tag(&EditCorpTagRequest {
            id: tag_id,
            name: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .errcode(),
        Some(40068)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn group_chat_endpoints() {
    let sim = sim_with(200, |c| c.size.group_chats = 25).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let chats = app.groupchat_list_all(0, None).await.unwrap();
    assert_eq!(chats.len(), 25);
    let page = app
        .groupchat_list(&scrm_wecom::client::GroupChatListRequest {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.group_chat_list.len(), 10);
    let chat = app.groupchat_get(&chats[0].chat_id, true).await.unwrap();
    assert_eq!(chat.chat_id, chats[0].chat_id);
    assert!(!chat.member_list.is_empty() && !chat.member_version.is_empty());

    // The owner leaves; their chats are transferred (离职继承).
    let owner = chat.owner.clone();
    sim.staff_resigns(&owner).unwrap();
    let orphaned = app
        .groupchat_list_all(
            1,
            Some(OwnerFilter {
                userid_list: vec![owner.clone()],
            }),
        )
        .await
        .unwrap();
    assert!(!orphaned.is_empty());
    let new_owner = member_with_customers(&sim, 0);
    let failed = app
        .groupchat_transfer(&GroupChatTransferRequest {
            chat_id_list: orphaned.iter().map(|c| c.chat_id.clone()).collect(),
            new_owner: new_owner.clone(),
        })
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    // An in-service transfer of a chat whose owner has not left.
    let other = app
        .groupchat_list_all(0, None)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.status == 0)
        .unwrap();
    let failed = app
        .groupchat_onjob_transfer(&GroupChatTransferRequest {
            chat_id_list: vec![other.chat_id.clone()],
            new_owner,
        })
        .await
        .unwrap();
    assert!(failed.iter().all(|f| f.errcode != 0) || failed.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn mass_send_endpoints() {
    let sim = sim_with(200, |_| {}).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let member = member_with_customers(&sim, 2);
    let customers = app.list_customers(&member).await.unwrap();
    let template = MsgTemplate {
        chat_type: "single".into(),
        external_userid: customers.clone(),
        sender: member.clone(),
        text: Some(Text {
            content: "双十一快乐".into(),
        }),
        attachments: vec![Attachment::Link {
            link: LinkAttachment {
                title: "活动".into(),
                url: "https://example.com".into(),
                ..Default::default()
            },
        }],
        ..MsgTemplate::default()
    };
    let created = app.add_msg_template(&template).await.unwrap();
    assert!(!created.msgid.is_empty());
    let now = sim.now();
    let listed = app
        .get_groupmsg_list_v2_all(&GroupMsgListRequest {
            chat_type: "single".into(),
            start_time: now - 3600,
            end_time: now + 60,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.iter().any(|m| m.msgid == created.msgid));
    let tasks = app.get_groupmsg_task_all(&created.msgid).await.unwrap();
    assert!(tasks.iter().any(|t| t.userid == member));
    let results = app
        .get_groupmsg_send_result_all(&created.msgid, &member)
        .await
        .unwrap();
    assert_eq!(results.len(), customers.len());
    app.remind_groupmsg_send(&created.msgid).await.unwrap();
    app.cancel_groupmsg_send(&created.msgid).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn welcome_and_app_messages_and_media() {
    let sim = sim_with(100, |_| {}).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let member = member_with_customers(&sim, 0);
    let added = sim
        .customer_adds_staff(AddContact {
            userid: member.clone(),
            ..Default::default()
        })
        .unwrap();
    let welcome = WelcomeMsg {
        welcome_code: added.welcome_code.clone().unwrap(),
        text: Some(Text {
            content: "欢迎".into(),
        }),
        attachments: vec![],
    };
    app.send_welcome_msg(&welcome).await.unwrap();
    assert_eq!(
        app.send_welcome_msg(&welcome).await.unwrap_err().errcode(),
        Some(41051)
    );

    let agent_id = sim.config().creds.agent_id;
    let message = AppMessage {
        touser: member.clone(),
        toparty: String::new(),
        totag: String::new(),
        agentid: agent_id,
        content: AppMessageContent::Text {
            text: Text {
                content: "你好".into(),
            },
        },
        safe: None,
        enable_id_trans: None,
        enable_duplicate_check: None,
        duplicate_check_interval: None,
    };
    app.message_send(&message).await.unwrap();
    let wrong_agent = AppMessage {
        agentid: agent_id + 1,
        ..message
    };
    assert_eq!(
        app.message_send(&wrong_agent).await.unwrap_err().errcode(),
        Some(301002)
    );

    let png = MediaFile {
        filename: "a.png".into(),
        content_type: "image/png".into(),
        bytes: vec![0x89, b'P', b'N', b'G', 0, 0, 0, 0, 1, 2],
    };
    let uploaded = app
        .upload_media(MediaType::Image, png.clone())
        .await
        .unwrap();
    assert!(!uploaded.media_id.is_empty() && uploaded.created_at > 0);
    let attached = app
        .upload_attachment(MediaType::Image, 1, png)
        .await
        .unwrap();
    assert!(!attached.media_id.is_empty() && attached.created_at > 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn transfer_endpoints() {
    let sim = sim_with(300, |_| {}).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let followers = app.get_follow_user_list().await.unwrap();
    let handover = member_with_customers(&sim, 3);
    let takeover = followers.iter().find(|u| **u != handover).unwrap().clone();
    let customers: Vec<String> = app
        .list_customers(&handover)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            !sim.company().staff.iter().any(|s| {
                s.userid == takeover
                    && s.customers
                        .iter()
                        .any(|&i| sim.company().external_userid(i) == *c)
            })
        })
        .take(2)
        .collect();
    let request = TransferCustomerRequest {
        handover_userid: handover.clone(),
        takeover_userid: takeover.clone(),
        external_userid: customers.clone(),
        transfer_success_msg: Some("您好".into()),
    };
    let started = app.transfer_customer(&request).await.unwrap();
    assert!(started.iter().all(|c| c.errcode == 0), "{started:?}");
    let statuses = app.transfer_result_all(&handover, &takeover).await.unwrap();
    assert_eq!(statuses.len(), customers.len());
    assert!(statuses.iter().all(|s| s.status == 2));

    // 离职继承.
    let leaver = followers
        .iter()
        .find(|u| **u != handover && **u != takeover && app_has_customers(&sim, u))
        .unwrap()
        .clone();
    sim.staff_resigns(&leaver).unwrap();
    let unassigned = app.get_unassigned_list_all().await.unwrap();
    let mine: Vec<String> = unassigned
        .iter()
        .filter(|u| u.handover_userid == leaver)
        .map(|u| u.external_userid.clone())
        .take(3)
        .collect();
    assert!(!mine.is_empty());
    let resigned = TransferCustomerRequest {
        handover_userid: leaver.clone(),
        takeover_userid: takeover.clone(),
        external_userid: mine.clone(),
        transfer_success_msg: None,
    };
    let started = app.resigned_transfer_customer(&resigned).await.unwrap();
    assert_eq!(started.len(), mine.len());
    let statuses = app
        .resigned_transfer_result_all(&leaver, &takeover)
        .await
        .unwrap();
    assert!(!statuses.is_empty());
    let one = app
        .resigned_transfer_result(&leaver, &takeover, "")
        .await
        .unwrap();
    assert!(!one.customer.is_empty());
    sim.shutdown().await;
}

fn app_has_customers(sim: &SimHandle, userid: &str) -> bool {
    sim.company()
        .staff
        .iter()
        .any(|s| s.userid == userid && !s.customers.is_empty())
}

#[tokio::test]
async fn contact_way_endpoints() {
    let sim = sim_with(50, |_| {}).await;
    let client = client(&sim);
    let app = app(&sim, &client);
    let member = member_with_customers(&sim, 0);
    let way = ContactWay {
        kind: 1,
        scene: 2,
        state: "campaign-42".into(),
        user: vec![member],
        remark: "门店".into(),
        ..Default::default()
    };
    let added = app.add_contact_way(&way).await.unwrap();
    assert!(!added.config_id.is_empty());
    let fetched = app.get_contact_way(&added.config_id).await.unwrap();
    assert_eq!((fetched.state.as_str(), fetched.scene), ("campaign-42", 2));
    app.update_contact_way(&ContactWay {
        config_id: added.config_id.clone(),
        remark: "新门店".into(),
        ..fetched
    })
    .await
    .unwrap();
    assert_eq!(
        app.get_contact_way(&added.config_id).await.unwrap().remark,
        "新门店"
    );
    app.del_contact_way(&added.config_id).await.unwrap();
    assert!(app.get_contact_way(&added.config_id).await.is_err());
    sim.shutdown().await;
}

/// Generous retry budgets: at a 20% fault rate, ten faults in a row are a 1-in-10^7 event.
fn stubborn(sim: &SimHandle) -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(5),
        retry: RetryConfig {
            busy_max_attempts: 10,
            freq_limit_max_retries: 10,
            concurrent_limit_max_retries: 10,
            transport_max_attempts: 10,
            ..RetryConfig::fast()
        },
        ..ClientConfig::for_simulator(sim.base_url())
    }
}

#[tokio::test]
async fn a_full_read_of_ten_thousand_customers_survives_twenty_percent_faults() {
    let sim = sim_with(10_000, |c| {
        c.size.staff = 60;
        c.creds.token_lifetime_secs = 2;
        c.faults.busy = 0.06;
        c.faults.freq_limit = 0.04;
        c.faults.concurrent_limit = 0.04;
        c.faults.http_500 = 0.03;
        c.faults.drop_connection = 0.03;
    })
    .await;
    let client = WeComClient::in_memory(stubborn(&sim)).unwrap();
    let app = app(&sim, &client);
    let followers = retry(|| app.get_follow_user_list()).await;
    // Only customers of members in the follow list are reachable through batch/get_by_user.
    let (expected_pairs, expected_customers) = {
        let company = sim.company();
        let mut pairs = 0usize;
        let mut customers = HashSet::new();
        for staff in company
            .staff
            .iter()
            .filter(|s| followers.contains(&s.userid))
        {
            pairs += staff.customers.len();
            customers.extend(staff.customers.iter().copied());
        }
        (pairs, customers.len())
    };
    assert!(expected_customers > 9_000, "{expected_customers}");

    let mut pages = app.customers_by_user_pages(followers.clone());
    let mut pairs = HashSet::new();
    let mut customers = HashSet::new();
    let mut n = 0;
    use futures::StreamExt;
    while let Some(page) = pages.next().await {
        for row in page.unwrap() {
            pairs.insert((
                row.external_contact.external_userid.clone(),
                row.follow_info.userid.clone(),
            ));
            customers.insert(row.external_contact.external_userid);
        }
        n += 1;
        if n == 40 {
            // WeCom invalidates tokens early sometimes; the read must carry on.
            sim.expire_tokens();
        }
    }
    assert_eq!(
        pairs.len(),
        expected_pairs,
        "every (customer, member) pair exactly once"
    );
    assert_eq!(customers.len(), expected_customers);
    // A token was fetched again after the mid-run invalidation.
    assert!(
        sim.call_counts()
            .get("/cgi-bin/gettoken")
            .copied()
            .unwrap_or(0)
            >= 2
    );
    let calls = sim.call_counts();
    assert!(
        calls.values().sum::<u64>() > n as u64,
        "faults forced retries: {calls:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn early_token_invalidation_is_survived_with_one_retry() {
    let sim = sim_with(300, |c| c.faults.token_expired = 0.2).await;
    let client = WeComClient::in_memory(stubborn(&sim)).unwrap();
    let app = app(&sim, &client);
    let followers = retry(|| app.get_follow_user_list()).await;
    // 42001 on a valid token twice in a row fails a call by design (refresh-and-retry once);
    // a sync job retries the page, which is what this loop does.
    let mut total = 0;
    for userid in followers.iter().take(10) {
        total += retry(|| app.list_customers(userid)).await.len();
    }
    assert!(total > 0);
    sim.shutdown().await;
}

async fn retry<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, scrm_wecom::WeComError>>,
{
    for _ in 0..5 {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() || e.is_token_invalid() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    f().await.unwrap()
}
