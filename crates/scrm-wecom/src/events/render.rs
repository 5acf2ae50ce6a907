//! [`CallbackEvent`] → the plaintext XML WeCom sends, in the doc examples' element order.

use super::{CallbackEvent, ChatChange, Event};
use crate::xml::{write_cdata, write_plain};

pub(super) fn render(message: &CallbackEvent) -> String {
    let (event_name, change_type) = match &message.event {
        // Unknown events are replayed exactly as received.
        Event::Unknown { raw_xml, .. } => return raw_xml.clone(),
        Event::ExternalContact(e) => ("change_external_contact", e.change.as_str()),
        Event::ExternalChat(e) => (
            "change_external_chat",
            match e.change {
                ChatChange::Create => "create",
                ChatChange::Update(_) => "update",
                ChatChange::Dismiss => "dismiss",
            },
        ),
        Event::ExternalTag(e) => ("change_external_tag", e.change.as_str()),
    };
    let mut out = String::with_capacity(512);
    out.push_str("<xml>");
    match &message.suite_id {
        Some(suite_id) => {
            write_cdata(&mut out, "SuiteId", suite_id);
            write_cdata(&mut out, "AuthCorpId", &message.to_user_name);
            write_cdata(&mut out, "InfoType", event_name);
            write_plain(&mut out, "TimeStamp", message.create_time);
        }
        None => {
            write_cdata(&mut out, "ToUserName", &message.to_user_name);
            write_cdata(&mut out, "FromUserName", &message.from_user_name);
            write_plain(&mut out, "CreateTime", message.create_time);
            write_cdata(&mut out, "MsgType", "event");
            write_cdata(&mut out, "Event", event_name);
        }
    }
    let opt = |out: &mut String, name: &str, value: &Option<String>| {
        if let Some(v) = value {
            write_cdata(out, name, v);
        }
    };
    match &message.event {
        Event::ExternalContact(e) => {
            write_cdata(&mut out, "ChangeType", change_type);
            // transfer_fail puts FailReason first in the doc; harmless for the others.
            opt(&mut out, "FailReason", &e.fail_reason);
            write_cdata(&mut out, "UserID", &e.user_id);
            write_cdata(&mut out, "ExternalUserID", &e.external_user_id);
            opt(&mut out, "State", &e.state);
            opt(&mut out, "WelcomeCode", &e.welcome_code);
            opt(&mut out, "Source", &e.source);
        }
        Event::ExternalChat(e) => {
            write_cdata(&mut out, "ChatId", &e.chat_id);
            write_cdata(&mut out, "ChangeType", change_type);
            if let ChatChange::Update(u) = &e.change {
                write_cdata(&mut out, "UpdateDetail", u.detail.as_str());
                let num = |out: &mut String, name: &str, value: Option<i64>| {
                    if let Some(v) = value {
                        write_plain(out, name, v);
                    }
                };
                num(&mut out, "JoinScene", u.join_scene);
                num(&mut out, "QuitScene", u.quit_scene);
                num(&mut out, "MemChangeCnt", u.mem_change_cnt);
                if !u.mem_change_list.is_empty() {
                    out.push_str("<MemChangeList>");
                    for item in &u.mem_change_list {
                        write_cdata(&mut out, "Item", item);
                    }
                    out.push_str("</MemChangeList>");
                }
                opt(&mut out, "LastMemVer", &u.last_mem_ver);
                opt(&mut out, "CurMemVer", &u.cur_mem_ver);
            }
        }
        Event::ExternalTag(e) => {
            write_cdata(&mut out, "Id", &e.id);
            if let Some(kind) = &e.tag_type {
                write_cdata(&mut out, "TagType", kind.as_str());
            }
            write_cdata(&mut out, "ChangeType", change_type);
            opt(&mut out, "StrategyId", &e.strategy_id);
        }
        Event::Unknown { .. } => {}
    }
    out.push_str("</xml>");
    out
}
