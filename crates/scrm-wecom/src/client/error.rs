//! [`WeComError`] and the errcode table (API-FACTS §2, §13).
//!
//! Decisions are made on `errcode`, never on `errmsg`: WeCom appends hints, IPs and URLs to
//! errmsg (API-FACTS §1), so text matching would be fragile.

use crate::secret::redact_query_secrets;

/// Errcodes meaning "this access_token is no good": drop it, fetch a new one, retry once.
pub const TOKEN_INVALID_CODES: [i64; 3] = [40001, 40014, 42001];
/// 系统繁忙: retry with backoff, at most 3 tries in all.
pub const SYSTEM_BUSY: i64 = -1;
/// 接口调用超过限制: blocked for the length of the window (60 s for minute limits).
pub const FREQ_OUT_OF_LIMIT: i64 = 45009;
/// 接口并发调用超过限制: too many concurrent calls to one API.
pub const CONCURRENT_OUT_OF_LIMIT: i64 = 45033;

/// An error from a WeCom call. Never contains an access token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeComError {
    /// WeCom answered with a non-zero `errcode`.
    #[error("WeCom {api} failed: errcode {errcode} ({}): {errmsg}", errcode_meaning(*.errcode).unwrap_or("unknown errcode"))]
    Api {
        /// The numeric code; see [`errcode_meaning`].
        errcode: i64,
        /// WeCom's message, for logs only.
        errmsg: String,
        /// Which API, e.g. `externalcontact/get`.
        api: &'static str,
    },
    /// The request did not complete: connection failure, or a non-200 HTTP status.
    #[error("WeCom {api} HTTP error{}: {message}", status.map(|s| format!(" {s}")).unwrap_or_default())]
    Http {
        /// Which API.
        api: &'static str,
        /// The HTTP status when one was received.
        status: Option<u16>,
        /// What went wrong, with secrets redacted.
        message: String,
    },
    /// No response within the configured timeout.
    #[error("WeCom {api} timed out")]
    Timeout {
        /// Which API.
        api: &'static str,
    },
    /// The response was not the JSON this API returns.
    #[error("WeCom {api} response could not be decoded: {message}")]
    Decode {
        /// Which API.
        api: &'static str,
        /// The serde error.
        message: String,
    },
    /// The token cache or rate limiter backend (Redis) failed.
    #[error("WeCom client store error: {0}")]
    Store(String),
    /// The caller passed something the API cannot accept (checked before any request).
    #[error("invalid WeCom request: {0}")]
    InvalidRequest(String),
}

impl WeComError {
    /// Builds an [`WeComError::Api`].
    pub fn api(api: &'static str, errcode: i64, errmsg: impl Into<String>) -> Self {
        Self::Api {
            errcode,
            errmsg: redact_query_secrets(&errmsg.into()),
            api,
        }
    }

    /// Builds a transport error from reqwest, without the URL (it carries the access token).
    pub(crate) fn from_reqwest(api: &'static str, err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout { api };
        }
        let status = err.status().map(|s| s.as_u16());
        let message = redact_query_secrets(&error_chain(&err.without_url()));
        Self::Http {
            api,
            status,
            message,
        }
    }

    /// The WeCom errcode, if WeCom answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// 40001 / 40014 / 42001: the token must be dropped and fetched again.
    pub fn is_token_invalid(&self) -> bool {
        self.errcode()
            .is_some_and(|c| TOKEN_INVALID_CODES.contains(&c))
    }

    /// 45009 / 45033: WeCom is throttling this corp or API.
    pub fn is_rate_limited(&self) -> bool {
        matches!(
            self.errcode(),
            Some(FREQ_OUT_OF_LIMIT | CONCURRENT_OUT_OF_LIMIT)
        )
    }

    /// Worth retrying later: system busy, throttling, transport failures and timeouts,
    /// store hiccups. A job engine uses this to choose between retry and dead-letter.
    ///
    /// Token errors (40001 / 40014 / 42001) are not transient: the client already dropped the
    /// refused token, fetched a new one and called once more, so one that still comes back means
    /// a bad or revoked secret, which waiting does not fix.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { errcode, .. } => *errcode == SYSTEM_BUSY || self.is_rate_limited(),
            Self::Http { status, .. } => status.is_none_or(|s| s >= 500 || s == 429),
            Self::Timeout { .. } | Self::Store(_) => true,
            Self::Decode { .. } | Self::InvalidRequest(_) => false,
        }
    }

    /// A short label for metrics: the errcode, or `http` / `timeout` / `decode` / `store`.
    pub fn metric_label(&self) -> String {
        match self {
            Self::Api { errcode, .. } => errcode.to_string(),
            Self::Http { .. } => "http".into(),
            Self::Timeout { .. } => "timeout".into(),
            Self::Decode { .. } => "decode".into(),
            Self::Store(_) => "store".into(),
            Self::InvalidRequest(_) => "invalid".into(),
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

impl From<redis::RedisError> for WeComError {
    fn from(err: redis::RedisError) -> Self {
        Self::Store(redact_query_secrets(&err.to_string()))
    }
}

/// The documented meaning of an errcode (API-FACTS §2 and §13), or `None` if not listed.
pub fn errcode_meaning(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        -1 => "系统繁忙 (system busy), retry",
        0 => "请求成功",
        40001 => "不合法的secret参数 (invalid credential)",
        40003 => "无效的UserID",
        40004 => "不合法的媒体文件类型",
        40005 => "不合法的type参数",
        40006 => "不合法的文件大小",
        40007 => "不合法的media_id参数",
        40009 => "图片大小不是有效值",
        40011 => "视频大小不是有效值",
        40013 => "不合法的CorpID",
        40014 => "不合法的access_token",
        40058 => "不合法的参数",
        40063 => "参数为空",
        40068 => "不合法的标签/标签组ID",
        40071 => "标签名字已经存在",
        40072 => "标签名字长度不合法",
        40082 => "不合法的suite_token",
        40091 => "secret不合法",
        40096 => "不合法的外部联系人userid",
        40097 => "该成员尚未离职",
        40098 => "成员尚未实名认证",
        40099 => "外部联系人的数量已达上限",
        40100 => "此用户的外部联系人已经在转移流程中",
        40129 => "当前客户正在转接中",
        40130 => "原跟进人与接手人一样，不可继承",
        41001 => "缺少access_token参数",
        41004 => "缺少secret参数",
        41006 => "缺少media_id参数",
        41035 => "缺少外部联系人userid参数",
        41048 => "无可发送的客户",
        41051 => "客户和服务人员已经开始聊天了",
        41053 => "客户未同意聊天存档",
        41063 => "群发消息正在被派发中，请稍后再试",
        41064 => "附件数量超过限制",
        41065 => "无效的附件类型",
        41072 => "资源附件场景使用错误",
        41093 => "群发任务已取消",
        41094 => "群发提醒超过频率限制",
        41096 => "欢迎语已在发送中",
        42001 => "access_token已过期",
        42009 => "suite_access_token已过期",
        44001 => "多媒体文件为空",
        44004 => "文本消息content参数为空",
        45002 => "消息内容大小超过限制",
        45009 => "接口调用超过限制",
        45029 => "回包大小超过上限",
        45033 => "接口并发调用超过限制",
        48002 => "API接口无权限调用",
        60011 => "指定的成员/部门/标签参数无权限",
        60020 => "不安全的访问IP",
        60111 => "UserID不存在",
        60123 => "无效的部门id",
        81013 => "UserID、部门ID、标签ID全部非法或无权限",
        81017 => "请求个数超过限制",
        82001 => "指定的成员/部门/标签全部为空",
        84061 => "不存在外部联系人的关系",
        90500 => "群主并未离职",
        90501 => "该群不是客户群",
        90502 => "群主已经离职",
        90503 => "满人&99个微信成员，没办法踢，要客户端确认",
        90504 => "群主没变",
        90507 => "离职群正在继承处理中",
        90508 => "离职群已经继承",
        301002 => "无权限操作指定的应用",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_follow_the_errcode() {
        for code in TOKEN_INVALID_CODES {
            let e = WeComError::api("user/get", code, "x");
            assert!(e.is_token_invalid() && !e.is_transient() && !e.is_rate_limited());
        }
        assert!(WeComError::api("a", 45009, "api freq out of limit").is_rate_limited());
        assert!(WeComError::api("a", 45033, "").is_rate_limited());
        assert!(WeComError::api("a", -1, "system busy").is_transient());
        let not_external = WeComError::api("externalcontact/list", 84061, "not external contact");
        assert!(!not_external.is_transient() && !not_external.is_token_invalid());
        assert!(WeComError::Timeout { api: "a" }.is_transient());
        assert!(
            !WeComError::Http {
                api: "a",
                status: Some(404),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            WeComError::Http {
                api: "a",
                status: Some(502),
                message: String::new()
            }
            .is_transient()
        );
    }

    #[test]
    fn display_names_the_meaning_and_hides_tokens() {
        let e = WeComError::api(
            "user/get",
            60111,
            "userid not found, more info at https://x/?access_token=abc",
        );
        let text = e.to_string();
        assert!(
            text.contains("60111") && text.contains("UserID不存在"),
            "{text}"
        );
        assert!(!text.contains("abc"), "{text}");
        assert_eq!(errcode_meaning(123456789), None);
    }
}
