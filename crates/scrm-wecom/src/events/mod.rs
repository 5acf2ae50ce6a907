//! Typed customer-contact callback events (API-FACTS §12), parsed from the decrypted XML and
//! rendered back to it (the simulator sends what [`CallbackEvent::to_xml`] writes).
//!
//! Parsing never loses an event: anything not modelled here — another `Event`, a new
//! `ChangeType`, a plain message, a known event missing a required field — comes back as
//! [`Event::Unknown`] with the full plaintext, so a consumer can log, store or replay it.
//! Only XML that is not well-formed (or carries a DOCTYPE/entities) is an error.

mod parse;
mod render;
#[cfg(test)]
mod tests;

pub use parse::parse_event;

/// One decrypted callback: the envelope fields common to every event, and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackEvent {
    /// `ToUserName`: the corpid (`AuthCorpId` in the 3rd-party suite format).
    pub to_user_name: String,
    /// `FromUserName`: `sys` for system events; empty in the suite format.
    pub from_user_name: String,
    /// `CreateTime` (`TimeStamp` in the suite format), unix seconds.
    pub create_time: i64,
    /// `SuiteId` when the callback came in the 3rd-party suite format, else `None`.
    pub suite_id: Option<String>,
    /// What happened.
    pub event: Event,
}

impl CallbackEvent {
    /// A self-built-app event from `sys`, as WeCom sends them to a corp's own app.
    pub fn new(corp_id: impl Into<String>, create_time: i64, event: Event) -> Self {
        Self {
            to_user_name: corp_id.into(),
            from_user_name: "sys".to_owned(),
            create_time,
            suite_id: None,
            event,
        }
    }

    /// Parses decrypted callback XML. Same as [`parse_event`].
    pub fn from_xml(xml: &str) -> Result<Self, crate::XmlError> {
        parse_event(xml)
    }

    /// Renders the plaintext XML WeCom would encrypt and send for this event.
    pub fn to_xml(&self) -> String {
        render::render(self)
    }

    /// A key for deduplicating WeCom's retries (it redelivers up to 3 times, API-FACTS §11):
    /// equal for redeliveries of one event, different for different events in the same second.
    pub fn dedupe_key(&self) -> String {
        use sha1::{Digest, Sha1};
        let mut sha = Sha1::new();
        sha.update(self.to_xml().as_bytes());
        format!(
            "{}:{}:{}",
            self.to_user_name,
            self.create_time,
            hex::encode(sha.finalize())
        )
    }
}

/// The event itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `change_external_contact`: a customer relation changed.
    ExternalContact(ExternalContactEvent),
    /// `change_external_chat`: a customer group chat changed.
    ExternalChat(ExternalChatEvent),
    /// `change_external_tag`: a corp tag or tag group changed.
    ExternalTag(ExternalTagEvent),
    /// Anything else, kept whole.
    Unknown {
        /// `MsgType` (`event` for events, `text` etc. for messages; `InfoType` for suites).
        msg_type: String,
        /// `Event`, empty for plain messages.
        event: String,
        /// `ChangeType`, empty when absent.
        change_type: String,
        /// The complete decrypted plaintext.
        raw_xml: String,
    },
}

/// `change_external_contact` (API-FACTS §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalContactEvent {
    /// `ChangeType`.
    pub change: ExternalContactChange,
    /// `UserID`: the member (员工) side of the relation.
    pub user_id: String,
    /// `ExternalUserID`: the customer.
    pub external_user_id: String,
    /// `State`: the 「联系我」 state / 获客链接 channel the customer came through, if any.
    pub state: Option<String>,
    /// `WelcomeCode`: for `send_welcome_msg`, valid 20 seconds; add and add_half only.
    pub welcome_code: Option<String>,
    /// `Source`: on del_external_contact, `DELETE_BY_TRANSFER` when removed by 在职继承.
    pub source: Option<String>,
    /// `FailReason`: on transfer_fail, `customer_refused` or `customer_limit_exceed`.
    pub fail_reason: Option<String>,
}

/// `ChangeType` values of `change_external_contact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExternalContactChange {
    /// `add_external_contact`: a member added a customer.
    Add,
    /// `edit_external_contact`: a member edited the customer's remark or corp tags.
    Edit,
    /// `add_half_external_contact`: the customer added a 免验证 member, not yet confirmed.
    AddHalf,
    /// `del_external_contact`: the member deleted the customer.
    Del,
    /// `del_follow_user`: the customer deleted the member.
    DelFollowUser,
    /// `transfer_fail`: a transfer to a new member failed.
    TransferFail,
}

impl ExternalContactChange {
    /// Every variant, for tests and exhaustive handling.
    pub const ALL: [Self; 6] = [
        Self::Add,
        Self::Edit,
        Self::AddHalf,
        Self::Del,
        Self::DelFollowUser,
        Self::TransferFail,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add_external_contact",
            Self::Edit => "edit_external_contact",
            Self::AddHalf => "add_half_external_contact",
            Self::Del => "del_external_contact",
            Self::DelFollowUser => "del_follow_user",
            Self::TransferFail => "transfer_fail",
        }
    }

    /// Parses the wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// `change_external_chat` (API-FACTS §12.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalChatEvent {
    /// `ChatId`.
    pub chat_id: String,
    /// `ChangeType` and, for updates, what changed.
    pub change: ChatChange,
}

/// `ChangeType` values of `change_external_chat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatChange {
    /// `create`: a new customer group.
    Create,
    /// `update`: members, owner, name or notice changed.
    Update(ChatUpdate),
    /// `dismiss`: the owner dismissed the group.
    Dismiss,
}

/// The fields of a `change_external_chat` `update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatUpdate {
    /// `UpdateDetail`.
    pub detail: ChatUpdateDetail,
    /// `JoinScene` (add_member): 0 invited by a member, 3 scanned the group QR code.
    pub join_scene: Option<i64>,
    /// `QuitScene` (del_member): 0 left, 1 removed by owner/admin.
    pub quit_scene: Option<i64>,
    /// `MemChangeCnt`: how many members joined or left.
    pub mem_change_cnt: Option<i64>,
    /// `MemChangeList/Item`: the userids / external_userids that joined or left.
    pub mem_change_list: Vec<String>,
    /// `LastMemVer`: the member version before; compare with the stored one to detect gaps.
    pub last_mem_ver: Option<String>,
    /// `CurMemVer`: the member version after.
    pub cur_mem_ver: Option<String>,
}

/// `UpdateDetail` values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatUpdateDetail {
    /// `add_member`.
    AddMember,
    /// `del_member`.
    DelMember,
    /// `change_owner`.
    ChangeOwner,
    /// `change_name`.
    ChangeName,
    /// `change_notice`.
    ChangeNotice,
    /// A detail WeCom added later; still an update, so a consumer can re-fetch the group.
    Other(String),
}

impl ChatUpdateDetail {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::AddMember => "add_member",
            Self::DelMember => "del_member",
            Self::ChangeOwner => "change_owner",
            Self::ChangeName => "change_name",
            Self::ChangeNotice => "change_notice",
            Self::Other(s) => s,
        }
    }

    /// Parses the wire name; unknown names become [`Self::Other`].
    pub fn from_wire(s: &str) -> Self {
        match s {
            "add_member" => Self::AddMember,
            "del_member" => Self::DelMember,
            "change_owner" => Self::ChangeOwner,
            "change_name" => Self::ChangeName,
            "change_notice" => Self::ChangeNotice,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// `change_external_tag` (API-FACTS §12.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTagEvent {
    /// `ChangeType`.
    pub change: TagChange,
    /// `Id`: the tag or tag-group id.
    pub id: String,
    /// `TagType`: `tag` or `tag_group`; absent on shuffle.
    pub tag_type: Option<TagKind>,
    /// `StrategyId`: set for 规则组 (strategy) tags. Kept as text because the doc's own
    /// shuffle example carries a placeholder, and losing an event over a type is worse.
    pub strategy_id: Option<String>,
}

/// `ChangeType` values of `change_external_tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagChange {
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `delete` (deleting a group deletes its tags without further callbacks).
    Delete,
    /// `shuffle`: an admin reordered tags; re-sync every `order`.
    Shuffle,
}

impl TagChange {
    /// Every variant.
    pub const ALL: [Self; 4] = [Self::Create, Self::Update, Self::Delete, Self::Shuffle];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Shuffle => "shuffle",
        }
    }

    /// Parses the wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// `TagType` values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TagKind {
    /// `tag`.
    Tag,
    /// `tag_group`.
    TagGroup,
    /// A value not documented today.
    Other(String),
}

impl TagKind {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tag => "tag",
            Self::TagGroup => "tag_group",
            Self::Other(s) => s,
        }
    }

    /// Parses the wire name.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "tag" => Self::Tag,
            "tag_group" => Self::TagGroup,
            other => Self::Other(other.to_owned()),
        }
    }
}
