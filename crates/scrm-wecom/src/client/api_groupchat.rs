//! Customer group chats (客户群, API-FACTS §6) and their transfer (§9).

use serde::{Deserialize, Serialize};

use super::wire::collect_pages;
use super::{Api, AppClient, WeComError};

const GROUPCHAT_LIST: Api = Api::post_read(
    "externalcontact/groupchat/list",
    "/cgi-bin/externalcontact/groupchat/list",
);
const GROUPCHAT_GET: Api = Api::post_read(
    "externalcontact/groupchat/get",
    "/cgi-bin/externalcontact/groupchat/get",
);
const GROUPCHAT_TRANSFER: Api = Api::post_write(
    "externalcontact/groupchat/transfer",
    "/cgi-bin/externalcontact/groupchat/transfer",
);
const GROUPCHAT_ONJOB_TRANSFER: Api = Api::post_write(
    "externalcontact/groupchat/onjob_transfer",
    "/cgi-bin/externalcontact/groupchat/onjob_transfer",
);

/// `owner_filter` of `groupchat/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OwnerFilter {
    /// At most 100 owner userids.
    pub userid_list: Vec<String>,
}

/// `groupchat/list` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupChatListRequest {
    /// 0 all, 1 owner left (awaiting transfer), 2 transfer in progress, 3 transferred.
    pub status_filter: i64,
    /// Required when the app's visible range exceeds 1000 people (else errcode 81017).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_filter: Option<OwnerFilter>,
    /// Omitted on the first call.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cursor: String,
    /// 1..=1000.
    pub limit: u32,
}

/// One row of `groupchat/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupChatListItem {
    /// Chat id.
    pub chat_id: String,
    /// 0 normal, 1 owner left, 2 transfer in progress, 3 transferred.
    pub status: i64,
}

/// `groupchat/list` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupChatListResponse {
    /// This page.
    pub group_chat_list: Vec<GroupChatListItem>,
    /// Empty at the end.
    pub next_cursor: String,
}

/// `invitor` of a group member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Invitor {
    /// The inviting member.
    pub userid: String,
}

/// A member of a customer group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupChatMember {
    /// Member userid or customer external_userid.
    pub userid: String,
    /// 1 corp member, 2 external contact.
    #[serde(rename = "type")]
    pub kind: i64,
    /// WeChat unionid (WeChat users, bound corps only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unionid: String,
    /// When they joined (unix seconds).
    pub join_time: i64,
    /// 1 invited directly, 2 invite link, 3 scanned the group QR code.
    pub join_scene: i64,
    /// Who invited them, when a member did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitor: Option<Invitor>,
    /// Nickname in the group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group_nickname: String,
    /// Display name (only with need_name).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Join-way state, when joined through one with a state.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
}

/// A group admin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupChatAdmin {
    /// The admin's userid.
    pub userid: String,
}

/// `groupchat/get` `group_chat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupChat {
    /// Chat id.
    pub chat_id: String,
    /// Group name.
    pub name: String,
    /// Owner userid.
    pub owner: String,
    /// Creation time (unix seconds).
    pub create_time: i64,
    /// Group notice.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub notice: String,
    /// Members.
    pub member_list: Vec<GroupChatMember>,
    /// Admins.
    pub admin_list: Vec<GroupChatAdmin>,
    /// Member-list version; compare with callback LastMemVer/CurMemVer.
    pub member_version: String,
}

#[derive(Debug, Serialize)]
struct GroupChatGetRequest<'a> {
    chat_id: &'a str,
    need_name: u8,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GroupChatGetResponse {
    group_chat: GroupChat,
}

/// `groupchat/transfer` / `onjob_transfer` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupChatTransferRequest {
    /// 1..=100 chat ids.
    pub chat_id_list: Vec<String>,
    /// The new owner.
    pub new_owner: String,
}

/// A chat that could not be transferred.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedChat {
    /// Chat id.
    pub chat_id: String,
    /// 905xx (see [`crate::client::errcode_meaning`]).
    pub errcode: i64,
    /// Message.
    pub errmsg: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GroupChatTransferResponse {
    failed_chat_list: Vec<FailedChat>,
}

impl AppClient {
    /// `groupchat/list`: one page.
    pub async fn groupchat_list(
        &self,
        request: &GroupChatListRequest,
    ) -> Result<GroupChatListResponse, WeComError> {
        self.post(&GROUPCHAT_LIST, request).await
    }

    /// Every chat matching `status_filter` / owners, following `next_cursor` (1000 a page).
    pub async fn groupchat_list_all(
        &self,
        status_filter: i64,
        owner_filter: Option<OwnerFilter>,
    ) -> Result<Vec<GroupChatListItem>, WeComError> {
        collect_pages(GROUPCHAT_LIST.name, |cursor| {
            let request = GroupChatListRequest {
                status_filter,
                owner_filter: owner_filter.clone(),
                cursor,
                limit: 1000,
            };
            async move {
                let page = self.groupchat_list(&request).await?;
                Ok((page.group_chat_list, page.next_cursor))
            }
        })
        .await
    }

    /// `groupchat/get`; `need_name` fills `member_list[].name`.
    pub async fn groupchat_get(
        &self,
        chat_id: &str,
        need_name: bool,
    ) -> Result<GroupChat, WeComError> {
        let request = GroupChatGetRequest {
            chat_id,
            need_name: u8::from(need_name),
        };
        let r: GroupChatGetResponse = self.post(&GROUPCHAT_GET, &request).await?;
        Ok(r.group_chat)
    }

    /// `groupchat/transfer` (离职: owner has left): returns the chats that failed.
    pub async fn groupchat_transfer(
        &self,
        request: &GroupChatTransferRequest,
    ) -> Result<Vec<FailedChat>, WeComError> {
        let r: GroupChatTransferResponse = self.post(&GROUPCHAT_TRANSFER, request).await?;
        Ok(r.failed_chat_list)
    }

    /// `groupchat/onjob_transfer` (在职): returns the chats that failed.
    pub async fn groupchat_onjob_transfer(
        &self,
        request: &GroupChatTransferRequest,
    ) -> Result<Vec<FailedChat>, WeComError> {
        let r: GroupChatTransferResponse = self.post(&GROUPCHAT_ONJOB_TRANSFER, request).await?;
        Ok(r.failed_chat_list)
    }
}
