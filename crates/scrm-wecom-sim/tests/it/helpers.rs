//! A started simulator plus a raw reqwest client with typed helpers.

use scrm_wecom_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

pub struct T {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub token: String,
}

/// Small company, limits out of the way, immediate confirmation.
pub fn cfg() -> SimConfig {
    let mut c = SimConfig::default();
    c.size.customers = 120;
    c.size.staff = 12;
    c.size.group_chats = 6;
    c.limits.per_api_per_minute = 0;
    c.limits.per_api_per_hour = 0;
    c.callback.retry_delay_ms = 10;
    c
}

impl T {
    pub async fn start() -> T {
        T::with(cfg()).await
    }

    pub async fn with(cfg: SimConfig) -> T {
        let secret = cfg.creds.app_secret.clone();
        let sim = Simulator::start(cfg).await.expect("start simulator");
        let http = reqwest::Client::new();
        let mut t = T {
            sim,
            http,
            token: String::new(),
        };
        t.token = t.token_for(&secret).await;
        t
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url(), path)
    }

    /// gettoken with this secret; panics on error.
    pub async fn token_for(&self, secret: &str) -> String {
        let corp = self.sim.config().creds.corp_id;
        let v = self
            .raw_get(
                "/cgi-bin/gettoken",
                &[("corpid", &corp), ("corpsecret", secret)],
            )
            .await;
        assert_eq!(v["errcode"], 0, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn raw_get(&self, path: &str, q: &[(&str, &str)]) -> Value {
        self.http
            .get(self.url(path))
            .query(q)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, q: &[(&str, &str)]) -> Value {
        let mut q = q.to_vec();
        q.push(("access_token", &self.token));
        self.raw_get(path, &q).await
    }

    pub async fn post_with(&self, token: &str, path: &str, body: Value) -> Value {
        self.http
            .post(self.url(path))
            .query(&[("access_token", token)])
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.post_with(&self.token, path, body).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// An active member with 客户联系 and at least `n` customers.
    pub fn staff_with(&self, n: usize) -> String {
        let c = self.sim.company();
        c.staff
            .iter()
            .filter(|s| s.status == 1 && s.contact_enabled && s.customers.len() >= n)
            .max_by_key(|s| s.customers.len())
            .map(|s| s.userid.clone())
            .expect("a member with customers")
    }

    /// external_userids of a member's customers.
    pub fn customers_of(&self, userid: &str) -> Vec<String> {
        let c = self.sim.company();
        let s = c.staff_by_userid(userid).unwrap();
        c.staff[s as usize]
            .customers
            .iter()
            .map(|&i| c.external_userid(i))
            .collect()
    }

    /// A customer who is not a friend of `userid`.
    pub fn stranger_of(&self, userid: &str) -> String {
        let c = self.sim.company();
        let s = c.staff_by_userid(userid).unwrap();
        (0..c.customers.len() as u32)
            .find(|&i| c.follow_of(i, s).is_none())
            .map(|i| c.external_userid(i))
            .unwrap()
    }
}

pub fn text(content: &str) -> Value {
    json!({ "content": content })
}
