//! The Postgres settings clients ask about at connect (`SHOW`, `current_setting()`, the
//! startup `ParameterStatus` messages), with the values Weir actually runs with.
//!
//! Weir presents itself as PostgreSQL 15 (the protocol and catalog level it emulates) and
//! names itself in every version string. A connection's own values (`SET`, startup packet)
//! live in its pgwire metadata under the lowercased setting name — the keys pgwire's text
//! formatting reads (`datestyle`, `intervalstyle`, `bytea_output`, `extra_float_digits`) —
//! and the values it started with under [`STARTUP_PREFIX`], so `RESET` restores them.

use std::collections::HashMap;

/// The PostgreSQL release Weir's protocol, catalog and functions follow.
pub const PG_VERSION: &str = "15.0";
/// `server_version_num` of [`PG_VERSION`].
pub const PG_VERSION_NUM: &str = "150000";

/// Where a connection's startup value of a setting is kept (`RESET` goes back to it).
pub const STARTUP_PREFIX: &str = "weir.startup.";
/// The metadata key datafusion-postgres keeps `statement_timeout` under, in milliseconds.
pub(super) const STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";

/// `server_version`: PostgreSQL's version, then Weir's, as distributions do
/// (`15.3 (Debian 15.3-1)`), so version parsers read 15.
pub fn server_version() -> String {
    format!("{PG_VERSION} (Weir {})", env!("CARGO_PKG_VERSION"))
}

/// `version()`: the shape PostgreSQL prints (SQLAlchemy and others parse it).
pub fn version_string() -> String {
    format!(
        "PostgreSQL {} on {}-pc-{}-gnu, compiled by rustc, {}-bit",
        server_version(),
        std::env::consts::ARCH,
        std::env::consts::OS,
        usize::BITS
    )
}

/// One setting: its name as Postgres spells it, and how it behaves.
pub struct Setting {
    pub name: &'static str,
    default: &'static str,
    /// Sent to the client in a `ParameterStatus` when it changes (Postgres's GUC_REPORT).
    pub reported: bool,
    /// Fixed for the server's life; `SET` is refused.
    pub read_only: bool,
}

const fn setting(
    name: &'static str,
    default: &'static str,
    reported: bool,
    read_only: bool,
) -> Setting {
    Setting {
        name,
        default,
        reported,
        read_only,
    }
}

/// Every setting Weir answers for. `server_version` is filled in by [`default_value`].
const SETTINGS: &[Setting] = &[
    setting("server_version", "", true, true),
    setting("server_version_num", PG_VERSION_NUM, false, true),
    setting("server_encoding", "UTF8", true, true),
    setting("client_encoding", "UTF8", true, false),
    setting("standard_conforming_strings", "on", true, false),
    setting("integer_datetimes", "on", true, true),
    setting("TimeZone", "Etc/UTC", true, false),
    setting("DateStyle", "ISO, YMD", true, false),
    setting("IntervalStyle", "postgres", true, false),
    setting("transaction_isolation", "read committed", false, false),
    setting(
        "default_transaction_isolation",
        "read committed",
        false,
        false,
    ),
    setting("transaction_read_only", "off", false, false),
    setting("default_transaction_read_only", "off", true, false),
    setting("is_superuser", "on", true, true),
    setting("in_hot_standby", "off", true, true),
    setting("application_name", "", true, false),
    setting("search_path", "public", true, false),
    setting("statement_timeout", "0", false, false),
    setting("lock_timeout", "0", false, false),
    setting("idle_in_transaction_session_timeout", "0", false, false),
    setting("extra_float_digits", "1", false, false),
    setting("bytea_output", "hex", false, false),
    setting("max_identifier_length", "63", false, true),
    setting("max_index_keys", "32", false, true),
    setting("block_size", "8192", false, true),
    setting("lc_collate", "en_US.UTF-8", false, true),
    setting("lc_ctype", "en_US.UTF-8", false, true),
    setting("ssl", "off", false, true),
];

/// The type `pg_settings.vartype` gives a setting, from its default value.
fn vartype(setting: &Setting) -> &'static str {
    let value = setting.default;
    if value == "on" || value == "off" {
        "bool"
    } else if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        "integer"
    } else {
        "string"
    }
}

/// `pg_catalog.pg_settings`: one row per setting Weir answers for, with the server's values
/// (`SHOW` and `current_setting()` give a connection's own). Settable ones have context
/// `user` (psql completes `SET` from those), fixed ones `internal`.
pub fn pg_settings() -> datafusion::error::Result<datafusion::datasource::MemTable> {
    use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    let text = |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let each = |f: &dyn Fn(&Setting) -> Option<String>| text(SETTINGS.iter().map(f).collect());
    let names = [
        "name",
        "setting",
        "unit",
        "category",
        "short_desc",
        "extra_desc",
        "context",
        "vartype",
        "source",
        "min_val",
        "max_val",
        "boot_val",
        "reset_val",
        "sourcefile",
    ];
    let mut columns = vec![
        each(&|s| Some(s.name.to_string())),
        each(&|s| Some(default_value(s))),
        each(&|s| (s.name == "statement_timeout").then(|| "ms".to_string())),
        each(&|_| Some("Weir".to_string())),
        each(&|_| None),
        each(&|_| None),
        each(&|s| Some(if s.read_only { "internal" } else { "user" }.to_string())),
        each(&|s| Some(vartype(s).to_string())),
        each(&|_| Some("default".to_string())),
        each(&|_| None),
        each(&|_| None),
        each(&|s| Some(default_value(s))),
        each(&|s| Some(default_value(s))),
        each(&|_| None),
    ];
    let mut fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect();
    fields.push(Field::new("pending_restart", DataType::Boolean, false));
    columns.push(Arc::new(BooleanArray::from(vec![false; SETTINGS.len()])));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])
}

/// The setting called `name` (case-insensitive; `time zone` is `TimeZone`).
pub fn lookup(name: &str) -> Option<&'static Setting> {
    let name = name.trim().to_ascii_lowercase().replace(' ', "");
    SETTINGS.iter().find(|s| s.name.eq_ignore_ascii_case(&name))
}

/// Every setting, in a stable order (`SHOW ALL`).
pub fn all() -> &'static [Setting] {
    SETTINGS
}

/// The server-wide value of `setting`, before any connection changed it.
pub fn default_value(setting: &Setting) -> String {
    if setting.name == "server_version" {
        server_version()
    } else {
        setting.default.to_string()
    }
}

/// The metadata key a connection's value of `setting` is kept under.
pub fn key(setting: &Setting) -> String {
    setting.name.to_ascii_lowercase()
}

/// The value of `setting` on a connection with `metadata`.
pub fn session_value(metadata: &HashMap<String, String>, setting: &Setting) -> String {
    if setting.name == "statement_timeout" {
        return metadata
            .get(STATEMENT_TIMEOUT_MS)
            .map(|ms| format!("{ms}ms"))
            .unwrap_or_else(|| "0".into());
    }
    metadata
        .get(&key(setting))
        .cloned()
        .unwrap_or_else(|| default_value(setting))
}

/// Records a connection's startup parameters that are settings: as its current value (so
/// formatting follows e.g. a startup `extra_float_digits`) and as what `RESET` restores.
pub fn remember_startup(metadata: &mut HashMap<String, String>) {
    let startup: Vec<(String, String)> = metadata
        .iter()
        .filter_map(|(k, v)| lookup(k).map(|s| (key(s), v.clone())))
        .collect();
    for (key, value) in startup {
        metadata.insert(format!("{STARTUP_PREFIX}{key}"), value.clone());
        metadata.insert(key, value);
    }
}

/// Puts `setting` back to the connection's startup value (or the server's).
pub fn reset(metadata: &mut HashMap<String, String>, setting: &Setting) {
    if setting.name == "statement_timeout" {
        metadata.remove(STATEMENT_TIMEOUT_MS);
    }
    let key = key(setting);
    match metadata.get(&format!("{STARTUP_PREFIX}{key}")).cloned() {
        Some(value) => metadata.insert(key, value),
        None => metadata.remove(&key),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings_parse_as_postgres_15_and_name_weir() {
        let v = version_string();
        assert!(v.starts_with("PostgreSQL 15.0 (Weir "), "{v}");
        assert!(v.contains("-pc-") && v.ends_with("-bit"), "{v}");
        assert!(server_version().starts_with("15.0 (Weir "));
    }

    #[test]
    fn session_values_fall_back_to_startup_then_server() {
        let tz = lookup("time zone").unwrap();
        assert_eq!(tz.name, "TimeZone");
        let mut meta = HashMap::from([("TimeZone".to_string(), "Europe/Paris".to_string())]);
        remember_startup(&mut meta);
        assert_eq!(session_value(&meta, tz), "Europe/Paris");
        meta.insert("timezone".into(), "UTC".into());
        reset(&mut meta, tz);
        assert_eq!(session_value(&meta, tz), "Europe/Paris");
        let style = lookup("datestyle").unwrap();
        assert_eq!(session_value(&meta, style), "ISO, YMD");
        assert!(lookup("no_such_thing").is_none());
    }
}
