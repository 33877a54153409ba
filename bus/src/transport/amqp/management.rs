//! The broker's management HTTP API, for what AMQP itself cannot do: users, their
//! permissions, and closing a user's open connections.

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use super::AmqpError;

/// Percent-encodes one path segment (user names are SPIFFE URIs, full of `/` and `:`).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Permission {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Conn {
    name: String,
    user: String,
    vhost: String,
}

/// A client of one broker's management API.
#[derive(Clone)]
pub struct Management {
    http: reqwest::Client,
    base: Url,
    user: String,
    password: String,
}

impl Management {
    /// `url` is `http(s)://USER:PASSWORD@HOST:PORT` of an administrator.
    pub fn new(url: &str) -> Result<Management, AmqpError> {
        let bad = |why: &str| AmqpError::Config(format!("--amqp-management: {why}"));
        let mut base = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let user = base.username().to_owned();
        let password = base.password().unwrap_or_default().to_owned();
        if user.is_empty() {
            return Err(bad(
                "give the administrator as http://USER:PASSWORD@HOST:PORT",
            ));
        }
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Management {
            http,
            base,
            user,
            password,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<reqwest::Response>, AmqpError> {
        let url = format!("{}api/{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.user, Some(&self.password))
            .header("x-reason", "simpul: registry or revocation change");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| AmqpError::Management(format!("{method} /api/{path}: {e}")))?;
        match res.status() {
            s if s.is_success() => Ok(Some(res)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(AmqpError::Management(format!(
                "{method} /api/{path}: {s}: {}",
                res.text().await.unwrap_or_default()
            ))),
        }
    }

    async fn get<T: serde::de::DeserializeOwned + Default>(
        &self,
        path: &str,
    ) -> Result<T, AmqpError> {
        match self.call(Method::GET, path, None).await? {
            Some(res) => res
                .json()
                .await
                .map_err(|e| AmqpError::Management(format!("GET /api/{path}: {e}"))),
            None => Ok(T::default()),
        }
    }

    pub async fn ensure_vhost(&self, vhost: &str) -> Result<bool, AmqpError> {
        let path = format!("vhosts/{}", segment(vhost));
        if self.call(Method::GET, &path, None).await?.is_some() {
            return Ok(false);
        }
        self.call(Method::PUT, &path, Some(json!({}))).await?;
        Ok(true)
    }

    pub async fn users(&self) -> Result<Vec<String>, AmqpError> {
        let users: Vec<Named> = self.get("users").await?;
        Ok(users.into_iter().map(|u| u.name).collect())
    }

    /// A user with no password: it can only log in with EXTERNAL, by certificate.
    pub async fn put_user(&self, name: &str) -> Result<(), AmqpError> {
        let body = json!({"password_hash": "", "tags": ""});
        self.call(Method::PUT, &format!("users/{}", segment(name)), Some(body))
            .await
            .map(drop)
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), AmqpError> {
        self.call(Method::DELETE, &format!("users/{}", segment(name)), None)
            .await
            .map(drop)
    }

    pub async fn permissions(&self, vhost: &str) -> Result<Vec<Permission>, AmqpError> {
        self.get(&format!("vhosts/{}/permissions", segment(vhost)))
            .await
    }

    pub async fn user_permissions(&self, user: &str) -> Result<Vec<Permission>, AmqpError> {
        self.get(&format!("users/{}/permissions", segment(user)))
            .await
    }

    pub async fn set_permission(&self, p: &Permission) -> Result<(), AmqpError> {
        let body = json!({"configure": p.configure, "write": p.write, "read": p.read});
        let path = format!("permissions/{}/{}", segment(&p.vhost), segment(&p.user));
        self.call(Method::PUT, &path, Some(body)).await.map(drop)
    }

    pub async fn clear_permission(&self, vhost: &str, user: &str) -> Result<(), AmqpError> {
        let path = format!("permissions/{}/{}", segment(vhost), segment(user));
        self.call(Method::DELETE, &path, None).await.map(drop)
    }

    pub async fn queues(&self, vhost: &str) -> Result<Vec<String>, AmqpError> {
        let queues: Vec<Named> = self.get(&format!("queues/{}", segment(vhost))).await?;
        Ok(queues.into_iter().map(|q| q.name).collect())
    }

    /// Closes `user`'s connections to `vhost`; returns how many there were. The per-user list
    /// comes from the broker's connection tracking, which knows a connection the moment it
    /// opens; closing one by name goes through the statistics, which learn of it only at
    /// their next interval (`collect_statistics_interval`), so a name not known there yet is
    /// tried again for up to 10 s.
    pub async fn close_connections(&self, vhost: &str, user: &str) -> Result<usize, AmqpError> {
        let conns: Vec<Conn> = self
            .get(&format!("connections/username/{}", segment(user)))
            .await?;
        let ours: Vec<&Conn> = conns
            .iter()
            .filter(|c| c.user == user && c.vhost == vhost)
            .collect();
        for c in &ours {
            let path = format!("connections/{}", segment(&c.name));
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while self.call(Method::DELETE, &path, None).await?.is_none() {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(connection = %c.name, user, "the broker never listed this connection; not closed");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        Ok(ours.len())
    }
}
