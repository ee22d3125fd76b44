//! Turning `WITH (...)` options into a typed source specification.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::time::Duration;

use super::generator::{GeneratorKind, GeneratorSpec};
use super::kafka::{KafkaSpec, StartOffset, DEFAULT_MAX_MESSAGE_BYTES};
use super::SourceError;
use crate::decode::Format;
use crate::plan::IncludeColumn;

/// How a file source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// Read to the end, then the source is finished.
    Once,
    /// Keep reading what is appended, like `tail -f`.
    Follow,
}

/// A validated source definition.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    File { path: PathBuf, mode: FileMode },
    Generator(GeneratorSpec),
    Kafka(KafkaSpec),
}

impl SourceSpec {
    pub fn connector(&self) -> &'static str {
        match self {
            SourceSpec::File { .. } => "file",
            SourceSpec::Generator(_) => "generator",
            SourceSpec::Kafka(_) => "kafka",
        }
    }

    /// True when each split has its own watermark (Kafka partitions are read in parallel).
    pub fn per_split_watermarks(&self) -> bool {
        matches!(self, SourceSpec::Kafka(_))
    }

    /// True when the input ends by itself (then the source can finish).
    pub fn is_bounded(&self) -> bool {
        match self {
            SourceSpec::File { mode, .. } => *mode == FileMode::Once,
            SourceSpec::Generator(g) => g.count.is_some(),
            SourceSpec::Kafka(_) => false,
        }
    }
}

fn opt_err(msg: impl Into<String>) -> SourceError {
    SourceError::Options(msg.into())
}

/// The `format` option (with `csv.header`, `csv.delimiter`).
pub fn parse_format(options: &BTreeMap<String, String>) -> Result<Format, SourceError> {
    let get = |k: &str| options.get(k).map(String::as_str);
    let csv_given = get("csv.header").is_some() || get("csv.delimiter").is_some();
    match get("format") {
        None | Some("json") if !csv_given => Ok(Format::Json),
        None | Some("json") => Err(opt_err("csv.header and csv.delimiter need format = 'csv'")),
        Some("csv") => {
            let header = match get("csv.header") {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => {
                    return Err(opt_err(format!(
                        "csv.header must be 'true' or 'false', got '{v}'"
                    )))
                }
            };
            let delimiter = match get("csv.delimiter").map(str::as_bytes) {
                None => b',',
                Some([d]) => *d,
                Some(_) => {
                    return Err(opt_err(
                        "csv.delimiter must be one character, e.g. ',' or '|'",
                    ))
                }
            };
            Ok(Format::Csv { header, delimiter })
        }
        Some(f) => Err(opt_err(format!(
            "unsupported format '{f}': use format = 'json' or 'csv'"
        ))),
    }
}

/// The `max_future` option in ms: how far ahead of the watermark (and, for a `live` source,
/// of the wall clock) an event time may be before its row is a dead letter.
pub fn parse_max_future(
    options: &BTreeMap<String, String>,
    live: bool,
) -> Result<i64, SourceError> {
    match options.get("max_future") {
        None if live => Ok(crate::decode::DEFAULT_MAX_FUTURE_LIVE_MS),
        None => Ok(crate::decode::DEFAULT_MAX_FUTURE_BOUNDED_MS),
        Some(text) => match crate::plan::interval_text_ms(text) {
            Ok(ms) if ms > 0 => Ok(ms),
            Ok(_) => Err(opt_err(
                "max_future must be a positive interval, e.g. '1 day'",
            )),
            Err(e) => Err(opt_err(format!("max_future: {e}"))),
        },
    }
}

/// Validates the `WITH` options of `CREATE SOURCE` for source `name`. Keys are lower-case.
pub fn parse_source_spec(
    name: &str,
    options: &BTreeMap<String, String>,
    include: &[IncludeColumn],
) -> Result<SourceSpec, SourceError> {
    let get = |k: &str| options.get(k).map(String::as_str);
    let allowed: &[&str] = match get("connector") {
        Some("file") => &[
            "connector",
            "format",
            "csv.header",
            "csv.delimiter",
            "path",
            "mode",
            "max_future",
        ],
        Some("generator") => &["connector", "format", "kind", "rate", "count", "seed"],
        Some("kafka") => &[
            "connector",
            "format",
            "csv.header",
            "csv.delimiter",
            "brokers",
            "topic",
            "start_offset",
            "group_id",
            "idle_timeout",
            "max_message_bytes",
            "max_future",
        ],
        Some(other) => {
            return Err(opt_err(format!(
                "unknown connector '{other}': use connector = 'kafka', 'file' or 'generator'"
            )))
        }
        None => {
            return Err(opt_err(
                "missing option connector: use connector = 'kafka', 'file' or 'generator'",
            ))
        }
    };
    let is_kafka = get("connector") == Some("kafka");
    if !is_kafka && !include.is_empty() {
        return Err(opt_err("INCLUDE is only for connector = 'kafka'"));
    }
    if let Some(k) = options
        .keys()
        .find(|k| !(allowed.contains(&k.as_str()) || is_kafka && k.starts_with("properties.")))
    {
        return Err(opt_err(format!(
            "unknown option '{k}'; allowed here: {}",
            allowed.join(", ")
        )));
    }
    parse_format(options)?;
    parse_max_future(options, true)?;
    let number = |k: &str| -> Result<Option<u64>, SourceError> {
        get(k)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    opt_err(format!(
                        "option {k} must be a non-negative integer, got '{v}'"
                    ))
                })
            })
            .transpose()
    };
    match get("connector") {
        Some("kafka") => {
            let required = |k: &str, what: &str| {
                get(k)
                    .filter(|v| !v.trim().is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| opt_err(format!("a kafka source needs {k} = '{what}'")))
            };
            let start = match get("start_offset") {
                None | Some("earliest") => StartOffset::Earliest,
                Some("latest") => StartOffset::Latest,
                Some(o) => {
                    return Err(opt_err(format!(
                        "start_offset must be 'earliest' or 'latest', got '{o}'"
                    )))
                }
            };
            let idle_timeout = match get("idle_timeout") {
                None => Duration::from_secs(30),
                Some(text) => Duration::from_millis(
                    crate::plan::interval_text_ms(text)
                        .map_err(|e| opt_err(format!("idle_timeout: {e}")))?
                        as u64,
                ),
            };
            Ok(SourceSpec::Kafka(KafkaSpec {
                brokers: required("brokers", "host:port,...")?,
                topic: required("topic", "<topic name>")?,
                start,
                group_id: get("group_id").map_or_else(|| format!("weir-{name}"), str::to_string),
                idle_timeout,
                max_message_bytes: match number("max_message_bytes")? {
                    Some(0) => return Err(opt_err("max_message_bytes must be at least 1")),
                    Some(n) => n as usize,
                    None => DEFAULT_MAX_MESSAGE_BYTES,
                },
                properties: options
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix("properties.")
                            .map(|k| (k.to_string(), v.clone()))
                    })
                    .collect(),
                include: include.to_vec(),
            }))
        }
        Some("file") => {
            let path = get("path").ok_or_else(|| {
                opt_err("a file source needs path = '<file or directory of JSON lines>'")
            })?;
            let mode = match get("mode") {
                None | Some("once") => FileMode::Once,
                Some("follow") => FileMode::Follow,
                Some(m) => {
                    return Err(opt_err(format!(
                        "mode must be 'once' or 'follow', got '{m}'"
                    )))
                }
            };
            Ok(SourceSpec::File {
                path: PathBuf::from(path),
                mode,
            })
        }
        _ => {
            let kind = match get("kind") {
                Some("security_events") => GeneratorKind::SecurityEvents,
                Some("nexmark_bids") => GeneratorKind::NexmarkBids,
                Some("labelled_logins") => GeneratorKind::LabelledLogins,
                Some(k) => {
                    return Err(opt_err(format!(
                        "unknown generator kind '{k}': use 'security_events', 'nexmark_bids' \
                         or 'labelled_logins'"
                    )))
                }
                None => {
                    return Err(opt_err(
                        "a generator source needs kind = 'security_events', 'nexmark_bids' \
                         or 'labelled_logins'",
                    ))
                }
            };
            Ok(SourceSpec::Generator(GeneratorSpec {
                kind,
                rate: number("rate")?.unwrap_or(0),
                count: number("count")?,
                seed: number("seed")?.unwrap_or(42),
            }))
        }
    }
}
