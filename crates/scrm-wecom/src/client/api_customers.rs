//! Customers (客户管理, API-FACTS §4): who follows whom, customer details, bulk reads.

use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

use super::{Api, AppClient, WeComError};

const GET_FOLLOW_USER_LIST: Api = Api::get(
    "externalcontact/get_follow_user_list",
    "/cgi-bin/externalcontact/get_follow_user_list",
);
const LIST: Api = Api::get("externalcontact/list", "/cgi-bin/externalcontact/list");
const GET: Api = Api::get("externalcontact/get", "/cgi-bin/externalcontact/get");
const BATCH_GET_BY_USER: Api = Api::post_read(
    "externalcontact/batch/get_by_user",
    "/cgi-bin/externalcontact/batch/get_by_user",
);
const REMARK: Api = Api::post_write("externalcontact/remark", "/cgi-bin/externalcontact/remark");

/// 不存在外部联系人的关系: what `externalcontact/list` answers for a member with no customers.
pub const NOT_EXTERNAL_CONTACT: i64 = 84061;

/// The customer side of `externalcontact/get` and `batch/get_by_user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExternalContact {
    /// The customer's id in this corp.
    pub external_userid: String,
    /// WeChat nickname, or the WeCom contact's display name.
    pub name: String,
    /// Title (WeCom customers only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub position: String,
    /// Avatar URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub avatar: String,
    /// Company short name (WeCom customers only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub corp_name: String,
    /// Company full name (WeCom customers only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub corp_full_name: String,
    /// 1 WeChat user, 2 WeCom user.
    #[serde(rename = "type")]
    pub kind: i64,
    /// 0 unknown, 1 male, 2 female.
    pub gender: i64,
    /// WeChat unionid when the corp has bound a developer account.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unionid: String,
    /// External profile (WeCom customers), kept as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_profile: Option<serde_json::Value>,
}

/// A tag on a follow relation in `externalcontact/get`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FollowUserTag {
    /// Tag group name.
    pub group_name: String,
    /// Tag name.
    pub tag_name: String,
    /// Only for corp tags (type 1) and strategy tags (type 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<String>,
    /// 1 corp tag, 2 the member's personal tag, 3 strategy-group tag.
    #[serde(rename = "type")]
    pub kind: i64,
}

/// `wechat_channels` on a relation added through 视频号 (add_way 10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WechatChannels {
    /// Channel nickname.
    pub nickname: String,
    /// Source scene.
    pub source: i64,
}

/// One member's relation with a customer (`follow_user[]` of `externalcontact/get`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FollowUser {
    /// The member.
    pub userid: String,
    /// The member's remark for the customer.
    pub remark: String,
    /// Description.
    pub description: String,
    /// When the relation was created (unix seconds).
    pub createtime: i64,
    /// Tags on this relation.
    pub tags: Vec<FollowUserTag>,
    /// Remarked company (WeChat customers).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remark_corp_name: String,
    /// Remarked phone numbers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remark_mobiles: Vec<String>,
    /// Who added whom: the member's userid, or the customer's external_userid.
    pub oper_userid: String,
    /// How the customer was added (API-FACTS §4 `add_way` table).
    pub add_way: i64,
    /// 「联系我」 state / 获客链接 channel.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Set when added through 视频号.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_channels: Option<WechatChannels>,
}

/// `externalcontact/get` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerDetail {
    /// The customer.
    pub external_contact: ExternalContact,
    /// Members following the customer (500 per page).
    pub follow_user: Vec<FollowUser>,
    /// Present only when the customer has more than 500 follow members.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_cursor: String,
}

/// `follow_info` in `batch/get_by_user`: like [`FollowUser`] but tags are a flat id list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FollowInfo {
    /// The member.
    pub userid: String,
    /// Remark.
    pub remark: String,
    /// Description.
    pub description: String,
    /// When the relation was created (unix seconds).
    pub createtime: i64,
    /// Corp/strategy tag ids on this relation.
    pub tag_id: Vec<String>,
    /// Remarked company.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remark_corp_name: String,
    /// Remarked phone numbers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remark_mobiles: Vec<String>,
    /// Who added whom.
    pub oper_userid: String,
    /// How the customer was added.
    pub add_way: i64,
    /// 「联系我」 state.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Set when added through 视频号.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_channels: Option<WechatChannels>,
}

/// One (customer, follow member) pair from `batch/get_by_user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerWithFollowInfo {
    /// The customer.
    pub external_contact: ExternalContact,
    /// The relation with the member it was listed under.
    pub follow_info: FollowInfo,
}

/// `batch/get_by_user` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchGetByUserRequest {
    /// At most 100 userids.
    pub userid_list: Vec<String>,
    /// Empty on the first call.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cursor: String,
    /// At most 100 (WeCom clamps larger values); default 50.
    pub limit: u32,
}

/// `batch/get_by_user` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchGetByUserResponse {
    /// One element per (customer, follow member).
    pub external_contact_list: Vec<CustomerWithFollowInfo>,
    /// Empty when this was the last page.
    pub next_cursor: String,
}

/// `externalcontact/remark` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemarkRequest {
    /// The member.
    pub userid: String,
    /// The customer.
    pub external_userid: String,
    /// New remark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Remarked company (WeChat customers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark_company: Option<String>,
    /// Replaces the remarked phone numbers; `[""]` clears them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark_mobiles: Option<Vec<String>>,
    /// Remark picture media id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark_pic_mediaid: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FollowUserListResponse {
    follow_user: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListResponse {
    external_userid: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Empty {}

impl AppClient {
    /// `get_follow_user_list`: members with 客户联系 enabled, in the app's visible range.
    pub async fn get_follow_user_list(&self) -> Result<Vec<String>, WeComError> {
        let r: FollowUserListResponse = self.get(&GET_FOLLOW_USER_LIST, &[]).await?;
        Ok(r.follow_user)
    }

    /// `externalcontact/list`: the member's customers (not paginated). A member without
    /// customers is an empty list here, although WeCom reports it as errcode 84061.
    pub async fn list_customers(&self, userid: &str) -> Result<Vec<String>, WeComError> {
        match self
            .get::<ListResponse>(&LIST, &[("userid", userid.to_owned())])
            .await
        {
            Ok(r) => Ok(r.external_userid),
            Err(e) if e.errcode() == Some(NOT_EXTERNAL_CONTACT) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `externalcontact/get`: one page (500) of the customer's follow members.
    pub async fn get_customer(
        &self,
        external_userid: &str,
        cursor: &str,
    ) -> Result<CustomerDetail, WeComError> {
        let mut query = vec![("external_userid", external_userid.to_owned())];
        if !cursor.is_empty() {
            query.push(("cursor", cursor.to_owned()));
        }
        self.get(&GET, &query).await
    }

    /// `externalcontact/get` following `next_cursor`: the customer with all follow members.
    pub async fn get_customer_all_follow_users(
        &self,
        external_userid: &str,
    ) -> Result<CustomerDetail, WeComError> {
        let mut detail = self.get_customer(external_userid, "").await?;
        let mut seen = std::collections::HashSet::new();
        while !detail.next_cursor.is_empty() {
            if !seen.insert(detail.next_cursor.clone()) {
                return Err(WeComError::Decode {
                    api: GET.name,
                    message: "next_cursor repeated".into(),
                });
            }
            let page = self
                .get_customer(external_userid, &detail.next_cursor)
                .await?;
            detail.follow_user.extend(page.follow_user);
            detail.next_cursor = page.next_cursor;
        }
        Ok(detail)
    }

    /// `batch/get_by_user`: one page. `userid_list` may hold at most 100 userids.
    pub async fn batch_get_by_user(
        &self,
        userid_list: &[String],
        cursor: &str,
        limit: u32,
    ) -> Result<BatchGetByUserResponse, WeComError> {
        if userid_list.is_empty() || userid_list.len() > 100 {
            return Err(WeComError::InvalidRequest(format!(
                "batch/get_by_user takes 1..=100 userids, got {}",
                userid_list.len()
            )));
        }
        let body = BatchGetByUserRequest {
            userid_list: userid_list.to_vec(),
            cursor: cursor.to_owned(),
            limit: limit.clamp(1, 100),
        };
        self.post(&BATCH_GET_BY_USER, &body).await
    }

    /// Every (customer, follow member) pair of the given members, as a stream of pages: the
    /// userids are sent 100 at a time and each group's cursor is followed to the end. Pages
    /// arrive as fetched, so a full sync of a large corp never holds everything in memory.
    pub fn customers_by_user_pages(
        &self,
        userids: Vec<String>,
    ) -> BoxStream<'_, Result<Vec<CustomerWithFollowInfo>, WeComError>> {
        let chunks: Vec<Vec<String>> = userids.chunks(100).map(<[String]>::to_vec).collect();
        // State: remaining chunks (current first) and the cursor for the current chunk.
        let state = (chunks.into_iter().peekable(), String::new());
        stream::try_unfold(state, move |(mut chunks, cursor)| async move {
            let Some(chunk) = chunks.peek() else {
                return Ok(None);
            };
            let page = self.batch_get_by_user(chunk, &cursor, 100).await?;
            if page.next_cursor == cursor && !cursor.is_empty() {
                return Err(WeComError::Decode {
                    api: BATCH_GET_BY_USER.name,
                    message: "next_cursor repeated".into(),
                });
            }
            if page.next_cursor.is_empty() {
                chunks.next();
            }
            Ok(Some((
                page.external_contact_list,
                (chunks, page.next_cursor),
            )))
        })
        .boxed()
    }

    /// [`Self::customers_by_user_pages`] collected into one `Vec`.
    pub async fn list_all_customers_by_user(
        &self,
        userids: Vec<String>,
    ) -> Result<Vec<CustomerWithFollowInfo>, WeComError> {
        let mut pages = self.customers_by_user_pages(userids);
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page?);
        }
        Ok(out)
    }

    /// `externalcontact/remark`: edit a member's remark on a customer.
    pub async fn remark_customer(&self, request: &RemarkRequest) -> Result<(), WeComError> {
        let _: Empty = self.post(&REMARK, request).await?;
        Ok(())
    }
}
