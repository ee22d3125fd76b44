//! The commit of one window: an epoch's partial aggregate merged into the stored state of just
//! the groups it touched.
//!
//! The epoch's rows were folded into a fresh [`GroupState`] (the *delta*). At commit its groups
//! are put in key order and taken a chunk at a time ([`WindowMerge`]): their keys are encoded,
//! their stored states come from the cache or, on a miss in an incomplete window, from a
//! RocksDB multi-get; delta and stored states merge ([`merge_chunk`]), the merged groups are
//! evaluated and pass the view's HAVING and projection, and each touched group's state and row
//! are written back before the next chunk. Nothing here costs more than the groups the epoch
//! touched.

use std::sync::OnceLock;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::Rows;
use datafusion::common::{DataFusionError, Result};

use super::cache::Slot;
use super::groups::{empty_output, merge_with_stored, state_types, GroupState};
use super::key_order::{column_order, key_order};
use crate::plan::{run_steps_tracked, GroupRole, ViewPlan};
use crate::state::{RowCodec, StateError, StoredGroup};

fn state_err(e: StateError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The row codecs of one view: group keys, accumulator states, output rows.
#[derive(Debug)]
pub struct Codecs {
    /// The group columns that go into a key: all but `window_start`/`window_end`, which the
    /// key's window start already says. None when there are none (a global aggregate, or a
    /// view grouped by its window only): each window then has one group, the empty key.
    pub key: Option<RowCodec>,
    /// Indices of those columns among the group columns.
    key_columns: Vec<usize>,
    pub state: RowCodec,
    pub row: RowCodec,
    /// The types of the key, state and row columns, as text: stored with the view's progress
    /// and compared at load, so stored groups are never decoded as columns of other types.
    pub layout: String,
}

/// `types` as text, e.g. `[Utf8, Int64]`.
fn type_list(types: &[DataType]) -> String {
    let names: Vec<String> = types.iter().map(ToString::to_string).collect();
    format!("[{}]", names.join(", "))
}

impl Codecs {
    pub fn new(plan: &ViewPlan) -> Result<Self> {
        let agg = &plan.aggregate;
        let key_columns: Vec<usize> = plan
            .group_roles
            .iter()
            .enumerate()
            .filter(|(_, role)| **role == GroupRole::Key)
            .map(|(i, _)| i)
            .collect();
        let key_types: Vec<_> = key_columns
            .iter()
            .map(|i| agg.group_schema.field(*i).data_type().clone())
            .collect();
        let key = if key_columns.is_empty() {
            None
        } else {
            Some(RowCodec::new(&key_types, "group key").map_err(state_err)?)
        };
        let state_types = state_types(agg)?;
        let state = RowCodec::new(&state_types, "group_state").map_err(state_err)?;
        let row_types: Vec<_> = plan
            .output_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let row = RowCodec::new(&row_types, "view_rows").map_err(state_err)?;
        let layout = format!(
            "key {}, state {}, row {}",
            type_list(&key_types),
            type_list(&state_types),
            type_list(&row_types)
        );
        Ok(Self {
            key,
            key_columns,
            state,
            row,
            layout,
        })
    }

    /// The groups of a snapshot in key order: read from the key column itself when there is
    /// one of a type [`column_order`] reads, else from the encoded keys.
    pub fn key_order(&self, snapshot: &RecordBatch) -> Result<Vec<usize>> {
        if let [column] = self.key_columns[..] {
            if let Some(order) = column_order(snapshot.column(column)) {
                return Ok(order);
            }
        }
        Ok(key_order(&self.group_keys(snapshot)?))
    }

    /// The key bytes of each group of a snapshot (group columns first).
    pub fn group_keys(&self, snapshot: &RecordBatch) -> Result<GroupKeys> {
        match &self.key {
            Some(codec) => {
                let cols: Vec<ArrayRef> = self
                    .key_columns
                    .iter()
                    .map(|i| snapshot.column(*i).clone())
                    .collect();
                Ok(GroupKeys::Rows(codec.encode(&cols).map_err(state_err)?))
            }
            None => Ok(GroupKeys::Empty(snapshot.num_rows())),
        }
    }
}

/// The keys of a window's groups, all in one buffer.
pub enum GroupKeys {
    Rows(Rows),
    /// Groups without key columns: each key is empty.
    Empty(usize),
}

impl GroupKeys {
    pub fn len(&self) -> usize {
        match self {
            GroupKeys::Rows(rows) => rows.num_rows(),
            GroupKeys::Empty(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> &[u8] {
        match self {
            GroupKeys::Rows(rows) => rows.row(i).data(),
            GroupKeys::Empty(_) => &[],
        }
    }
}

/// The stored values of a chunk of a window's groups (`StoredGroup` encodings), in one buffer,
/// and where each group sits in the view's cache.
#[derive(Default)]
pub struct StoredValues {
    bytes: Vec<u8>,
    spans: Vec<Option<(usize, usize)>>,
    slots: Vec<Option<Slot>>,
}

impl StoredValues {
    pub fn with_capacity(groups: usize) -> Self {
        Self {
            bytes: Vec::new(),
            spans: Vec::with_capacity(groups),
            slots: Vec::with_capacity(groups),
        }
    }

    /// `groups` groups with nothing stored and no place in the cache.
    pub fn none(groups: usize) -> Self {
        Self {
            bytes: Vec::new(),
            spans: vec![None; groups],
            slots: vec![None; groups],
        }
    }

    /// Adds the next group's value (None: nothing stored, or not known yet) and its slot in
    /// the cache, if it has one.
    pub fn push(&mut self, value: Option<&[u8]>, slot: Option<Slot>) {
        let span = value.map(|v| self.append(v));
        self.spans.push(span);
        self.slots.push(slot);
    }

    /// Sets the value of group `i` (one pushed as None) to the concatenation of `parts`.
    pub fn set_parts(&mut self, i: usize, parts: &[&[u8]]) {
        let at = self.bytes.len();
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        self.spans[i] = Some((at, self.bytes.len() - at));
    }

    fn append(&mut self, value: &[u8]) -> (usize, usize) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(value);
        (at, value.len())
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.spans[i].map(|(at, len)| &self.bytes[at..at + len])
    }
}

/// The groups of a chunk of one window after a merge, in key order, their bytes in a few
/// buffers.
pub struct Merged {
    keys: GroupKeys,
    /// Each group's merged accumulator state; None for a view without aggregates and for the
    /// one group of a global aggregate before any input.
    states: Option<Rows>,
    /// The output rows of the groups in the view.
    rows: Option<Rows>,
    /// Per group: its row in `rows`, or `HIDDEN`.
    row_of: Vec<u32>,
    was_shown: Vec<bool>,
    /// Per group: its slot in the view's cache.
    slots: Vec<Option<Slot>>,
}

const HIDDEN: u32 = u32::MAX;

/// A touched group after the merge.
pub struct MergedGroup<'a> {
    /// The group's key columns as a row.
    pub key: &'a [u8],
    /// The accumulators' merged state as a row.
    pub state: &'a [u8],
    /// The output row, when the group is in the view (HAVING may hide it).
    pub row: Option<&'a [u8]>,
    /// Whether its row was in the view before.
    pub was_shown: bool,
    /// Where the group sits in the view's cache; None for a group made without a lookup.
    pub slot: Option<Slot>,
}

impl MergedGroup<'_> {
    /// Whether the group's row is in the view now.
    pub fn shown(&self) -> bool {
        self.row.is_some()
    }

    /// The group's new stored value (a `StoredGroup`).
    #[cfg(test)]
    pub fn stored(&self) -> Vec<u8> {
        StoredGroup::encode(self.shown(), self.state)
    }
}

impl Merged {
    fn empty() -> Self {
        Self {
            keys: GroupKeys::Empty(0),
            states: None,
            rows: None,
            row_of: Vec::new(),
            was_shown: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.was_shown.len()
    }

    /// The groups in key order.
    pub fn groups(&self) -> impl Iterator<Item = MergedGroup<'_>> {
        (0..self.len()).map(|i| self.group(i))
    }

    /// Group `i` in key order.
    pub fn group(&self, i: usize) -> MergedGroup<'_> {
        MergedGroup {
            key: self.keys.get(i),
            state: self.states.as_ref().map_or(&[][..], |s| s.row(i).data()),
            row: match (self.row_of[i], &self.rows) {
                (HIDDEN, _) | (_, None) => None,
                (j, Some(rows)) => Some(rows.row(j as usize).data()),
            },
            was_shown: self.was_shown[i],
            slot: self.slots.get(i).copied().flatten(),
        }
    }
}

/// Groups merged at a time at commit: a window's intermediate buffers (its groups' keys,
/// states and rows, each several copies) are this many groups long, so each chunk's are freed
/// before the next chunk's are allocated, and the allocator serves those from the same pages,
/// already paged in and in the CPU's caches. Merged whole, a window of a million groups
/// first-touched ~100 MB more: a quarter of the operator thread's page faults, each costing
/// microseconds on a VM. Windows that open and close between two commits are still merged
/// whole (`merge_window`), as they close: their merged rows wait for the commit.
pub const MERGE_CHUNK: usize = 8 * 1024;

/// The environment variable that sets another chunk size than [`MERGE_CHUNK`]: the
/// differential test sets a tiny one, so that its small windows cross chunk boundaries.
pub const MERGE_CHUNK_VAR: &str = "WEIR_MERGE_CHUNK_GROUPS";

/// Groups merged at a time: [`MERGE_CHUNK`], or what [`MERGE_CHUNK_VAR`] says.
pub fn merge_chunk_groups() -> usize {
    static GROUPS: OnceLock<usize> = OnceLock::new();
    count_from_env(&GROUPS, MERGE_CHUNK_VAR, MERGE_CHUNK)
}

/// An open window that had nothing stored is written in open row blocks when its first epoch
/// brings at least this many groups. Fewer are written one value each: a block's entries that
/// later epochs change stay behind, shadowed, until the window is deleted, which a few groups
/// are not worth.
pub const OPEN_BLOCK_MIN_GROUPS: usize = 1024;

/// The environment variable that sets another threshold than [`OPEN_BLOCK_MIN_GROUPS`]: the
/// differential test sets a tiny one, so that its small windows are written in open blocks.
pub const OPEN_BLOCK_MIN_VAR: &str = "WEIR_OPEN_BLOCK_MIN_GROUPS";

/// [`OPEN_BLOCK_MIN_GROUPS`], or what [`OPEN_BLOCK_MIN_VAR`] says.
pub fn open_block_min_groups() -> usize {
    static GROUPS: OnceLock<usize> = OnceLock::new();
    count_from_env(&GROUPS, OPEN_BLOCK_MIN_VAR, OPEN_BLOCK_MIN_GROUPS)
}

/// A positive count from environment variable `var` (read once into `cell`), else `default`.
fn count_from_env(cell: &OnceLock<usize>, var: &str, default: usize) -> usize {
    *cell.get_or_init(|| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    })
}

/// A window's epoch delta, drained, in key order, handed out a chunk of groups at a time to
/// be merged with their stored groups ([`merge_chunk`]) and written before the next.
pub struct WindowMerge {
    snapshot: RecordBatch,
    /// The snapshot's groups in key order.
    order: Vec<usize>,
    /// Groups handed out so far.
    done: usize,
}

impl WindowMerge {
    /// Drains `delta` and puts its groups in key order.
    pub fn start(plan: &ViewPlan, codecs: &Codecs, delta: &mut GroupState) -> Result<Self> {
        let snapshot = delta.take_snapshot(&plan.aggregate)?;
        // Everything from here runs in key order: the store writes the groups in the order
        // given (RocksDB inserts keys that arrive in order several times faster), and the
        // groups' keys, states and rows are then read front to back. Read in a scattered
        // order, with a million groups, each of those reads waited on a cache miss.
        let order = codecs.key_order(&snapshot)?;
        Ok(Self {
            snapshot,
            order,
            done: 0,
        })
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The next (up to) `max` groups in key order and their keys; None once all were handed
    /// out.
    pub fn next_chunk(
        &mut self,
        codecs: &Codecs,
        max: usize,
    ) -> Result<Option<(RecordBatch, GroupKeys)>> {
        let from = self.done;
        if from >= self.len() {
            return Ok(None);
        }
        let to = self.len().min(from.saturating_add(max.max(1)));
        self.done = to;
        let order = &self.order[from..to];
        let chunk = if order.iter().zip(from..).all(|(i, at)| *i == at) {
            self.snapshot.slice(from, to - from)
        } else {
            let indices = UInt32Array::from_iter_values(order.iter().map(|i| *i as u32));
            take_record_batch(&self.snapshot, &indices)?
        };
        // The chunk's keys, encoded from its key columns: less work than copying rows encoded
        // for the ordering, which a text or integer key column does not even need.
        let keys = codecs.group_keys(&chunk)?;
        Ok(Some((chunk, keys)))
    }
}

/// Merges `delta` into the stored groups, all in one chunk. `stored` receives the keys of the
/// delta's groups and returns each one's stored value, if any. A window that `closes` keeps
/// its rows alone, so its merged states are not made (each group's `state` is empty).
pub fn merge_window(
    plan: &ViewPlan,
    codecs: &Codecs,
    delta: &mut GroupState,
    closes: bool,
    stored: impl FnOnce(&GroupKeys) -> Result<StoredValues>,
) -> Result<Merged> {
    let mut merge = WindowMerge::start(plan, codecs, delta)?;
    match merge.next_chunk(codecs, usize::MAX)? {
        Some((chunk, keys)) => {
            let previous = stored(&keys)?;
            merge_chunk(plan, codecs, chunk, keys, previous, closes)
        }
        None => Ok(Merged::empty()),
    }
}

/// Merges a chunk of a window's delta (`snapshot`, its groups in key order, their `keys`) with
/// the groups' stored values (`previous`). A window that `closes` keeps its rows alone, so its
/// merged states are not made.
pub fn merge_chunk(
    plan: &ViewPlan,
    codecs: &Codecs,
    snapshot: RecordBatch,
    keys: GroupKeys,
    mut previous: StoredValues,
    closes: bool,
) -> Result<Merged> {
    let agg = &plan.aggregate;
    let n = snapshot.num_rows();
    if n == 0 {
        return Ok(Merged::empty());
    }
    let slots = std::mem::take(&mut previous.slots);
    let mut was_shown = vec![false; n];
    let mut stored_groups = Vec::new();
    let mut stored_rows: Vec<&[u8]> = Vec::new();
    for (i, shown) in was_shown.iter_mut().enumerate() {
        if let Some(value) = previous.get(i) {
            let group = StoredGroup::decode(value).map_err(state_err)?;
            *shown = group.shown;
            if !group.state.is_empty() {
                stored_groups.push(i);
                stored_rows.push(group.state);
            }
        }
    }
    let stored_states: Vec<ArrayRef> = if stored_rows.is_empty() {
        Vec::new()
    } else {
        codecs.state.decode(stored_rows).map_err(state_err)?
    };
    let (states, output) =
        merge_with_stored(agg, &snapshot, &stored_states, &stored_groups, !closes)?;
    // A view without aggregates (`SELECT k ... GROUP BY k`) keeps no state but its keys.
    let states = if states.is_empty() {
        None
    } else {
        Some(codecs.state.encode(&states).map_err(state_err)?)
    };
    let (shown, origin) = run_steps_tracked(&plan.post, output)?;
    let rows = codecs.row.encode(shown.columns()).map_err(state_err)?;
    let mut row_of = vec![HIDDEN; n];
    for (j, i) in origin.iter().enumerate() {
        row_of[*i as usize] = j as u32;
    }
    Ok(Merged {
        keys,
        states,
        rows: Some(rows),
        row_of,
        was_shown,
        slots,
    })
}

/// The one group of a global aggregate before any input: its row (count 0, other aggregates
/// NULL) if HAVING keeps it, and an empty state.
pub fn empty_global_group(plan: &ViewPlan, codecs: &Codecs) -> Result<Merged> {
    let (shown, _) = run_steps_tracked(&plan.post, empty_output(&plan.aggregate)?)?;
    let rows = codecs.row.encode(shown.columns()).map_err(state_err)?;
    Ok(Merged {
        keys: GroupKeys::Empty(1),
        states: None,
        row_of: vec![if rows.num_rows() == 1 { 0 } else { HIDDEN }],
        rows: Some(rows),
        was_shown: vec![false],
        slots: vec![None],
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    use datafusion::logical_expr::{create_udaf, Accumulator, Volatility};
    use datafusion::prelude::SessionContext;
    use datafusion::scalar::ScalarValue;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::plan::{plan_view, run_steps, SourceSchema};

    /// A user aggregate with a row accumulator: the sum of squares.
    #[derive(Debug, Default)]
    struct SumSquares(f64);

    impl Accumulator for SumSquares {
        fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
            let v = values[0].as_any().downcast_ref::<Float64Array>().unwrap();
            self.0 += v.iter().flatten().map(|x| x * x).sum::<f64>();
            Ok(())
        }
        fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
            let v = states[0].as_any().downcast_ref::<Float64Array>().unwrap();
            self.0 += v.iter().flatten().sum::<f64>();
            Ok(())
        }
        fn state(&mut self) -> Result<Vec<ScalarValue>> {
            Ok(vec![ScalarValue::from(self.0)])
        }
        fn evaluate(&mut self) -> Result<ScalarValue> {
            Ok(ScalarValue::from(self.0))
        }
        fn size(&self) -> usize {
            8
        }
    }

    fn source() -> SourceSchema {
        SourceSchema {
            name: "s".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Utf8, true),
                Field::new("n", DataType::Int64, true),
                Field::new("v", DataType::Float64, true),
            ])),
            watermark: None,
            upstream: None,
        }
    }

    async fn plan(sql: &str) -> ViewPlan {
        let ctx = SessionContext::new();
        ctx.register_udaf(create_udaf(
            "sum_sq",
            vec![DataType::Float64],
            Arc::new(DataType::Float64),
            Volatility::Immutable,
            Arc::new(|_| Ok(Box::new(SumSquares::default()))),
            Arc::new(vec![DataType::Float64]),
        ));
        let Statement::Query(query) = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
        else {
            panic!("not a query")
        };
        let s = source();
        let find = |name: &str| Ok((name == "s").then(|| s.clone()));
        plan_view(&query, &find, &ctx).await.unwrap()
    }

    fn rows(data: &[(Option<&str>, Option<i64>, Option<f64>)]) -> RecordBatch {
        RecordBatch::try_new(
            source().schema,
            vec![
                Arc::new(data.iter().map(|r| r.0).collect::<StringArray>()),
                Arc::new(data.iter().map(|r| r.1).collect::<Int64Array>()),
                Arc::new(data.iter().map(|r| r.2).collect::<Float64Array>()),
            ],
        )
        .unwrap()
    }

    /// The rows of a batch as sorted text lines, floats rounded (merging in another order
    /// may change the last bits).
    fn lines(batch: &RecordBatch) -> Vec<String> {
        let options = FormatOptions::default().with_null("NULL");
        let mut out: Vec<String> = (0..batch.num_rows())
            .map(|r| {
                batch
                    .columns()
                    .iter()
                    .map(|c| {
                        let text = ArrayFormatter::try_new(c.as_ref(), &options)
                            .unwrap()
                            .value(r)
                            .to_string();
                        match (c.data_type(), text.parse::<f64>()) {
                            (DataType::Float64, Ok(f)) => format!("{f:.6}"),
                            _ => text,
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        out.sort();
        out
    }

    /// Folds each epoch's rows into a delta and merges it into a map standing in for the
    /// store; returns the view's rows at the end.
    fn run_epochs(plan: &ViewPlan, epochs: &[RecordBatch]) -> RecordBatch {
        let codecs = Codecs::new(plan).unwrap();
        let mut states: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut shown: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for (e, batch) in epochs.iter().enumerate() {
            // The last epoch closes the window: rows alone, no state.
            let closes = e + 1 == epochs.len();
            let mut delta = GroupState::new(&plan.aggregate).unwrap();
            let input = run_steps(&plan.pre, batch.clone()).unwrap();
            delta.update(&plan.aggregate, &input).unwrap();
            let merged = merge_window(plan, &codecs, &mut delta, closes, |keys| {
                let mut values = StoredValues::default();
                for i in 0..keys.len() {
                    values.push(states.get(keys.get(i)).map(|v| v.as_slice()), None);
                }
                Ok(values)
            })
            .unwrap();
            let mut last: Option<Vec<u8>> = None;
            for group in merged.groups() {
                assert!(last.as_deref() < Some(group.key), "in key order");
                last = Some(group.key.to_vec());
                assert_eq!(group.state.is_empty(), closes, "state made unless closing");
                let before = states
                    .get(group.key)
                    .map(|v| StoredGroup::decode(v).unwrap().shown);
                assert_eq!(before.unwrap_or(false), group.was_shown);
                match group.row {
                    Some(row) => shown.insert(group.key.to_vec(), row.to_vec()),
                    None => shown.remove(group.key),
                };
                states.insert(group.key.to_vec(), group.stored());
            }
        }
        let cols = codecs
            .row
            .decode(shown.values().map(|r| r.as_slice()))
            .unwrap();
        RecordBatch::try_new(plan.output_schema.clone(), cols).unwrap()
    }

    /// [`run_epochs`] with each window merged `chunk` groups at a time: the chunks come in key
    /// order, together hold every group once, and give the rows a whole merge gives.
    fn run_epochs_in_chunks(plan: &ViewPlan, epochs: &[RecordBatch], chunk: usize) -> RecordBatch {
        let codecs = Codecs::new(plan).unwrap();
        let mut states: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut shown: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for batch in epochs {
            let mut delta = GroupState::new(&plan.aggregate).unwrap();
            let input = run_steps(&plan.pre, batch.clone()).unwrap();
            delta.update(&plan.aggregate, &input).unwrap();
            let mut merge = WindowMerge::start(plan, &codecs, &mut delta).unwrap();
            let groups = merge.len();
            let (mut seen, mut last) = (0, None::<Vec<u8>>);
            while let Some((snapshot, keys)) = merge.next_chunk(&codecs, chunk).unwrap() {
                assert!(keys.len() <= chunk && !keys.is_empty());
                let mut values = StoredValues::default();
                for i in 0..keys.len() {
                    values.push(states.get(keys.get(i)).map(|v| v.as_slice()), None);
                }
                let merged = merge_chunk(plan, &codecs, snapshot, keys, values, false).unwrap();
                for group in merged.groups() {
                    assert!(last.as_deref() < Some(group.key), "in key order");
                    last = Some(group.key.to_vec());
                    seen += 1;
                    match group.row {
                        Some(row) => shown.insert(group.key.to_vec(), row.to_vec()),
                        None => shown.remove(group.key),
                    };
                    states.insert(group.key.to_vec(), group.stored());
                }
            }
            assert_eq!(seen, groups);
            assert!(merge.next_chunk(&codecs, chunk).unwrap().is_none());
        }
        let cols = codecs
            .row
            .decode(shown.values().map(|r| r.as_slice()))
            .unwrap();
        RecordBatch::try_new(plan.output_schema.clone(), cols).unwrap()
    }

    #[tokio::test]
    async fn a_window_merged_in_chunks_equals_one_merged_whole() {
        let plan = plan(
            "SELECT k, count(*) AS c, sum(n) AS s, approx_distinct(n) AS d FROM s GROUP BY k \
             HAVING count(*) >= 2",
        )
        .await;
        let epochs = epochs();
        let whole = lines(&at_once(&plan, &epochs));
        for chunk in [1, 2, 3, MERGE_CHUNK] {
            assert_eq!(
                lines(&run_epochs_in_chunks(&plan, &epochs, chunk)),
                whole,
                "chunks of {chunk}"
            );
        }
    }

    fn at_once(plan: &ViewPlan, epochs: &[RecordBatch]) -> RecordBatch {
        let mut state = GroupState::new(&plan.aggregate).unwrap();
        for batch in epochs {
            let input = run_steps(&plan.pre, batch.clone()).unwrap();
            state.update(&plan.aggregate, &input).unwrap();
        }
        run_steps(&plan.post, state.evaluate(&plan.aggregate).unwrap()).unwrap()
    }

    fn epochs() -> Vec<RecordBatch> {
        vec![
            rows(&[
                (Some("a"), Some(1), Some(1.5)),
                (Some("b"), Some(2), None),
                (Some("a"), Some(1), Some(-2.0)),
            ]),
            rows(&[(Some("c"), None, Some(4.0)), (None, Some(7), Some(0.25))]),
            rows(&[
                (Some("a"), Some(3), Some(8.0)),
                (Some("b"), Some(2), Some(3.0)),
                (Some("c"), Some(5), None),
                (None, Some(7), Some(1.0)),
            ]),
        ]
    }

    #[tokio::test]
    async fn every_kind_of_aggregate_round_trips_through_stored_groups() {
        let plan = plan(
            "SELECT k, count(*) AS c, count(DISTINCT n) AS d, approx_distinct(n) AS ad, \
             approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS p, stddev(v) AS sd, \
             var_pop(v) AS vp, avg(v) AS a, sum(n) AS s, min(v) AS mn, max(k) AS mx, \
             bool_and(v > 0) AS pos, sum_sq(v) AS sq, \
             count(*) FILTER (WHERE n > 1) AS big FROM s GROUP BY k",
        )
        .await;
        let epochs = epochs();
        assert_eq!(
            lines(&run_epochs(&plan, &epochs)),
            lines(&at_once(&plan, &epochs))
        );
        assert_eq!(run_epochs(&plan, &epochs).num_rows(), 4);
    }

    #[tokio::test]
    async fn having_hides_and_shows_groups_as_they_change() {
        let plan = plan("SELECT k, count(*) AS c FROM s GROUP BY k HAVING count(*) >= 2").await;
        let epochs = epochs();
        let expected = lines(&at_once(&plan, &epochs));
        assert_eq!(expected, vec!["NULL|2", "a|3", "b|2", "c|2"]);
        assert_eq!(lines(&run_epochs(&plan, &epochs)), expected);
        // After the first epoch only "a" has two rows.
        assert_eq!(lines(&run_epochs(&plan, &epochs[..1])), vec!["a|2"]);
    }

    #[tokio::test]
    async fn a_global_aggregate_has_its_row_before_any_input() {
        let plan = plan("SELECT count(*) AS c, sum(v) AS s FROM s").await;
        let codecs = Codecs::new(&plan).unwrap();
        let empty = empty_global_group(&plan, &codecs).unwrap();
        let group = empty.groups().next().unwrap();
        let row = group.row.expect("shown");
        let cols = codecs.row.decode([row]).unwrap();
        let batch = RecordBatch::try_new(plan.output_schema.clone(), cols).unwrap();
        assert_eq!(lines(&batch), vec!["0|NULL"]);
        // Its state is empty: the first epoch merges with nothing.
        assert!(group.state.is_empty());
        let stored = group.stored();
        let mut delta = GroupState::new(&plan.aggregate).unwrap();
        delta.update(&plan.aggregate, &epochs()[0]).unwrap();
        let merged = merge_window(&plan, &codecs, &mut delta, false, |_| {
            let mut values = StoredValues::default();
            values.push(Some(&stored), None);
            Ok(values)
        })
        .unwrap();
        let merged = merged.groups().next().unwrap();
        assert!(merged.was_shown);
        let cols = codecs.row.decode([merged.row.unwrap()]).unwrap();
        let batch = RecordBatch::try_new(plan.output_schema.clone(), cols).unwrap();
        assert_eq!(lines(&batch), vec!["3|-0.500000"]);
    }
}
