//! Weir's integration tests, one module per area, all in one test crate: each test crate is a
//! separate release build and link of the whole dependency graph's generics (1.5–3 min of a
//! core each), so new areas go here as modules rather than as new files under `tests/`.
//!
//! Every test starts its own `weir` process (the binary this `cargo test` built) on free
//! loopback ports with its own data directory; `common` is that harness. Run one area with
//! `cargo test --release --test integration -- kafka::` (a module path is a test-name filter).
//! The randomized differential test is its own crate (`tests/differential/`): it takes flags.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod catch_up;
mod clients;
mod fuzz;
mod kafka;
mod kafka_broker;
mod late_rows;
mod llm_analyze;
mod oracle;
mod pipeline_panic;
mod restart;
mod soak;
mod sqllogictest;
mod start_isolation;
mod validate_at_create;
mod view_reads;
