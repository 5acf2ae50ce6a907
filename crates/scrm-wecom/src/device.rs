//! The device gateway protocol: what scrm and a gateway holding personal WeChat devices say to
//! each other over one WebSocket, as JSON text frames. Shared by scrm (the server side) and the
//! gateway simulator (a client), so both read and write exactly these shapes. The prose
//! description, with examples, is `docs/gateway-protocol.md`.
//!
//! Every frame has a `type` and an `id`. A command from scrm is acknowledged by the gateway with
//! an `ack` carrying the command's id and its result; an event (or hello, or account change)
//! from the gateway is acknowledged by scrm with an `ack` carrying the event's id once it is
//! stored. Each side sends again what the other has not acknowledged when the connection comes
//! back, and each side dedupes by id, so every command runs once and every event counts once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An account's state, as seed 004's account list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccountStatus {
    /// Logged in on its device and reachable.
    Active,
    /// Its device (or the gateway) is not connected.
    Offline,
    /// Logged out or banned: needs a new login on the device.
    Expired,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "ACTIVE",
            AccountStatus::Offline => "OFFLINE",
            AccountStatus::Expired => "EXPIRED",
        }
    }
}

/// One account a gateway holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    pub wxid: String,
    pub nickname: String,
    pub status: AccountStatus,
}

/// Command names (scrm → gateway). `data` for each:
/// - `send_text` `{to, text}`; `send_image` `{to, url}`; `send_link` `{to, title, desc, url, picUrl}`
///   — `to` is a friend's wxid or a chat room id (`…@chatroom`);
/// - `create_chatroom` `{name, members: [wxid]}` → result `{chatroomId}`;
/// - `like_moment` `{momentId}`; `fetch_moments` `{cursor?, limit?}` → result
///   `{moments: [Moment], cursor?}`, newest first, one page; `cursor` (opaque) when older ones
///   follow, to pass back for the next page;
/// - `fetch_friends` `{}` → result `{friends: [Friend], chatrooms?: [Chatroom]}` — `chatrooms`,
///   when the gateway sends it, is every chat room the account is in (rooms not listed were
///   left); a gateway that leaves it out keeps scrm's list as it was.
pub mod command {
    pub const SEND_TEXT: &str = "send_text";
    pub const SEND_IMAGE: &str = "send_image";
    pub const SEND_LINK: &str = "send_link";
    pub const CREATE_CHATROOM: &str = "create_chatroom";
    pub const LIKE_MOMENT: &str = "like_moment";
    pub const FETCH_MOMENTS: &str = "fetch_moments";
    pub const FETCH_FRIENDS: &str = "fetch_friends";
    /// Every command a gateway must understand.
    pub const ALL: &[&str] = &[
        SEND_TEXT,
        SEND_IMAGE,
        SEND_LINK,
        CREATE_CHATROOM,
        LIKE_MOMENT,
        FETCH_MOMENTS,
        FETCH_FRIENDS,
    ];
}

/// Event names (gateway → scrm). `data` for each:
/// - `friend_added` `Friend`; `friend_deleted` `{wxid}`;
/// - `message` `{from, chatroomId?, text}` (`chatroomId` set for a chat-room message);
/// - `member_joined` `{chatroomId, wxid, nickname}`; `moment_posted` `Moment`.
pub mod event {
    pub const FRIEND_ADDED: &str = "friend_added";
    pub const FRIEND_DELETED: &str = "friend_deleted";
    pub const MESSAGE: &str = "message";
    pub const MEMBER_JOINED: &str = "member_joined";
    pub const MOMENT_POSTED: &str = "moment_posted";
}

/// A friend of an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Friend {
    pub wxid: String,
    pub nickname: String,
}

/// A chat room an account is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chatroom {
    pub chatroom_id: String,
    #[serde(default)]
    pub name: String,
}

/// A moment (朋友圈) a friend posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Moment {
    pub moment_id: String,
    pub author: String,
    pub text: String,
    /// When the friend posted it (epoch ms), if the device knows; lists sort by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posted_at: Option<i64>,
}

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// Gateway → scrm, first frame of a connection: the accounts it holds now.
    Hello {
        id: String,
        accounts: Vec<AccountInfo>,
    },
    /// Gateway → scrm: an account came online, went offline or expired.
    Account { id: String, account: AccountInfo },
    /// Gateway → scrm: something happened on an account.
    Event {
        id: String,
        account: String,
        event: String,
        #[serde(default)]
        data: Value,
    },
    /// scrm → gateway: do something on an account.
    Command {
        id: String,
        account: String,
        command: String,
        #[serde(default)]
        data: Value,
    },
    /// Either way: the frame `id` was handled. For a command: `ok`, and `result` or `error`.
    Ack {
        id: String,
        #[serde(default = "yes")]
        ok: bool,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        result: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

fn yes() -> bool {
    true
}

impl Frame {
    /// An acknowledgement without a result (of an event, a hello, an account change).
    pub fn ack(id: impl Into<String>) -> Frame {
        Frame::Ack {
            id: id.into(),
            ok: true,
            result: Value::Null,
            error: None,
        }
    }

    /// The frame's id.
    pub fn id(&self) -> &str {
        match self {
            Frame::Hello { id, .. }
            | Frame::Account { id, .. }
            | Frame::Event { id, .. }
            | Frame::Command { id, .. }
            | Frame::Ack { id, .. } => id,
        }
    }

    /// As JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_read_as_documented() {
        let f: Frame = serde_json::from_value(json!({
            "type": "command", "id": "c1", "account": "wxid_a",
            "command": "send_text", "data": {"to": "r1@chatroom", "text": "hi"}
        }))
        .unwrap();
        assert_eq!(f.id(), "c1");
        let ack: Frame = serde_json::from_str(r#"{"type":"ack","id":"c1"}"#).unwrap();
        assert_eq!(ack, Frame::ack("c1"));
        let hello = Frame::Hello {
            id: "h".into(),
            accounts: vec![AccountInfo {
                wxid: "w".into(),
                nickname: "n".into(),
                status: AccountStatus::Expired,
            }],
        };
        let text = hello.to_text();
        assert!(text.contains(r#""status":"EXPIRED""#), "{text}");
        assert_eq!(serde_json::from_str::<Frame>(&text).unwrap(), hello);
    }
}
