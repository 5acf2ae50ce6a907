//! Alerts (seed 002: "alert when the failure rate is too high"). Rules per kind (or for all
//! kinds) are evaluated every minute by the built-in job `scrm_jobs.alerts`, so one engine
//! evaluates each tick. A rule that starts holding opens one `firing` alert and notifies the
//! sinks once; while it keeps holding nothing more is sent; when it stops holding the alert
//! is `resolved` (and the sinks told). A new incident of the same rule within its cool-down
//! after the last one is recorded but not sent again, so a flapping rule cannot page anyone
//! every minute.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use scrm_db::query;
use serde::{Deserialize, Serialize};

use crate::error::{JobsError, JobsResult};
use crate::queue::Jobs;
use crate::store::sum_i64;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleType {
    /// Failed attempts / (completed + failed attempts) over the window, above `threshold`
    /// (0.0-1.0), once at least `min_samples` runs happened.
    FailureRate,
    /// Jobs that went dead within the window, more than `threshold`.
    DeadLetters,
    /// The oldest due pending job has waited longer than `threshold` milliseconds.
    OldestQueued,
}

impl RuleType {
    fn name(self) -> &'static str {
        match self {
            RuleType::FailureRate => "failure_rate",
            RuleType::DeadLetters => "dead_letters",
            RuleType::OldestQueued => "oldest_queued",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "failure_rate" => Some(RuleType::FailureRate),
            "dead_letters" => Some(RuleType::DeadLetters),
            "oldest_queued" => Some(RuleType::OldestQueued),
            _ => None,
        }
    }
}

/// A rule to create or replace (by name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertRule {
    /// Unique name.
    pub name: String,
    /// The kind watched; None for all kinds together.
    pub kind: Option<String>,
    /// What is watched.
    pub rule_type: RuleType,
    /// The limit (a fraction, a count or milliseconds, by rule type).
    pub threshold: f64,
    /// The window looked back over (FailureRate, DeadLetters), ms.
    pub window_ms: i64,
    /// Fewer runs than this in the window never fire a FailureRate rule.
    pub min_samples: i64,
    /// After an incident, a new one of this rule within this long is not sent again, ms.
    pub cooldown_ms: i64,
    /// Off rules are not evaluated.
    pub enabled: bool,
}

/// A stored alert (camelCase in JSON, like the rest of scrm's API and its webhooks).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: i64,
    pub rule_id: i64,
    pub rule_name: String,
    pub kind: Option<String>,
    /// `firing` or `resolved`.
    pub state: String,
    /// The observed value when it fired (updated while firing).
    pub observed: f64,
    pub message: String,
    pub fired_at: i64,
    pub resolved_at: Option<i64>,
    pub last_notified_at: Option<i64>,
}

/// What a sink is told.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// `firing` or `resolved`.
    pub state: String,
    /// The alert.
    pub alert: Alert,
}

/// The future a sink returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where alerts go: the app implements signed webhooks and WeCom app messages; this crate
/// ships [`crate::WebhookSink`] (feature `webhook`).
pub trait AlertSink: Send + Sync + 'static {
    /// Deliver one event. Errors are logged; the alert stays recorded either way.
    fn notify<'a>(&'a self, event: &'a AlertEvent) -> SinkFuture<'a>;
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct RuleRow {
    id: i64,
    name: String,
    kind: Option<String>,
    rule_type: String,
    threshold: f64,
    window_ms: i64,
    min_samples: i64,
    cooldown_ms: i64,
}

impl Jobs {
    /// Create or replace a rule (by name).
    pub async fn upsert_alert_rule(&self, r: &AlertRule) -> JobsResult<()> {
        let now = self.now_ms();
        let mut tx = self.db().begin().await?;
        let updated = tx
            .execute(
                query(
                    "UPDATE job_alert_rule SET kind = ?, rule_type = ?, threshold = ?, \
                     window_ms = ?, min_samples = ?, cooldown_ms = ?, enabled = ?, updated_at = ? \
                     WHERE name = ?",
                )
                .bind(r.kind.clone())
                .bind(r.rule_type.name())
                .bind(r.threshold)
                .bind(r.window_ms)
                .bind(r.min_samples)
                .bind(r.cooldown_ms)
                .bind(r.enabled)
                .bind(now)
                .bind(r.name.as_str()),
            )
            .await?
            .rows_affected;
        if updated == 0 {
            tx.execute(
                query(
                    "INSERT INTO job_alert_rule (name, kind, rule_type, threshold, window_ms, \
                     min_samples, cooldown_ms, enabled, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(r.name.as_str())
                .bind(r.kind.clone())
                .bind(r.rule_type.name())
                .bind(r.threshold)
                .bind(r.window_ms)
                .bind(r.min_samples)
                .bind(r.cooldown_ms)
                .bind(r.enabled)
                .bind(now)
                .bind(now),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every rule, by name.
    pub async fn alert_rules(&self) -> JobsResult<Vec<AlertRule>> {
        #[derive(sqlx::FromRow)]
        struct Stored {
            name: String,
            kind: Option<String>,
            rule_type: String,
            threshold: f64,
            window_ms: i64,
            min_samples: i64,
            cooldown_ms: i64,
            enabled: i64,
        }
        let rows: Vec<Stored> = self
            .db()
            .fetch_all(query(
                "SELECT name, kind, rule_type, threshold, window_ms, min_samples, cooldown_ms, \
                 enabled FROM job_alert_rule ORDER BY name",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(AlertRule {
                    rule_type: RuleType::parse(&r.rule_type)?,
                    name: r.name,
                    kind: r.kind,
                    threshold: r.threshold,
                    window_ms: r.window_ms,
                    min_samples: r.min_samples,
                    cooldown_ms: r.cooldown_ms,
                    enabled: r.enabled == 1,
                })
            })
            .collect())
    }

    /// Delete a rule.
    pub async fn delete_alert_rule(&self, name: &str) -> JobsResult<bool> {
        let r = self
            .db()
            .execute(query("DELETE FROM job_alert_rule WHERE name = ?").bind(name))
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Alerts, newest first; `state` filters `firing` / `resolved`.
    pub async fn alerts(&self, state: Option<&str>, limit: i64) -> JobsResult<Vec<Alert>> {
        let mut q = query(
            "SELECT id, rule_id, rule_name, kind, state, observed, message, fired_at, \
             resolved_at, last_notified_at FROM job_alert",
        );
        if let Some(s) = state {
            q.push_sql(" WHERE state = ?");
            q.push_bind(s);
        }
        q.push_sql(" ORDER BY id DESC LIMIT ?");
        q.push_bind(limit.clamp(1, 1000));
        Ok(self.db().fetch_all(q).await?)
    }

    /// Evaluate every enabled rule now and notify `sinks` (the built-in job calls this).
    pub async fn evaluate_alerts(&self, sinks: &[Arc<dyn AlertSink>]) -> JobsResult<usize> {
        let rules: Vec<RuleRow> = self
            .db()
            .fetch_all(query(
                "SELECT id, name, kind, rule_type, threshold, window_ms, min_samples, cooldown_ms \
                 FROM job_alert_rule WHERE enabled = 1 ORDER BY id",
            ))
            .await?;
        let mut sent = 0;
        for rule in rules {
            let Some(t) = RuleType::parse(&rule.rule_type) else {
                continue;
            };
            let (holds, observed, message) = self.observe(&rule, t).await?;
            sent += self
                .transition(&rule, holds, observed, message, sinks)
                .await?;
        }
        Ok(sent)
    }

    async fn observe(&self, rule: &RuleRow, t: RuleType) -> JobsResult<(bool, f64, String)> {
        let now = self.now_ms();
        let b = self.db().backend();
        let what = rule.kind.as_deref().unwrap_or("all kinds");
        let window_min = rule.window_ms / 60_000;
        Ok(match t {
            RuleType::FailureRate | RuleType::DeadLetters => {
                let mut q = query(format!(
                    "SELECT {}, {}, {} FROM job_stat WHERE bucket >= ?",
                    sum_i64(b, "completed"),
                    sum_i64(b, "failed"),
                    sum_i64(b, "dead")
                ))
                .bind(crate::store::finish::minute(now - rule.window_ms));
                if let Some(k) = &rule.kind {
                    q.push_sql(" AND kind = ?");
                    q.push_bind(k.as_str());
                }
                let (ok, failed, dead): (i64, i64, i64) = self.db().fetch_one(q).await?;
                if t == RuleType::FailureRate {
                    let runs = ok + failed;
                    let rate = if runs > 0 {
                        failed as f64 / runs as f64
                    } else {
                        0.0
                    };
                    (
                        runs >= rule.min_samples.max(1) && rate > rule.threshold,
                        rate,
                        format!(
                            "{what}: {:.1}% of {runs} runs failed in the last {window_min} min \
                             (limit {:.1}%)",
                            rate * 100.0,
                            rule.threshold * 100.0
                        ),
                    )
                } else {
                    (
                        dead as f64 > rule.threshold,
                        dead as f64,
                        format!(
                            "{what}: {dead} jobs went to the dead letters in the last \
                             {window_min} min (limit {})",
                            rule.threshold
                        ),
                    )
                }
            }
            RuleType::OldestQueued => {
                let mut q =
                    query("SELECT MIN(run_at) FROM job WHERE state = 0 AND run_at <= ?").bind(now);
                if let Some(k) = &rule.kind {
                    q.push_sql(" AND kind = ?");
                    q.push_bind(k.as_str());
                }
                let oldest: (Option<i64>,) = self.db().fetch_one(q).await?;
                let age = oldest.0.map(|o| now - o).unwrap_or(0);
                (
                    age as f64 > rule.threshold,
                    age as f64,
                    format!(
                        "{what}: the oldest queued job has waited {} s (limit {} s)",
                        age / 1000,
                        rule.threshold / 1000.0
                    ),
                )
            }
        })
    }

    async fn transition(
        &self,
        rule: &RuleRow,
        holds: bool,
        observed: f64,
        message: String,
        sinks: &[Arc<dyn AlertSink>],
    ) -> JobsResult<usize> {
        let now = self.now_ms();
        let open: Option<Alert> = self
            .db()
            .fetch_optional(
                query(
                    "SELECT id, rule_id, rule_name, kind, state, observed, message, fired_at, \
                     resolved_at, last_notified_at FROM job_alert \
                     WHERE rule_id = ? AND state = 'firing' ORDER BY id DESC",
                )
                .bind(rule.id),
            )
            .await?;
        let (alert, event_state) = match (open, holds) {
            (Some(a), true) => {
                self.db()
                    .execute(
                        query("UPDATE job_alert SET observed = ? WHERE id = ?")
                            .bind(observed)
                            .bind(a.id),
                    )
                    .await?;
                return Ok(0);
            }
            (None, false) => return Ok(0),
            (Some(mut a), false) => {
                self.db()
                    .execute(
                        query(
                            "UPDATE job_alert SET state = 'resolved', resolved_at = ? WHERE id = ?",
                        )
                        .bind(now)
                        .bind(a.id),
                    )
                    .await?;
                a.state = "resolved".into();
                a.resolved_at = Some(now);
                if a.last_notified_at.is_none() {
                    return Ok(0); // its firing was never sent: keep quiet about the end too
                }
                (a, "resolved")
            }
            (None, true) => {
                let last_sent: (Option<i64>,) = self
                    .db()
                    .fetch_one(
                        query("SELECT MAX(last_notified_at) FROM job_alert WHERE rule_id = ?")
                            .bind(rule.id),
                    )
                    .await?;
                let quiet = last_sent.0.is_some_and(|t| now - t < rule.cooldown_ms);
                let notified = if quiet { None } else { Some(now) };
                let ins = query(
                    "INSERT INTO job_alert (rule_id, rule_name, kind, state, observed, message, \
                     fired_at, last_notified_at) VALUES (?, ?, ?, 'firing', ?, ?, ?, ?)",
                )
                .bind(rule.id)
                .bind(rule.name.as_str())
                .bind(rule.kind.clone())
                .bind(observed)
                .bind(message.as_str())
                .bind(now)
                .bind(notified);
                let id = self.db().insert_id(ins).await?;
                if quiet {
                    return Ok(0);
                }
                let a = Alert {
                    id,
                    rule_id: rule.id,
                    rule_name: rule.name.clone(),
                    kind: rule.kind.clone(),
                    state: "firing".into(),
                    observed,
                    message,
                    fired_at: now,
                    resolved_at: None,
                    last_notified_at: notified,
                };
                (a, "firing")
            }
        };
        let event = AlertEvent {
            state: event_state.into(),
            alert,
        };
        for sink in sinks {
            if let Err(e) = sink.notify(&event).await {
                tracing::warn!(error = %e, rule = %rule.name, "jobs: alert sink failed");
            }
        }
        Ok(1)
    }
}

/// A webhook sink: POSTs the event as JSON with `X-Scrm-Timestamp` (epoch ms) and
/// `X-Scrm-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>`,
/// so the receiver can check origin and freshness.
#[cfg(feature = "webhook")]
pub struct WebhookSink {
    url: String,
    secret: Vec<u8>,
    client: reqwest::Client,
}

#[cfg(feature = "webhook")]
impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .finish()
    }
}

#[cfg(feature = "webhook")]
impl WebhookSink {
    /// A sink posting to `url`, signing with `secret`.
    pub fn new(url: impl Into<String>, secret: impl Into<Vec<u8>>) -> JobsResult<Self> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| JobsError::Invalid(format!("http client: {e}")))?;
        Ok(Self {
            url: url.into(),
            secret: secret.into(),
            client,
        })
    }

    /// A sink posting to `url` through `client` (the application's guarded client, say: the
    /// caller chooses timeouts, resolver and redirect policy).
    pub fn with_client(
        url: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        client: reqwest::Client,
    ) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            client,
        }
    }

    /// The signature header value for a body sent at `timestamp_ms`.
    pub fn sign(&self, timestamp_ms: i64, body: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.secret) else {
            return String::new(); // HMAC accepts keys of any length; unreachable
        };
        mac.update(timestamp_ms.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(feature = "webhook")]
impl AlertSink for WebhookSink {
    fn notify<'a>(&'a self, event: &'a AlertEvent) -> SinkFuture<'a> {
        Box::pin(async move {
            let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
            let ts = crate::clock::system_now_ms();
            let resp = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-scrm-timestamp", ts.to_string())
                .header("x-scrm-signature", self.sign(ts, &body))
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("webhook answered {}", resp.status()))
            }
        })
    }
}

#[cfg(all(test, feature = "webhook"))]
mod tests {
    use super::WebhookSink;

    #[test]
    fn webhook_signatures_are_hmac_sha256_of_timestamp_dot_body() {
        let sink = WebhookSink::new("http://127.0.0.1:9/hook", "secret").unwrap();
        let sig = sink.sign(1_700_000_000_000, b"{}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert_eq!(sig, sink.sign(1_700_000_000_000, b"{}"));
        assert_ne!(sig, sink.sign(1_700_000_000_001, b"{}"));
        assert!(!format!("{sink:?}").contains("secret"));
    }
}
