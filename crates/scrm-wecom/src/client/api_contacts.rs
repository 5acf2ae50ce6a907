//! gettoken and the contacts directory (通讯录): departments and members (API-FACTS §2, §3).

use serde::{Deserialize, Serialize};

use super::wire::{collect_pages, string_lenient};
use super::{Api, AppClient, WeComError};

pub(crate) const GETTOKEN: Api = Api::get("gettoken", "/cgi-bin/gettoken");
const DEPARTMENT_LIST: Api = Api::get("department/list", "/cgi-bin/department/list");
const USER_LIST: Api = Api::get("user/list", "/cgi-bin/user/list");
const USER_LIST_ID: Api = Api::post_read("user/list_id", "/cgi-bin/user/list_id");
const USER_GET: Api = Api::get("user/get", "/cgi-bin/user/get");

/// `gettoken` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GetTokenResponse {
    /// Up to 512 bytes.
    pub access_token: String,
    /// Lifetime in seconds, normally 7200.
    pub expires_in: u64,
}

/// A department (`department/list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Department {
    /// Department id; the root is 1.
    pub id: i64,
    /// Name.
    pub name: String,
    /// English name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_en: String,
    /// Userids of the department leaders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub department_leader: Vec<String>,
    /// Parent department id (0 for the root).
    pub parentid: i64,
    /// Sort order, bigger first.
    pub order: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct DepartmentListResponse {
    department: Vec<Department>,
}

/// A member (`user/get`, `user/list`). Fields withheld for the caller's app are empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// Userid, unique in the corp.
    pub userid: String,
    /// Name.
    pub name: String,
    /// Department ids.
    pub department: Vec<i64>,
    /// Order in each department, parallel to `department`.
    pub order: Vec<i64>,
    /// Job title.
    pub position: String,
    /// Mobile (sensitive; often withheld).
    pub mobile: String,
    /// "0" unknown, "1" male, "2" female.
    #[serde(deserialize_with = "string_lenient")]
    pub gender: String,
    /// Email (sensitive).
    pub email: String,
    /// Company mailbox.
    pub biz_mail: String,
    /// 1 where the member leads the department, parallel to `department`.
    pub is_leader_in_dept: Vec<i64>,
    /// Direct managers' userids.
    pub direct_leader: Vec<String>,
    /// Avatar URL.
    pub avatar: String,
    /// Thumbnail avatar URL.
    pub thumb_avatar: String,
    /// Landline.
    pub telephone: String,
    /// Alias.
    pub alias: String,
    /// Address.
    pub address: String,
    /// Cross-corp id for service providers.
    pub open_userid: String,
    /// Main department id.
    pub main_department: i64,
    /// 1 active, 2 disabled, 4 not activated, 5 left the company.
    pub status: i64,
    /// Personal QR code URL.
    pub qr_code: String,
    /// Title shown to external contacts.
    pub external_position: String,
    /// Custom attributes, kept as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extattr: Option<serde_json::Value>,
    /// External profile, kept as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_profile: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct UserListResponse {
    userlist: Vec<User>,
}

/// One (member, department) row from `user/list_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeptUser {
    /// Userid (`open_userid` for 3rd-party apps).
    pub userid: String,
    /// A department the member belongs to.
    pub department: i64,
}

/// `user/list_id` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserListIdRequest {
    /// Empty on the first call.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub cursor: String,
    /// 1..=10000.
    pub limit: u32,
}

/// `user/list_id` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserListIdResponse {
    /// Empty when this was the last page.
    pub next_cursor: String,
    /// One row per (member, department).
    pub dept_user: Vec<DeptUser>,
}

impl AppClient {
    /// `department/list`: the subtree under `id` (recursive), or the whole visible org.
    pub async fn department_list(&self, id: Option<i64>) -> Result<Vec<Department>, WeComError> {
        let mut query = Vec::new();
        if let Some(id) = id {
            query.push(("id", id.to_string()));
        }
        let r: DepartmentListResponse = self.get(&DEPARTMENT_LIST, &query).await?;
        Ok(r.department)
    }

    /// `user/list`: members of a department, with full details; `fetch_child` recurses.
    pub async fn user_list(
        &self,
        department_id: i64,
        fetch_child: bool,
    ) -> Result<Vec<User>, WeComError> {
        let query = [
            ("department_id", department_id.to_string()),
            (
                "fetch_child",
                if fetch_child { "1" } else { "0" }.to_owned(),
            ),
        ];
        let r: UserListResponse = self.get(&USER_LIST, &query).await?;
        Ok(r.userlist)
    }

    /// `user/list_id`: one page of (userid, department) rows.
    pub async fn user_list_id(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<UserListIdResponse, WeComError> {
        let body = UserListIdRequest {
            cursor: cursor.to_owned(),
            limit: limit.clamp(1, 10_000),
        };
        self.post(&USER_LIST_ID, &body).await
    }

    /// Every (userid, department) row, following `next_cursor`.
    pub async fn user_list_id_all(&self) -> Result<Vec<DeptUser>, WeComError> {
        collect_pages(USER_LIST_ID.name, |cursor| async move {
            let page = self.user_list_id(&cursor, 10_000).await?;
            Ok((page.dept_user, page.next_cursor))
        })
        .await
    }

    /// `user/get`: one member.
    pub async fn user_get(&self, userid: &str) -> Result<User, WeComError> {
        self.get(&USER_GET, &[("userid", userid.to_owned())]).await
    }
}
