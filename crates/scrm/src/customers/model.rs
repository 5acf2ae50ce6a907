//! The customer model: the stored row, the views the API returns, and request bodies parsed into
//! checked values at the edge (a field that is wrong is named in the 400).

use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use crate::state::iso;

/// Every column of `customer`, in table order.
pub const COLUMNS: &str = "c.id, c.tenant_id, c.external_userid, c.name, c.avatar, c.type, c.gender, \
     c.unionid, c.province, c.city, c.mobile, c.remark, c.description, c.corp_name, \
     c.follow_user_id, c.add_time, c.channel, c.stage, c.blacklisted, c.status, c.last_active_at, \
     c.version, c.created_at, c.updated_at";

/// A stored customer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: i64,
    pub tenant_id: i64,
    pub external_userid: String,
    pub name: Option<String>,
    pub avatar: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: i64,
    pub gender: Option<i64>,
    pub unionid: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub mobile: Option<String>,
    pub remark: Option<String>,
    pub description: Option<String>,
    pub corp_name: Option<String>,
    pub follow_user_id: Option<i64>,
    pub add_time: Option<i64>,
    pub channel: Option<String>,
    pub stage: String,
    pub blacklisted: i64,
    pub status: i64,
    pub last_active_at: Option<i64>,
    /// Grows on every change to the customer or what is shown with it (the cache's check).
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A tag as shown on a customer.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TagRef {
    pub id: i64,
    pub name: String,
    pub group_id: i64,
}

/// A customer in lists (seed 001's entity, camelCase, times in ISO 8601, with its tags).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    pub id: i64,
    pub external_userid: String,
    pub name: Option<String>,
    pub avatar: Option<String>,
    #[serde(rename = "type")]
    pub kind: i64,
    pub gender: Option<i64>,
    pub unionid: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub mobile: Option<String>,
    pub remark: Option<String>,
    pub description: Option<String>,
    pub corp_name: Option<String>,
    pub follow_user_id: Option<i64>,
    pub add_time: Option<String>,
    pub channel: Option<String>,
    pub stage: String,
    pub blacklisted: bool,
    pub status: i64,
    pub create_time: String,
    pub update_time: String,
    #[schema(value_type = Vec<Object>)]
    pub tags: Vec<TagRef>,
}

impl CustomerView {
    pub fn new(r: CustomerRow, tags: Vec<TagRef>) -> Self {
        CustomerView {
            id: r.id,
            external_userid: r.external_userid,
            name: r.name,
            avatar: r.avatar,
            kind: r.kind,
            gender: r.gender,
            unionid: r.unionid,
            province: r.province,
            city: r.city,
            mobile: r.mobile,
            remark: r.remark,
            description: r.description,
            corp_name: r.corp_name,
            follow_user_id: r.follow_user_id,
            add_time: r.add_time.map(iso),
            channel: r.channel,
            stage: r.stage,
            blacklisted: r.blacklisted != 0,
            status: r.status,
            create_time: iso(r.created_at),
            update_time: iso(r.updated_at),
            tags,
        }
    }
}

/// A staff member following the customer.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct FollowView {
    pub staff_id: i64,
    pub userid: String,
    pub staff_name: String,
    pub remark: Option<String>,
    pub add_time: Option<i64>,
    pub add_way: i64,
    pub state: Option<String>,
    pub status: i64,
}

/// A group chat the customer is in.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct GroupRef {
    pub group_id: i64,
    pub chat_id: String,
    pub name: Option<String>,
    pub join_time: Option<i64>,
}

/// One customer with everything shown with it (seed 001's CustomerDetailVo); what the detail
/// cache holds, stamped with the customer's version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDetail {
    #[serde(flatten)]
    pub customer: CustomerView,
    pub follow_users: Vec<FollowView>,
    pub groups: Vec<GroupRef>,
    #[serde(skip_serializing)]
    #[serde(default)]
    pub version: i64,
}

/// Checked customer fields, shared by create, update and import. `None` leaves a field as it is
/// (update) or unset (create); `Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct CustomerFields {
    pub name: Option<Option<String>>,
    pub avatar: Option<Option<String>>,
    pub kind: Option<i64>,
    pub gender: Option<Option<i64>>,
    pub unionid: Option<Option<String>>,
    pub province: Option<Option<String>>,
    pub city: Option<Option<String>>,
    pub mobile: Option<Option<String>>,
    pub remark: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub corp_name: Option<Option<String>>,
    pub follow_user_id: Option<Option<i64>>,
    pub add_time: Option<Option<i64>>,
    pub channel: Option<Option<String>>,
    pub stage: Option<String>,
    pub status: Option<i64>,
}

/// The body of create and update (update ignores `externalUserid`, which never changes).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerBody {
    pub external_userid: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<i64>,
    pub gender: Option<i64>,
    pub unionid: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub mobile: Option<String>,
    pub remark: Option<String>,
    pub description: Option<String>,
    pub corp_name: Option<String>,
    pub follow_user_id: Option<i64>,
    /// ISO 8601 or epoch milliseconds.
    #[schema(value_type = Option<String>)]
    pub add_time: Option<serde_json::Value>,
    pub channel: Option<String>,
    pub stage: Option<String>,
    pub status: Option<i64>,
}

/// An optional text field: trimmed, empty means "clear", longer than `max` characters is a 400.
fn text(field: &str, v: Option<String>, max: usize) -> Result<Option<Option<String>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim().to_string();
    if v.chars().count() > max {
        return Err(ApiError::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(Some(if v.is_empty() { None } else { Some(v) }))
}

/// A mobile number kept as `+` and digits only, so the 4-gram index and the recheck agree.
pub fn normalize_mobile(raw: &str) -> Result<Option<String>, ApiError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    for (i, c) in trimmed.chars().enumerate() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push(c),
            ' ' | '-' | '(' | ')' => {}
            _ => {
                return Err(ApiError::field(
                    "mobile",
                    "digits, spaces, dashes and a leading + only",
                ));
            }
        }
    }
    let digits = out.trim_start_matches('+').len();
    if !(5..=20).contains(&digits) {
        return Err(ApiError::field("mobile", "must have 5 to 20 digits"));
    }
    Ok(Some(out))
}

/// A time given as ISO 8601 or epoch milliseconds.
pub fn parse_time(field: &str, v: &serde_json::Value) -> Result<Option<i64>, ApiError> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n
            .as_i64()
            .filter(|ms| *ms >= 0)
            .map(Some)
            .ok_or_else(|| ApiError::field(field, "must be epoch milliseconds or ISO 8601")),
        serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| ApiError::field(field, "must be ISO 8601, e.g. 2026-11-22T10:00:00Z")),
        _ => Err(ApiError::field(
            field,
            "must be epoch milliseconds or ISO 8601",
        )),
    }
}

impl CustomerBody {
    /// Check every field; the first wrong one is named.
    pub fn into_fields(self) -> Result<CustomerFields, ApiError> {
        let mut f = CustomerFields {
            name: text("name", self.name, 100)?,
            avatar: text("avatar", self.avatar, 255)?,
            unionid: text("unionid", self.unionid, 100)?,
            province: text("province", self.province, 50)?,
            city: text("city", self.city, 50)?,
            remark: text("remark", self.remark, 255)?,
            description: text("description", self.description, 2000)?,
            corp_name: text("corpName", self.corp_name, 100)?,
            channel: text("channel", self.channel, 50)?,
            ..Default::default()
        };
        if let Some(k) = self.kind {
            if !(1..=2).contains(&k) {
                return Err(ApiError::field("type", "must be 1 (WeChat) or 2 (WeCom)"));
            }
            f.kind = Some(k);
        }
        if let Some(g) = self.gender {
            if !(0..=2).contains(&g) {
                return Err(ApiError::field("gender", "must be 0, 1 or 2"));
            }
            f.gender = Some(Some(g));
        }
        if let Some(m) = self.mobile {
            f.mobile = Some(normalize_mobile(&m)?);
        }
        if let Some(u) = self.follow_user_id {
            if u <= 0 {
                return Err(ApiError::field("followUserId", "must be a staff id"));
            }
            f.follow_user_id = Some(Some(u));
        }
        if let Some(t) = &self.add_time {
            f.add_time = Some(parse_time("addTime", t)?);
        }
        if let Some(s) = self.stage {
            let s = s.trim().to_string();
            if s.is_empty() || s.len() > 32 {
                return Err(ApiError::field("stage", "must be a stage code"));
            }
            f.stage = Some(s);
        }
        if let Some(s) = self.status {
            if !(0..=2).contains(&s) {
                return Err(ApiError::field(
                    "status",
                    "must be 0 (deleted), 1 (normal) or 2 (lost)",
                ));
            }
            f.status = Some(s);
        }
        Ok(f)
    }
}

/// A WeCom external contact id (or a local one for customers made in scrm): 1-100 characters,
/// no spaces.
pub fn external_userid(v: Option<String>) -> Result<String, ApiError> {
    match v.map(|s| s.trim().to_string()) {
        None => Ok(format!("local-{}", uuid::Uuid::now_v7().simple())),
        Some(s) if s.is_empty() || s.len() > 100 || s.contains(char::is_whitespace) => Err(
            ApiError::field("externalUserid", "1-100 characters without spaces"),
        ),
        Some(s) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_are_kept_as_digits() {
        assert_eq!(
            normalize_mobile("+86 138-0013-8000").unwrap(),
            Some("+8613800138000".into())
        );
        assert_eq!(normalize_mobile("  ").unwrap(), None);
        assert!(normalize_mobile("12ab").is_err());
        assert!(normalize_mobile("123").is_err());
    }

    #[test]
    fn times_are_iso_or_millis() {
        assert_eq!(
            parse_time("t", &serde_json::json!("2026-11-22T00:00:00Z")).unwrap(),
            Some(1_795_305_600_000)
        );
        assert_eq!(parse_time("t", &serde_json::json!(5)).unwrap(), Some(5));
        assert!(parse_time("t", &serde_json::json!("yesterday")).is_err());
    }
}
