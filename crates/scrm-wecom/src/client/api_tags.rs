//! Corp customer tags (企业客户标签, API-FACTS §5). An app may edit and delete only the tags
//! it created; API changes produce no callbacks.

use serde::{Deserialize, Serialize};

use super::api_customers::Empty;
use super::{Api, AppClient, WeComError};

const GET_CORP_TAG_LIST: Api = Api::post_read(
    "externalcontact/get_corp_tag_list",
    "/cgi-bin/externalcontact/get_corp_tag_list",
);
const ADD_CORP_TAG: Api = Api::post_write(
    "externalcontact/add_corp_tag",
    "/cgi-bin/externalcontact/add_corp_tag",
);
const EDIT_CORP_TAG: Api = Api::post_idempotent(
    "externalcontact/edit_corp_tag",
    "/cgi-bin/externalcontact/edit_corp_tag",
);
const DEL_CORP_TAG: Api = Api::post_idempotent(
    "externalcontact/del_corp_tag",
    "/cgi-bin/externalcontact/del_corp_tag",
);
const MARK_TAG: Api = Api::post_idempotent(
    "externalcontact/mark_tag",
    "/cgi-bin/externalcontact/mark_tag",
);

/// A corp tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorpTag {
    /// Tag id (`et…`).
    pub id: String,
    /// Name, at most 30 characters.
    pub name: String,
    /// Creation time (unix seconds).
    pub create_time: i64,
    /// Sort order, bigger first.
    pub order: u64,
    /// Only reported when querying by id.
    pub deleted: bool,
}

/// A corp tag group with its tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TagGroup {
    /// Group id.
    pub group_id: String,
    /// Group name.
    pub group_name: String,
    /// Creation time (unix seconds).
    pub create_time: i64,
    /// Sort order, bigger first.
    pub order: u64,
    /// Only reported when querying by tag id.
    pub deleted: bool,
    /// The group's tags.
    pub tag: Vec<CorpTag>,
}

/// `get_corp_tag_list` request: both empty means every tag; `group_id` wins over `tag_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GetCorpTagListRequest {
    /// Tags to fetch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tag_id: Vec<String>,
    /// Groups to fetch, with all their tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_id: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TagGroupsResponse {
    tag_group: Vec<TagGroup>,
}

/// A tag to create in `add_corp_tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTag {
    /// Name, at most 30 characters.
    pub name: String,
    /// Sort order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u64>,
}

/// `add_corp_tag` request: `group_id` adds to an existing group, else `group_name` names a new
/// (or same-named existing) group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddCorpTagRequest {
    /// Existing group to add to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Group name when creating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Group order when creating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u64>,
    /// Tags to add; at least one (empty groups cannot be created).
    pub tag: Vec<NewTag>,
    /// Only for old multi-app 3rd-party suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AddCorpTagResponse {
    tag_group: TagGroup,
}

/// `edit_corp_tag` request: renames or reorders a tag or a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditCorpTagRequest {
    /// Tag or group id.
    pub id: String,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u64>,
    /// Only for old multi-app 3rd-party suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<i64>,
}

/// `del_corp_tag` request; the two lists may not both be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DelCorpTagRequest {
    /// Tags to delete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tag_id: Vec<String>,
    /// Groups to delete, with their tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_id: Vec<String>,
    /// Only for old multi-app 3rd-party suites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agentid: Option<i64>,
}

/// `mark_tag` request: tag or untag one customer of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MarkTagRequest {
    /// The member.
    pub userid: String,
    /// The customer (must be a customer of `userid`).
    pub external_userid: String,
    /// Tag ids to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_tag: Vec<String>,
    /// Tag ids to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_tag: Vec<String>,
}

impl AppClient {
    /// `get_corp_tag_list`.
    pub async fn get_corp_tag_list(
        &self,
        request: &GetCorpTagListRequest,
    ) -> Result<Vec<TagGroup>, WeComError> {
        let r: TagGroupsResponse = self.post(&GET_CORP_TAG_LIST, request).await?;
        Ok(r.tag_group)
    }

    /// `add_corp_tag`: returns the group with the created tags and their ids.
    pub async fn add_corp_tag(&self, request: &AddCorpTagRequest) -> Result<TagGroup, WeComError> {
        if request.tag.is_empty() {
            return Err(WeComError::InvalidRequest(
                "add_corp_tag needs at least one tag".into(),
            ));
        }
        let r: AddCorpTagResponse = self.post(&ADD_CORP_TAG, request).await?;
        Ok(r.tag_group)
    }

    /// `edit_corp_tag`.
    pub async fn edit_corp_tag(&self, request: &EditCorpTagRequest) -> Result<(), WeComError> {
        let _: Empty = self.post(&EDIT_CORP_TAG, request).await?;
        Ok(())
    }

    /// `del_corp_tag`.
    pub async fn del_corp_tag(&self, request: &DelCorpTagRequest) -> Result<(), WeComError> {
        if request.tag_id.is_empty() && request.group_id.is_empty() {
            return Err(WeComError::InvalidRequest(
                "del_corp_tag needs tag_id or group_id".into(),
            ));
        }
        let _: Empty = self.post(&DEL_CORP_TAG, request).await?;
        Ok(())
    }

    /// `mark_tag`.
    pub async fn mark_tag(&self, request: &MarkTagRequest) -> Result<(), WeComError> {
        if request.add_tag.is_empty() && request.remove_tag.is_empty() {
            return Err(WeComError::InvalidRequest(
                "mark_tag needs add_tag or remove_tag".into(),
            ));
        }
        let _: Empty = self.post(&MARK_TAG, request).await?;
        Ok(())
    }
}
