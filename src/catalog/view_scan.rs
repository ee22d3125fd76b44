//! A materialized view as a table: scans that read only the stored rows a query asks for.
//!
//! A view's rows are keyed by window start, then group key (see `state::keyed`). The scan
//! turns the query's filters into the narrowest read it can:
//! - equality or IN on every group column a view shows unchanged → point reads of exactly
//!   those keys (in a windowed view, once per window in the time range: windows start at
//!   multiples of the slide, so the candidates are known without a scan);
//! - ranges on `window_start` / `window_end` → one range scan over those windows' keys;
//! - otherwise the whole view, streamed.
//!
//! Pushed filters are *inexact*: DataFusion still applies them, so a read may be wider than
//! the filter but never narrower. Rows stream in batches from a blocking task, so a scan
//! neither holds the whole view in memory nor blocks the async runtime, and a LIMIT stops it
//! early. `EXPLAIN` shows the chosen access as `ViewScan: ... access=...`.
//!
//! Every scan of one query reads at one RocksDB snapshot: the physical optimizer rule
//! [`OneSnapshotPerQuery`] hands them a shared cell that the first scan to start fills.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};

use crate::llm::{record_key, LlmRecord};
use crate::metrics::Metrics;
use crate::operator::Codecs;
use crate::plan::{GroupRole, ViewPlan};
use crate::state::{
    find_row_in_blocks, for_each_view_row, for_each_view_value, ReadView, RowCodec, SharedReadView,
    Store, Table, ViewKeys,
};

/// Rows per batch a scan sends.
const BATCH_ROWS: usize = 8192;
/// Beyond this many keys a point read becomes a range scan.
const MAX_POINTS: usize = 100_000;

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A materialized view as a table.
#[derive(Debug)]
pub struct ViewTable {
    reader: Arc<Reader>,
    plan: Arc<ViewPlan>,
    /// The view's query as written (`pg_get_viewdef`).
    definition: String,
}

impl ViewTable {
    pub fn new(
        name: String,
        plan: Arc<ViewPlan>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let codecs = Codecs::new(&plan)?;
        let group_codecs = plan
            .aggregate
            .group_schema
            .fields()
            .iter()
            .map(|f| RowCodec::new(&[f.data_type().clone()], "group key").map_err(external))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            reader: Arc::new(Reader {
                keys: ViewKeys::new(&name),
                view: name,
                plan: plan.clone(),
                store,
                metrics,
                row_codec: codecs.row,
                group_codecs,
            }),
            plan,
            definition: String::new(),
        })
    }

    /// The table with the view's query text, which `pg_get_viewdef` answers.
    pub fn with_definition(mut self, query: String) -> Self {
        self.definition = query;
        self
    }

    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// The output column `expr` names, if it is a plain column of the view.
    fn column(&self, expr: &Expr) -> Option<usize> {
        match expr {
            Expr::Column(c) => self.plan.output_schema.index_of(&c.name).ok(),
            _ => None,
        }
    }

    /// The group column and role behind output column `expr`.
    fn group_of(&self, expr: &Expr) -> Option<(usize, GroupRole)> {
        let g = (*self.plan.key_columns.get(self.column(expr)?)?)?;
        Some((g, self.plan.group_roles[g]))
    }

    /// When `expr` is a time column the keys lead with (a window column, or an append-only
    /// view's event time), what to subtract from a bound on it to bound the keys' leading times.
    fn time_shift(&self, expr: &Expr) -> Option<i64> {
        if self.plan.event_time_column.is_some() && self.column(expr) == self.plan.event_time_column
        {
            return Some(0);
        }
        match self.group_of(expr)? {
            (_, GroupRole::Key) => None,
            (_, role) => Some(self.window_shift(role)),
        }
    }

    /// The range of the keys' leading times that `op value` allows on a time column whose
    /// bounds are shifted by `shift`. Those times are whole milliseconds; `t` is (floor, ceil).
    fn time_range(op: Operator, value: &ScalarValue, shift: i64) -> Option<Constraint> {
        let t = millis(value)?;
        let (from, to) = match op {
            Operator::Eq => (t.1 - shift, t.0 + 1 - shift),
            Operator::Gt => (t.0 + 1 - shift, i64::MAX),
            Operator::GtEq => (t.1 - shift, i64::MAX),
            Operator::Lt => (i64::MIN, t.1 - shift),
            Operator::LtEq => (i64::MIN, t.0 + 1 - shift),
            _ => return None,
        };
        Some(Constraint::Windows(from, to))
    }

    /// What `filter` says about the keys, if anything.
    fn constraint(&self, filter: &Expr) -> Option<Constraint> {
        match filter {
            // DataFusion turns short IN lists into ORs of equalities.
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) => match (self.constraint(left)?, self.constraint(right)?) {
                (Constraint::Values(a, mut x), Constraint::Values(b, y)) if a == b => {
                    x.extend(y);
                    Some(Constraint::Values(a, x))
                }
                (Constraint::Windows(a, b), Constraint::Windows(c, d)) => {
                    Some(Constraint::Windows(a.min(c), b.max(d)))
                }
                _ => None,
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, op, value) = match (left.as_ref(), right.as_ref()) {
                    (c, Expr::Literal(v, _)) => (c, *op, v),
                    (Expr::Literal(v, _), c) => (c, op.swap()?, v),
                    _ => return None,
                };
                if value.is_null() {
                    return None;
                }
                // An equality on a group column is a point; on an append-only view's event
                // time, a one-millisecond range.
                if let (Operator::Eq, Some((g, _))) = (op, self.group_of(col)) {
                    return Some(Constraint::Values(g, vec![value.clone()]));
                }
                Self::time_range(op, value, self.time_shift(col)?)
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                let (Expr::Literal(low, _), Expr::Literal(high, _)) = (low.as_ref(), high.as_ref())
                else {
                    return None;
                };
                let shift = self.time_shift(expr)?;
                Some(Constraint::Windows(
                    millis(low)?.1 - shift,
                    millis(high)?.0 + 1 - shift,
                ))
            }
            Expr::InList(list) if !list.negated => {
                let (g, _) = self.group_of(&list.expr)?;
                let values = list
                    .list
                    .iter()
                    .map(|e| match e {
                        Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(Constraint::Values(g, values))
            }
            _ => None,
        }
    }

    /// What to subtract from a bound on a window column to bound window starts.
    fn window_shift(&self, role: GroupRole) -> i64 {
        match (role, self.plan.window) {
            (GroupRole::WindowEnd, Some((spec, _))) => spec.size_ms(),
            _ => 0,
        }
    }

    /// The narrowest read the filters allow.
    fn access(&self, filters: &[Expr]) -> Access {
        let n = self.plan.group_roles.len();
        let mut values: Vec<Option<Vec<ScalarValue>>> = vec![None; n];
        let (mut from, mut to) = (i64::MIN, i64::MAX);
        for constraint in filters.iter().filter_map(|f| self.constraint(f)) {
            match constraint {
                Constraint::Windows(a, b) => {
                    from = from.max(a);
                    to = to.min(b);
                }
                Constraint::Values(g, v) => {
                    // Two equalities on one column: keep the smaller set (still a superset of
                    // the answer; DataFusion applies both).
                    if values[g].as_ref().is_none_or(|old| v.len() < old.len()) {
                        values[g] = Some(v);
                    }
                }
            }
        }
        // Window columns with fixed values narrow the windows too.
        for (g, role) in self.plan.group_roles.iter().enumerate() {
            if let (GroupRole::WindowStart | GroupRole::WindowEnd, Some(v)) = (role, &values[g]) {
                let shift = self.window_shift(*role);
                let times: Option<Vec<(i64, i64)>> = v.iter().map(millis).collect();
                if let Some(times) = times {
                    let lo = times.iter().map(|t| t.0).min().unwrap_or(i64::MAX) - shift;
                    let hi = times.iter().map(|t| t.1).max().unwrap_or(i64::MIN) + 1 - shift;
                    from = from.max(lo);
                    to = to.min(hi);
                }
            }
        }
        let keys_fixed = self
            .plan
            .group_roles
            .iter()
            .zip(&values)
            .all(|(role, v)| *role != GroupRole::Key || v.is_some());
        let combos: usize = self
            .plan
            .group_roles
            .iter()
            .zip(&values)
            .filter(|(role, _)| **role == GroupRole::Key)
            .map(|(_, v)| v.as_ref().map_or(1, Vec::len))
            .product();
        let has_keys = self.plan.group_roles.contains(&GroupRole::Key);
        if has_keys && keys_fixed && combos <= MAX_POINTS && from < to {
            let key_values = self
                .plan
                .group_roles
                .iter()
                .zip(values)
                .map(|(role, v)| match role {
                    GroupRole::Key => v,
                    _ => None,
                })
                .collect();
            return Access::Points {
                key_values,
                from,
                to,
            };
        }
        if from == i64::MIN && to == i64::MAX {
            Access::All
        } else {
            Access::Windows { from, to }
        }
    }
}

impl ViewTable {
    /// The group column (by output index) that output column `name` shows unchanged, when
    /// it is a key column (not a window column).
    pub fn key_column(&self, name: &str) -> Option<usize> {
        let column = self.plan.output_schema.index_of(name).ok()?;
        let g = (*self.plan.key_columns.get(column)?)?;
        (self.plan.group_roles[g] == GroupRole::Key).then_some(column)
    }

    /// Whether every group key column of the view is among `columns` (output indices).
    pub fn keys_covered_by(&self, columns: &[usize]) -> bool {
        let covered: Vec<usize> = columns
            .iter()
            .filter_map(|&c| *self.plan.key_columns.get(c)?)
            .collect();
        self.plan
            .group_roles
            .iter()
            .enumerate()
            .all(|(g, role)| *role != GroupRole::Key || covered.contains(&g))
    }

    /// The rows whose key columns equal `equalities` (output column index, value), with
    /// every key column of the view fixed: a point read at a fresh snapshot, on the calling
    /// thread (a few multi-gets). None when the filters do not make a point read.
    pub fn read_points(&self, equalities: &[(usize, ScalarValue)]) -> Result<Option<RecordBatch>> {
        let schema = &self.plan.output_schema;
        let filters: Vec<Expr> = equalities
            .iter()
            .map(|(c, v)| {
                Expr::Column(schema.field(*c).name().as_str().into())
                    .eq(Expr::Literal(v.clone(), None))
            })
            .collect();
        let access = self.access(&filters);
        if !matches!(access, Access::Points { .. }) {
            return Ok(None);
        }
        let batches = std::cell::RefCell::new(Vec::new());
        let snapshot = SharedReadView::new(self.reader.store.clone());
        let send = |batch| {
            batches.borrow_mut().push(batch);
            true
        };
        let mut sink = Sink::new(&self.reader, snapshot.view(), None, usize::MAX, &send);
        self.reader.read(snapshot.view(), &access, &mut sink)?;
        let _ = sink.flush()?;
        let keys_read = sink.keys_read;
        self.reader
            .metrics
            .view_scan_keys
            .with_label_values(&[&self.reader.view])
            .inc_by(keys_read);
        self.reader
            .metrics
            .view_point_queries
            .with_label_values(&[&self.reader.view])
            .inc();
        let batches = batches.into_inner();
        Ok(Some(datafusion::arrow::compute::concat_batches(
            schema, &batches,
        )?))
    }
}

/// A bound on a window column as milliseconds, widened to whole milliseconds: (floor, ceil).
fn millis(value: &ScalarValue) -> Option<(i64, i64)> {
    let (v, per_ms) = match value {
        ScalarValue::TimestampMillisecond(Some(v), _) => (*v, 1),
        ScalarValue::TimestampSecond(Some(v), _) => (v.checked_mul(1000)?, 1),
        ScalarValue::TimestampMicrosecond(Some(v), _) => (*v, 1_000),
        ScalarValue::TimestampNanosecond(Some(v), _) => (*v, 1_000_000),
        _ => return None,
    };
    Some((
        v.div_euclid(per_ms),
        v.div_euclid(per_ms) + i64::from(v % per_ms != 0),
    ))
}

/// What one filter says about a view's keys.
enum Constraint {
    /// Window starts in `[from, to)`.
    Windows(i64, i64),
    /// Group column `g` is one of these values.
    Values(usize, Vec<ScalarValue>),
}

/// How a scan reads the view.
#[derive(Debug, Clone)]
enum Access {
    All,
    /// Every row of the windows starting in `[from, to)`.
    Windows {
        from: i64,
        to: i64,
    },
    /// The keys made of these values of each key column (None for window columns), in each
    /// window starting in `[from, to)`.
    Points {
        key_values: Vec<Option<Vec<ScalarValue>>>,
        from: i64,
        to: i64,
    },
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound = |v: i64, open: i64| {
            if v == open {
                "_".to_string()
            } else {
                v.to_string()
            }
        };
        match self {
            Access::All => write!(f, "all"),
            Access::Windows { from, to } => write!(
                f,
                "windows [{}, {})",
                bound(*from, i64::MIN),
                bound(*to, i64::MAX)
            ),
            Access::Points {
                key_values,
                from,
                to,
            } => {
                let keys: usize = key_values.iter().flatten().map(Vec::len).product();
                write!(f, "points {keys} key(s)")?;
                if *from != i64::MIN || *to != i64::MAX {
                    write!(
                        f,
                        " in windows [{}, {})",
                        bound(*from, i64::MIN),
                        bound(*to, i64::MAX)
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.constraint(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.plan.output_schema.project(p)?),
            None => self.plan.output_schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(ViewScan {
            access: self.access(filters),
            projection: projection.cloned(),
            limit,
            schema,
            properties: Arc::new(properties),
            reader: self.reader.clone(),
            snapshot: Arc::default(),
        }))
    }
}

/// What a scan reads with: the view's store, key layout and codecs.
#[derive(Debug)]
struct Reader {
    view: String,
    plan: Arc<ViewPlan>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    keys: ViewKeys,
    row_codec: RowCodec,
    /// One codec per group column: a key is their encodings concatenated.
    group_codecs: Vec<RowCodec>,
}

/// The snapshot the scans of one query read at, taken when the first of them starts.
type QuerySnapshot = OnceLock<SharedReadView>;

/// The physical scan of one view.
#[derive(Debug, Clone)]
struct ViewScan {
    access: Access,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    reader: Arc<Reader>,
    snapshot: Arc<QuerySnapshot>,
}

/// Makes every view scan in one physical plan share one snapshot, so a query over several
/// views (a join, a UNION, a subquery) sees them all as of the same committed epochs.
#[derive(Debug, Default)]
pub struct OneSnapshotPerQuery;

impl PhysicalOptimizerRule for OneSnapshotPerQuery {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let shared: Arc<QuerySnapshot> = Arc::default();
        plan.transform_up(|node| match node.downcast_ref::<ViewScan>() {
            Some(scan) => {
                let scan = ViewScan {
                    snapshot: shared.clone(),
                    ..scan.clone()
                };
                Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>))
            }
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "one_snapshot_per_query"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

impl DisplayAs for ViewScan {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ViewScan: view={}, access={}",
            self.reader.view, self.access
        )?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p
                .iter()
                .map(|i| self.reader.plan.output_schema.field(*i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ViewScan {
    fn name(&self) -> &'static str {
        "ViewScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let reader = self.reader.clone();
        let access = self.access.clone();
        let projection = self.projection.clone();
        let limit = self.limit.unwrap_or(usize::MAX);
        let snapshot = self.snapshot.clone();
        builder.spawn_blocking(move || {
            let read = snapshot.get_or_init(|| SharedReadView::new(reader.store.clone()));
            let send = |batch| tx.blocking_send(Ok(batch)).is_ok();
            let mut sink = Sink::new(&reader, read.view(), projection.as_deref(), limit, &send);
            let result = reader.read(read.view(), &access, &mut sink);
            let result = result.and_then(|()| sink.flush().map(|_| ()));
            reader
                .metrics
                .view_scan_keys
                .with_label_values(&[&reader.view])
                .inc_by(sink.keys_read);
            result
        });
        Ok(builder.build())
    }
}

/// Collects stored rows into batches and sends them until the limit or the reader is gone.
struct Sink<'a> {
    reader: &'a Reader,
    /// Where `llm_analyze` answers are read, at the scan's snapshot.
    snapshot: &'a ReadView<'a>,
    projection: Option<&'a [usize]>,
    left: usize,
    pending: Vec<Vec<u8>>,
    /// The keys of `pending` rows, kept only for a view with `llm_analyze` columns.
    pending_keys: Vec<Vec<u8>>,
    keys_read: u64,
    send: &'a dyn Fn(RecordBatch) -> bool,
}

impl<'a> Sink<'a> {
    fn new(
        reader: &'a Reader,
        snapshot: &'a ReadView<'a>,
        projection: Option<&'a [usize]>,
        limit: usize,
        send: &'a dyn Fn(RecordBatch) -> bool,
    ) -> Self {
        Self {
            reader,
            snapshot,
            projection,
            left: limit,
            pending: Vec::new(),
            pending_keys: Vec::new(),
            keys_read: 0,
            send,
        }
    }

    /// Takes one stored value and its key: the rows it holds (none for a group HAVING hides,
    /// which keeps only its state; many for a row block); says whether to go on.
    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<ControlFlow<()>> {
        let mut error = None;
        let flow = for_each_view_row(value, |row| match self.push_row(key, row) {
            Ok(flow) => flow,
            Err(e) => {
                error = Some(e);
                ControlFlow::Break(())
            }
        })
        .map_err(external)?;
        error.map_or(Ok(flow), Err)
    }

    /// Takes one stored row and the key of its value; says whether to go on.
    fn push_row(&mut self, key: &[u8], row: &[u8]) -> Result<ControlFlow<()>> {
        if self.left == 0 {
            return Ok(ControlFlow::Break(()));
        }
        self.pending.push(row.to_vec());
        if !self.reader.plan.llm_columns.is_empty() {
            self.pending_keys.push(key.to_vec());
        }
        self.left -= 1;
        if self.pending.len() >= BATCH_ROWS || self.left == 0 {
            return self.flush();
        }
        Ok(ControlFlow::Continue(()))
    }

    fn flush(&mut self) -> Result<ControlFlow<()>> {
        if self.pending.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let rows = std::mem::take(&mut self.pending);
        let cols = self
            .reader
            .row_codec
            .decode(rows.iter().map(|r| r.as_slice()))
            .map_err(external)?;
        let keys = std::mem::take(&mut self.pending_keys);
        let cols = self.with_answers(cols, &keys)?;
        let batch = RecordBatch::try_new(self.reader.plan.output_schema.clone(), cols)?;
        let batch = match self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        };
        if !(self.send)(batch) || self.left == 0 {
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    }
}

impl Sink<'_> {
    /// `cols` with each `llm_analyze` column showing the answers stored for the rows of
    /// `keys` (NULL where none arrived yet); the stored rows hold the prompts there.
    fn with_answers(&self, mut cols: Vec<ArrayRef>, keys: &[Vec<u8>]) -> Result<Vec<ArrayRef>> {
        for column in &self.reader.plan.llm_columns {
            let wanted: Vec<Vec<u8>> = keys.iter().map(|k| record_key(k, *column)).collect();
            let found = self
                .snapshot
                .multi_get(Table::LlmAnalyses, &wanted)
                .map_err(external)?;
            let answers: StringArray = found
                .iter()
                .map(|v| v.as_deref().and_then(LlmRecord::decode))
                .map(|r| r.and_then(|r| r.shown().map(str::to_string)))
                .collect();
            cols[*column] = Arc::new(answers);
        }
        Ok(cols)
    }
}

impl Reader {
    fn read(&self, read: &ReadView<'_>, access: &Access, sink: &mut Sink<'_>) -> Result<()> {
        match access {
            Access::All | Access::Windows { .. } => {
                let (from, to) = match access {
                    Access::Windows { from, to } => self.keys.windows(*from, *to),
                    _ => self.keys.all(),
                };
                let mut error = None;
                let grouped = !self.plan.append;
                for_each_view_value(read, &self.keys, grouped, &from, &to, |key, value| {
                    sink.keys_read += 1;
                    match sink.push(key, value) {
                        Ok(flow) => flow,
                        Err(e) => {
                            error = Some(e);
                            ControlFlow::Break(())
                        }
                    }
                })
                .map_err(external)?;
                error.map_or(Ok(()), Err)
            }
            Access::Points {
                key_values,
                from,
                to,
            } => {
                // Too many windows, or a value not of its column's type: read the range.
                let keys = match self.window_starts(read, *from, *to)? {
                    Some(starts) => self.point_keys(key_values, &starts)?,
                    None => None,
                };
                let Some(mut keys) = keys else {
                    let range = Access::Windows {
                        from: *from,
                        to: *to,
                    };
                    return self.read(read, &range, sink);
                };
                keys.sort();
                keys.dedup();
                // A group may be in a row block or an open one: a key not stored alone is
                // looked for in the block that would hold it.
                for chunk in keys.chunks(BATCH_ROWS) {
                    let values = read.multi_get(Table::ViewRows, chunk).map_err(external)?;
                    sink.keys_read += chunk.len() as u64;
                    for (key, value) in chunk.iter().zip(&values) {
                        let flow = match value {
                            Some(value) => sink.push(key, value)?,
                            None => match self.block_row(read, key)? {
                                Some(row) => {
                                    sink.keys_read += 1;
                                    sink.push_row(key, &row)?
                                }
                                None => ControlFlow::Continue(()),
                            },
                        };
                        if flow.is_break() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The row of the group whose key (`view \0 window_start group`) is `key`, from the open
    /// row block or row block of its window that would hold it, if there is one and it does.
    fn block_row(&self, read: &ReadView<'_>, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some((start, group)) = self.keys.parse(key) else {
            return Ok(None);
        };
        find_row_in_blocks(read, &self.keys, start, group).map_err(external)
    }

    /// The window starts a point read visits: GLOBAL (0) for a view without windows; for a
    /// windowed view every multiple of the slide between the first and last stored window
    /// that lies in `[from, to)` — None when there are too many.
    fn window_starts(&self, read: &ReadView<'_>, from: i64, to: i64) -> Result<Option<Vec<i64>>> {
        let Some((spec, _)) = self.plan.window else {
            return Ok(Some(vec![crate::operator::GLOBAL_WINDOW]));
        };
        let (a, b) = self.keys.windows(from, to);
        let Some((first, last)) = read.key_bounds(Table::ViewRows, &a, &b).map_err(external)?
        else {
            return Ok(Some(Vec::new()));
        };
        let (Some((first, _)), Some((last, _))) = (self.keys.parse(&first), self.keys.parse(&last))
        else {
            return Ok(None);
        };
        let slide = spec.slide_ms();
        let count = (last - first) / slide + 1;
        if count as usize > MAX_POINTS {
            return Ok(None);
        }
        let first = first.div_euclid(slide) * slide;
        Ok(Some(
            (0..=count)
                .map(|i| first + i * slide)
                .filter(|s| *s <= last)
                .collect(),
        ))
    }

    /// Every key made of one value per group column in each window of `starts`; None when a
    /// value does not convert to its column's type (the scan then reads the range).
    fn point_keys(
        &self,
        key_values: &[Option<Vec<ScalarValue>>],
        starts: &[i64],
    ) -> Result<Option<Vec<Vec<u8>>>> {
        let schema = &self.plan.aggregate.group_schema;
        // The encodings of the fixed values of each key column.
        let mut encoded: Vec<Option<Vec<Vec<u8>>>> = Vec::with_capacity(key_values.len());
        for (g, values) in key_values.iter().enumerate() {
            encoded.push(match values {
                Some(values) => {
                    let field_type = schema.field(g).data_type();
                    let cast = values
                        .iter()
                        .map(|v| v.cast_to(field_type))
                        .collect::<Result<Vec<_>>>();
                    let Ok(cast) = cast else { return Ok(None) };
                    let array = ScalarValue::iter_to_array(cast)?;
                    let rows = self.group_codecs[g].encode(&[array]).map_err(external)?;
                    Some(rows.iter().map(|r| r.as_ref().to_vec()).collect())
                }
                None => None,
            });
        }
        // Window columns are not in the key (its window start says them).
        let mut groups: Vec<Vec<u8>> = vec![Vec::new()];
        for (g, role) in self.plan.group_roles.iter().enumerate() {
            if *role != GroupRole::Key {
                continue;
            }
            let choices = encoded[g].clone().unwrap_or_default();
            groups = groups
                .iter()
                .flat_map(|p| {
                    choices.iter().map(move |c| {
                        let mut k = p.clone();
                        k.extend_from_slice(c);
                        k
                    })
                })
                .collect();
        }
        let mut keys = Vec::with_capacity(starts.len() * groups.len());
        for start in starts {
            keys.extend(groups.iter().map(|group| self.keys.group(*start, group)));
        }
        Ok(Some(keys))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::common::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::operator::GLOBAL_WINDOW;
    use crate::plan::{plan_view, SourceSchema};
    use crate::state::{encode_view_row, WriteSet};

    async fn count_by_k() -> Arc<ViewPlan> {
        let source = SourceSchema {
            name: "s".into(),
            schema: Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)])),
            watermark: None,
            upstream: None,
        };
        let sql = "SELECT k, count(*) AS c FROM s GROUP BY k";
        let Statement::Query(query) = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
        else {
            panic!("not a query")
        };
        let find = |name: &str| Ok((name == "s").then(|| source.clone()));
        Arc::new(
            plan_view(&query, &find, &SessionContext::new())
                .await
                .unwrap(),
        )
    }

    /// Stores the row `(k, c)` of `view` as the view operator would.
    fn put_row(store: &Store, view: &str, plan: &ViewPlan, k: &str, c: i64) {
        let codecs = Codecs::new(plan).unwrap();
        let key_col: ArrayRef = Arc::new(StringArray::from(vec![k]));
        let group = codecs
            .key
            .as_ref()
            .unwrap()
            .encode(std::slice::from_ref(&key_col))
            .unwrap();
        let count: ArrayRef = Arc::new(Int64Array::from(vec![c]));
        let row = codecs.row.encode(&[key_col, count]).unwrap();
        let mut set = WriteSet::default();
        set.put(
            Table::ViewRows,
            ViewKeys::new(view).group(GLOBAL_WINDOW, group.row(0).as_ref()),
            encode_view_row(row.row(0).as_ref()),
        );
        store.write(&set).unwrap();
    }

    fn counts(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    /// Two views read by one query: the second scan starts after a commit changed both, and
    /// still sees them as they were when the first scan started.
    #[tokio::test]
    async fn one_query_reads_every_view_at_one_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let plan = count_by_k().await;
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new())
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(OneSnapshotPerQuery))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for view in ["v1", "v2"] {
            put_row(&store, view, &plan, "a", 1);
            let table = ViewTable::new(view.into(), plan.clone(), store.clone(), metrics.clone());
            ctx.register_table(view, Arc::new(table.unwrap())).unwrap();
        }
        let df = ctx
            .sql("SELECT c FROM v1 UNION ALL SELECT c FROM v2")
            .await
            .unwrap();
        let physical = df.create_physical_plan().await.unwrap();
        assert_eq!(physical.properties().partitioning.partition_count(), 2);
        let task = ctx.task_ctx();
        let first = collect(physical.execute(0, task.clone()).unwrap())
            .await
            .unwrap();
        for view in ["v1", "v2"] {
            put_row(&store, view, &plan, "a", 2);
        }
        let second = collect(physical.execute(1, task).unwrap()).await.unwrap();
        assert_eq!((counts(&first), counts(&second)), (vec![1], vec![1]));

        // The next query sees the commit.
        let rows = ctx.sql("SELECT c FROM v2").await.unwrap().collect().await;
        assert_eq!(counts(&rows.unwrap()), vec![2]);
    }
}
