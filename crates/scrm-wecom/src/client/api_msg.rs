//! Mass sends (企业群发, API-FACTS §7), welcome messages and app messages (§8).

use serde::{Deserialize, Serialize};

use super::api_customers::Empty;
use super::wire::{collect_pages, string_lenient};
use super::{Api, AppClient, WeComError};

const ADD_MSG_TEMPLATE: Api = Api::post_write(
    "externalcontact/add_msg_template",
    "/cgi-bin/externalcontact/add_msg_template",
);
const GET_GROUPMSG_LIST_V2: Api = Api::post_read(
    "externalcontact/get_groupmsg_list_v2",
    "/cgi-bin/externalcontact/get_groupmsg_list_v2",
);
const GET_GROUPMSG_TASK: Api = Api::post_read(
    "externalcontact/get_groupmsg_task",
    "/cgi-bin/externalcontact/get_groupmsg_task",
);
const GET_GROUPMSG_SEND_RESULT: Api = Api::post_read(
    "externalcontact/get_groupmsg_send_result",
    "/cgi-bin/externalcontact/get_groupmsg_send_result",
);
const REMIND_GROUPMSG_SEND: Api = Api::post_write(
    "externalcontact/remind_groupmsg_send",
    "/cgi-bin/externalcontact/remind_groupmsg_send",
);
const CANCEL_GROUPMSG_SEND: Api = Api::post_idempotent(
    "externalcontact/cancel_groupmsg_send",
    "/cgi-bin/externalcontact/cancel_groupmsg_send",
);
const SEND_WELCOME_MSG: Api = Api::post_write(
    "externalcontact/send_welcome_msg",
    "/cgi-bin/externalcontact/send_welcome_msg",
);
const MESSAGE_SEND: Api = Api::post_write("message/send", "/cgi-bin/message/send");

/// `text` content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Text {
    /// At most 4000 bytes in mass/welcome messages, 2048 in app messages.
    pub content: String,
}

/// An image attachment: `media_id` or `pic_url` (media_id wins when both are set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAttachment {
    /// From media/upload.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_id: String,
    /// From the image upload API.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pic_url: String,
}

/// A link attachment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkAttachment {
    /// Required, at most 128 bytes.
    pub title: String,
    /// Cover URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub picurl: String,
    /// At most 512 bytes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub desc: String,
    /// Required, at most 2048 bytes.
    pub url: String,
}

/// A mini-program attachment; every field is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MiniprogramAttachment {
    /// At most 64 bytes.
    pub title: String,
    /// Cover media id.
    pub pic_media_id: String,
    /// Mini program appid.
    pub appid: String,
    /// Page path.
    pub page: String,
}

/// A video or file attachment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaAttachment {
    /// From media/upload.
    pub media_id: String,
}

/// One of at most 9 attachments: `{"msgtype":"image","image":{…}}` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
pub enum Attachment {
    /// An image.
    Image {
        /// The image.
        image: ImageAttachment,
    },
    /// A link card.
    Link {
        /// The link.
        link: LinkAttachment,
    },
    /// A mini program card.
    Miniprogram {
        /// The mini program.
        miniprogram: MiniprogramAttachment,
    },
    /// A video.
    Video {
        /// The video.
        video: MediaAttachment,
    },
    /// A file.
    File {
        /// The file.
        file: MediaAttachment,
    },
}

/// `tag_filter` of add_msg_template: OR within a group, AND across groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TagFilter {
    /// The groups.
    pub group_list: Vec<TagFilterGroup>,
}

/// One OR-group of tag ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TagFilterGroup {
    /// At most 100 tag ids.
    pub tag_list: Vec<String>,
}

/// `add_msg_template` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MsgTemplate {
    /// "single" (customers, default) or "group" (customer groups).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub chat_type: String,
    /// Customers, at most 10,000 (single only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_userid: Vec<String>,
    /// Groups, at most 2000 (group only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chat_id_list: Vec<String>,
    /// Customer tag filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_filter: Option<TagFilter>,
    /// The sending member (required for group).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sender: String,
    /// Let the member re-select recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_select: Option<bool>,
    /// Text part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
    /// At most 9.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// `add_msg_template` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddMsgTemplateResponse {
    /// Customers that could not be targeted.
    pub fail_list: Vec<String>,
    /// Id for the result APIs.
    pub msgid: String,
}

/// `get_groupmsg_list_v2` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMsgListRequest {
    /// "single" or "group".
    pub chat_type: String,
    /// Unix seconds; the span may not exceed one month.
    pub start_time: i64,
    /// Unix seconds.
    pub end_time: i64,
    /// Filter by creator.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub creator: String,
    /// 0 enterprise, 1 personal, 2 all (default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_type: Option<i64>,
    /// At most 100; larger values fall back to the default 50.
    pub limit: u32,
    /// Empty on the first call.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cursor: String,
}

/// One mass send in `get_groupmsg_list_v2`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMsg {
    /// Id.
    pub msgid: String,
    /// Creator userid; absent for API-created sends.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub creator: String,
    /// Creation time; a string in the doc example, so read leniently.
    #[serde(deserialize_with = "string_lenient")]
    pub create_time: String,
    /// 0 enterprise, 1 personal.
    pub create_type: i64,
    /// Text part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
    /// Attachments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// `get_groupmsg_list_v2` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMsgListResponse {
    /// This page.
    pub group_msg_list: Vec<GroupMsg>,
    /// Empty at the end.
    pub next_cursor: String,
}

#[derive(Debug, Serialize)]
struct MsgIdPage<'a> {
    msgid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    userid: Option<&'a str>,
    limit: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    cursor: &'a str,
}

/// One member's task in `get_groupmsg_task`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMsgTask {
    /// The member.
    pub userid: String,
    /// 0 not sent, 2 sent; the doc example also shows 1 (API-FACTS §14.3) — treat non-zero as sent.
    pub status: i64,
    /// When sent (unix seconds); absent when unsent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_time: Option<i64>,
}

/// `get_groupmsg_task` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMsgTaskResponse {
    /// This page.
    pub task_list: Vec<GroupMsgTask>,
    /// Empty at the end.
    pub next_cursor: String,
}

/// One recipient in `get_groupmsg_send_result`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMsgSendResult {
    /// The customer (single sends).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_userid: String,
    /// The group (group sends).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub chat_id: String,
    /// The sending member.
    pub userid: String,
    /// 0 not sent, 1 sent, 2 not a friend, 3 already received another mass send (quota).
    pub status: i64,
    /// When sent (status 1 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_time: Option<i64>,
}

/// `get_groupmsg_send_result` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMsgSendResultResponse {
    /// This page.
    pub send_list: Vec<GroupMsgSendResult>,
    /// Empty at the end.
    pub next_cursor: String,
}

#[derive(Debug, Serialize)]
struct MsgId<'a> {
    msgid: &'a str,
}

/// `send_welcome_msg` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WelcomeMsg {
    /// From the add_external_contact callback; valid 20 s, usable once.
    pub welcome_code: String,
    /// Text part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
    /// At most 9.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// `textcard` content of an app message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextCard {
    /// At most 128 bytes.
    pub title: String,
    /// At most 512 bytes.
    pub description: String,
    /// http(s) URL.
    pub url: String,
    /// Button text, at most 4 characters.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub btntxt: String,
}

/// The content of an app message, tagged by `msgtype`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
pub enum AppMessageContent {
    /// Plain text.
    Text {
        /// The text.
        text: Text,
    },
    /// A text card.
    Textcard {
        /// The card.
        textcard: TextCard,
    },
    /// Markdown.
    Markdown {
        /// The markdown (same shape as text).
        markdown: Text,
    },
    /// An image.
    Image {
        /// The image.
        image: MediaAttachment,
    },
    /// A file.
    File {
        /// The file.
        file: MediaAttachment,
    },
}

/// `message/send` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMessage {
    /// `|`-separated userids (≤1000), or "@all".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub touser: String,
    /// `|`-separated department ids (≤100).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub toparty: String,
    /// `|`-separated tag ids (≤100).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub totag: String,
    /// The sending app; must be the token's app (else 301002).
    pub agentid: i64,
    /// The content and its msgtype.
    #[serde(flatten)]
    pub content: AppMessageContent,
    /// 1 = confidential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe: Option<i64>,
    /// 1 = translate ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_id_trans: Option<i64>,
    /// 1 = drop duplicates within the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_duplicate_check: Option<i64>,
    /// Seconds, default 1800, at most 4 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_check_interval: Option<i64>,
}

/// `message/send` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageSendResponse {
    /// `|`-separated invalid userids.
    pub invaliduser: String,
    /// `|`-separated invalid department ids.
    pub invalidparty: String,
    /// `|`-separated invalid tag ids.
    pub invalidtag: String,
    /// `|`-separated unlicensed userids.
    pub unlicenseduser: String,
    /// For recall.
    pub msgid: String,
    /// Only for interactive template cards.
    pub response_code: String,
}

impl AppClient {
    /// `add_msg_template`: creates a mass send for members to confirm.
    pub async fn add_msg_template(
        &self,
        request: &MsgTemplate,
    ) -> Result<AddMsgTemplateResponse, WeComError> {
        if request.attachments.len() > 9 {
            return Err(WeComError::InvalidRequest("at most 9 attachments".into()));
        }
        if request.external_userid.len() > 10_000 {
            return Err(WeComError::InvalidRequest(
                "at most 10,000 external_userid per mass send".into(),
            ));
        }
        self.post(&ADD_MSG_TEMPLATE, request).await
    }

    /// `get_groupmsg_list_v2`: one page.
    pub async fn get_groupmsg_list_v2(
        &self,
        request: &GroupMsgListRequest,
    ) -> Result<GroupMsgListResponse, WeComError> {
        self.post(&GET_GROUPMSG_LIST_V2, request).await
    }

    /// Every mass send matching `request` (its cursor is ignored), following `next_cursor`.
    pub async fn get_groupmsg_list_v2_all(
        &self,
        request: &GroupMsgListRequest,
    ) -> Result<Vec<GroupMsg>, WeComError> {
        collect_pages(GET_GROUPMSG_LIST_V2.name, |cursor| {
            let request = GroupMsgListRequest {
                cursor,
                limit: 100,
                ..request.clone()
            };
            async move {
                let page = self.get_groupmsg_list_v2(&request).await?;
                Ok((page.group_msg_list, page.next_cursor))
            }
        })
        .await
    }

    /// `get_groupmsg_task`: one page (limit ≤ 1000).
    pub async fn get_groupmsg_task(
        &self,
        msgid: &str,
        limit: u32,
        cursor: &str,
    ) -> Result<GroupMsgTaskResponse, WeComError> {
        let body = MsgIdPage {
            msgid,
            userid: None,
            limit: limit.clamp(1, 1000),
            cursor,
        };
        self.post(&GET_GROUPMSG_TASK, &body).await
    }

    /// Every member task of a mass send.
    pub async fn get_groupmsg_task_all(
        &self,
        msgid: &str,
    ) -> Result<Vec<GroupMsgTask>, WeComError> {
        collect_pages(GET_GROUPMSG_TASK.name, |cursor| async move {
            let page = self.get_groupmsg_task(msgid, 1000, &cursor).await?;
            Ok((page.task_list, page.next_cursor))
        })
        .await
    }

    /// `get_groupmsg_send_result`: one page of one member's recipients (limit ≤ 1000).
    pub async fn get_groupmsg_send_result(
        &self,
        msgid: &str,
        userid: &str,
        limit: u32,
        cursor: &str,
    ) -> Result<GroupMsgSendResultResponse, WeComError> {
        let body = MsgIdPage {
            msgid,
            userid: Some(userid),
            limit: limit.clamp(1, 1000),
            cursor,
        };
        self.post(&GET_GROUPMSG_SEND_RESULT, &body).await
    }

    /// Every recipient result of one member for a mass send.
    pub async fn get_groupmsg_send_result_all(
        &self,
        msgid: &str,
        userid: &str,
    ) -> Result<Vec<GroupMsgSendResult>, WeComError> {
        collect_pages(GET_GROUPMSG_SEND_RESULT.name, |cursor| async move {
            let page = self
                .get_groupmsg_send_result(msgid, userid, 1000, &cursor)
                .await?;
            Ok((page.send_list, page.next_cursor))
        })
        .await
    }

    /// `remind_groupmsg_send`: re-notify members (≤ 3 times in 24 h).
    pub async fn remind_groupmsg_send(&self, msgid: &str) -> Result<(), WeComError> {
        let _: Empty = self.post(&REMIND_GROUPMSG_SEND, &MsgId { msgid }).await?;
        Ok(())
    }

    /// `cancel_groupmsg_send`: stop an enterprise mass send.
    pub async fn cancel_groupmsg_send(&self, msgid: &str) -> Result<(), WeComError> {
        let _: Empty = self.post(&CANCEL_GROUPMSG_SEND, &MsgId { msgid }).await?;
        Ok(())
    }

    /// `send_welcome_msg`. 41051 means another app already used the code.
    pub async fn send_welcome_msg(&self, request: &WelcomeMsg) -> Result<(), WeComError> {
        if request.attachments.len() > 9 {
            return Err(WeComError::InvalidRequest("at most 9 attachments".into()));
        }
        let _: Empty = self.post(&SEND_WELCOME_MSG, request).await?;
        Ok(())
    }

    /// `message/send`: an app message to members.
    pub async fn message_send(
        &self,
        message: &AppMessage,
    ) -> Result<MessageSendResponse, WeComError> {
        self.post(&MESSAGE_SEND, message).await
    }
}
