//! The HTTP endpoint: `/health` and `/metrics`.
//!
//! `/health` answers 200 whenever the server serves queries (so a liveness probe never restarts
//! a server that is serving), with a JSON body: `status` is `ok`, or `degraded` when a source
//! or view has failed, and `failed_sources` / `failed_views` name each with its error.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::net::TcpListener;

use super::Metrics;
use crate::catalog::StatusBoard;

/// What the HTTP handlers read.
#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
}

#[derive(Serialize)]
struct Failed {
    name: String,
    error: Option<String>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    failed_sources: Vec<Failed>,
    failed_views: Vec<Failed>,
}

fn failed<'a, S: 'a>(
    entries: impl Iterator<Item = (&'a String, &'a S)>,
    status: impl Fn(&S) -> (&str, &Option<String>),
) -> Vec<Failed> {
    entries
        .filter_map(|(name, s)| {
            let (status, error) = status(s);
            (status == "failed").then(|| Failed {
                name: name.clone(),
                error: error.clone(),
            })
        })
        .collect()
}

async fn health(State(shared): State<Shared>) -> impl IntoResponse {
    let board = &shared.board;
    let failed_sources = failed(board.sources.read().iter(), |s| (&s.status, &s.error));
    let failed_views = failed(board.views.read().iter(), |v| (&v.status, &v.error));
    let degraded = !failed_sources.is_empty() || !failed_views.is_empty();
    let body = Health {
        status: if degraded { "degraded" } else { "ok" },
        failed_sources,
        failed_views,
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&body).expect("health serializes"),
    )
}

async fn metrics_text(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// Serves `/health` and `/metrics` on `listener` until the task is dropped.
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { metrics, board });
    axum::serve(listener, app).await
}
