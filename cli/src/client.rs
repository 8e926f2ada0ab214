//! The HTTP client of the commands that talk to a running server: `--url` / `WRIT_URL`
//! and `--token` / `WRIT_TOKEN`, JSON in and out, errors printed as the server said them.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::Value;

/// The largest answer read from the server.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// Where the server is and how to authenticate to it.
#[derive(Debug, Args)]
pub(crate) struct Connection {
    /// Base URL of the server.
    #[arg(long, env = "WRIT_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// Bearer token (an API key or a JWT). Prefer the environment variable: a flag
    /// is visible to other users in the process list.
    #[arg(long, env = "WRIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Connection {
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    fn token(&self) -> anyhow::Result<&str> {
        self.token
            .as_deref()
            .context("no token: set WRIT_TOKEN (or pass --token)")
    }

    /// Sends a request and returns the JSON answer of a 2xx; other statuses become an
    /// error carrying the server's code and message.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = self.endpoint(path);
        let token = self.token()?;
        let agent = Self::agent();
        let auth = format!("Bearer {token}");
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
            ("POST", Some(body)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            ("POST", None) => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(serde_json::json!({})),
            ("PUT", Some(body)) => agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body),
            _ => bail!("unsupported request {method} {path}"),
        }
        .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response
            .into_body()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {url}"))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("the answer of {url} is not JSON (status {status})"))?
        };
        if !status.is_success() {
            let code = value
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("");
            bail!("the server answered {}: {code}: {message}", status.as_u16());
        }
        Ok(value)
    }
}

/// Prints a JSON value, pretty.
pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
