//! One chat-completions call to an OpenAI-compatible endpoint over HTTP or HTTPS.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::LlmConfig;

/// Why a call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("cannot reach the endpoint: {0}")]
    Transport(String),
    #[error("the endpoint answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the endpoint's answer is not a chat completion: {0}")]
    BadAnswer(String),
    #[error("bad [llm] setting: {0}")]
    Config(String),
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for the configured endpoint; cheap to clone.
#[derive(Clone)]
pub struct ChatClient {
    http: Client<Connector, Full<Bytes>>,
    url: hyper::Uri,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl ChatClient {
    pub fn new(config: &LlmConfig) -> Result<Self, LlmError> {
        let url: hyper::Uri = config
            .url
            .parse()
            .map_err(|e| LlmError::Config(format!("url {:?}: {e}", config.url)))?;
        let provider =
            std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| LlmError::Config(format!("TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let api_key = config
            .api_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|k| !k.is_empty());
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            url,
            model: config.model.clone(),
            api_key,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        })
    }

    /// Sends `prompt` as the one user message and returns the first choice's content.
    pub async fn ask(&self, prompt: &str) -> Result<String, LlmError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
        });
        let mut request = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.api_key {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| LlmError::Config(e.to_string()))?;
        let call = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| LlmError::Transport(error_chain(&e)))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| LlmError::Transport(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes);
                return Err(LlmError::Status {
                    status: status.as_u16(),
                    body: text.chars().take(300).collect(),
                });
            }
            content_of(&bytes)
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| LlmError::Timeout(self.timeout.as_millis() as u64))?
    }
}

/// An error and its sources, one line ("connection refused" sits a few levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `choices[0].message.content` of a chat-completions answer.
fn content_of(bytes: &[u8]) -> Result<String, LlmError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| LlmError::BadAnswer(e.to_string()))?;
    value
        .pointer("/choices/0/message/content")
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .ok_or_else(|| LlmError::BadAnswer("no choices[0].message.content".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_choice() {
        let answer = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"looks like brute force"}}]}"#;
        assert_eq!(content_of(answer).unwrap(), "looks like brute force");
        assert!(matches!(
            content_of(br#"{"error":"quota"}"#),
            Err(LlmError::BadAnswer(_))
        ));
    }
}
