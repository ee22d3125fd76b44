//! Configuration: command-line flags over `WEIR_*` environment variables over a TOML file
//! over defaults, resolved once into a typed [`ServerConfig`] that is passed explicitly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// Weir: streaming SQL over sources, materialized into RocksDB, served over the Postgres wire.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
// Parsed once at start; boxing the server settings would only add noise to every use.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a generator-fed security pipeline (examples/security_pipeline.sql) and print how to connect.
    Demo(DemoArgs),
    /// Measure streaming throughput against DataFusion batch on generated Nexmark bids.
    Bench(BenchArgs),
}

/// Server settings; each can also come from a `WEIR_*` variable or the `--config` TOML file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerArgs {
    /// TOML file with any of: pg_addr, http_addr, data_dir, pipeline, epoch_ms, max_epoch_ms,
    /// state_cache_mb, query_memory_mb, decode_threads, ingest_nice,
    /// error_rows_max, error_rows_max_age_hours, password, allow_no_password, tls_cert,
    /// tls_key, [[users]] entries (name, password, role = "admin" or "reader"), and an [llm]
    /// table that turns llm_analyze on (url, model, api_key_env, timeout_ms, max_concurrent,
    /// calls_per_minute, max_attempts, breaker_failures, breaker_cooldown_ms; see README).
    #[arg(long, env = "WEIR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Postgres wire address [default: 127.0.0.1:6875].
    #[arg(long, env = "WEIR_PG_ADDR")]
    pub pg_addr: Option<SocketAddr>,
    /// HTTP address for /health and /metrics [default: 127.0.0.1:6876].
    #[arg(long, env = "WEIR_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Directory for RocksDB state [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// SQL script run at start (re-running it on restart is harmless).
    #[arg(long, env = "WEIR_PIPELINE")]
    pub pipeline: Option<PathBuf>,
    /// Epoch length in milliseconds: how often view rows, state and positions are committed [default: 500].
    #[arg(long, env = "WEIR_EPOCH_MS")]
    pub epoch_ms: Option<u64>,
    /// Longest an epoch may grow, in milliseconds, while the input is backlogged (a file or
    /// topic read behind its end): a group touched several times in it is merged and written
    /// once, so a view catches up faster, and its rows show once per such epoch; 0 turns
    /// growth off [default: 5000].
    #[arg(long, env = "WEIR_MAX_EPOCH_MS")]
    pub max_epoch_ms: Option<u64>,
    /// Memory for the group states of all views, in MiB; groups beyond it stay in RocksDB and
    /// are read back when an event touches them [default: 256].
    #[arg(long, env = "WEIR_STATE_CACHE_MB")]
    pub state_cache_mb: Option<u64>,
    /// Threads that decode each source's JSON or CSV while its reader reads on; 1 decodes on
    /// the reader's own thread [default: the machine's cores, at most 4].
    #[arg(long, env = "WEIR_DECODE_THREADS")]
    pub decode_threads: Option<usize>,
    /// How many nice steps below the query threads the ingest threads (reading, decoding,
    /// operators, epoch writes) run, so queries get a core at once while ingestion keeps the
    /// cores busy; 0 runs them alike [default: 10].
    #[arg(long, env = "WEIR_INGEST_NICE")]
    pub ingest_nice: Option<i32>,
    /// Memory one client query may use, in MiB (sorts, joins, aggregates); a query that needs
    /// more fails with SQLSTATE 53200 and the connection goes on [default: 1024].
    #[arg(long, env = "WEIR_QUERY_MEMORY_MB")]
    pub query_memory_mb: Option<u64>,
    /// Dead letters kept per source and late rows per view; older ones are deleted [default: 100000].
    #[arg(long, env = "WEIR_ERROR_ROWS_MAX")]
    pub error_rows_max: Option<u64>,
    /// Hours dead letters and late rows are kept [default: 168].
    #[arg(long, env = "WEIR_ERROR_ROWS_MAX_AGE_HOURS")]
    pub error_rows_max_age_hours: Option<u64>,
    /// Password every Postgres client must give (SCRAM-SHA-256, any user name); prefer the
    /// environment variable, which other users of the machine cannot read from the process
    /// list [default: none, every client is let in].
    #[arg(long, env = "WEIR_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,
    /// Listen on an address other than loopback without a password (anyone who can reach
    /// the port may then read every view and run DDL).
    #[arg(long, env = "WEIR_ALLOW_NO_PASSWORD")]
    #[serde(default)]
    pub allow_no_password: bool,
    /// PEM certificate chain for TLS on the Postgres port (with --tls-key); clients then may
    /// connect with sslmode=require or verify-full [default: no TLS].
    #[arg(long, env = "WEIR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or SEC1) of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Named logins, each with its own password and role; only in the config file.
    #[arg(skip)]
    #[serde(default)]
    pub users: Vec<User>,
    /// The endpoint `llm_analyze` calls; only in the config file. Off when absent.
    #[arg(skip)]
    #[serde(default)]
    pub llm: Option<LlmConfig>,
}

/// The config file's `[llm]` table: the OpenAI-compatible chat-completions endpoint that
/// `llm_analyze(prompt)` calls, and how hard it may be called.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The full chat-completions URL, http or https, e.g.
    /// `http://127.0.0.1:11434/v1/chat/completions`.
    pub url: String,
    /// The `model` every request names.
    pub model: String,
    /// The environment variable holding the API key, sent as `Authorization: Bearer <key>`
    /// (none: no header). The key itself never goes in the file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// How long one call may take before it counts as failed.
    #[serde(default = "LlmConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Calls in flight at once.
    #[serde(default = "LlmConfig::default_max_concurrent")]
    pub max_concurrent: usize,
    /// Calls started per minute, at most (spread evenly).
    #[serde(default = "LlmConfig::default_calls_per_minute")]
    pub calls_per_minute: u32,
    /// Calls per prompt before its record says `error`.
    #[serde(default = "LlmConfig::default_max_attempts")]
    pub max_attempts: u32,
    /// Failed calls in a row that open the circuit breaker: no calls until the cooldown ends.
    #[serde(default = "LlmConfig::default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial call.
    #[serde(default = "LlmConfig::default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
}

impl LlmConfig {
    fn default_timeout_ms() -> u64 {
        30_000
    }
    fn default_max_concurrent() -> usize {
        4
    }
    fn default_calls_per_minute() -> u32 {
        60
    }
    fn default_max_attempts() -> u32 {
        3
    }
    fn default_breaker_failures() -> u32 {
        5
    }
    fn default_breaker_cooldown_ms() -> u64 {
        30_000
    }
}

/// A named login of the config file's `[[users]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: Secret,
    #[serde(default)]
    pub role: Role,
}

/// What a login may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: queries, and CREATE/DROP of sources and views.
    #[default]
    Admin,
    /// Queries and session settings only; CREATE and DROP are refused with SQLSTATE 42501.
    Reader,
}

/// The certificate and key of TLS on the Postgres port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A value that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Feed the pipeline through an embedded Kafka cluster (librdkafka's mock brokers) that a
    /// producer writes to; prints its bootstrap address for kcat or any Kafka client.
    #[arg(long)]
    pub kafka: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Query to run: tumble, hop, groupby or all; or keys (a GROUP BY over each --keys count,
    /// with point queries while it ingests); or history (last-hour reads of a 1-minute TUMBLE
    /// view holding --days of windows, while another source ingests); or freshness (the delay
    /// from a live generator's event to its count being visible, at 100,000 ev/s); or scaling
    /// (the same GROUP BY as 1, 2 and 4 views on one source).
    #[arg(long, default_value = "all")]
    pub query: String,
    /// With --query keys: the distinct key counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,1000000")]
    pub keys: Vec<u64>,
    /// With --query history: days of 1-minute windows the view holds.
    #[arg(long, default_value_t = 30)]
    pub days: u64,
    /// With --query keys: the state cache, in MiB.
    #[arg(long, default_value_t = DEFAULT_STATE_CACHE_MB)]
    pub state_cache_mb: u64,
    /// With --query keys: how long an epoch may grow while the input is backlogged, in ms.
    #[arg(long, default_value_t = DEFAULT_MAX_EPOCH_MS)]
    pub max_epoch_ms: u64,
    /// Number of generated bids.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// Decode threads per source [default: the machine's cores, at most 4].
    #[arg(long)]
    pub decode_threads: Option<usize>,
    /// Nice steps the ingest threads run below the query threads (as the server's
    /// --ingest-nice) [default: 10].
    #[arg(long)]
    pub ingest_nice: Option<i32>,
    /// Print one JSON object per query instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read the bids from Kafka (an embedded mock cluster) instead of a file, and compare
    /// with only reading and decoding the same messages.
    #[arg(long)]
    pub kafka: bool,
    /// Kafka partitions (raised when needed: an embedded partition keeps about 5 MB).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// With --kafka: a running broker (host:port) to use instead of the embedded cluster, e.g.
    /// a noida-db process; a fresh topic with --partitions partitions is created on it.
    #[arg(long)]
    pub brokers: Option<String>,
}

/// Resolved server settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub pg_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub pipeline: Option<PathBuf>,
    pub epoch: Duration,
    pub max_epoch: Duration,
    pub state_cache_bytes: usize,
    pub decode_threads: usize,
    pub ingest_nice: i32,
    pub query_memory_bytes: usize,
    pub logs: crate::state::LogLimits,
    pub password: Option<Secret>,
    pub users: Vec<User>,
    pub tls: Option<TlsFiles>,
    /// Where `llm_analyze` sends prompts; `None`: it is off.
    pub llm: Option<LlmConfig>,
}

/// The default memory for cached group states.
pub const DEFAULT_STATE_CACHE_MB: u64 = 256;

/// Decode threads per source by default: one per core, at most 4 (past that the operator
/// thread, not decoding, bounds a pipeline).
pub fn default_decode_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// The memory one query may use, unless set.
pub const DEFAULT_QUERY_MEMORY_MB: u64 = 1024;

/// How long an epoch may grow while the input is backlogged, unless set: 5 s made a 1M-key
/// view ingest 1.7-2x faster than epochs that do not grow (`weir bench --query keys`).
pub const DEFAULT_MAX_EPOCH_MS: u64 = 5_000;

/// Errors of configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("bad config file {path}: {error}")]
    Parse { path: PathBuf, error: String },
    #[error(
        "the Postgres address {addr} is reachable from other machines and no password is set: \
         anyone who reaches it could read every view and run DDL. Set WEIR_PASSWORD (or \
         --password), listen on 127.0.0.1, or pass --allow-no-password"
    )]
    OpenWithoutPassword { addr: SocketAddr },
    #[error("TLS needs both a certificate and its key: set tls_cert and tls_key (or --tls-cert and --tls-key)")]
    TlsPair,
    #[error("[llm] url {url:?} must start with http:// or https:// (the full chat-completions URL, e.g. http://127.0.0.1:11434/v1/chat/completions)")]
    LlmUrl { url: String },
    #[error("user {name:?} is listed twice in [[users]] or has an empty password")]
    BadUser { name: String },
}

fn load_file(path: &Path) -> Result<ServerArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.into(),
        error,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        error: e.to_string(),
    })
}

impl ServerArgs {
    /// Flags and environment (already merged by clap) over the config file over defaults.
    pub fn resolve(&self) -> Result<ServerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => ServerArgs::default(),
        };
        let pg_addr = self
            .pg_addr
            .or(file.pg_addr)
            .unwrap_or_else(|| "127.0.0.1:6875".parse().unwrap());
        let password = self
            .password
            .clone()
            .or(file.password)
            .filter(|p| !p.expose().is_empty());
        let allow_no_password = self.allow_no_password || file.allow_no_password;
        let users = if self.users.is_empty() {
            file.users
        } else {
            self.users.clone()
        };
        for (i, user) in users.iter().enumerate() {
            if user.password.expose().is_empty() || users[..i].iter().any(|u| u.name == user.name) {
                return Err(ConfigError::BadUser {
                    name: user.name.clone(),
                });
            }
        }
        if password.is_none()
            && users.is_empty()
            && !pg_addr.ip().is_loopback()
            && !allow_no_password
        {
            return Err(ConfigError::OpenWithoutPassword { addr: pg_addr });
        }
        let tls = match (
            self.tls_cert.clone().or(file.tls_cert),
            self.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(ConfigError::TlsPair),
        };
        let llm = self.llm.clone().or(file.llm);
        if let Some(llm) = &llm {
            if !(llm.url.starts_with("http://") || llm.url.starts_with("https://")) {
                return Err(ConfigError::LlmUrl {
                    url: llm.url.clone(),
                });
            }
        }
        Ok(ServerConfig {
            llm,
            pg_addr,
            password,
            users,
            tls,
            http_addr: self
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| "127.0.0.1:6876".parse().unwrap()),
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("weir-data")),
            pipeline: self.pipeline.clone().or(file.pipeline),
            epoch: Duration::from_millis(self.epoch_ms.or(file.epoch_ms).unwrap_or(500).max(1)),
            max_epoch: Duration::from_millis(
                self.max_epoch_ms
                    .or(file.max_epoch_ms)
                    .unwrap_or(DEFAULT_MAX_EPOCH_MS),
            ),
            state_cache_bytes: (self
                .state_cache_mb
                .or(file.state_cache_mb)
                .unwrap_or(DEFAULT_STATE_CACHE_MB)
                << 20) as usize,
            decode_threads: self
                .decode_threads
                .or(file.decode_threads)
                .unwrap_or_else(default_decode_threads)
                .max(1),
            ingest_nice: self
                .ingest_nice
                .or(file.ingest_nice)
                .unwrap_or(crate::pipeline::priority::DEFAULT_INGEST_NICE)
                .clamp(0, 19),
            query_memory_bytes: (self
                .query_memory_mb
                .or(file.query_memory_mb)
                .unwrap_or(DEFAULT_QUERY_MEMORY_MB)
                << 20) as usize,
            logs: {
                let defaults = crate::state::LogLimits::default();
                crate::state::LogLimits {
                    max_rows: self
                        .error_rows_max
                        .or(file.error_rows_max)
                        .unwrap_or(defaults.max_rows),
                    max_age_ms: self
                        .error_rows_max_age_hours
                        .or(file.error_rows_max_age_hours)
                        .map_or(defaults.max_age_ms, |h| {
                            (h as i64).saturating_mul(3_600_000)
                        }),
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "pg_addr = \"127.0.0.1:7000\"\nepoch_ms = 50\ndata_dir = \"/tmp/x\"\ningest_nice = 4\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path.clone()),
            epoch_ms: Some(20),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.pg_addr.port(), 7000);
        assert_eq!(c.http_addr.port(), 6876);
        assert_eq!(c.epoch, Duration::from_millis(20));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.ingest_nice, 4);
        let nice = |n| ServerArgs {
            ingest_nice: Some(n),
            ..Default::default()
        };
        assert_eq!(
            nice(40).resolve().unwrap().ingest_nice,
            19,
            "nice values end at 19"
        );
        assert_eq!(ServerArgs::default().resolve().unwrap().ingest_nice, 10);
        std::fs::write(&path, "unknown = 1\n").unwrap();
        assert!(args.resolve().is_err());
    }

    #[test]
    fn listening_beyond_loopback_needs_a_password_or_an_explicit_waiver() {
        let open = ServerArgs {
            pg_addr: Some("0.0.0.0:6875".parse().unwrap()),
            ..Default::default()
        };
        let err = open.resolve().unwrap_err().to_string();
        assert!(err.contains("WEIR_PASSWORD"), "{err}");
        let with_password = ServerArgs {
            password: Some("pencil".parse().unwrap()),
            ..open.clone()
        };
        let c = with_password.resolve().unwrap();
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("pencil"));
        assert!(!format!("{c:?}").contains("pencil"));
        let waived = ServerArgs {
            allow_no_password: true,
            ..open.clone()
        };
        assert!(waived.resolve().unwrap().password.is_none());
        let empty = ServerArgs {
            password: Some("".parse().unwrap()),
            ..open
        };
        assert!(empty.resolve().is_err(), "an empty password is no password");
        assert!(
            ServerArgs::default().resolve().is_ok(),
            "loopback needs none"
        );
    }

    #[test]
    fn users_and_tls_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "pg_addr = \"0.0.0.0:7000\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n\
             [[users]]\nname = \"grafana\"\npassword = \"g\"\nrole = \"reader\"\n\
             [[users]]\nname = \"ops\"\npassword = \"o\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = args
            .resolve()
            .expect("named users are enough beyond loopback");
        let roles: Vec<_> = c.users.iter().map(|u| (u.name.as_str(), u.role)).collect();
        assert_eq!(roles, [("grafana", Role::Reader), ("ops", Role::Admin)]);
        assert_eq!(c.tls.unwrap().key, PathBuf::from("k.pem"));
        assert!(!format!("{:?}", c.users).contains("\"g\""));
        std::fs::write(&path, "tls_cert = \"c.pem\"\n").unwrap();
        assert!(matches!(args.resolve(), Err(ConfigError::TlsPair)));
        std::fs::write(
            &path,
            "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"a\"\npassword = \"y\"\n",
        )
        .unwrap();
        assert!(matches!(args.resolve(), Err(ConfigError::BadUser { .. })));
        std::fs::write(
            &path,
            "[[users]]\nname = \"a\"\npassword = \"x\"\nrole = \"root\"\n",
        )
        .unwrap();
        assert!(args.resolve().is_err(), "an unknown role");
    }
}
