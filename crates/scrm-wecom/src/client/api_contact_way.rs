//! 「联系我」 contact ways: QR codes / buttons whose `state` comes back in the
//! add_external_contact callback.
//!
//! Not covered by API-FACTS; shapes follow the official doc (path/92228) as mirrored by the
//! SDKs: add returns `config_id` + `qr_code`, get returns `contact_way{…}`, del takes
//! `config_id`. Unknown fields are ignored so doc drift does not break reads.

use serde::{Deserialize, Serialize};

use super::api_customers::Empty;
use super::{Api, AppClient, WeComError};

const ADD_CONTACT_WAY: Api = Api::post_write(
    "externalcontact/add_contact_way",
    "/cgi-bin/externalcontact/add_contact_way",
);
const GET_CONTACT_WAY: Api = Api::post_read(
    "externalcontact/get_contact_way",
    "/cgi-bin/externalcontact/get_contact_way",
);
const UPDATE_CONTACT_WAY: Api = Api::post_idempotent(
    "externalcontact/update_contact_way",
    "/cgi-bin/externalcontact/update_contact_way",
);
const DEL_CONTACT_WAY: Api = Api::post_idempotent(
    "externalcontact/del_contact_way",
    "/cgi-bin/externalcontact/del_contact_way",
);

/// A contact way (add request and get response share the shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactWay {
    /// Set by WeCom; empty when adding.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub config_id: String,
    /// 1 single member, 2 several members.
    #[serde(rename = "type")]
    pub kind: i64,
    /// 1 mini-program button, 2 QR code.
    pub scene: i64,
    /// Mini-program button style.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<i64>,
    /// Remark.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remark: String,
    /// Add without the member confirming.
    pub skip_verify: bool,
    /// Echoed in the add_external_contact callback's `State` (≤30 chars).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// QR code URL (get only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub qr_code: String,
    /// Members.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<String>,
    /// Departments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub party: Vec<i64>,
    /// Temporary session mode.
    pub is_temp: bool,
    /// Temporary QR validity in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// Temporary session validity in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_expires_in: Option<i64>,
    /// Limit to one WeChat user.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unionid: String,
    /// End-of-session message, kept as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusions: Option<serde_json::Value>,
}

/// `add_contact_way` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddContactWayResponse {
    /// Id for get/update/del.
    pub config_id: String,
    /// QR code URL (scene 2).
    pub qr_code: String,
}

#[derive(Debug, Serialize)]
struct ConfigId<'a> {
    config_id: &'a str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GetContactWayResponse {
    contact_way: ContactWay,
}

impl AppClient {
    /// `add_contact_way`.
    pub async fn add_contact_way(
        &self,
        way: &ContactWay,
    ) -> Result<AddContactWayResponse, WeComError> {
        self.post(&ADD_CONTACT_WAY, way).await
    }

    /// `get_contact_way`.
    pub async fn get_contact_way(&self, config_id: &str) -> Result<ContactWay, WeComError> {
        let r: GetContactWayResponse = self.post(&GET_CONTACT_WAY, &ConfigId { config_id }).await?;
        Ok(r.contact_way)
    }

    /// `update_contact_way`: `way.config_id` selects it.
    pub async fn update_contact_way(&self, way: &ContactWay) -> Result<(), WeComError> {
        let _: Empty = self.post(&UPDATE_CONTACT_WAY, way).await?;
        Ok(())
    }

    /// `del_contact_way`.
    pub async fn del_contact_way(&self, config_id: &str) -> Result<(), WeComError> {
        let _: Empty = self.post(&DEL_CONTACT_WAY, &ConfigId { config_id }).await?;
        Ok(())
    }
}
