//! Serde helpers for WeCom's loosely typed JSON, and the cursor-following loop.
//!
//! Why lenient: the same field changes type between endpoints (`created_at` is a string in
//! media/upload, an integer in upload_attachment; `gender` is "1" in user/get), and a failed
//! decode of a field nobody reads must not fail a whole sync.

use std::collections::HashSet;
use std::future::Future;

use serde::{Deserialize, Deserializer};

use super::error::WeComError;

/// Accepts `"123"`, `123` or `null` (→ 0) for an integer field.
pub(crate) fn int_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Str(String),
        Null,
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::Int(i)) => i,
        Some(Raw::Float(f)) => f as i64,
        Some(Raw::Str(s)) => s.trim().parse().unwrap_or(0),
        Some(Raw::Null) | None => 0,
    })
}

/// Accepts a string, a number or `null` (→ "") for a string field.
pub(crate) fn string_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    })
}

/// Follows `next_cursor` until it is empty, collecting every page. A cursor seen twice is an
/// error rather than an endless loop.
pub(crate) async fn collect_pages<T, F, Fut>(
    api: &'static str,
    mut fetch: F,
) -> Result<Vec<T>, WeComError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), WeComError>>,
{
    let mut out = Vec::new();
    let mut cursor = String::new();
    let mut seen = HashSet::new();
    loop {
        let (items, next) = fetch(cursor).await?;
        out.extend(items);
        if next.is_empty() {
            return Ok(out);
        }
        if !seen.insert(next.clone()) {
            return Err(WeComError::Decode {
                api,
                message: "next_cursor repeated; stopping to avoid an endless loop".into(),
            });
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "int_lenient")]
        n: i64,
        #[serde(default, deserialize_with = "string_lenient")]
        s: String,
    }

    #[test]
    fn lenient_fields_accept_either_type() {
        for (json, n, s) in [
            (r#"{"n":"1380000000","s":1}"#, 1380000000, "1"),
            (r#"{"n":5,"s":"x"}"#, 5, "x"),
            (r#"{"n":null,"s":null}"#, 0, ""),
            (r#"{}"#, 0, ""),
        ] {
            let t: T = serde_json::from_str(json).unwrap();
            assert_eq!((t.n, t.s.as_str()), (n, s), "{json}");
        }
    }

    #[tokio::test]
    async fn pages_are_followed_and_loops_refused() {
        let pages = collect_pages("x", |cursor| async move {
            Ok(match cursor.as_str() {
                "" => (vec![1, 2], "a".to_owned()),
                "a" => (vec![3], "b".to_owned()),
                _ => (vec![4], String::new()),
            })
        })
        .await
        .unwrap();
        assert_eq!(pages, [1, 2, 3, 4]);
        let looping = collect_pages("x", |_| async { Ok((vec![0], "same".to_owned())) }).await;
        assert!(matches!(looping, Err(WeComError::Decode { .. })));
    }
}
