//! The operator thread and the runner that owns both threads of a source's pipeline.
//! `chain` feeds the views over views of the pipeline.

mod chain;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, TimestampMillisecondArray};
use datafusion::arrow::compute::max;
use datafusion::arrow::record_batch::RecordBatch;

use super::catchup;
use super::committer::Committer;
use super::panics::{injected_panic, PanicReport};
use super::priority;
use super::reader::{spawn_reader, Feed, Message};
use super::report::{Report, ViewReport};
use super::{PipelineError, SourceProgress};
use crate::catalog::{PartitionStatus, SourceDef, StatusBoard, ViewDef};
use crate::decode::{DeadLetter, FutureGuard, JsonDecoder, SourceLines};
use crate::metrics::Metrics;
use crate::operator::{written_at, CacheBudget, ChunkPlace, StateCounters, ViewOperator};
use crate::source::{open_reader, Frontier, Resume, SharedFiles, SplitStatus};
use crate::state::{log_key, Log, LogLimits, Store, Table};

/// Settings of every pipeline.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How often an epoch is committed while data flows.
    pub epoch: Duration,
    /// How long an epoch may grow while the input is backlogged.
    pub max_epoch: Duration,
    /// The memory budget all views' group caches share.
    pub cache: Arc<CacheBudget>,
    /// Threads decoding each reader's chunks (1: on the reader's thread).
    pub decode_threads: usize,
    /// How much lower than the query threads' the pipeline threads' priority is (nice steps).
    pub ingest_nice: i32,
    /// How many dead letters and late rows to keep, and for how long.
    pub logs: LogLimits,
    /// Answers the `llm_analyze` requests of written epochs.
    pub llm: Arc<crate::llm::Llm>,
}

/// How often the age limit of dead letters and late rows is applied.
const AGE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// A running pipeline; stopping it commits what it holds.
pub struct Runner {
    stop: Arc<AtomicBool>,
    /// Stops the catch-up reader (`catchup`), if there is one.
    catch_up_stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A decoder for the source, its `max_future` guard seeded with the event times the source
/// stored, so a replay decides as the first pass did; it keeps the columns `read` marks.
fn decoder(
    source: &SourceDef,
    progress: &SourceProgress,
    read: &[bool],
) -> Result<JsonDecoder, PipelineError> {
    let delay = source.decl.watermark.as_ref().map_or(0, |w| w.delay_ms);
    let format = crate::source::parse_format(&source.decl.options)?;
    let live = !source.spec.is_bounded();
    let guard = FutureGuard::new(
        crate::source::parse_max_future(&source.decl.options, live)?,
        delay,
        live,
        source.spec.per_split_watermarks(),
        progress
            .event_time
            .max_event_time
            .iter()
            .map(|(s, t)| (*s, *t)),
    );
    Ok(
        JsonDecoder::new(source.decoded_schema(), source.required_decoded_column())
            .with_format(format)
            .reading_only(read)
            .with_future_guard(guard),
    )
}

/// Per decoded column of `source`, whether one of `views` that reads the source reads it
/// (views over views read the store, not the source's rows).
fn columns_read(source: &SourceDef, views: &[ViewOperator]) -> Vec<bool> {
    let plans: Vec<_> = views
        .iter()
        .filter(|v| !v.is_chained())
        .map(ViewOperator::plan)
        .collect();
    source
        .decoded_schema()
        .fields()
        .iter()
        .map(|field| {
            plans.iter().any(|plan| {
                plan.input_schema
                    .index_of(field.name())
                    .is_ok_and(|i| plan.used_columns.get(i).copied().unwrap_or(true))
            })
        })
        .collect()
}

/// Shared services of the operator thread.
struct Context {
    source: Arc<SourceDef>,
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    config: RunnerConfig,
}

/// The operator thread's state.
struct Operators {
    ctx: Context,
    views: Vec<ViewOperator>,
    /// Per view: still replaying history from the catch-up reader (`catchup`).
    behind: Vec<bool>,
    /// Set once no view is behind: the catch-up reader stops.
    catch_up_stop: Arc<AtomicBool>,
    /// The main reader read its bounded input to the end (views still behind go on).
    main_ended: bool,
    progress: SourceProgress,
    /// The file registry the readers share; stored in `progress` at each epoch.
    files: SharedFiles,
    dead: Vec<DeadLetter>,
    /// Counters already published to Prometheus: (late rows, rows written) per view.
    published: Vec<(u64, u64)>,
    /// Whether the source has several splits each with its own watermark (Kafka).
    per_split_watermarks: bool,
    /// The splits as the reader last reported them.
    splits: Vec<SplitStatus>,
    /// Why the input cannot be read now, while it cannot.
    stalled: Option<String>,
    /// Sends the frontier of each committed epoch back to the reader.
    durable: Option<Sender<Frontier>>,
    /// When the age limit of logs was last applied.
    last_age_check: Option<Instant>,
    /// Writes each epoch while the next one is computed.
    committer: Committer<Epoch>,
    /// The source was published `failed`: the operator thread stops.
    failed: bool,
    /// Per view, the windows final in the store as of the last written epoch
    /// (`ViewOperator::final_through`): what views over it may read.
    durable_final: HashMap<String, Option<i64>>,
    /// A written epoch made upstream windows final that views over them have not read: the
    /// next epoch is due even without input.
    chain_due: bool,
}

/// How many epoch intervals an epoch may last while the previous one is still being written.
const MAX_EPOCH_STRETCH: u32 = 8;

/// A backlogged epoch stops growing once its views hold this many pending groups (or rows of
/// append-only views) per MiB of the state cache budget: 1M at the default 256 MiB, about
/// 250 MiB of transient memory in DataFusion's group tables and the merge.
const PENDING_GROUPS_PER_MIB: usize = 4 * 1024;

/// Whether a commit waits for its write: the last one of a pipeline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    No,
}

/// An epoch handed to the writer, and what to do once it is written.
struct Epoch {
    bytes: usize,
    open_windows: usize,
    counters: Vec<(String, StateCounters)>,
    /// The source positions the epoch makes durable, for the reader.
    durable: Frontier,
    started: Instant,
    /// Time spent building the write set.
    flushed: Duration,
    report: Option<Report>,
    /// `llm_analyze` requests whose pending records the epoch writes.
    llm: Vec<crate::llm::LlmRequest>,
    /// Per view, the windows final once the epoch is written.
    finals: Vec<(String, Option<i64>)>,
}

impl Runner {
    /// Loads the views' state and starts reading at the earliest position any of them needs.
    pub fn start(
        source: Arc<SourceDef>,
        views: Vec<Arc<ViewDef>>,
        store: Arc<Store>,
        board: Arc<StatusBoard>,
        metrics: Arc<Metrics>,
        config: RunnerConfig,
    ) -> Result<Self, PipelineError> {
        let mut ops = Vec::with_capacity(views.len());
        let mut names = Vec::with_capacity(views.len());
        for view in &views {
            match ViewOperator::load(
                &view.name,
                view.plan.clone(),
                &store,
                config.cache.clone(),
                config.logs,
            ) {
                Ok(op) => {
                    ops.push(op);
                    names.push(view.name.clone());
                }
                // One view whose state does not load fails alone (shown, not stored: the
                // next start tries again); the source's other views run.
                Err(e) => {
                    let error = format!("its stored state does not load: {e}");
                    tracing::error!(view = %view.name, %error, "view failed");
                    board.update_view(&view.name, |v| {
                        v.source = source.name.clone();
                        v.status = "failed".into();
                        v.error = Some(error);
                    });
                }
            }
        }
        let delay = source.decl.watermark.as_ref().map_or(0, |w| w.delay_ms);
        let progress = match store.get(Table::Progress, &SourceProgress::key(&source.name))? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| crate::state::StateError::Corrupt {
                    table: "progress",
                    reason: e.to_string(),
                })?
            }
            None => SourceProgress::new(delay),
        };
        let behind = catchup::behind(&ops, &progress.high);
        let frontiers = |catching_up: bool| -> Vec<Frontier> {
            ops.iter()
                .zip(&behind)
                .filter(|(o, b)| catchup::is_active(o) && **b == catching_up)
                .map(|(o, _)| o.frontier().clone())
                .collect()
        };
        let files: SharedFiles = Arc::new(parking_lot::Mutex::new(progress.files.clone()));
        let resume = |consumers: Vec<Frontier>| {
            (!consumers.is_empty()).then(|| Resume {
                consumers,
                origin: progress.origin.clone(),
                history: progress.high.clone(),
                files: files.clone(),
            })
        };
        let (from, catch_up_from) = (resume(frontiers(false)), resume(frontiers(true)));
        let published = ops
            .iter()
            .map(|o| (o.progress().late_rows, o.progress().rows_written))
            .collect();
        let committer = Committer::start(store.clone(), &source.name, config.ingest_nice);
        let (decode_threads, nice) = (config.decode_threads, config.ingest_nice);
        let ctx = Context {
            source: source.clone(),
            store,
            board,
            metrics,
            config,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let catch_up_stop = Arc::new(AtomicBool::new(false));
        let mut operators = Operators {
            ctx,
            views: ops,
            behind,
            catch_up_stop: catch_up_stop.clone(),
            main_ended: false,
            progress,
            files,
            dead: Vec::new(),
            published,
            per_split_watermarks: source.spec.per_split_watermarks(),
            splits: Vec::new(),
            stalled: None,
            durable: None,
            last_age_check: None,
            committer,
            failed: false,
            durable_final: HashMap::new(),
            chain_due: false,
        };
        operators.durable_final = operators.finals().into_iter().collect();
        operators.check_upstreams();
        let report = PanicReport {
            board: operators.ctx.board.clone(),
            metrics: operators.ctx.metrics.clone(),
            source: source.name.clone(),
            views: names,
        };
        let Some(from) = from else {
            if !operators.chained_pending() {
                operators.publish_idle();
                return Ok(Self {
                    stop,
                    catch_up_stop,
                    threads: Vec::new(),
                });
            }
            // Views over views still have final upstream rows to read: on a thread of their
            // own, not on the caller's (an async task creating a view).
            let thread = std::thread::Builder::new()
                .name(format!("views-{}", source.name))
                .spawn(move || {
                    priority::lower_current_thread(nice);
                    report.run("operator", || {
                        operators.commit_or_fail(true, "finished", Wait::Yes);
                        operators.publish_idle();
                    });
                })
                .expect("spawn operator thread");
            return Ok(Self {
                stop,
                catch_up_stop,
                threads: vec![thread],
            });
        };
        let read = columns_read(&source, &operators.views);
        let main = (
            open_reader(&source.spec, source.schema.clone(), &from)?,
            decoder(&source, &operators.progress, &read)?,
        );
        let catch_up = match &catch_up_from {
            Some(from) => Some((
                open_reader(&source.spec, source.schema.clone(), from)?,
                decoder(&source, &operators.progress, &read)?,
            )),
            None => None,
        };
        operators.publish("running", None);
        let (tx, rx) = sync_channel(4);
        let (durable_tx, durable_rx) = channel();
        operators.durable = Some(durable_tx);
        let name = source.name.clone();
        let mut threads = vec![spawn_reader(
            format!("read-{name}"),
            main,
            (Feed::Main, tx.clone()),
            durable_rx,
            stop.clone(),
            report.clone(),
            (decode_threads, nice),
        )];
        if let Some(catch_up) = catch_up {
            tracing::info!(source = %name, "views created on the running source replay its history from their own reader");
            // Nothing the catch-up reader reads is acknowledged to the source.
            let (_, no_durable) = channel();
            threads.push(spawn_reader(
                format!("catchup-{name}"),
                catch_up,
                (Feed::CatchUp, tx),
                no_durable,
                catch_up_stop.clone(),
                report.clone(),
                (decode_threads, nice),
            ));
        }
        let op_stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("views-{name}"))
                .spawn(move || {
                    priority::lower_current_thread(nice);
                    report.run("operator", || operators.run(rx, op_stop));
                })
                .expect("spawn operator thread"),
        );
        Ok(Self {
            stop,
            catch_up_stop,
            threads,
        })
    }

    /// Stops both threads after a final commit.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.catch_up_stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl Operators {
    fn run(mut self, rx: Receiver<(Feed, Message)>, stop: Arc<AtomicBool>) {
        let mut last_commit = Instant::now();
        let mut dirty = false;
        // Whether the input ran dry since the last commit (the reader said it is idle, or
        // nothing came for a tick); until it does, the input is backlogged.
        let mut caught_up = false;
        let tick = self.ctx.config.epoch.min(Duration::from_millis(100));
        loop {
            if self.failed {
                return;
            }
            if stop.load(Ordering::Relaxed) {
                self.commit_or_fail(dirty, "running", Wait::Yes);
                return;
            }
            match rx.recv_timeout(tick) {
                // Late catch-up messages, after every view joined the main feed.
                Ok((Feed::CatchUp, _)) if !self.behind.contains(&true) => {}
                Ok((_, Message::Failed(error))) => {
                    tracing::error!(source = %self.ctx.source.name, %error, "source failed");
                    if let Err(e) = self.commit(Some(("failed", Some(error))), Wait::Yes) {
                        self.broken(e);
                    }
                    return;
                }
                Ok((Feed::CatchUp, message)) => {
                    dirty |= self.replay(message);
                    if self.main_ended && !self.behind.contains(&true) {
                        self.commit_or_fail(true, "finished", Wait::Yes);
                        return;
                    }
                }
                Ok((
                    Feed::Main,
                    Message::Data {
                        batch,
                        split,
                        row_ends,
                        dead,
                        start,
                        end,
                        skipped,
                        bytes,
                        lines,
                    },
                )) => {
                    self.ctx
                        .metrics
                        .source_bytes
                        .with_label_values(&[&self.ctx.source.name])
                        .inc_by(bytes);
                    if self.stalled.take().is_some() {
                        self.publish("running", None);
                    }
                    let rows = (split, &row_ends[..], lines.as_ref());
                    self.process(&batch, rows, dead, (start, end), skipped);
                    dirty = true;
                }
                Ok((Feed::Main, Message::Splits(splits))) => {
                    self.set_splits(splits);
                    if self.stalled.take().is_some() {
                        self.publish("running", None);
                    }
                    dirty = true;
                }
                Ok((Feed::Main, Message::Stalled(reason))) => {
                    if self.stalled.as_ref() != Some(&reason) {
                        tracing::warn!(source = %self.ctx.source.name, %reason, "source stalled");
                        self.stalled = Some(reason.clone());
                        self.publish("stalled", Some(reason));
                    }
                }
                Ok((Feed::Main, Message::Idle)) | Err(RecvTimeoutError::Timeout) => {
                    caught_up = true;
                    // Nothing to compute: finish the epoch in flight so that its rows and
                    // counts show, and its offsets become durable, without waiting for more input.
                    let settled = self.settle();
                    if !self.ok_or_broken(settled) {
                        return;
                    }
                }
                Ok((Feed::Main, Message::End)) => {
                    // Views still catching up finish when their own reader ends.
                    self.main_ended = true;
                    self.finish_views(false);
                    if !self.behind.contains(&true) {
                        self.commit_or_fail(true, "finished", Wait::Yes);
                        return;
                    }
                    dirty = true;
                }
                Err(RecvTimeoutError::Disconnected) if stop.load(Ordering::Relaxed) => {
                    self.commit_or_fail(dirty, "running", Wait::Yes);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The reader thread panicked; its report marks the pipeline failed. What
                    // was applied is committed, so a restart resumes after it.
                    if let Err(e) = self.commit(None, Wait::Yes) {
                        tracing::error!(source = %self.ctx.source.name, error = %e, "epoch commit failed");
                    }
                    return;
                }
            }
            if !self.poll_written() {
                return;
            }
            dirty |= std::mem::take(&mut self.chain_due);
            let due = last_commit.elapsed();
            if dirty && due >= self.ctx.config.epoch && !self.stretch(due, !caught_up) {
                if !self.commit_or_fail(true, "running", Wait::No) {
                    return;
                }
                dirty = false;
                last_commit = Instant::now();
                caught_up = false;
            }
        }
    }

    /// Whether an epoch whose interval is over (it lasted `due`) grows on instead of ending
    /// now. It grows while the previous epoch is still being written, or while the input is
    /// `backlogged` (it never ran dry during the epoch): then a group touched several times is
    /// merged and written once, so the views catch up faster (mini-batching, as Flink's
    /// `allow-latency` does). A written-behind epoch grows up to `MAX_EPOCH_STRETCH` intervals,
    /// a backlogged one up to `max_epoch`; either only while the views' pending groups (or
    /// appended rows) fit in what the state cache budget allows, which bounds an epoch's
    /// transient memory.
    fn stretch(&self, due: Duration, backlogged: bool) -> bool {
        let epoch = self.ctx.config.epoch;
        let room = (self.ctx.config.cache.limit() >> 20).max(1) * PENDING_GROUPS_PER_MIB;
        if self.views.iter().map(ViewOperator::pending).sum::<usize>() >= room {
            return false;
        }
        if self.committer.in_flight() && due < epoch * MAX_EPOCH_STRETCH {
            return true;
        }
        backlogged && due < self.ctx.config.max_epoch.max(epoch)
    }

    /// Applies a chunk of the main feed: `batch`, its rows' split, end offsets and lines.
    fn process(
        &mut self,
        batch: &RecordBatch,
        (split, row_ends, lines): (u32, &[u64], Option<&SourceLines>),
        dead: Vec<DeadLetter>,
        (start, end): (u64, u64),
        skipped: u64,
    ) {
        let high = self.progress.high.get(split);
        if !self.progress.origin.has(split) {
            self.progress.origin.advance(split, start);
        }
        let first_new = row_ends.partition_point(|e| *e <= high);
        self.progress.events += (row_ends.len() - first_new) as u64;
        if end > high {
            self.progress.skipped += skipped;
        }
        let watermark_split = if self.per_split_watermarks { split } else { 0 };
        if let Some(col) = self.ctx.source.watermark_column() {
            let new_rows = batch.slice(first_new, batch.num_rows() - first_new);
            if let Some(m) = new_rows
                .column(col)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .and_then(max)
            {
                self.progress.event_time.observe(watermark_split, m);
            }
        }
        self.dead.extend(dead.into_iter().filter(|l| l.end > high));
        self.progress.high.advance(split, end);
        let place = ChunkPlace {
            split,
            row_ends,
            end,
            watermark_split,
            lines,
        };
        self.apply(batch, place, false);
    }

    /// Applies a chunk to the views that follow the main feed (`catching_up` false) or to
    /// those still replaying history; rows a view refuses become dead letters of the source.
    fn apply(&mut self, batch: &RecordBatch, place: ChunkPlace<'_>, catching_up: bool) {
        let split = place.split;
        for (view, behind) in self.views.iter_mut().zip(&self.behind) {
            if *behind != catching_up {
                continue;
            }
            injected_panic(&view.name);
            if let Err(e) = view.apply(batch, place) {
                tracing::error!(view = %view.name, error = %e, "view failed");
                view.fail(e.to_string());
            }
            for row in view.take_refused() {
                self.dead.push(DeadLetter {
                    position: if self.per_split_watermarks {
                        format!("{split}/{}", row.end - 1)
                    } else {
                        format!("{split}:{}", row.end)
                    },
                    raw: row.raw,
                    error: format!("view {}: {}", view.name, row.error),
                    at_ms: 0,
                    end: row.end,
                });
            }
        }
    }

    /// A message of the catch-up reader, for the views still behind. The source's own
    /// counts, dead letters and event times are the main reader's: the catch-up reader only
    /// re-reads what the source already read. Returns whether anything changed.
    fn replay(&mut self, message: Message) -> bool {
        match message {
            Message::Data {
                batch,
                split,
                row_ends,
                end,
                lines,
                ..
            } => {
                let watermark_split = if self.per_split_watermarks { split } else { 0 };
                let place = ChunkPlace {
                    split,
                    row_ends: &row_ends,
                    end,
                    watermark_split,
                    lines: lines.as_ref(),
                };
                self.apply(&batch, place, true);
                self.join_caught_up();
                true
            }
            Message::Splits(splits) => {
                let known: Vec<(u32, bool)> = splits.iter().map(|s| (s.split, s.idle)).collect();
                for (view, behind) in self.views.iter_mut().zip(&self.behind) {
                    if *behind {
                        if let Err(e) = view.set_splits(&known) {
                            view.fail(e.to_string());
                        }
                    }
                }
                true
            }
            Message::End => {
                // Every view behind read the whole bounded input.
                self.finish_views(true);
                self.join_caught_up();
                true
            }
            Message::Idle | Message::Stalled(_) => {
                self.join_caught_up();
                false
            }
            Message::Failed(_) => false,
        }
    }

    /// Views behind whose frontier now covers everything the source read join the main
    /// feed (from then on they skip what they already applied); once none is behind, the
    /// catch-up reader stops.
    fn join_caught_up(&mut self) {
        let known: Vec<(u32, bool)> = self.splits.iter().map(|s| (s.split, s.idle)).collect();
        for (view, behind) in self.views.iter_mut().zip(self.behind.iter_mut()) {
            if !*behind {
                continue;
            }
            if !catchup::is_active(view) {
                *behind = false;
                continue;
            }
            if !view.frontier().covers(&self.progress.high) {
                continue;
            }
            *behind = false;
            tracing::info!(view = %view.name, "view caught up with its source");
            let joined = if self.main_ended {
                view.finish()
            } else {
                view.set_splits(&known)
            };
            if let Err(e) = joined {
                view.fail(e.to_string());
            }
        }
        if !self.behind.contains(&true) {
            self.catch_up_stop.store(true, Ordering::Relaxed);
        }
    }

    /// Finishes the views behind (`catching_up`) or the others: their input is fully read.
    fn finish_views(&mut self, catching_up: bool) {
        for (view, behind) in self.views.iter_mut().zip(&self.behind) {
            if *behind == catching_up && !view.is_chained() {
                if let Err(e) = view.finish() {
                    view.fail(e.to_string());
                }
            }
        }
    }

    /// The reader reported the source's splits: watermarks may move past idle splits.
    fn set_splits(&mut self, splits: Vec<SplitStatus>) {
        let known: Vec<(u32, bool)> = splits.iter().map(|s| (s.split, s.idle)).collect();
        self.progress.event_time.set_splits(known.iter().copied());
        for (view, _) in self
            .views
            .iter_mut()
            .zip(&self.behind)
            .filter(|(_, behind)| !**behind)
        {
            if let Err(e) = view.set_splits(&known) {
                view.fail(e.to_string());
            }
        }
        self.splits = splits;
    }

    /// Commits; on a storage error marks the source failed. Returns whether it committed
    /// (with [`Wait::No`], whether the epoch went to the writer; it is published once written).
    fn commit_or_fail(&mut self, dirty: bool, status: &str, wait: Wait) -> bool {
        if !dirty && status == "running" && wait == Wait::No {
            return true;
        }
        let result = if dirty {
            self.commit(Some((status, None)), wait)
        } else {
            self.settle().map(|()| self.publish(status, None))
        };
        self.ok_or_broken(result)
    }

    /// Whether `result` is a success; on an error the source stops, failed, with the reason.
    fn ok_or_broken(&mut self, result: Result<(), PipelineError>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                self.broken(e);
                false
            }
        }
    }

    /// A write failed: the source stops, failed, with the reason.
    fn broken(&mut self, e: PipelineError) {
        tracing::error!(source = %self.ctx.source.name, error = %e, "epoch commit failed");
        self.publish("failed", Some(format!("epoch commit failed: {e}")));
    }

    /// Waits for the epoch in flight and, once it is written, does what follows its write:
    /// metrics, the reader's durable offsets, the status board.
    fn settle(&mut self) -> Result<(), PipelineError> {
        match self.committer.settle() {
            Some(written) => self.written(written),
            None => Ok(()),
        }
    }

    /// Does what follows the write in flight if it is done, without waiting. Returns whether
    /// the pipeline goes on.
    fn poll_written(&mut self) -> bool {
        let Some(written) = self.committer.poll() else {
            return true;
        };
        let result = self.written(written);
        self.ok_or_broken(result)
    }

    /// What follows an epoch's write: metrics, the reader's durable offsets, the status board.
    fn written(
        &mut self,
        (result, epoch): (Result<(), crate::state::StateError>, Epoch),
    ) -> Result<(), PipelineError> {
        result?;
        self.durable_final.extend(epoch.finals);
        self.chain_due |= self.chained_pending();
        let name = &self.ctx.source.name;
        let m = &self.ctx.metrics;
        m.epoch_bytes
            .with_label_values(&[name])
            .inc_by(epoch.bytes as u64);
        for (view, c) in &epoch.counters {
            let labels = [view.as_str()];
            for (counter, value) in [
                (&m.state_store_reads, c.store_reads),
                (&m.state_cache_evictions, c.evictions),
                (&m.state_groups_written, c.groups_written),
                (&m.view_rows_in_blocks, c.rows_in_blocks),
                (&m.view_rows_expired, c.rows_expired),
                (&m.late_rows_dropped, c.late_rows_dropped),
            ] {
                counter.with_label_values(&labels).inc_by(value);
            }
        }
        let (groups_written, rows_in_blocks) =
            epoch.counters.iter().fold((0, 0), |(g, r), (_, c)| {
                (g + c.groups_written, r + c.rows_in_blocks)
            });
        tracing::debug!(
            source = %name,
            bytes = epoch.bytes,
            open_windows = epoch.open_windows,
            groups_written,
            rows_in_blocks,
            flush_ms = epoch.flushed.as_millis() as u64,
            millis = epoch.started.elapsed().as_millis() as u64,
            "epoch written"
        );
        if let Some(durable) = &self.durable {
            let _ = durable.send(epoch.durable);
        }
        self.ctx.config.llm.submit(epoch.llm);
        m.epoch_commit_seconds
            .with_label_values(&[name])
            .observe(epoch.started.elapsed().as_secs_f64());
        if let Some(report) = epoch.report {
            self.publish_report(report);
        }
        Ok(())
    }

    /// Builds one epoch: every view's changes, the source progress and dead letters, as one
    /// atomic write handed to the writer thread; `wait` says whether to wait for the write.
    /// Once written, the status board shows `status` (with its error), if given. A commit
    /// that waits also lets views over views read what it made final, epoch after epoch,
    /// until none has more to read.
    fn commit(
        &mut self,
        status: Option<(&str, Option<String>)>,
        wait: Wait,
    ) -> Result<(), PipelineError> {
        self.commit_epoch(status.clone(), wait)?;
        // Each round lets one more level of a chain of views read; the bound only guards
        // against a view that would never stop having more.
        for _ in 0..=self.views.len() {
            if wait == Wait::No || !self.chained_pending() {
                break;
            }
            self.commit_epoch(status.clone(), wait)?;
        }
        Ok(())
    }

    /// One epoch of [`Operators::commit`].
    fn commit_epoch(
        &mut self,
        status: Option<(&str, Option<String>)>,
        wait: Wait,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        let now = chrono::Utc::now().timestamp_millis();
        let age_check = match self.last_age_check {
            Some(at) if at.elapsed() < AGE_CHECK_EVERY => None,
            _ => {
                self.last_age_check = Some(Instant::now());
                Some(now)
            }
        };
        if age_check.is_some() || self.views.iter().any(|v| v.reads_written_rows()) {
            // Retention counts the rows it deletes in the store, and the age limit of late
            // rows reads their times there: the last epoch must be written first.
            self.settle()?;
        }
        let mut ws = self.committer.take_set();
        for view in self.views.iter_mut().filter(|v| !v.is_chained()) {
            if let Err(e) = view.flush(&mut ws, age_check) {
                view.fail(e.to_string());
                view.write_progress(&mut ws);
            }
        }
        // The views' flush overlapped the previous epoch's write; the rest reads the store.
        self.settle()?;
        self.feed_chained(&mut ws, age_check);
        let name = &self.ctx.source.name;
        for mut letter in self.dead.drain(..) {
            letter.at_ms = now;
            ws.put(
                Table::DeadLetters,
                log_key(name, self.progress.bad_records),
                serde_json::to_vec(&letter).expect("dead letters serialize"),
            );
            self.progress.bad_records += 1;
        }
        let log = Log {
            table: Table::DeadLetters,
            owner: name,
            floor: &mut self.progress.dead_letters_from,
            next: self.progress.bad_records,
        };
        let dropped = log.trim(
            &self.ctx.store,
            &mut ws,
            self.ctx.config.logs,
            age_check,
            written_at,
        )?;
        self.ctx
            .metrics
            .dead_letters_dropped
            .with_label_values(&[name])
            .inc_by(dropped);
        // Every split a committed frontier names is in the registry by now.
        self.progress.files.clone_from(&self.files.lock());
        ws.put(
            Table::Progress,
            SourceProgress::key(name),
            serde_json::to_vec(&self.progress).expect("progress serializes"),
        );
        let epoch = Epoch {
            bytes: ws.bytes(),
            open_windows: self.views.iter().map(|v| v.open_windows()).sum(),
            counters: self
                .views
                .iter_mut()
                .map(|v| (v.name.clone(), v.take_counters()))
                .collect(),
            durable: self.progress.high.clone(),
            started,
            flushed: started.elapsed(),
            report: status.map(|(status, error)| self.report(status, error)),
            llm: self
                .views
                .iter_mut()
                .flat_map(|v| v.take_llm_requests())
                .collect(),
            finals: self.finals(),
        };
        self.committer.submit(ws, epoch)?;
        if wait == Wait::Yes {
            self.settle()?;
        }
        Ok(())
    }

    /// No view needs input: the source finished if a view read it to the end; if every view
    /// failed, nothing reads it (each failed view keeps its own error).
    fn publish_idle(&mut self) {
        let status = if self.views.iter().any(|v| v.progress().finished) {
            "finished"
        } else {
            "idle"
        };
        self.publish(status, None);
    }

    /// Publishes the current state at once (after the epoch in flight, so that its report
    /// does not land after this one).
    fn publish(&mut self, status: &str, error: Option<String>) {
        if let Err(e) = self.settle() {
            return self.broken(e);
        }
        let report = self.report(status, error);
        self.publish_report(report);
    }

    fn publish_report(&mut self, report: Report) {
        self.failed |= report.status == "failed";
        report.publish(
            &self.ctx.source,
            &self.ctx.board,
            &self.ctx.metrics,
            &self.ctx.store,
            self.ctx.config.cache.used(),
            &mut self.published,
        );
    }

    /// The source's and its views' state now, for the status board.
    fn report(&self, status: &str, error: Option<String>) -> Report {
        let p = &self.progress;
        let watermark = self
            .ctx
            .source
            .decl
            .watermark
            .as_ref()
            .and(p.event_time.current());
        Report {
            status: status.to_string(),
            error,
            events: p.events,
            bad_records: p.bad_records,
            skipped: p.skipped,
            watermark,
            partitions: self
                .splits
                .iter()
                .map(|split| PartitionStatus {
                    partition: split.split,
                    offset: p.high.get(split.split),
                    high_watermark: split.high_watermark,
                    watermark: p
                        .event_time
                        .max_event_time
                        .get(&split.split)
                        .map(|t| t - p.event_time.delay_ms),
                    idle: split.idle,
                })
                .collect(),
            views: self
                .views
                .iter()
                .zip(&self.behind)
                .map(|(view, behind)| {
                    let vp = view.progress();
                    ViewReport {
                        name: view.name.clone(),
                        failed: vp.error.clone(),
                        finished: vp.finished,
                        catching_up: *behind,
                        watermark: vp.watermark.as_ref().and_then(|w| w.current()),
                        rows: vp.rows,
                        late_rows: vp.late_rows,
                        rows_written: vp.rows_written,
                        open_windows: view.open_windows() as u64,
                    }
                })
                .collect(),
        }
    }
}
