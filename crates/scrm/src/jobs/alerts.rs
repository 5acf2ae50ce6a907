//! Where the job engine's alerts go (seed 002: "alert when the failure rate is too high"): a
//! signed webhook ([`scrm_jobs::WebhookSink`], `SCRM_ALERT_WEBHOOK_URL` + `…_SECRET`) and a
//! WeCom app message to configured staff ([`WeComAlertSink`], `SCRM_ALERT_WECOM_TO`), sent
//! through the WeCom configuration of `SCRM_ALERT_WECOM_TENANT`. The rules, the evaluation
//! every minute and the cool-down live in `scrm_jobs::alerts`.

use std::sync::Arc;

use scrm_jobs::alerts::SinkFuture;
use scrm_jobs::{AlertEvent, AlertSink, WebhookSink};
use scrm_wecom::client::{AppMessage, AppMessageContent, Text};

use crate::state::AppState;

/// The sinks the configuration names (none by default: alerts are still recorded and listed at
/// `GET /api/jobs/alerts`).
pub fn sinks(state: &AppState) -> Vec<Arc<dyn AlertSink>> {
    let c = &state.config.alerts;
    let mut out: Vec<Arc<dyn AlertSink>> = Vec::new();
    if let (Some(url), Some(secret)) = (&c.webhook_url, &c.webhook_secret) {
        // Through the private-address guard (crate::outbound) like tenants' URLs, unless
        // SCRM_ALLOW_PRIVATE_URLS: a literal private host is refused at startup (config.rs), a
        // name that resolves privately when an alert is posted.
        let allow = state.config.allow_private_urls;
        let client = crate::outbound::client(
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)),
            allow,
        );
        out.push(Arc::new(WebhookSink::with_client(
            url.clone(),
            secret.expose().as_bytes().to_vec(),
            client,
        )));
    }
    if !c.wecom_to.is_empty() {
        out.push(Arc::new(WeComAlertSink {
            state: state.clone(),
            tenant_id: c.wecom_tenant,
            to: c.wecom_to.join("|"),
        }));
    }
    out
}

/// Sends each alert as a text app message (`message/send` with the app's agentid and secret)
/// to the configured staff.
pub struct WeComAlertSink {
    state: AppState,
    tenant_id: i64,
    to: String,
}

impl WeComAlertSink {
    async fn send(&self, event: &AlertEvent) -> Result<(), String> {
        let config = crate::integration::config::for_tenant(&self.state, self.tenant_id)
            .await
            .map_err(|e| e.to_string())?
            .filter(|c| c.enabled)
            .ok_or_else(|| {
                format!(
                    "tenant {} has no enabled WeCom configuration",
                    self.tenant_id
                )
            })?;
        let base = config
            .api_base
            .as_deref()
            .unwrap_or(scrm_wecom::client::DEFAULT_BASE_URL);
        let client =
            crate::integration::client::shared(&self.state, base).map_err(|e| e.to_string())?;
        // App messages go out as the self-built app: its own secret and agentid.
        let app = client.app(config.corp_id.clone(), config.corp_secret.clone());
        let message = AppMessage {
            touser: self.to.clone(),
            toparty: String::new(),
            totag: String::new(),
            agentid: config.agent_id,
            content: AppMessageContent::Text {
                text: Text {
                    content: alert_text(event),
                },
            },
            safe: None,
            enable_id_trans: None,
            enable_duplicate_check: None,
            duplicate_check_interval: None,
        };
        let answer = app
            .message_send(&message)
            .await
            .map_err(|e| e.to_string())?;
        if !answer.invaliduser.is_empty() {
            tracing::warn!(invalid = %answer.invaliduser, "alerts: some recipients are not members");
        }
        Ok(())
    }
}

impl AlertSink for WeComAlertSink {
    fn notify<'a>(&'a self, event: &'a AlertEvent) -> SinkFuture<'a> {
        Box::pin(self.send(event))
    }
}

/// The message staff read: state, rule and what was observed.
pub fn alert_text(event: &AlertEvent) -> String {
    let head = if event.state == "firing" {
        "【scrm 告警】"
    } else {
        "【scrm 告警恢复】"
    };
    format!(
        "{head}{}: {} ({})",
        event.alert.rule_name, event.alert.message, event.state
    )
}
