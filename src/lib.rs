//! Weir: a streaming SQL server.
//!
//! The data path, one module per stage:
//! `source` (read) → `decode` (JSON → Arrow, dead letters) → `plan` (SQL → view plans) →
//! `operator` (windows, watermarks, incremental aggregates) → `state` (RocksDB, atomic epochs) →
//! `catalog` (definitions, status, tables) → `pg` (Postgres wire) and `metrics` (HTTP).
//! `pipeline` runs a source's stages on threads; `engine` owns it all and executes DDL;
//! `server` wires the network; `bench` and `demo` are the sub-commands of the binary.

pub mod bench;
pub mod catalog;
pub mod config;
pub mod decode;
pub mod demo;
pub mod engine;
pub mod llm;
pub mod metrics;
pub mod operator;
pub mod pg;
pub mod pipeline;
pub mod plan;
pub mod server;
pub mod source;
pub mod state;
