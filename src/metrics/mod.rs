//! Metrics and health: Prometheus counters per source and view, served over HTTP with `/health`.

mod http;

pub use http::serve_http;

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Weir's metrics, registered on one registry.
pub struct Metrics {
    pub registry: Registry,
    pub source_events: IntCounterVec,
    pub source_bad_records: IntCounterVec,
    pub source_watermark: IntGaugeVec,
    /// Wall clock minus watermark, seconds.
    pub source_watermark_lag: GaugeVec,
    pub source_bytes: IntCounterVec,
    pub source_skipped: IntCounterVec,
    /// Per Kafka partition: messages between the stored offset and the high watermark.
    pub partition_lag: IntGaugeVec,
    pub partition_watermark: IntGaugeVec,
    /// Bytes of RocksDB SST files.
    pub state_bytes: IntGauge,
    pub view_late_rows: IntCounterVec,
    pub view_rows_written: IntCounterVec,
    pub view_watermark: IntGaugeVec,
    pub epoch_commit_seconds: HistogramVec,
    pub query_seconds: Histogram,
    /// Bytes of group state held in memory by all views.
    pub state_cache_bytes: IntGauge,
    /// Groups an epoch read from RocksDB because the cache did not hold them.
    pub state_store_reads: IntCounterVec,
    /// Groups dropped from the cache to stay within its budget.
    pub state_cache_evictions: IntCounterVec,
    /// Group states an epoch wrote.
    pub state_groups_written: IntCounterVec,
    pub view_rows_in_blocks: IntCounterVec,
    /// Stored rows (view keys) a query's scan of a view read.
    pub view_scan_keys: IntCounterVec,
    /// Queries answered by the point-query fast path (no DataFusion planning).
    pub view_point_queries: IntCounterVec,
    /// Rows deleted by a view's retention.
    pub view_rows_expired: IntCounterVec,
    /// Bytes of keys and values epochs wrote.
    pub epoch_bytes: IntCounterVec,
    /// Dead letters dropped by the count and age limits.
    pub dead_letters_dropped: IntCounterVec,
    /// Late rows dropped by the count and age limits.
    pub late_rows_dropped: IntCounterVec,
    /// Pipelines stopped by a panic in one of their threads.
    pub pipelines_failed: IntCounterVec,
    /// `llm_analyze` calls by outcome (`ok`, `failed`).
    pub llm_calls: IntCounterVec,
    /// Time of one `llm_analyze` call.
    pub llm_call_seconds: Histogram,
    /// `llm_analyze` requests waiting for a call.
    pub llm_queued: IntGauge,
    /// 1 while the `llm_analyze` circuit breaker is open (no calls).
    pub llm_breaker_open: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    gauges(registry, name, help, &[label])
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help)).expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let epoch_commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "weir_epoch_commit_seconds",
                "Time to write one epoch (rows, state, positions) to RocksDB",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(epoch_commit_seconds.clone()))
            .expect("metric registered once");
        let query_seconds = histogram(
            &registry,
            "weir_query_seconds",
            "Time to answer one Postgres-wire statement",
        );
        let source_watermark_lag = GaugeVec::new(
            Opts::new(
                "weir_source_watermark_lag_seconds",
                "Wall clock minus the source watermark",
            ),
            &["source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(source_watermark_lag.clone()))
            .expect("metric registered once");
        let state_bytes = int_gauge(
            &registry,
            "weir_state_size_bytes",
            "Bytes of RocksDB SST files (views, window state, positions)",
        );
        let state_cache_bytes = int_gauge(
            &registry,
            "weir_state_cache_bytes",
            "Bytes of group state held in memory by all views",
        );
        let llm_call_seconds = histogram(
            &registry,
            "weir_llm_call_seconds",
            "Time of one llm_analyze call to the configured endpoint",
        );
        let llm_queued = int_gauge(
            &registry,
            "weir_llm_queued",
            "llm_analyze requests waiting for a call",
        );
        let llm_breaker_open = int_gauge(
            &registry,
            "weir_llm_breaker_open",
            "1 while the llm_analyze circuit breaker is open and no calls are made",
        );
        Self {
            llm_call_seconds,
            llm_queued,
            llm_breaker_open,
            llm_calls: counter(
                &registry,
                "weir_llm_calls_total",
                "llm_analyze calls to the configured endpoint, by outcome",
                "outcome",
            ),
            source_watermark_lag,
            state_bytes,
            state_cache_bytes,
            state_store_reads: counter(
                &registry,
                "weir_state_store_reads_total",
                "Groups read from RocksDB because the state cache did not hold them",
                "view",
            ),
            state_cache_evictions: counter(
                &registry,
                "weir_state_cache_evictions_total",
                "Groups dropped from the state cache to stay within its budget",
                "view",
            ),
            state_groups_written: counter(
                &registry,
                "weir_state_groups_written_total",
                "Group states written by epochs",
                "view",
            ),
            view_rows_in_blocks: counter(
                &registry,
                "weir_view_rows_in_blocks_total",
                "Final rows of windows that opened and closed within one epoch, written many to a value",
                "view",
            ),
            dead_letters_dropped: counter(
                &registry,
                "weir_dead_letters_dropped_total",
                "Dead letters deleted by the count and age limits",
                "source",
            ),
            late_rows_dropped: counter(
                &registry,
                "weir_late_rows_dropped_total",
                "Late rows deleted by the count and age limits",
                "view",
            ),
            pipelines_failed: counter(
                &registry,
                "weir_pipelines_failed_total",
                "Pipelines stopped by a panic in one of their threads",
                "source",
            ),
            epoch_bytes: counter(
                &registry,
                "weir_epoch_bytes_total",
                "Bytes of keys and values written by epochs",
                "source",
            ),
            view_rows_expired: counter(
                &registry,
                "weir_view_rows_expired_total",
                "View rows deleted because their window is older than the view's retention",
                "view",
            ),
            view_scan_keys: counter(
                &registry,
                "weir_view_scan_keys_total",
                "Stored values read by queries scanning the view (a row block is one)",
                "view",
            ),
            view_point_queries: counter(
                &registry,
                "weir_view_point_queries_total",
                "Queries on the view answered by a point read without DataFusion planning",
                "view",
            ),
            source_bytes: counter(
                &registry,
                "weir_source_bytes_total",
                "Bytes of records read from the source",
                "source",
            ),
            source_skipped: counter(
                &registry,
                "weir_source_skipped_total",
                "Empty records (Kafka tombstones) skipped",
                "source",
            ),
            partition_lag: gauges(
                &registry,
                "weir_source_partition_lag",
                "Kafka messages between the stored offset and the partition's high watermark",
                &["source", "partition"],
            ),
            partition_watermark: gauges(
                &registry,
                "weir_source_partition_watermark_milliseconds",
                "Kafka partition watermark (event time, Unix ms)",
                &["source", "partition"],
            ),
            source_events: counter(
                &registry,
                "weir_source_events_total",
                "Events decoded from the source",
                "source",
            ),
            source_bad_records: counter(
                &registry,
                "weir_source_bad_records_total",
                "Records sent to weir_catalog.dead_letters",
                "source",
            ),
            source_watermark: gauge(
                &registry,
                "weir_source_watermark_milliseconds",
                "Source watermark (event time, Unix ms)",
                "source",
            ),
            view_late_rows: counter(
                &registry,
                "weir_view_late_rows_total",
                "Rows that arrived after their window (for HOP: one of their windows) closed",
                "view",
            ),
            view_rows_written: counter(
                &registry,
                "weir_view_rows_written_total",
                "View rows written to the store",
                "view",
            ),
            view_watermark: gauge(
                &registry,
                "weir_view_watermark_milliseconds",
                "View watermark (event time, Unix ms)",
                "view",
            ),
            epoch_commit_seconds,
            query_seconds,
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
