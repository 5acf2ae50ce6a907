//! A string that must never reach a log: corp secrets, callback tokens, access tokens.

use std::fmt;

/// A secret string whose `Debug` and `Display` print `***`.
///
/// Why a newtype: a `#[derive(Debug)]` on a config struct, an `?err` in a log line or a
/// `format!("{url}")` is how secrets usually leak; with this type the compiler makes every read
/// explicit (`expose()`), which is easy to grep for in review.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call only where the value leaves the process on purpose
    /// (an HTTP query to WeCom, an HMAC key), never to build a log or error message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (an unset configuration value).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Replaces the value of every `access_token=`, `corpsecret=` and `secret=` query parameter in
/// `text` with `***`, so a URL can go into an error or a log line.
///
/// Works on any text (not only a parsed URL) because reqwest errors embed the URL in their
/// message.
pub fn redact_query_secrets(text: &str) -> String {
    const KEYS: [&str; 3] = ["access_token=", "corpsecret=", "secret="];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for key in KEYS {
            if let Some(tail) = rest.strip_prefix(key) {
                // Only a parameter name if it starts the string or follows a query separator;
                // otherwise `corpsecret=` would also match inside `xcorpsecret=`.
                let at_boundary = out
                    .chars()
                    .last()
                    .is_none_or(|c| matches!(c, '?' | '&' | ' ' | '"' | '\'' | '(' | ','));
                if at_boundary {
                    out.push_str(key);
                    out.push_str("***");
                    let end = tail
                        .find(|c: char| {
                            matches!(c, '&' | ' ' | '"' | '\'' | ')' | '#' | '\n' | ',')
                        })
                        .unwrap_or(tail.len());
                    rest = &tail[end..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn query_secrets_are_redacted_wherever_they_appear() {
        let url = "error sending request for url (http://h/cgi-bin/user/get?access_token=abc.DEF-1&userid=x)";
        assert_eq!(
            redact_query_secrets(url),
            "error sending request for url (http://h/cgi-bin/user/get?access_token=***&userid=x)"
        );
        let url = "http://h/cgi-bin/gettoken?corpid=ww1&corpsecret=s3cr3t";
        assert_eq!(
            redact_query_secrets(url),
            "http://h/cgi-bin/gettoken?corpid=ww1&corpsecret=***"
        );
        assert_eq!(redact_query_secrets("no secrets here"), "no secrets here");
        assert_eq!(
            redact_query_secrets("中文?access_token=t"),
            "中文?access_token=***"
        );
    }
}
