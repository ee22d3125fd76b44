//! The operator of one materialized view: applies batches, closes windows, writes epochs.
//! `chain` feeds a view that reads another view's final rows instead of its source; `panes`
//! aggregates a HOP view's rows once per pane instead of once per window; `commit` merges a
//! window's epoch into its stored groups and writes it.

mod chain;
mod commit;
mod panes;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampMillisecondArray};
use datafusion::arrow::compute::max;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

use super::append::{self, AppendedRow};
use super::cache::{CacheBudget, GroupCache};
use super::groups::AggregateInput;
use super::key_filter::KeyFilter;
use super::merge::{empty_global_group, merge_window, Codecs, GroupKeys, Merged, StoredValues};
use super::refuse::{evaluate_isolating, RefusedRow};
use super::stateful::EntityStates;
use super::{assign_windows, GroupState, WatermarkTracker};
use crate::decode::SourceLines;
use crate::llm::{record_key, LlmRecord, LlmRequest};
use crate::plan::ViewPlan;
use crate::source::Frontier;
use crate::state::{
    encode_view_row, for_each_open_block_key, for_each_view_value, log_key, open_block_entries,
    prefix_end, window_key_prefix, Log, LogLimits, Store, StoredGroup, StoredValue, Table,
    ViewKeys, WriteSet, OLDEST_READ_FORMAT, STATE_FORMAT,
};

/// The window key of a view without windows: all its groups live in this one "window".
pub const GLOBAL_WINDOW: i64 = 0;

/// The most groups a new window's key table is sized for from the last window (8 MiB of
/// slots); a larger window grows its table past it.
const MAX_WINDOW_GROUPS_HINT: usize = 1 << 18;

/// What a view has durably done; written in the same batch as its rows and state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewProgress {
    /// The layout of the view's stored groups ([`STATE_FORMAT`]); a view stored in an older
    /// layout is rebuilt from its source.
    #[serde(default)]
    pub state_format: u8,
    /// The types of the view's stored keys, states and rows (`Codecs::layout`); None in
    /// progress stored before it was recorded.
    #[serde(default)]
    pub layout: Option<String>,
    /// Offsets after the last input rows folded into the stored state, per split.
    pub frontier: Frontier,
    pub watermark: Option<WatermarkTracker>,
    /// Rows the view holds now.
    pub rows: u64,
    /// Windows that have group state stored (open windows; window 0 of a view without windows).
    #[serde(default)]
    pub open_windows: BTreeSet<i64>,
    /// Open windows whose first groups were written in open row blocks: a group without a
    /// single value is looked for there.
    #[serde(default)]
    pub open_blocks: BTreeSet<i64>,
    pub late_rows: u64,
    /// The first late row still kept (older ones were dropped by the limits).
    #[serde(default)]
    pub late_rows_from: u64,
    pub rows_written: u64,
    /// Windows starting before this were deleted by the view's retention.
    #[serde(default)]
    pub expired_before: Option<i64>,
    /// Set when the view failed; it then stops.
    pub error: Option<String>,
    /// True once its bounded input is read and every window closed.
    pub finished: bool,
    /// A view over a view: the upstream windows starting at or before this were applied.
    #[serde(default)]
    pub upstream_through: Option<i64>,
    /// A view over a view: how many upstream rows it applied (their positions).
    #[serde(default)]
    pub upstream_rows: u64,
}

/// A row that arrived after its window closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateRow {
    pub event_time: i64,
    pub watermark: i64,
    pub raw: String,
    /// Wall-clock time it was stored (Unix ms), for the age limit.
    #[serde(default)]
    pub at_ms: i64,
    /// How many of the row's windows were closed (a HOP row may miss only some; it is
    /// applied to the others). Absent in rows stored before it was recorded.
    #[serde(default)]
    pub missed_windows: Option<u32>,
}

/// The one field of a stored dead letter or late row that the age limit reads.
#[derive(Deserialize)]
struct Stamp {
    #[serde(default)]
    at_ms: i64,
}

/// When a stored dead letter or late row was written (0 when it does not say).
pub fn written_at(value: &[u8]) -> i64 {
    serde_json::from_slice::<Stamp>(value).map_or(0, |s| s.at_ms)
}

/// Runs one view.
pub struct ViewOperator {
    pub name: String,
    plan: Arc<ViewPlan>,
    store: Arc<Store>,
    keys: ViewKeys,
    codecs: Arc<Codecs>,
    /// Open windows, each with the partial aggregate of the rows it got this epoch.
    windows: BTreeMap<i64, Option<GroupState>>,
    /// Open windows that got rows since the last commit.
    touched: BTreeSet<i64>,
    /// A view by panes: the partial aggregate of each pane whose rows are not yet merged into
    /// its windows (see `panes`).
    panes: BTreeMap<i64, GroupState>,
    /// Groups of the last pane merged into its windows: new panes' key tables start that big.
    last_pane_groups: usize,
    cache: GroupCache,
    /// Per open window with open row blocks: which groups the blocks may hold.
    block_keys: BTreeMap<i64, KeyFilter>,
    /// Groups of the last window that opened and closed within one epoch (0 if none yet):
    /// new windows' key tables start with room for that many.
    last_window_groups: usize,
    progress: ViewProgress,
    /// Windows the watermark closed since the last flush.
    closed: Vec<(i64, Closed)>,
    late: Vec<LateRow>,
    /// Rows of the batch being applied that the view's expressions failed on, by their index
    /// in it, with the error.
    refusing: BTreeMap<u32, String>,
    /// Refused rows not yet taken by the pipeline (they become dead letters).
    refused: Vec<RefusedRow>,
    /// Rows an append-only view kept since the last flush.
    appended: Vec<AppendedRow>,
    /// `llm_analyze` requests whose pending records the last flush wrote.
    llm_requests: Vec<LlmRequest>,
    /// The entities' state of an append-only view's stateful calls.
    entities: EntityStates,
    /// A global aggregate's row over no input is still to be written.
    empty_global_pending: bool,
    counters: StateCounters,
    log_limits: LogLimits,
}

/// A window the watermark closed, waiting for the next flush to be written.
enum Closed {
    /// Its partial aggregate since the last flush (none if no row came), to be merged with
    /// its stored groups.
    Delta(Option<GroupState>),
    /// A window with nothing stored (it opened since the last flush), merged as it closed:
    /// its rows are final and the flush only writes them.
    Merged(Merged),
}

/// What becomes of a window's groups once merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterMerge {
    /// The window stays open: each group's row and state are written.
    KeepOpen,
    /// The window stays open and had nothing stored: its groups' rows and states go out in
    /// open row blocks.
    OpenInBlocks,
    /// The window closes: its final rows are written, its states dropped.
    Close,
    /// The window closed past the retention: its rows are counted as expired, not written.
    Expired,
}

/// What a view's state did since it was last asked (for metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct StateCounters {
    /// Groups read from the store because the cache did not hold them.
    pub store_reads: u64,
    /// Groups dropped from the cache.
    pub evictions: u64,
    /// Group states written.
    pub groups_written: u64,
    /// Final rows written in row blocks (windows opened and closed within one epoch).
    pub rows_in_blocks: u64,
    /// Rows deleted by retention.
    pub rows_expired: u64,
    /// Late rows dropped by the log limits.
    pub late_rows_dropped: u64,
}

/// Where a chunk's rows come from.
#[derive(Debug, Clone, Copy)]
pub struct ChunkPlace<'a> {
    pub split: u32,
    /// Offset after each row, increasing.
    pub row_ends: &'a [u64],
    /// Offset after the whole chunk.
    pub end: u64,
    /// The split whose watermark the rows advance (0 for sequential sources).
    pub watermark_split: u32,
    /// The lines the rows came from, when the decoder skipped columns no view reads.
    pub lines: Option<&'a SourceLines>,
}

impl ChunkPlace<'_> {
    /// Row `row` of `batch` (rows `first..` of the chunk) as a JSON object, for late and
    /// refused rows: whole, with any column the decoder skipped read from its line.
    fn row_json(&self, batch: &RecordBatch, first: usize, row: usize) -> String {
        let mut one = batch.slice(row, 1);
        if let Some(lines) = self.lines {
            one = lines.whole_row(one, first + row);
        }
        let mut writer = LineDelimitedWriter::new(Vec::new());
        if writer.write(&one).is_err() || writer.finish().is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&writer.into_inner())
            .trim_end()
            .to_string()
    }
}

/// The progress key of a view.
pub fn progress_key(view: &str) -> Vec<u8> {
    format!("view/{view}").into_bytes()
}

fn state_err(e: crate::state::StateError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Loads the stored groups of a view's open windows into its cache while they fit; returns
/// whether every one did.
fn preload(
    store: &Store,
    keys: &ViewKeys,
    open_windows: &BTreeSet<i64>,
    cache: &mut GroupCache,
) -> Result<bool> {
    let mut complete = true;
    let mut bad = None;
    let read = store.read_view();
    for start in open_windows {
        let from = keys.window(*start);
        let to = prefix_end(&from);
        for_each_view_value(&read, keys, true, &from, &to, |key, value| {
            let group = keys.parse(key).map(|(_, group)| group);
            let stored = StoredValue::decode(value).map(|v| v.group());
            let (Some(group), Ok(Some(stored))) = (group, stored) else {
                bad = Some(String::from_utf8_lossy(key).into_owned());
                return ControlFlow::Break(());
            };
            let head = StoredGroup::header(stored.shown);
            if !cache.has_room(key.len() + head.len() + stored.state.len()) {
                complete = false;
                return ControlFlow::Break(());
            }
            cache.insert_parts(*start, group, &[&head, stored.state]);
            ControlFlow::Continue(())
        })
        .map_err(state_err)?;
        if !complete || bad.is_some() {
            break;
        }
    }
    if let Some(key) = bad {
        return Err(DataFusionError::Internal(format!(
            "the stored group {key:?} of an open window of view \"{}\" does not decode",
            String::from_utf8_lossy(keys.prefix())
        )));
    }
    Ok(complete)
}

/// Rebuilds the filters of the groups each window's open row blocks hold.
fn load_block_keys(
    store: &Store,
    keys: &ViewKeys,
    windows: &BTreeSet<i64>,
) -> Result<BTreeMap<i64, KeyFilter>> {
    let read = store.read_view();
    let mut filters = BTreeMap::new();
    for start in windows {
        let count = open_block_entries(&read, keys, *start).map_err(state_err)?;
        let mut filter = KeyFilter::with_capacity(count);
        for_each_open_block_key(&read, keys, *start, |group| filter.insert(group))
            .map_err(state_err)?;
        filters.insert(*start, filter);
    }
    Ok(filters)
}

impl ViewOperator {
    /// Loads the view's stored progress and open windows (a new view starts empty), and as
    /// many stored groups as the cache budget allows.
    pub fn load(
        name: &str,
        plan: Arc<ViewPlan>,
        store: &Arc<Store>,
        budget: Arc<CacheBudget>,
        log_limits: LogLimits,
    ) -> Result<Self> {
        let codecs = Codecs::new(&plan)?;
        let fresh = ViewProgress {
            state_format: STATE_FORMAT,
            layout: Some(codecs.layout.clone()),
            watermark: plan
                .watermark
                .map(|(_, delay)| WatermarkTracker::new(delay)),
            ..ViewProgress::default()
        };
        let stored: Option<ViewProgress> = match store
            .get(Table::Progress, &progress_key(name))
            .map_err(state_err)?
        {
            Some(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            ),
            None => None,
        };
        let progress = match stored {
            Some(p) if p.state_format > STATE_FORMAT => {
                return Err(DataFusionError::Plan(format!(
                    "view \"{name}\" was stored by a newer Weir (state format {}; this Weir \
                     reads format {STATE_FORMAT}): run that Weir, or DROP the view and CREATE it \
                     again to rebuild it from its source",
                    p.state_format
                )))
            }
            // Formats from OLDEST_READ_FORMAT on are read as they are; the next epoch
            // stamps the view with this format.
            Some(p) if p.state_format >= OLDEST_READ_FORMAT => match &p.layout {
                Some(stored) if *stored != codecs.layout => {
                    return Err(DataFusionError::Plan(format!(
                        "view \"{name}\" holds state of another layout ({stored}) than its \
                         query plans now ({}): DROP the view and CREATE it again to rebuild it \
                         from its source",
                        codecs.layout
                    )))
                }
                Some(_) => ViewProgress {
                    state_format: STATE_FORMAT,
                    ..p
                },
                None => ViewProgress {
                    state_format: STATE_FORMAT,
                    layout: Some(codecs.layout.clone()),
                    ..p
                },
            },
            Some(p) => {
                tracing::warn!(
                    view = name,
                    format = p.state_format,
                    "the view was stored by an older Weir in another layout; rebuilding it from its source"
                );
                let mut ws = WriteSet::default();
                Self::delete_all(name, &mut ws);
                store.write(&ws).map_err(state_err)?;
                fresh.clone()
            }
            None => fresh.clone(),
        };
        let is_new = progress == fresh;
        let keys = ViewKeys::new(name);
        let mut cache = GroupCache::new(budget);
        let mut windows = BTreeMap::new();
        for start in &progress.open_windows {
            windows.insert(*start, None);
            cache.open_window(*start, false);
        }
        let global = plan.window.is_none() && !plan.append;
        if global && !windows.contains_key(&GLOBAL_WINDOW) {
            windows.insert(GLOBAL_WINDOW, None);
            cache.open_window(GLOBAL_WINDOW, true);
        }
        if !progress.open_windows.is_empty()
            && preload(store, &keys, &progress.open_windows, &mut cache)?
        {
            for start in &progress.open_windows {
                cache.set_complete(*start, true);
            }
        }
        let block_keys = load_block_keys(store, &keys, &progress.open_blocks)?;
        Ok(Self {
            name: name.to_string(),
            block_keys,
            codecs: Arc::new(codecs),
            empty_global_pending: is_new && global && plan.aggregate.group_exprs.is_empty(),
            plan,
            store: store.clone(),
            keys,
            windows,
            cache,
            last_window_groups: 0,
            panes: BTreeMap::new(),
            last_pane_groups: 0,
            progress,
            closed: Vec::new(),
            late: Vec::new(),
            refusing: BTreeMap::new(),
            refused: Vec::new(),
            touched: BTreeSet::new(),
            appended: Vec::new(),
            llm_requests: Vec::new(),
            entities: EntityStates::new(ViewKeys::new(name)),
            counters: StateCounters::default(),
            log_limits,
        })
    }

    /// The state counters since the last call.
    pub fn take_counters(&mut self) -> StateCounters {
        std::mem::take(&mut self.counters)
    }

    /// What the view computes.
    pub fn plan(&self) -> &ViewPlan {
        &self.plan
    }

    pub fn progress(&self) -> &ViewProgress {
        &self.progress
    }

    pub fn frontier(&self) -> &Frontier {
        &self.progress.frontier
    }

    pub fn is_failed(&self) -> bool {
        self.progress.error.is_some()
    }

    /// Marks the view failed with `error`; it applies nothing more.
    pub fn fail(&mut self, error: String) {
        self.progress.error = Some(error);
    }

    /// What the view holds in memory until the next flush: the groups touched since the last
    /// one (not yet merged into the stored state), or an append-only view's new rows.
    pub fn pending(&self) -> usize {
        let open = self.windows.values().flatten();
        let panes = self.panes.values();
        let closed = self.closed.iter().map(|(_, closed)| match closed {
            Closed::Delta(delta) => delta.as_ref().map_or(0, GroupState::len),
            Closed::Merged(merged) => merged.len(),
        });
        open.chain(panes).map(GroupState::len).sum::<usize>()
            + closed.sum::<usize>()
            + self.appended.len()
    }

    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Folds the rows of `batch` (all from `chunk.split`) that lie after the view's frontier.
    /// A view over a view ignores its source's chunks: it is fed in [`chain`].
    pub fn apply(&mut self, batch: &RecordBatch, chunk: ChunkPlace<'_>) -> Result<()> {
        let at = self.progress.frontier.get(chunk.split);
        if self.is_failed() || self.progress.finished || self.is_chained() || chunk.end <= at {
            return Ok(());
        }
        let first = chunk.row_ends.partition_point(|e| *e <= at);
        let batch = if first == 0 {
            batch.clone()
        } else {
            batch.slice(first, batch.num_rows() - first)
        };
        self.apply_rows(&batch, chunk, first)?;
        self.progress.frontier.advance(chunk.split, chunk.end);
        Ok(())
    }

    /// Folds `batch`, rows `first..` of `chunk`, into the view; rows its expressions fail on
    /// are set aside as refused.
    fn apply_rows(
        &mut self,
        batch: &RecordBatch,
        chunk: ChunkPlace<'_>,
        first: usize,
    ) -> Result<()> {
        if batch.num_rows() > 0 {
            match self.plan.window {
                _ if self.plan.append => self.apply_append(batch, chunk, first)?,
                Some((spec, time_col)) => {
                    self.apply_windowed(batch, (spec, time_col), chunk, first)?
                }
                None => self.apply_global(batch, chunk.watermark_split)?,
            }
        }
        for (row, error) in std::mem::take(&mut self.refusing) {
            self.refused.push(RefusedRow {
                end: chunk.row_ends[first + row as usize],
                raw: chunk.row_json(batch, first, row as usize),
                error,
            });
        }
        Ok(())
    }

    /// The rows the view refused since the last call (its expressions failed on them).
    pub fn take_refused(&mut self) -> Vec<RefusedRow> {
        std::mem::take(&mut self.refused)
    }

    /// The source's splits changed or went idle: the watermark may move and close windows.
    pub fn set_splits(&mut self, splits: &[(u32, bool)]) -> Result<()> {
        if self.is_failed() || self.progress.finished || self.is_chained() {
            return Ok(());
        }
        if let Some(w) = self.progress.watermark.as_mut() {
            w.set_splits(splits.iter().copied());
        }
        if let Some((spec, _)) = self.plan.window {
            self.close_windows(spec.size_ms())?;
        }
        Ok(())
    }

    /// Folds `batch` (rows `first..` of the chunk) into its windows; rows behind the
    /// watermark are set aside as late.
    fn apply_windowed(
        &mut self,
        batch: &RecordBatch,
        (spec, time_col): (crate::plan::WindowSpec, usize),
        chunk: ChunkPlace<'_>,
        first: usize,
    ) -> Result<()> {
        let split = chunk.watermark_split;
        let tracker = self
            .progress
            .watermark
            .as_mut()
            .expect("windowed views have a watermark");
        let assigned = assign_windows(
            batch,
            time_col,
            spec,
            &mut tracker.split(split),
            &self.plan.input_schema,
            &self.plan.used_columns,
            self.plan.panes,
        )?;
        for (row, watermark, missed) in assigned.late {
            let times = batch
                .column(time_col)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>();
            let event_time = times.map_or(0, |t| t.value(row as usize));
            self.late.push(LateRow {
                event_time,
                watermark,
                raw: chunk.row_json(batch, first, row as usize),
                at_ms: 0,
                missed_windows: Some(missed),
            });
        }
        for window in assigned.windows {
            let origin = &window.origin;
            self.fold(window.start, window.batch, &|i| origin[i])?;
        }
        for pane in assigned.panes {
            let origin = &pane.origin;
            self.fold_pane(pane.start, pane.batch, &|i| origin[i])?;
        }
        self.close_windows(spec.size_ms())
    }

    fn apply_global(&mut self, batch: &RecordBatch, split: u32) -> Result<()> {
        self.observe_event_time(batch, split);
        self.fold(GLOBAL_WINDOW, batch.clone(), &|i| i as u32)
    }

    /// Moves the watermark of `split` to the newest event time of `batch` (views without
    /// windows, where no row is ever late).
    fn observe_event_time(&mut self, batch: &RecordBatch, split: u32) {
        if let (Some(tracker), Some((col, _))) =
            (self.progress.watermark.as_mut(), self.plan.watermark)
        {
            if let Some(times) = batch
                .column(col)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
            {
                if let Some(m) = max(times) {
                    tracker.observe(split, m);
                }
            }
        }
    }

    /// Keeps the rows of `batch` (rows `first..` of the chunk) that pass an append-only
    /// view's steps; rows older than its retention are dropped on arrival.
    fn apply_append(
        &mut self,
        batch: &RecordBatch,
        chunk: ChunkPlace<'_>,
        first: usize,
    ) -> Result<()> {
        self.observe_event_time(batch, chunk.watermark_split);
        let mut refused = Vec::new();
        let (rows, origin) = append::evaluate(
            &self.plan,
            batch.clone(),
            &mut refused,
            &mut self.entities,
            &self.store,
        )?;
        for (row, error) in refused {
            self.refusing.entry(row as u32).or_insert(error);
        }
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let encoded = self.codecs.row.encode(rows.columns()).map_err(state_err)?;
        let prompts = append::prompts(&self.plan, &rows);
        let time = append::event_times(&self.plan, batch);
        let expired_before = self.progress.expired_before.unwrap_or(i64::MIN);
        for (j, i) in origin.iter().enumerate() {
            let event_time = time(*i as usize);
            if event_time < expired_before {
                self.counters.rows_expired += 1;
                continue;
            }
            self.appended.push(AppendedRow {
                event_time,
                split: chunk.split,
                end: chunk.row_ends[first + *i as usize],
                row: encode_view_row(encoded.row(j).as_ref()),
                prompts: prompts(j),
            });
        }
        Ok(())
    }

    /// Folds `rows` into window `start`; `origin` maps a row to its row in the applied batch
    /// (a row the view's expressions fail on is refused once, whatever its windows).
    fn fold(&mut self, start: i64, rows: RecordBatch, origin: &dyn Fn(usize) -> u32) -> Result<()> {
        let input = self.evaluate_refusing(rows, origin)?;
        if input.is_empty() {
            // A window (or group) exists only where a row reached it.
            return Ok(());
        }
        self.window_delta(start)?.update_evaluated(&input)?;
        self.touched.insert(start);
        Ok(())
    }

    /// Runs the view's per-row steps over `rows`: rows they fail on are set aside as refused
    /// (`origin` maps a row to its row in the applied batch).
    fn evaluate_refusing(
        &mut self,
        rows: RecordBatch,
        origin: &dyn Fn(usize) -> u32,
    ) -> Result<AggregateInput> {
        let mut refused = Vec::new();
        let input = evaluate_isolating(&self.plan, rows, &mut refused)?;
        for (row, error) in refused {
            self.refusing.entry(origin(row)).or_insert(error);
        }
        Ok(input)
    }

    /// The partial aggregate of window `start` this epoch, opened if the window was not.
    fn window_delta(&mut self, start: i64) -> Result<&mut GroupState> {
        let delta = match self.windows.entry(start) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                // A window that was not open has nothing stored.
                self.cache.open_window(start, true);
                v.insert(None)
            }
        };
        if delta.is_none() {
            let groups = self.last_window_groups;
            *delta = Some(GroupState::sized(&self.plan.aggregate, groups)?);
        }
        Ok(delta.as_mut().expect("set above"))
    }

    /// Moves every window whose end the watermark reached to the closed list.
    fn close_windows(&mut self, size_ms: i64) -> Result<()> {
        let watermark = self
            .progress
            .watermark
            .as_ref()
            .map_or(i64::MIN, |w| w.watermark());
        // A closing window's panes are merged into it (and their other windows) first.
        self.spill_panes(watermark)?;
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().saturating_add(size_ms) > watermark {
                break;
            }
            let (start, delta) = entry.remove_entry();
            self.close(start, delta)?;
        }
        Ok(())
    }

    /// Sets aside a window the watermark closed. One with nothing stored (it opened since the
    /// last flush, as most windows of a busy stream do) is merged now, as the input goes on,
    /// rather than with every other window at the flush.
    fn close(&mut self, start: i64, delta: Option<GroupState>) -> Result<()> {
        let closed = match delta {
            Some(mut delta) if !self.progress.open_windows.contains(&start) => {
                // A whole window's groups: what the next window will likely hold.
                self.last_window_groups = delta.len().min(MAX_WINDOW_GROUPS_HINT);
                let none = |groups: &GroupKeys| Ok(StoredValues::none(groups.len()));
                Closed::Merged(merge_window(
                    &self.plan,
                    &self.codecs,
                    &mut delta,
                    true,
                    none,
                )?)
            }
            delta => Closed::Delta(delta),
        };
        self.closed.push((start, closed));
        Ok(())
    }

    /// The input is finished: the watermark goes to +infinity and every window closes.
    pub fn finish(&mut self) -> Result<()> {
        if self.is_failed() || self.progress.finished {
            return Ok(());
        }
        if let Some((spec, _)) = self.plan.window {
            if let Some(w) = self.progress.watermark.as_mut() {
                w.finished = true;
            }
            self.close_windows(spec.size_ms())?;
        }
        self.progress.finished = true;
        Ok(())
    }

    /// Adds the epoch's changes to `ws`: the touched groups of every window (rows, and state
    /// while the window is open), deletes for the state of closed windows, late rows and the
    /// view's progress. `now_ms`, when given, also applies the age limit to late rows.
    pub fn flush(&mut self, ws: &mut WriteSet, now_ms: Option<i64>) -> Result<()> {
        // Open windows show what their panes hold so far.
        self.spill_panes(i64::MAX)?;
        self.expire(ws)?;
        let expired_before = self.progress.expired_before.unwrap_or(i64::MIN);
        for (start, closed) in std::mem::take(&mut self.closed) {
            let then = if start >= expired_before {
                AfterMerge::Close
            } else {
                AfterMerge::Expired
            };
            match closed {
                Closed::Delta(Some(mut delta)) => {
                    self.merge_and_write(ws, start, &mut delta, then)?
                }
                Closed::Merged(merged) => self.take_merged(ws, start, &merged, then),
                Closed::Delta(None) => {}
            }
            // The window's untouched groups keep their last value, row and state: readers
            // take the row and skip the state, and retention deletes both.
            self.cache.remove_window(start);
            self.progress.open_windows.remove(&start);
            self.progress.open_blocks.remove(&start);
            self.block_keys.remove(&start);
        }
        let touched: Vec<i64> = std::mem::take(&mut self.touched)
            .into_iter()
            .filter(|s| self.windows.contains_key(s))
            .collect();
        if self.empty_global_pending && !touched.contains(&GLOBAL_WINDOW) {
            let group = empty_global_group(&self.plan, &self.codecs)?;
            self.take_merged(ws, GLOBAL_WINDOW, &group, AfterMerge::KeepOpen);
        }
        self.empty_global_pending = false;
        for start in touched {
            let Some(mut delta) = self.windows.get_mut(&start).and_then(Option::take) else {
                continue;
            };
            // The drained delta is not reused: DataFusion's vectorized group values are not
            // meant to intern again after `emit(EmitTo::All)` (they index past their end).
            self.merge_and_write(ws, start, &mut delta, AfterMerge::KeepOpen)?;
        }
        self.write_appended(ws)?;
        let wall = chrono::Utc::now().timestamp_millis();
        for mut late in std::mem::take(&mut self.late) {
            late.at_ms = wall;
            ws.put(
                Table::LateRows,
                log_key(&self.name, self.progress.late_rows),
                serde_json::to_vec(&late).expect("late rows serialize"),
            );
            self.progress.late_rows += 1;
        }
        let log = Log {
            table: Table::LateRows,
            owner: &self.name,
            floor: &mut self.progress.late_rows_from,
            next: self.progress.late_rows,
        };
        self.counters.late_rows_dropped += log
            .trim(&self.store, ws, self.log_limits, now_ms, written_at)
            .map_err(state_err)?;
        self.write_progress(ws);
        self.counters.evictions += self.cache.evict();
        self.cache.next_epoch();
        Ok(())
    }

    /// Writes the rows an append-only view kept since the last flush (but those the
    /// retention passed meanwhile).
    fn write_appended(&mut self, ws: &mut WriteSet) -> Result<()> {
        self.entities.write(ws);
        let expired_before = self.progress.expired_before.unwrap_or(i64::MIN);
        let mut asked = Vec::new();
        // Drained, not replaced: the next epoch's rows fill memory already touched.
        let mut appended = std::mem::take(&mut self.appended);
        for row in appended.drain(..) {
            if row.event_time < expired_before {
                self.counters.rows_expired += 1;
                continue;
            }
            let key = row.key(&self.keys);
            for (column, prompt) in row.prompts {
                asked.push((record_key(&key, column), column, prompt));
            }
            ws.put(Table::ViewRows, key, row.row);
            self.progress.rows += 1;
            self.progress.rows_written += 1;
        }
        self.appended = appended;
        self.ask_llm(ws, asked)
    }

    /// Writes a pending `llm_analyze` record for each asked column, and keeps its request for
    /// once the epoch is written. A row replayed after a crash finds its record and asks
    /// nothing again.
    fn ask_llm(&mut self, ws: &mut WriteSet, asked: Vec<(Vec<u8>, usize, String)>) -> Result<()> {
        if asked.is_empty() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = asked.iter().map(|(key, _, _)| key.clone()).collect();
        let found = self
            .store
            .multi_get(Table::LlmAnalyses, &keys)
            .map_err(state_err)?;
        let now = chrono::Utc::now().timestamp_millis();
        for ((key, column, prompt), found) in asked.into_iter().zip(found) {
            if found.is_some() {
                continue;
            }
            let name = self.plan.output_schema.field(column).name();
            ws.put(
                Table::LlmAnalyses,
                &key,
                LlmRecord::pending(name, prompt.clone(), now).encode(),
            );
            self.llm_requests.push(LlmRequest::new(key, prompt));
        }
        Ok(())
    }

    /// The `llm_analyze` requests of the last flush, for once its epoch is written.
    pub fn take_llm_requests(&mut self) -> Vec<LlmRequest> {
        std::mem::take(&mut self.llm_requests)
    }

    /// Adds the view's progress (frontier, counts, error) to `ws`. A flush does it; after a
    /// failed flush the runner does, so that the failure is stored and survives a restart.
    pub fn write_progress(&self, ws: &mut WriteSet) {
        ws.put(
            Table::Progress,
            progress_key(&self.name),
            serde_json::to_vec(&self.progress).expect("progress serializes"),
        );
    }

    /// The windows retention deletes at the next flush, `[from, cutoff)` by start, if any (in
    /// an append-only view: the rows by event time).
    fn expiring(&self) -> Option<(i64, i64)> {
        let retention = self.plan.retention_ms?;
        // Age is measured against event time, also once the input ended.
        let watermark = self.progress.watermark.as_ref().and_then(|w| w.current())?;
        let cutoff = match self.plan.window {
            // A window expires when start + size < watermark - retention.
            Some((spec, _)) => {
                let slide = spec.slide_ms();
                watermark
                    .saturating_sub(retention)
                    .saturating_sub(spec.size_ms())
                    .div_euclid(slide)
                    * slide
            }
            None if self.plan.append => watermark.saturating_sub(retention),
            None => return None,
        };
        let from = self.progress.expired_before.unwrap_or(i64::MIN);
        (cutoff > from).then_some((from, cutoff))
    }

    /// Whether the next flush reads rows this view wrote (retention counts the rows it
    /// deletes), so every earlier epoch must be in the store first.
    pub fn reads_written_rows(&self) -> bool {
        self.expiring().is_some()
    }

    /// Deletes the rows of windows that ended longer than the view's retention before the
    /// watermark: one range delete each time the cutoff passes a window start.
    fn expire(&mut self, ws: &mut WriteSet) -> Result<()> {
        let Some((from, cutoff)) = self.expiring() else {
            return Ok(());
        };
        let (a, b) = self.keys.windows(from, cutoff);
        let mut rows = 0u64;
        let read = self.store.read_view();
        for_each_view_value(&read, &self.keys, !self.plan.append, &a, &b, |_, value| {
            if let Ok(value) = StoredValue::decode(value) {
                rows += value.row_count() as u64;
            }
            ControlFlow::Continue(())
        })
        .map_err(state_err)?;
        ws.delete_range(Table::LlmAnalyses, &a, &b);
        ws.delete_range(Table::ViewRows, a, b);
        self.progress.rows = self.progress.rows.saturating_sub(rows);
        self.progress.expired_before = Some(cutoff);
        self.counters.rows_expired += rows;
        Ok(())
    }

    /// Removes everything the view stored.
    pub fn delete_all(name: &str, ws: &mut WriteSet) {
        for table in [
            Table::ViewRows,
            Table::GroupState,
            Table::LegacyWindowState,
            Table::LateRows,
            Table::LlmAnalyses,
        ] {
            ws.delete_prefix(table, window_key_prefix(name));
        }
        ws.delete(Table::Progress, progress_key(name));
    }
}
