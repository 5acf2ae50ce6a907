//! Decrypted XML → [`CallbackEvent`], by element name, so order and extra elements don't matter.

use super::{
    CallbackEvent, ChatChange, ChatUpdate, ChatUpdateDetail, Event, ExternalChatEvent,
    ExternalContactChange, ExternalContactEvent, ExternalTagEvent, TagChange, TagKind,
};
use crate::xml::{self, Element, XmlError};

/// Parses a decrypted callback plaintext (self-built or 3rd-party suite format).
///
/// Errors only when the XML is not well-formed or is refused (DOCTYPE, entities); every
/// well-formed document yields an event, [`Event::Unknown`] when it is not one modelled here.
pub fn parse_event(plaintext: &str) -> Result<CallbackEvent, XmlError> {
    let root = xml::parse(plaintext)?;
    let suite_id = non_empty(&root, "SuiteId");
    // The suite format names the event in InfoType and the corp in AuthCorpId (§12).
    let (event_name, to_user_name, create_time) = match root.child_text("InfoType") {
        Some(info_type) if root.child("MsgType").is_none() => (
            info_type.trim().to_owned(),
            text(&root, "AuthCorpId"),
            number(&root, "TimeStamp"),
        ),
        _ => (
            text(&root, "Event").trim().to_owned(),
            text(&root, "ToUserName"),
            number(&root, "CreateTime"),
        ),
    };
    let change_type = text(&root, "ChangeType").trim().to_owned();
    let known = match event_name.as_str() {
        "change_external_contact" => contact(&root, &change_type).map(Event::ExternalContact),
        "change_external_chat" => chat(&root, &change_type).map(Event::ExternalChat),
        "change_external_tag" => tag(&root, &change_type).map(Event::ExternalTag),
        _ => None,
    };
    let event = known.unwrap_or_else(|| Event::Unknown {
        msg_type: text(&root, "MsgType").trim().to_owned(),
        event: event_name,
        change_type,
        raw_xml: plaintext.to_owned(),
    });
    Ok(CallbackEvent {
        to_user_name,
        from_user_name: text(&root, "FromUserName"),
        create_time: create_time.unwrap_or(0),
        suite_id,
        event,
    })
}

fn text(root: &Element, name: &str) -> String {
    root.child_text(name).unwrap_or_default().to_owned()
}

/// The child's text, or `None` when the element is absent or empty.
fn non_empty(root: &Element, name: &str) -> Option<String> {
    root.child_text(name)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn number(root: &Element, name: &str) -> Option<i64> {
    root.child_text(name).and_then(|s| s.trim().parse().ok())
}

fn contact(root: &Element, change_type: &str) -> Option<ExternalContactEvent> {
    Some(ExternalContactEvent {
        change: ExternalContactChange::from_wire(change_type)?,
        user_id: non_empty(root, "UserID")?,
        external_user_id: non_empty(root, "ExternalUserID")?,
        state: non_empty(root, "State"),
        welcome_code: non_empty(root, "WelcomeCode"),
        source: non_empty(root, "Source"),
        fail_reason: non_empty(root, "FailReason"),
    })
}

fn chat(root: &Element, change_type: &str) -> Option<ExternalChatEvent> {
    let change = match change_type {
        "create" => ChatChange::Create,
        "dismiss" => ChatChange::Dismiss,
        "update" => ChatChange::Update(ChatUpdate {
            detail: ChatUpdateDetail::from_wire(root.child_text("UpdateDetail")?.trim()),
            join_scene: number(root, "JoinScene"),
            quit_scene: number(root, "QuitScene"),
            mem_change_cnt: number(root, "MemChangeCnt"),
            mem_change_list: root
                .child("MemChangeList")
                .map(|list| {
                    list.children
                        .iter()
                        .filter(|item| item.name == "Item")
                        .map(|item| item.text.clone())
                        .collect()
                })
                .unwrap_or_default(),
            last_mem_ver: non_empty(root, "LastMemVer"),
            cur_mem_ver: non_empty(root, "CurMemVer"),
        }),
        _ => return None,
    };
    Some(ExternalChatEvent {
        chat_id: non_empty(root, "ChatId")?,
        change,
    })
}

fn tag(root: &Element, change_type: &str) -> Option<ExternalTagEvent> {
    Some(ExternalTagEvent {
        change: TagChange::from_wire(change_type)?,
        id: non_empty(root, "Id")?,
        tag_type: non_empty(root, "TagType").map(|s| TagKind::from_wire(&s)),
        strategy_id: non_empty(root, "StrategyId"),
    })
}
