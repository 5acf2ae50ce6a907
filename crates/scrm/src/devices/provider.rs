//! Sender accounts and what each kind can do. An account that sends for scrm is either a WeCom
//! member (the official API, through the `staff` table) or a personal WeChat account held by a
//! device gateway (`device_account`). Each provider declares its capabilities; a task asking for
//! something its account's provider cannot do is refused when it is created
//! (422 `CAPABILITY_NOT_SUPPORTED` naming the field), never failed later.

use axum::http::StatusCode;
use scrm_db::{Db, query};
use serde::Serialize;

use crate::http::error::FieldError;
use crate::http::{ApiError, ApiResult};

/// Something a sender account may be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Capability {
    /// Send a message to one customer (friend).
    SendToCustomer,
    /// Push a message into a group chat (chat room) at once.
    SendToGroup,
    /// Create a group chat with members and a name.
    CreateGroup,
    /// Like a friend's moment (朋友圈).
    LikeMoments,
    /// Read friends' moments.
    FetchMoments,
    /// Read the friend list.
    FetchFriends,
    /// Receive customers' messages and answer them (the AI auto-reply).
    ReplyToMessages,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::SendToCustomer => "SEND_TO_CUSTOMER",
            Capability::SendToGroup => "SEND_TO_GROUP",
            Capability::CreateGroup => "CREATE_GROUP",
            Capability::LikeMoments => "LIKE_MOMENTS",
            Capability::FetchMoments => "FETCH_MOMENTS",
            Capability::FetchFriends => "FETCH_FRIENDS",
            Capability::ReplyToMessages => "REPLY_TO_MESSAGES",
        }
    }

    /// In words, for error messages.
    fn describe(self) -> &'static str {
        match self {
            Capability::SendToCustomer => "send to a customer",
            Capability::SendToGroup => "push messages into a group chat",
            Capability::CreateGroup => "create a group chat",
            Capability::LikeMoments => "like moments",
            Capability::FetchMoments => "read moments",
            Capability::FetchFriends => "read its friend list",
            Capability::ReplyToMessages => "receive and answer messages",
        }
    }
}

/// Where an account lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Provider {
    /// A WeCom member: the official API (seed 004's `WEWORK`).
    #[serde(rename = "WEWORK")]
    WeCom,
    /// A personal WeChat account on a device, through a gateway (seed 004's "personal WeChat SDK").
    #[serde(rename = "WECHAT")]
    Device,
}

impl Provider {
    /// What the provider can do.
    ///
    /// WeCom members send to customers (mass-send templates, welcome messages) and list their
    /// customers, but WeCom's API offers no way to push into a customer group at once (a group
    /// mass send waits for the member to confirm it in the app), to create a customer group, to
    /// touch moments of customers, or to read customers' messages (that needs the separately
    /// licensed conversation archive). A device account can do all of it.
    pub fn capabilities(self) -> &'static [Capability] {
        match self {
            Provider::WeCom => &[Capability::SendToCustomer, Capability::FetchFriends],
            Provider::Device => &[
                Capability::SendToCustomer,
                Capability::SendToGroup,
                Capability::CreateGroup,
                Capability::LikeMoments,
                Capability::FetchMoments,
                Capability::FetchFriends,
                Capability::ReplyToMessages,
            ],
        }
    }

    pub fn can(self, c: Capability) -> bool {
        self.capabilities().contains(&c)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::WeCom => "WEWORK",
            Provider::Device => "WECHAT",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Provider::WeCom => "a WeCom member account",
            Provider::Device => "a personal WeChat (device) account",
        }
    }
}

/// An account scrm can send through.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderAccount {
    /// The staff userid or the device account's wxid.
    pub account_id: String,
    pub account_name: String,
    #[serde(rename = "accountType")]
    pub provider: Provider,
    /// ACTIVE, OFFLINE or EXPIRED.
    pub status: String,
}

/// The account a task names, refused at creation unless its provider can do `c` and it is not
/// logged out (404 / 422 naming `field`): [`resolve`], [`SenderAccount::require`] and
/// [`SenderAccount::require_usable`] in the order every task checks them.
pub async fn resolve_for(
    db: &Db,
    tenant_id: i64,
    id: &str,
    c: Capability,
    field: &str,
) -> ApiResult<SenderAccount> {
    let acc = resolve(db, tenant_id, id, field).await?;
    acc.require(c, field)?;
    acc.require_usable(field)?;
    Ok(acc)
}

/// Find an account by id: a device account's wxid first, else a WeCom member's userid. `field`
/// names the request field in the 404.
pub async fn resolve(db: &Db, tenant_id: i64, id: &str, field: &str) -> ApiResult<SenderAccount> {
    let device: Option<(String, String, String)> = db
        .fetch_optional(
            query("SELECT wxid, nickname, status FROM device_account WHERE tenant_id = ? AND wxid = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    if let Some((wxid, nickname, status)) = device {
        return Ok(SenderAccount {
            account_id: wxid,
            account_name: nickname,
            provider: Provider::Device,
            status,
        });
    }
    let staff: Option<(String, String, i64)> = db
        .fetch_optional(
            query("SELECT userid, name, status FROM staff WHERE tenant_id = ? AND userid = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    match staff {
        Some((userid, name, st)) => Ok(SenderAccount {
            account_id: userid,
            account_name: name,
            provider: Provider::WeCom,
            status: staff_status(st).to_string(),
        }),
        None => Err(ApiError::Refused {
            status: StatusCode::NOT_FOUND,
            name: "SENDER_ACCOUNT_NOT_FOUND",
            message: format!("{field}: no account {id:?}"),
            fields: vec![FieldError {
                field: field.to_string(),
                message: "no such account".into(),
            }],
        }),
    }
}

/// A WeCom member's status as seed 004's account status (1 active, 5 left, else disabled).
pub fn staff_status(st: i64) -> &'static str {
    match st {
        1 => "ACTIVE",
        5 => "EXPIRED",
        _ => "OFFLINE",
    }
}

impl SenderAccount {
    /// Refuse (422 `CAPABILITY_NOT_SUPPORTED`, naming `field`) unless the account's provider can
    /// do `c`.
    pub fn require(&self, c: Capability, field: &str) -> ApiResult<()> {
        if self.provider.can(c) {
            return Ok(());
        }
        let message = format!(
            "{} cannot {} ({})",
            self.provider.describe(),
            c.describe(),
            c.as_str()
        );
        Err(ApiError::Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            name: "CAPABILITY_NOT_SUPPORTED",
            message: format!("{field}: {message}"),
            fields: vec![FieldError {
                field: field.to_string(),
                message,
            }],
        })
    }

    /// Refuse (422 `SENDER_ACCOUNT_EXPIRED`) an account that must log in again; an OFFLINE one
    /// is accepted: its commands wait for the device.
    pub fn require_usable(&self, field: &str) -> ApiResult<()> {
        if self.status != "EXPIRED" {
            return Ok(());
        }
        Err(self.not_sendable(field, "SENDER_ACCOUNT_EXPIRED"))
    }

    /// Refuse an account that cannot send now (a group send's senders, seed 004): EXPIRED is
    /// 422 `SENDER_ACCOUNT_EXPIRED`, OFFLINE 422 `SENDER_ACCOUNT_OFFLINE`, naming `field`.
    /// Stricter than [`Self::require_usable`]: a group send is the user's choice of who sends
    /// now, and an OFFLINE WeCom member (disabled, not activated) is refused by WeCom itself.
    pub fn require_active(&self, field: &str) -> ApiResult<()> {
        self.require_usable(field)?;
        if self.status == "ACTIVE" {
            return Ok(());
        }
        Err(self.not_sendable(field, "SENDER_ACCOUNT_OFFLINE"))
    }

    /// The refusal of an account in a state that cannot send, with what the state means for
    /// its provider.
    fn not_sendable(&self, field: &str, name: &'static str) -> ApiError {
        let why = match (self.provider, name) {
            (Provider::WeCom, "SENDER_ACCOUNT_EXPIRED") => "the WeCom member has left the company",
            (Provider::WeCom, _) => "the WeCom member is disabled or not activated",
            (Provider::Device, "SENDER_ACCOUNT_EXPIRED") => {
                "the account is logged out and needs a new login"
            }
            (Provider::Device, _) => "the account's device is not connected",
        };
        let state = if name == "SENDER_ACCOUNT_EXPIRED" {
            "EXPIRED"
        } else {
            "OFFLINE"
        };
        let message = format!("{} is {state}: {why}", self.account_id);
        ApiError::Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            name,
            message: format!("{field}: {message}"),
            fields: vec![FieldError {
                field: field.to_string(),
                message,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wecom_members_cannot_do_device_things() {
        assert!(Provider::WeCom.can(Capability::SendToCustomer));
        assert!(!Provider::WeCom.can(Capability::CreateGroup));
        assert!(!Provider::WeCom.can(Capability::LikeMoments));
        for c in Provider::WeCom.capabilities() {
            assert!(Provider::Device.can(*c), "{c:?}");
        }
    }
}
