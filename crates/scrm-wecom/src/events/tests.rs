//! The API-FACTS §12 examples verbatim, tolerance cases, and parse(render(e)) == e.

use super::*;
use proptest::prelude::*;

const CONTACT_DOC: &str = "<xml>
\t<ToUserName><![CDATA[toUser]]></ToUserName>
\t<FromUserName><![CDATA[sys]]></FromUserName>
\t<CreateTime>1403610513</CreateTime>
\t<MsgType><![CDATA[event]]></MsgType>
\t<Event><![CDATA[change_external_contact]]></Event>
\t<ChangeType><![CDATA[add_external_contact]]></ChangeType>
\t<UserID><![CDATA[zhangsan]]></UserID>
\t<ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mAAAA]]></ExternalUserID>
\t<State><![CDATA[teststate]]></State>
\t<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>
</xml>";

const CHAT_DOC: &str = "<xml>
\t<ToUserName><![CDATA[toUser]]></ToUserName>
\t<FromUserName><![CDATA[sys]]></FromUserName>
\t<CreateTime>1403610513</CreateTime>
\t<MsgType><![CDATA[event]]></MsgType>
\t<Event><![CDATA[change_external_chat]]></Event>
\t<ChatId><![CDATA[wrx7HUARsKwGRaQBVKPBTcEyzdHA4HrQ]]></ChatId>
\t<ChangeType><![CDATA[update]]></ChangeType>
\t<UpdateDetail><![CDATA[add_member]]></UpdateDetail>
\t<JoinScene>1</JoinScene>
\t<QuitScene>0</QuitScene>
\t<MemChangeCnt>10</MemChangeCnt>
\t<MemChangeList>
\t\t<Item>Jack</Item>
\t\t<Item>Rose</Item>
\t</MemChangeList>
\t<LastMemVer>9c3f97c2ada667dfb5f6d03308d963e1</LastMemVer>
\t<CurMemVer>71217227bbd112ecfe3a49c482195cb4</CurMemVer>
</xml>";

const TAG_DOC: &str = "<xml>
\t<ToUserName><![CDATA[CORPID]]></ToUserName>
\t<FromUserName><![CDATA[sys]]></FromUserName>
\t<CreateTime>1403610513</CreateTime>
\t<MsgType><![CDATA[event]]></MsgType>
\t<Event><![CDATA[change_external_tag]]></Event>
\t<Id><![CDATA[TAG_ID]]></Id>
\t<TagType><![CDATA[tag]]></TagType>
\t<ChangeType><![CDATA[create]]></ChangeType>
\t<StrategyId>1</StrategyId>
</xml>";

const TAG_CAPTURED: &str = "<xml><ToUserName><![CDATA[ww80b28d2f0a5db223]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1626751398</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_tag]]></Event><ChangeType><![CDATA[create]]></ChangeType><Id><![CDATA[etjmgTCQAAYIEtCEn30FEiMU9jH_HaaA]]></Id><TagType><![CDATA[tag]]></TagType></xml>";

fn header(body: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>{body}</xml>"
    )
}

#[test]
fn doc_add_external_contact_parses() {
    let parsed = parse_event(CONTACT_DOC).unwrap();
    assert_eq!(parsed.to_user_name, "toUser");
    assert_eq!(parsed.from_user_name, "sys");
    assert_eq!(parsed.create_time, 1403610513);
    assert_eq!(
        parsed.event,
        Event::ExternalContact(ExternalContactEvent {
            change: ExternalContactChange::Add,
            user_id: "zhangsan".into(),
            external_user_id: "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA".into(),
            state: Some("teststate".into()),
            welcome_code: Some("WELCOMECODE".into()),
            source: None,
            fail_reason: None,
        })
    );
    assert_eq!(parse_event(&parsed.to_xml()).unwrap(), parsed);
}

#[test]
fn every_contact_change_type_parses() {
    for change in ExternalContactChange::ALL {
        let xml = header(&format!(
            "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[{}]]></ChangeType><UserID><![CDATA[u]]></UserID><ExternalUserID><![CDATA[wm1]]></ExternalUserID>",
            change.as_str()
        ));
        let Event::ExternalContact(e) = parse_event(&xml).unwrap().event else {
            panic!("{xml}")
        };
        assert_eq!(e.change, change);
    }
}

#[test]
fn transfer_fail_with_fail_reason_first_and_del_with_source() {
    let xml = header(
        "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[transfer_fail]]></ChangeType><FailReason><![CDATA[customer_refused]]></FailReason><UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA]]></ExternalUserID>",
    );
    let Event::ExternalContact(e) = parse_event(&xml).unwrap().event else {
        panic!()
    };
    assert_eq!(e.fail_reason.as_deref(), Some("customer_refused"));
    let xml = header(
        "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[del_external_contact]]></ChangeType><UserID><![CDATA[a]]></UserID><ExternalUserID><![CDATA[b]]></ExternalUserID><Source><![CDATA[DELETE_BY_TRANSFER]]></Source>",
    );
    let Event::ExternalContact(e) = parse_event(&xml).unwrap().event else {
        panic!()
    };
    assert_eq!(e.source.as_deref(), Some("DELETE_BY_TRANSFER"));
}

#[test]
fn doc_chat_update_parses() {
    let parsed = parse_event(CHAT_DOC).unwrap();
    let expected = Event::ExternalChat(ExternalChatEvent {
        chat_id: "wrx7HUARsKwGRaQBVKPBTcEyzdHA4HrQ".into(),
        change: ChatChange::Update(ChatUpdate {
            detail: ChatUpdateDetail::AddMember,
            join_scene: Some(1),
            quit_scene: Some(0),
            mem_change_cnt: Some(10),
            mem_change_list: vec!["Jack".into(), "Rose".into()],
            last_mem_ver: Some("9c3f97c2ada667dfb5f6d03308d963e1".into()),
            cur_mem_ver: Some("71217227bbd112ecfe3a49c482195cb4".into()),
        }),
    });
    assert_eq!(parsed.event, expected);
    assert_eq!(parse_event(&parsed.to_xml()).unwrap(), parsed);
}

#[test]
fn captured_change_name_without_quit_scene_or_list_parses() {
    let xml = header(
        "<Event><![CDATA[change_external_chat]]></Event><ChatId>wr1</ChatId><ChangeType>update</ChangeType><UpdateDetail>change_name</UpdateDetail><JoinScene>0</JoinScene><MemChangeCnt>2</MemChangeCnt><LastMemVer>6ebe7c3f89cb839ec2e1720f04eae2e0</LastMemVer><CurMemVer>15722766561cf8bce92480a3d1457654</CurMemVer>",
    );
    let Event::ExternalChat(e) = parse_event(&xml).unwrap().event else {
        panic!()
    };
    let ChatChange::Update(u) = e.change else {
        panic!()
    };
    assert_eq!(u.detail, ChatUpdateDetail::ChangeName);
    assert_eq!(
        (u.join_scene, u.quit_scene, u.mem_change_cnt),
        (Some(0), None, Some(2))
    );
    assert!(u.mem_change_list.is_empty());
}

#[test]
fn chat_create_and_dismiss_parse() {
    for (wire, change) in [
        ("create", ChatChange::Create),
        ("dismiss", ChatChange::Dismiss),
    ] {
        let xml = header(&format!(
            "<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wr9]]></ChatId><ChangeType><![CDATA[{wire}]]></ChangeType>"
        ));
        let Event::ExternalChat(e) = parse_event(&xml).unwrap().event else {
            panic!()
        };
        assert_eq!(e.change, change);
    }
}

#[test]
fn doc_and_captured_tag_events_parse_in_either_order() {
    let Event::ExternalTag(e) = parse_event(TAG_DOC).unwrap().event else {
        panic!()
    };
    assert_eq!(
        e,
        ExternalTagEvent {
            change: TagChange::Create,
            id: "TAG_ID".into(),
            tag_type: Some(TagKind::Tag),
            strategy_id: Some("1".into()),
        }
    );
    let parsed = parse_event(TAG_CAPTURED).unwrap();
    assert_eq!(parsed.create_time, 1626751398);
    let Event::ExternalTag(e) = parsed.event else {
        panic!()
    };
    assert_eq!(
        (e.change, e.id.as_str(), e.strategy_id),
        (TagChange::Create, "etjmgTCQAAYIEtCEn30FEiMU9jH_HaaA", None)
    );
}

#[test]
fn shuffle_without_tag_type_parses() {
    let xml = header(
        "<Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[TAG_ID]]></Id><StrategyId><![CDATA[STRATEGY_ID]]></StrategyId><ChangeType><![CDATA[shuffle]]></ChangeType>",
    );
    let Event::ExternalTag(e) = parse_event(&xml).unwrap().event else {
        panic!()
    };
    assert_eq!(
        (e.change, e.tag_type, e.strategy_id.as_deref()),
        (TagChange::Shuffle, None, Some("STRATEGY_ID"))
    );
}

#[test]
fn unknown_events_and_messages_are_kept_whole() {
    let text_msg = "<xml><ToUserName><![CDATA[ww6a112864f8022910]]></ToUserName><FromUserName><![CDATA[foobar]]></FromUserName><CreateTime>1583995625</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[x123]]></Content><MsgId>2018405441</MsgId><AgentID>1000002</AgentID></xml>";
    let parsed = parse_event(text_msg).unwrap();
    assert_eq!(
        parsed.event,
        Event::Unknown {
            msg_type: "text".into(),
            event: String::new(),
            change_type: String::new(),
            raw_xml: text_msg.into()
        }
    );
    assert_eq!(parsed.to_xml(), text_msg);

    // A new ChangeType of a known event, and a known event missing a required field.
    for body in [
        "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[brand_new]]></ChangeType><UserID>u</UserID><ExternalUserID>e</ExternalUserID>",
        "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID>u</UserID>",
        "<Event><![CDATA[change_external_tag]]></Event><ChangeType><![CDATA[create]]></ChangeType>",
        "<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[create_user]]></ChangeType>",
    ] {
        let xml = header(body);
        let Event::Unknown {
            msg_type, raw_xml, ..
        } = parse_event(&xml).unwrap().event
        else {
            panic!("{body}")
        };
        assert_eq!((msg_type.as_str(), raw_xml), ("event", xml));
    }
}

#[test]
fn missing_agent_id_and_extra_elements_are_fine() {
    let xml = CONTACT_DOC.replace(
        "<State>",
        "<AgentID>1000002</AgentID><Extra><Deep>x</Deep></Extra><State>",
    );
    assert_eq!(
        parse_event(&xml).unwrap().event,
        parse_event(CONTACT_DOC).unwrap().event
    );
}

#[test]
fn suite_format_parses_and_round_trips() {
    let xml = "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId><InfoType><![CDATA[change_external_contact]]></InfoType><TimeStamp>1403610513</TimeStamp><ChangeType><![CDATA[del_follow_user]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA]]></ExternalUserID></xml>";
    let parsed = parse_event(xml).unwrap();
    assert_eq!(parsed.suite_id.as_deref(), Some("ww4asffe99e54c0f4c"));
    assert_eq!(
        (parsed.to_user_name.as_str(), parsed.create_time),
        ("wxf8b4f85f3a794e77", 1403610513)
    );
    let Event::ExternalContact(e) = &parsed.event else {
        panic!()
    };
    assert_eq!(e.change, ExternalContactChange::DelFollowUser);
    assert_eq!(parse_event(&parsed.to_xml()).unwrap(), parsed);
}

#[test]
fn refused_and_malformed_xml_are_errors() {
    assert!(parse_event("<!DOCTYPE x><xml/>").is_err());
    assert!(parse_event("<xml><A>").is_err());
}

#[test]
fn dedupe_key_is_stable_and_distinguishes_events() {
    let a = parse_event(CONTACT_DOC).unwrap();
    let b = parse_event(&CONTACT_DOC.replace("zhangsan", "lisi")).unwrap();
    assert_eq!(
        a.dedupe_key(),
        parse_event(CONTACT_DOC).unwrap().dedupe_key()
    );
    assert_ne!(a.dedupe_key(), b.dedupe_key());
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\-中文 <>&\\]]{1,24}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn event() -> impl Strategy<Value = Event> {
    let contact = (
        prop::sample::select(ExternalContactChange::ALL.to_vec()),
        text(),
        text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
    )
        .prop_map(
            |(change, user_id, external_user_id, state, welcome_code, source, fail_reason)| {
                Event::ExternalContact(ExternalContactEvent {
                    change,
                    user_id,
                    external_user_id,
                    state,
                    welcome_code,
                    source,
                    fail_reason,
                })
            },
        );
    let detail = prop_oneof![
        Just(ChatUpdateDetail::AddMember),
        Just(ChatUpdateDetail::DelMember),
        Just(ChatUpdateDetail::ChangeOwner),
        Just(ChatUpdateDetail::ChangeName),
        Just(ChatUpdateDetail::ChangeNotice),
        "[a-z_]{3,12}".prop_map(|s| ChatUpdateDetail::from_wire(&s)),
    ];
    let update = (
        detail,
        prop::option::of(0i64..4),
        prop::option::of(0i64..2),
        prop::option::of(0i64..500),
        prop::collection::vec(text(), 0..5),
        opt_text(),
        opt_text(),
    )
        .prop_map(
            |(
                detail,
                join_scene,
                quit_scene,
                mem_change_cnt,
                mem_change_list,
                last_mem_ver,
                cur_mem_ver,
            )| {
                ChatChange::Update(ChatUpdate {
                    detail,
                    join_scene,
                    quit_scene,
                    mem_change_cnt,
                    mem_change_list,
                    last_mem_ver,
                    cur_mem_ver,
                })
            },
        );
    let chat = (
        text(),
        prop_oneof![Just(ChatChange::Create), Just(ChatChange::Dismiss), update],
    )
        .prop_map(|(chat_id, change)| Event::ExternalChat(ExternalChatEvent { chat_id, change }));
    let kind = prop::option::of(prop_oneof![
        Just(TagKind::Tag),
        Just(TagKind::TagGroup),
        "[a-z]{3,8}".prop_map(|s| TagKind::from_wire(&s))
    ]);
    let tag = (
        prop::sample::select(TagChange::ALL.to_vec()),
        text(),
        kind,
        opt_text(),
    )
        .prop_map(|(change, id, tag_type, strategy_id)| {
            Event::ExternalTag(ExternalTagEvent {
                change,
                id,
                tag_type,
                strategy_id,
            })
        });
    prop_oneof![contact, chat, tag]
}

proptest! {
    #[test]
    fn parse_of_render_is_identity(event in event(), corp in text(), time in 0i64..2_000_000_000, suite in opt_text()) {
        let message = CallbackEvent {
            to_user_name: corp,
            from_user_name: if suite.is_some() { String::new() } else { "sys".into() },
            create_time: time,
            suite_id: suite,
            event,
        };
        prop_assert_eq!(parse_event(&message.to_xml()).unwrap(), message);
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,400}") {
        let _ = parse_event(&s);
    }
}
