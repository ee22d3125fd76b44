//! Turning `WITH (...)` options into a typed source specification.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::generator::{GeneratorKind, GeneratorSpec};
use super::SourceError;

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
}

impl SourceSpec {
    pub fn connector(&self) -> &'static str {
        match self {
            SourceSpec::File { .. } => "file",
            SourceSpec::Generator(_) => "generator",
        }
    }

    /// True when the input ends by itself (then the source can finish).
    pub fn is_bounded(&self) -> bool {
        match self {
            SourceSpec::File { mode, .. } => *mode == FileMode::Once,
            SourceSpec::Generator(g) => g.count.is_some(),
        }
    }
}

fn opt_err(msg: impl Into<String>) -> SourceError {
    SourceError::Options(msg.into())
}

/// Validates the `WITH` options of `CREATE SOURCE`. Keys are lower-case.
pub fn parse_source_spec(options: &BTreeMap<String, String>) -> Result<SourceSpec, SourceError> {
    let get = |k: &str| options.get(k).map(String::as_str);
    let allowed: &[&str] = match get("connector") {
        Some("file") => &["connector", "format", "path", "mode"],
        Some("generator") => &["connector", "format", "kind", "rate", "count", "seed"],
        Some(other) => {
            return Err(opt_err(format!(
                "unknown connector '{other}': use connector = 'file' or 'generator' (kafka comes later)"
            )))
        }
        None => return Err(opt_err("missing option connector: use connector = 'file' or 'generator'")),
    };
    if let Some(k) = options.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(opt_err(format!(
            "unknown option '{k}'; allowed here: {}",
            allowed.join(", ")
        )));
    }
    match get("format") {
        None | Some("json") => {}
        Some(f) => {
            return Err(opt_err(format!(
                "unsupported format '{f}': only format = 'json' is supported"
            )))
        }
    }
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
                Some(k) => {
                    return Err(opt_err(format!(
                        "unknown generator kind '{k}': use 'security_events' or 'nexmark_bids'"
                    )))
                }
                None => {
                    return Err(opt_err(
                        "a generator source needs kind = 'security_events' or 'nexmark_bids'",
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
