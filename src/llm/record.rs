//! What `weir_catalog.llm_analyses` holds for each call: the prompt, then its answer or why
//! there is none. Stored as JSON under the asking row's key and the column's index.

use serde::{Deserialize, Serialize};

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmStatus {
    /// Waiting for a call (or for another attempt).
    Pending,
    /// Answered; the view shows the answer.
    Ok,
    /// Every attempt failed; `error` says why.
    Error,
    /// `[llm]` was not configured when the row was kept; no call is made.
    Off,
}

impl LlmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmStatus::Pending => "pending",
            LlmStatus::Ok => "ok",
            LlmStatus::Error => "error",
            LlmStatus::Off => "off",
        }
    }
}

/// One call's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRecord {
    /// The view column the answer fills.
    pub column: String,
    pub prompt: String,
    pub status: LlmStatus,
    #[serde(default)]
    pub answer: Option<String>,
    /// The last failure, or why the call is off.
    #[serde(default)]
    pub error: Option<String>,
    /// Calls made so far.
    #[serde(default)]
    pub attempts: u32,
    /// How long the answering call took.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// When the row was kept (wall clock, ms since the epoch).
    pub requested_at_ms: i64,
    #[serde(default)]
    pub answered_at_ms: Option<i64>,
}

impl LlmRecord {
    pub fn pending(column: &str, prompt: String, now_ms: i64) -> Self {
        Self {
            column: column.to_string(),
            prompt,
            status: LlmStatus::Pending,
            answer: None,
            error: None,
            attempts: 0,
            latency_ms: None,
            requested_at_ms: now_ms,
            answered_at_ms: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("llm records serialize")
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// What the view shows: the answer, once there is one.
    pub fn shown(&self) -> Option<&str> {
        match self.status {
            LlmStatus::Ok => self.answer.as_deref(),
            _ => None,
        }
    }
}

/// The record key of column `column` of the view row stored under `row_key`.
pub fn record_key(row_key: &[u8], column: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(row_key.len() + 1);
    key.extend_from_slice(row_key);
    key.push(column as u8);
    key
}

/// A call to make: its record's key, its prompt, and the calls made for it so far in this
/// run (a failed call goes back to the queue with one more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmRequest {
    pub key: Vec<u8>,
    pub prompt: String,
    pub made: u32,
}

impl LlmRequest {
    pub fn new(key: Vec<u8>, prompt: String) -> Self {
        Self {
            key,
            prompt,
            made: 0,
        }
    }
}
