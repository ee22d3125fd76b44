//! Planning a materialized view: DataFusion plans the SELECT, Weir splits it at the aggregate.
//! A SELECT without an aggregate over a plain source is an *append-only* view: its per-batch
//! steps (WHERE, projections) are the whole plan, and every row that passes them is kept.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::empty::EmptyTable;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    FunctionArg, FunctionArgExpr, Ident, ObjectName, Query, SetExpr, Statement, TableAlias,
    TableFactor,
};

use super::ddl::WatermarkDef;
use super::interval::interval_ms;
use super::stateful::{mentions_stateful, Lifter};
use super::steps::{compile, nullable, simplify, Step};
use super::upstream::{watermark_for_window, windowed_input, Upstream};
use super::PlanError;

pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
/// The name the windowed input is planned under.
const WINDOW_INPUT: &str = "__weir_window_input";
/// The most windows one row may fall in (HOP size / slide): each row is copied once per
/// window, so a larger ratio lets a handful of rows exhaust memory.
pub const MAX_WINDOWS_PER_ROW: i64 = 1_000;

/// What the planner needs to know of a source.
#[derive(Debug, Clone)]
pub struct SourceSchema {
    pub name: String,
    pub schema: SchemaRef,
    pub watermark: Option<WatermarkDef>,
    /// Set when the "source" is a view, read as the stream of its final rows.
    pub upstream: Option<Upstream>,
}

/// An event-time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Tumble { size_ms: i64 },
    Hop { slide_ms: i64, size_ms: i64 },
}

impl WindowSpec {
    pub fn size_ms(&self) -> i64 {
        match self {
            WindowSpec::Tumble { size_ms } | WindowSpec::Hop { size_ms, .. } => *size_ms,
        }
    }

    pub fn slide_ms(&self) -> i64 {
        match self {
            WindowSpec::Tumble { size_ms } => *size_ms,
            WindowSpec::Hop { slide_ms, .. } => *slide_ms,
        }
    }

    /// How many windows a row falls in, at most.
    pub fn windows_per_row(&self) -> i64 {
        let (size, slide) = (self.size_ms(), self.slide_ms());
        size / slide + i64::from(size % slide != 0)
    }
}

/// The aggregate at the heart of a view.
#[derive(Debug)]
pub struct AggregatePlan {
    /// The rows the aggregate reads (after the per-batch steps).
    pub input_schema: SchemaRef,
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub group_schema: SchemaRef,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// `FILTER (WHERE ...)` of each aggregate.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Group columns, then one column per aggregate.
    pub output_schema: SchemaRef,
    /// Per group column: whether it holds one value in all the rows one window's groups see
    /// (`window_start`, `window_end`), so those groups are told apart by the others alone.
    pub constant_groups: Vec<bool>,
}

/// A materialized view split into what runs per batch, what is kept, and what runs on emit.
#[derive(Debug)]
pub struct ViewPlan {
    pub source: String,
    /// The window and the index of its event-time column in the source schema.
    pub window: Option<(WindowSpec, usize)>,
    /// A HOP view aggregated by panes: each row once into its slide-sized pane, each pane
    /// then merged into the windows it is part of (see [`by_panes`]).
    pub panes: bool,
    /// The source's watermark: event-time column index and delay.
    pub watermark: Option<(usize, i64)>,
    /// Source columns, then `window_start`, `window_end` for windowed views.
    pub input_schema: SchemaRef,
    /// For each column of `input_schema`, whether the view reads it: window assignment copies
    /// only these (each row once per window), the others become nulls.
    pub used_columns: Vec<bool>,
    pub pre: Vec<Step>,
    pub aggregate: AggregatePlan,
    pub post: Vec<Step>,
    pub output_schema: SchemaRef,
    /// For each output column, the group column it shows unchanged, if any: what lets a
    /// query's filter on it become a key lookup.
    pub key_columns: Vec<Option<usize>>,
    /// What each group column is.
    pub group_roles: Vec<GroupRole>,
    /// Windows that ended longer than this before the watermark are deleted (in an
    /// append-only view: rows whose event time is that old).
    pub retention_ms: Option<i64>,
    /// An append-only view: no aggregate (`aggregate` is empty), `pre` computes its rows,
    /// each kept under its event time and source position.
    pub append: bool,
    /// In an append-only view with a watermark, the output column that shows the source's
    /// event time unchanged: rows are keyed by it, so a query's range on it is a key range.
    pub event_time_column: Option<usize>,
    /// In an append-only view, the output columns that show `llm_analyze(prompt)`: stored
    /// rows hold the prompt there, and scans show the answer (see `crate::llm`).
    pub llm_columns: Vec<usize>,
    /// Set when the view reads another view's final rows (`source` names that view) instead
    /// of a source.
    pub upstream: Option<Upstream>,
}

/// The part a group column plays in a view's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    WindowStart,
    WindowEnd,
    Key,
}

/// The lineage of a projection's outputs: for each, the origin of the input column it shows
/// unchanged (`lineage` gives the origins of the projection's inputs), if any.
fn projected(lineage: &[Option<usize>], exprs: &[Arc<dyn PhysicalExpr>]) -> Vec<Option<usize>> {
    exprs
        .iter()
        .map(|e| {
            e.downcast_ref::<PhysicalColumn>()
                .and_then(|c| lineage.get(c.index()).copied().flatten())
        })
        .collect()
}

/// The output column of `steps` that shows input column `column` unchanged, if any.
fn column_after(steps: &[Step], n_inputs: usize, column: usize) -> Option<usize> {
    let mut lineage: Vec<Option<usize>> = (0..n_inputs).map(Some).collect();
    for step in steps {
        match step {
            Step::Project { exprs, .. } => lineage = projected(&lineage, exprs),
            Step::Stateful(_) => lineage.push(None),
            Step::Filter(_) => {}
        }
    }
    lineage.iter().position(|c| *c == Some(column))
}

/// Follows the columns of the aggregate's output through the projections above it.
fn key_lineage(n_groups: usize, n_outputs: usize, post: &[Step]) -> Vec<Option<usize>> {
    let mut lineage: Vec<Option<usize>> = (0..n_outputs)
        .map(|i| (i < n_groups).then_some(i))
        .collect();
    for step in post {
        if let Step::Project { exprs, .. } = step {
            lineage = projected(&lineage, exprs);
        }
    }
    lineage
}

/// Whether a view can be aggregated by panes: it is a HOP whose windows are whole panes
/// (size a multiple of the slide), and nothing below its GROUP BY reads `window_start` or
/// `window_end` but group keys that are those columns themselves (a pane's rows feed several
/// windows, each with its own values of them). A projection may pass them on unchanged.
fn by_panes(
    window: Option<WindowSpec>,
    agg: &datafusion::logical_expr::Aggregate,
) -> Result<bool, PlanError> {
    let Some(WindowSpec::Hop { slide_ms, size_ms }) = window else {
        return Ok(false);
    };
    if size_ms % slide_ms != 0 || size_ms == slide_ms {
        return Ok(false);
    }
    let reads_window = |e: &Expr| {
        e.column_refs()
            .iter()
            .any(|c| c.name == WINDOW_START || c.name == WINDOW_END)
    };
    let computes_from_window = |e: &Expr| !matches!(e, Expr::Column(_)) && reads_window(e);
    if agg.group_expr.iter().any(computes_from_window) || agg.aggr_expr.iter().any(reads_window) {
        return Ok(false);
    }
    let below = agg.input.exists(|node| {
        Ok(match node {
            LogicalPlan::Projection(p) => p.expr.iter().any(computes_from_window),
            other => other.expressions().iter().any(reads_window),
        })
    })?;
    Ok(!below)
}

fn unsupported(msg: impl Into<String>) -> PlanError {
    PlanError::Unsupported(msg.into())
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn arg_expr(arg: &FunctionArg) -> Result<&datafusion::sql::sqlparser::ast::Expr, PlanError> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
        other => Err(PlanError::Invalid(format!(
            "unexpected window argument {other}"
        ))),
    }
}

fn arg_ident(arg: &FunctionArg) -> Result<String, PlanError> {
    match arg_expr(arg)? {
        datafusion::sql::sqlparser::ast::Expr::Identifier(i) => Ok(fold(i)),
        other => Err(PlanError::Invalid(format!("expected a name, got {other}"))),
    }
}

fn fold(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Rewrites the FROM clause; returns the source name and the window, if any.
fn rewrite_from(query: &mut Query) -> Result<(String, Option<(WindowSpec, String)>), PlanError> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(unsupported(
            "a materialized view is one SELECT (UNION and VALUES are not supported)",
        ));
    };
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return Err(unsupported(
            "a materialized view reads exactly one source (joins are not supported yet)",
        ));
    }
    let TableFactor::Table {
        name, args, alias, ..
    } = &mut select.from[0].relation
    else {
        return Err(unsupported(
            "FROM must name a source, or TUMBLE(...) / HOP(...) over one",
        ));
    };
    let Some(fn_args) = args.take() else {
        let parts = &name.0;
        let ident = parts
            .last()
            .and_then(|p| p.as_ident())
            .ok_or_else(|| PlanError::Invalid(format!("bad name {name}")))?;
        return Ok((fold(ident), None));
    };
    let func = name.to_string().to_uppercase();
    let a = &fn_args.args;
    let (source, column, window) = match (func.as_str(), a.len()) {
        ("TUMBLE", 3) => (
            arg_ident(&a[0])?,
            arg_ident(&a[1])?,
            WindowSpec::Tumble {
                size_ms: interval_ms(arg_expr(&a[2])?)?,
            },
        ),
        ("HOP", 4) => {
            let slide_ms = interval_ms(arg_expr(&a[2])?)?;
            let size_ms = interval_ms(arg_expr(&a[3])?)?;
            if slide_ms > size_ms {
                return Err(PlanError::Invalid(
                    "HOP slide must not be larger than its size".into(),
                ));
            }
            (
                arg_ident(&a[0])?,
                arg_ident(&a[1])?,
                WindowSpec::Hop { slide_ms, size_ms },
            )
        }
        ("TUMBLE", _) => {
            return Err(PlanError::Invalid(
                "use TUMBLE(source, time_column, INTERVAL 'size')".into(),
            ))
        }
        ("HOP", _) => {
            return Err(PlanError::Invalid(
                "use HOP(source, time_column, INTERVAL 'slide', INTERVAL 'size')".into(),
            ))
        }
        _ => {
            return Err(unsupported(format!(
                "table function {func} is not supported; use TUMBLE or HOP"
            )))
        }
    };
    if window.size_ms() <= 0 || window.slide_ms() <= 0 {
        return Err(PlanError::Invalid("window sizes must be positive".into()));
    }
    if window.windows_per_row() > MAX_WINDOWS_PER_ROW {
        return Err(PlanError::LimitExceeded(format!(
            "HOP with slide {} ms and size {} ms puts each row in {} windows; at most {MAX_WINDOWS_PER_ROW} \
             are allowed: use a larger slide or a smaller size",
            window.slide_ms(),
            window.size_ms(),
            window.windows_per_row()
        )));
    }
    *name = ObjectName::from(vec![Ident::new(WINDOW_INPUT)]);
    if alias.is_none() {
        *alias = Some(TableAlias {
            explicit: true,
            name: Ident::new(source.clone()),
            columns: vec![],
            at: None,
        });
    }
    Ok((source, Some((window, column))))
}

/// Plans the SELECT `sql` over `source` alone (tests of the planner and the operators).
#[cfg(test)]
pub async fn plan_sql(sql: &str, source: &SourceSchema) -> ViewPlan {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Statement::Query(query) = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .expect("the test's SQL parses")
        .remove(0)
    else {
        panic!("not a query: {sql}")
    };
    let find = |name: &str| Ok((name == source.name).then(|| source.clone()));
    plan_view(&query, &find, &SessionContext::new())
        .await
        .expect("the test's view plans")
}

/// Plans `query` over `source`, using `ctx` (a fresh context with Weir's functions) to plan.
pub async fn plan_view(
    query: &Query,
    find_source: &(dyn Fn(&str) -> Result<Option<SourceSchema>, PlanError> + Sync),
    ctx: &SessionContext,
) -> Result<ViewPlan, PlanError> {
    let mut query = query.clone();
    let (source_name, window) = rewrite_from(&mut query)?;
    let mut source = find_source(&source_name)?.ok_or_else(|| PlanError::UnknownRelation {
        kind: "source",
        name: source_name.clone(),
    })?;
    if let Some((_, column)) = &window {
        watermark_for_window(&mut source, column);
    }
    let watermark = match &source.watermark {
        Some(wm) => Some((source.schema.index_of(&wm.column)?, wm.delay_ms)),
        None => None,
    };
    let (input_schema, window) = match window {
        Some((spec, column)) => {
            let Some(wm) = &source.watermark else {
                return Err(PlanError::Invalid(format!(
                    "source \"{}\" has no WATERMARK, so it has no event-time windows; declare WATERMARK FOR <column> AS <column> - INTERVAL '...'",
                    source.name
                )));
            };
            if wm.column != column {
                return Err(PlanError::Invalid(format!(
                    "windows of source \"{}\" are over its WATERMARK column \"{}\", not \"{column}\"",
                    source.name, wm.column
                )));
            }
            let schema = windowed_input(&source.schema, |name| Field::new(name, ts_type(), false));
            ctx.register_table(WINDOW_INPUT, Arc::new(EmptyTable::new(schema.clone())))?;
            (schema, Some((spec, source.schema.index_of(&column)?)))
        }
        None => {
            ctx.register_table(
                source.name.as_str(),
                Arc::new(EmptyTable::new(source.schema.clone())),
            )?;
            (source.schema.clone(), None)
        }
    };
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DFStatement::Statement(Box::new(Statement::Query(
            Box::new(query),
        ))))
        .await?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let mut view = split_plan(&plan, source_name, window, watermark, input_schema)?;
    view.upstream = source.upstream;
    Ok(view)
}

/// Simplifies the arguments, FILTER and ORDER BY of an aggregate call (see [`simplify`]); the
/// call itself stays as planned.
fn simplify_aggregate(expr: Expr, input: &DFSchema) -> Result<Expr, PlanError> {
    Ok(match expr {
        Expr::Alias(mut alias) => {
            alias.expr = Box::new(simplify_aggregate(*alias.expr, input)?);
            Expr::Alias(alias)
        }
        Expr::AggregateFunction(mut call) => {
            let params = &mut call.params;
            params.args = std::mem::take(&mut params.args)
                .into_iter()
                .map(|a| simplify(a, input))
                .collect::<datafusion::common::Result<_>>()?;
            if let Some(filter) = params.filter.take() {
                params.filter = Some(Box::new(simplify(*filter, input)?));
            }
            for sort in &mut params.order_by {
                sort.expr = simplify(sort.expr.clone(), input)?;
            }
            Expr::AggregateFunction(call)
        }
        other => other,
    })
}

/// The per-batch steps from `top` down to the source scan, in the order they run; adds the
/// columns they read to `referenced`. Stateful function calls become steps of their own
/// (see [`super::stateful`]) when `stateful` allows them, else they are refused.
fn steps_to_scan(
    top: &LogicalPlan,
    input_schema: &SchemaRef,
    referenced: &mut HashSet<String>,
    stateful: bool,
) -> Result<Vec<Step>, PlanError> {
    // The nodes from the top down to the scan.
    let mut nodes = Vec::new();
    let mut node = top;
    loop {
        referenced.extend(
            node.expressions()
                .iter()
                .flat_map(|e| e.column_refs())
                .map(|c| c.name.clone()),
        );
        if !stateful && node.expressions().iter().any(mentions_stateful) {
            return Err(stateful_refused());
        }
        nodes.push(node);
        match node {
            LogicalPlan::TableScan(_) => break,
            LogicalPlan::Filter(_) | LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
                node = node.inputs()[0];
            }
            other => {
                return Err(unsupported(format!(
                    "{} is not supported in a materialized view",
                    other.display()
                )))
            }
        }
    }
    let mut steps = Vec::new();
    let mut lifter = Lifter::default();
    let last = nodes.len() - 1;
    for (depth, node) in nodes.iter().enumerate().rev() {
        let is_top = depth == 0;
        match node {
            LogicalPlan::TableScan(scan) => {
                if let Some(projection) = &scan.projection {
                    referenced.extend(
                        projection
                            .iter()
                            .map(|i| input_schema.field(*i).name().clone()),
                    );
                }
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(unsupported(
                        "pushed-down scan filters are not expected here",
                    ));
                }
                if let Some(projection) = &scan.projection {
                    let exprs: Vec<Expr> = projection
                        .iter()
                        .map(|i| {
                            Expr::Column(datafusion::common::Column::from_name(
                                input_schema.field(*i).name(),
                            ))
                        })
                        .collect();
                    let full = DFSchema::try_from(input_schema.as_ref().clone())?;
                    steps.push(Step::project(
                        &exprs,
                        &full,
                        scan.projected_schema.as_ref(),
                    )?);
                }
                debug_assert_eq!(depth, last);
            }
            LogicalPlan::Filter(f) => {
                let mut lifted = Vec::new();
                let predicate =
                    lifter.rewrite(f.predicate.clone(), f.input.schema(), &mut lifted)?;
                steps.extend(lifted.into_iter().map(Step::Stateful));
                let schema = lifter.extend(f.input.schema())?;
                steps.push(Step::filter(&predicate, &schema)?);
                if is_top && lifter.has_live() {
                    // The view's rows are the filter's input columns, without the calls'.
                    steps.push(lifter.drop_step(f.input.schema())?);
                }
            }
            LogicalPlan::Projection(p) => {
                let mut lifted = Vec::new();
                let mut exprs = p
                    .expr
                    .iter()
                    .map(|e| lifter.rewrite(e.clone(), p.input.schema(), &mut lifted))
                    .collect::<Result<Vec<_>, _>>()?;
                steps.extend(lifted.into_iter().map(Step::Stateful));
                let input = lifter.extend(p.input.schema())?;
                let output = if is_top {
                    lifter.drop_live();
                    p.schema.clone()
                } else {
                    exprs.extend(lifter.live_columns());
                    lifter.extend(&p.schema)?
                };
                steps.push(Step::project(&exprs, &input, &output)?);
            }
            LogicalPlan::SubqueryAlias(a) if is_top && lifter.has_live() => {
                steps.push(lifter.drop_step(a.input.schema())?);
            }
            _ => {}
        }
    }
    Ok(steps)
}

fn stateful_refused() -> PlanError {
    unsupported(
        "stateful functions (ewma_zscore, is_novel, anomaly_score, is_anomalous) run in append-only views: score rows in a view without GROUP BY, e.g. CREATE MATERIALIZED VIEW scored AS SELECT *, ewma_zscore(...) AS z FROM <source>",
    )
}

/// An append-only view: a SELECT without aggregate over a plain source. Its rows are the
/// source rows that pass its steps; they are keyed by event time, so the source needs no
/// watermark unless the view has a retention.
fn append_plan(
    plan: &LogicalPlan,
    source: String,
    watermark: Option<(usize, i64)>,
    input_schema: SchemaRef,
) -> Result<ViewPlan, PlanError> {
    let mut referenced = HashSet::new();
    let pre = steps_to_scan(plan, &input_schema, &mut referenced, true)?;
    let empty = Arc::new(Schema::empty());
    let used_columns = input_schema
        .fields()
        .iter()
        .map(|f| referenced.contains(f.name()))
        .collect();
    let output_schema = nullable(plan.schema().as_arrow());
    let event_time_column = watermark
        .and_then(|(column, _)| column_after(&pre, input_schema.fields().len(), column))
        .filter(|j| output_schema.field(*j).data_type() == &ts_type());
    Ok(ViewPlan {
        retention_ms: None,
        append: true,
        event_time_column,
        llm_columns: Vec::new(),
        upstream: None,
        key_columns: vec![None; output_schema.fields().len()],
        group_roles: Vec::new(),
        source,
        window: None,
        panes: false,
        watermark,
        used_columns,
        input_schema,
        pre,
        aggregate: AggregatePlan {
            input_schema: empty.clone(),
            group_exprs: Vec::new(),
            group_schema: empty.clone(),
            aggregates: Vec::new(),
            filters: Vec::new(),
            output_schema: empty,
            constant_groups: Vec::new(),
        },
        post: Vec::new(),
        output_schema,
    })
}

/// Splits an analyzed plan at its aggregate.
fn split_plan(
    plan: &LogicalPlan,
    source: String,
    window: Option<(WindowSpec, usize)>,
    watermark: Option<(usize, i64)>,
    input_schema: SchemaRef,
) -> Result<ViewPlan, PlanError> {
    let (lifted, llm_columns) = super::llm::lift_columns(plan)?;
    let plan = &lifted;
    let mut above = Vec::new();
    let mut node = plan;
    let agg = loop {
        match node {
            LogicalPlan::Aggregate(agg) => break agg,
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
                above.push(node);
                node = node.inputs()[0];
            }
            LogicalPlan::Sort(_) => return Err(unsupported("ORDER BY is not kept by a materialized view; order in the query that reads it")),
            LogicalPlan::Limit(_) => return Err(unsupported("LIMIT is not supported in a materialized view; limit the query that reads it")),
            LogicalPlan::TableScan(_) if window.is_some() => {
                return Err(unsupported(
                    "a view over TUMBLE or HOP must aggregate: add GROUP BY window_start, window_end (and its keys) and aggregate functions; without windows, SELECT ... FROM the source keeps every row",
                ))
            }
            LogicalPlan::TableScan(_) => {
                let mut view = append_plan(plan, source, watermark, input_schema)?;
                view.llm_columns = llm_columns;
                return Ok(view);
            }
            other => return Err(unsupported(format!("{} is not supported in a materialized view", other.display()))),
        }
    };
    // Column names the aggregate and the steps below it refer to (a projection's output
    // names may be counted too: that only keeps a column it did not need).
    let mut referenced: HashSet<String> = agg
        .group_expr
        .iter()
        .chain(&agg.aggr_expr)
        .flat_map(|e| e.column_refs())
        .map(|c| c.name.clone())
        .collect();
    if plan.exists(|n| Ok(n.expressions().iter().any(mentions_stateful)))? {
        return Err(stateful_refused());
    }
    if !llm_columns.is_empty() {
        return Err(super::llm::misplaced());
    }
    let below = steps_to_scan(agg.input.as_ref(), &input_schema, &mut referenced, false)?;

    let in_schema = agg.input.schema();
    if agg
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err(unsupported(
            "GROUPING SETS, CUBE and ROLLUP are not supported in materialized views",
        ));
    }
    if window.is_some() {
        let has_window = agg.group_expr.iter().any(
            |e| matches!(e, Expr::Column(c) if c.name == WINDOW_START || c.name == WINDOW_END),
        );
        if !has_window {
            return Err(PlanError::Invalid(
                "a windowed view must GROUP BY window_start, window_end (and its keys)".into(),
            ));
        }
    }
    let group_exprs = agg
        .group_expr
        .iter()
        .map(|e| compile(e, in_schema))
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    let n_groups = agg.group_expr.len();
    let agg_out = nullable(agg.schema.as_arrow());
    let group_schema = Arc::new(Schema::new(agg_out.fields()[..n_groups].to_vec()));
    let mut aggregates = Vec::new();
    let mut filters = Vec::new();
    for e in &agg.aggr_expr {
        let props = ExecutionProps::new();
        let planning = PhysicalPlanningContext::default();
        let simplified = simplify_aggregate(e.clone(), in_schema)?;
        let lowered = LoweredAggregateBuilder::new(
            &simplified,
            in_schema,
            in_schema.as_arrow(),
            &props,
            &planning,
        )
        .build()?;
        let (aggregate, filter) = (lowered.aggregate, lowered.filter);
        // Ordered-set aggregates (approx_percentile_cont ... WITHIN GROUP) take their
        // ORDER BY as an argument; any other ordering needs the whole group sorted.
        if !lowered.order_bys.is_empty() && !aggregate.fun().supports_within_group_clause() {
            return Err(unsupported(format!(
                "ORDER BY inside an aggregate ({e}) is not supported in materialized views"
            )));
        }
        // One accumulator built now: an argument only an accumulator checks (approx_top_k's
        // k, a percentile) fails at CREATE, not when the view's first row arrives.
        aggregate.create_accumulator()?;
        aggregates.push(aggregate);
        filters.push(filter);
    }
    let mut post = Vec::new();
    for node in above.iter().rev() {
        match node {
            LogicalPlan::Filter(f) => post.push(Step::filter(&f.predicate, f.input.schema())?),
            LogicalPlan::Projection(p) => {
                post.push(Step::project(&p.expr, p.input.schema(), &p.schema)?)
            }
            _ => {}
        }
    }
    let used_columns = input_schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            referenced.contains(f.name())
                || window.is_some_and(|(_, time)| time == i)
                || f.name() == WINDOW_START
                || f.name() == WINDOW_END
        })
        .collect();
    let group_roles: Vec<GroupRole> = group_exprs
        .iter()
        .map(|e| match e.downcast_ref::<PhysicalColumn>() {
            Some(c) if window.is_some() && c.name() == WINDOW_START => GroupRole::WindowStart,
            Some(c) if window.is_some() && c.name() == WINDOW_END => GroupRole::WindowEnd,
            _ => GroupRole::Key,
        })
        .collect();
    let constant_groups = group_roles.iter().map(|r| *r != GroupRole::Key).collect();
    let panes = by_panes(window.map(|(spec, _)| spec), agg)?;
    let key_columns = key_lineage(n_groups, agg_out.fields().len(), &post);
    Ok(ViewPlan {
        retention_ms: None,
        append: false,
        event_time_column: None,
        llm_columns: Vec::new(),
        upstream: None,
        key_columns,
        group_roles,
        source,
        window,
        panes,
        watermark,
        used_columns,
        input_schema,
        pre: below,
        aggregate: AggregatePlan {
            input_schema: nullable(in_schema.as_arrow()),
            group_exprs,
            group_schema,
            aggregates,
            filters,
            output_schema: agg_out,
            constant_groups,
        },
        post,
        output_schema: nullable(plan.schema().as_arrow()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Source `bids` with Int64 `auction` and `price`, the `text` columns given, and `ts` as
    /// its event time.
    fn bids(text: &[&str]) -> SourceSchema {
        let mut fields = vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("price", DataType::Int64, true),
        ];
        fields.extend(
            text.iter()
                .map(|name| Field::new(*name, DataType::Utf8, true)),
        );
        fields.push(Field::new("ts", ts_type(), true));
        SourceSchema {
            name: "bids".into(),
            schema: Arc::new(Schema::new(fields)),
            watermark: Some(WatermarkDef {
                column: "ts".into(),
                delay_ms: 0,
            }),
            upstream: None,
        }
    }

    #[tokio::test]
    async fn window_assignment_copies_only_the_columns_the_view_reads() {
        let source = bids(&["url", "channel"]);
        let sql = "SELECT window_start, window_end, auction, sum(price) AS volume \
                   FROM HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds') \
                   WHERE channel <> 'web' GROUP BY window_start, window_end, auction";
        let plan = plan_sql(sql, &source).await;
        let used: Vec<(&str, bool)> = plan
            .input_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .zip(plan.used_columns.iter().copied())
            .collect();
        assert_eq!(
            used,
            vec![
                ("auction", true),
                ("price", true),
                ("url", false),
                ("channel", true),
                ("ts", true),
                (WINDOW_START, true),
                (WINDOW_END, true),
            ]
        );
    }

    #[tokio::test]
    async fn hop_views_go_by_panes_unless_something_below_the_group_by_reads_the_window() {
        let source = bids(&[]);
        let hop = "HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds')";
        let cases = [
            (format!("SELECT window_start, window_end, auction, count(*) FROM {hop} WHERE price > 5 GROUP BY window_start, window_end, auction HAVING count(*) > 1"), true),
            (format!("SELECT window_end, sum(price) AS s FROM {hop} GROUP BY window_start, window_end"), true),
            (format!("SELECT window_start, window_end, max(ts - window_start) FROM {hop} GROUP BY window_start, window_end"), false),
            (format!("SELECT window_start, window_end, count(*) FROM {hop} WHERE ts < window_start + INTERVAL '1 second' GROUP BY window_start, window_end"), false),
            (format!("SELECT window_start, window_end, count(*) FILTER (WHERE ts > window_start) FROM {hop} GROUP BY window_start, window_end"), false),
            ("SELECT window_start, window_end, count(*) FROM HOP(bids, ts, INTERVAL '3 seconds', INTERVAL '10 seconds') GROUP BY window_start, window_end".to_string(), false),
            ("SELECT window_start, window_end, count(*) FROM TUMBLE(bids, ts, INTERVAL '10 seconds') GROUP BY window_start, window_end".to_string(), false),
        ];
        for (sql, panes) in cases {
            assert_eq!(plan_sql(&sql, &source).await.panes, panes, "{sql}");
        }
    }
}
