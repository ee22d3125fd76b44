//! `pg_catalog` as datafusion-pg-catalog 0.19 builds it, with corrections clients see.
//!
//! - Weir's materialized views have `relkind = 'm'` in `pg_class`. The library derives
//!   relkind from DataFusion's `TableType`, which has no materialized kind, so it called
//!   them views (`'v'`): psql's `\dm` and SQLAlchemy's `get_materialized_view_names()`
//!   listed nothing.
//! - `pg_table_is_visible(oid)` is true only for relations in the schemas of the default
//!   search path (`pg_catalog`, `public`), as in PostgreSQL. The library answers true for
//!   every relation, so psql's `\dv` and SQLAlchemy's `get_view_names()` listed the
//!   `information_schema` and `weir_catalog` tables as if they were on the search path.
//! - `pg_index` and `pg_constraint` are empty, with their array columns typed as arrays
//!   (`indkey int2vector`, `conkey int2[]`, ...). The library ships the rows of a real
//!   server's system catalogs, with arrays as text, describing indexes of relations Weir
//!   does not have; SQLAlchemy's `unnest(indkey)` could not be planned on text. Weir's
//!   relations have no indexes or constraints.
//! - `pg_class` has `reloptions` (always NULL), which SQLAlchemy's index query reads.
//! - `pg_get_viewdef(oid [, pretty])` gives a materialized view's query (psql's `\d+`),
//!   from the definitions the last `pg_class` scan saw.
//! - Tables registered into it replace the library's of the same name: the Postgres edge
//!   registers `pg_settings` from the settings Weir answers for (the library's has one row
//!   without a `context`, so psql completed no `SET` name).
//!
//! `pg_class` is computed by the library, then corrected here when it is scanned; the
//! scan also records which relation OIDs are visible, for `pg_table_is_visible` in the same
//! query (a scan is planned before any function of the query runs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableType, TypeSignature, Volatility,
};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use parking_lot::RwLock;

use super::tables::scan_batches;
use super::ViewTable;

/// The schemas of the default search path: their relations are visible unqualified.
const SEARCH_PATH: [&str; 2] = ["pg_catalog", "public"];

/// The OIDs of visible relations as of the last `pg_class` scan; `None` before any.
#[derive(Debug, Default)]
struct Visible(RwLock<Option<HashSet<i32>>>);

/// The queries of materialized views by OID, as of the last `pg_class` scan.
#[derive(Debug, Default)]
struct Definitions(RwLock<HashMap<i32, String>>);

/// Replaces `catalog`'s `pg_catalog` schema (from `setup_pg_catalog`) with the corrected one
/// and registers `pg_table_is_visible` over it.
pub fn correct_pg_catalog(ctx: &SessionContext, catalog: &str) -> Result<()> {
    let missing = || DataFusionError::Internal("pg_catalog is not set up".into());
    let catalog = ctx.catalog(catalog).ok_or_else(missing)?;
    let inner = catalog.schema("pg_catalog").ok_or_else(missing)?;
    let visible = Arc::new(Visible::default());
    let definitions = Arc::new(Definitions::default());
    let corrected = PgCatalog {
        inner,
        catalogs: ctx.state().catalog_list().clone(),
        visible: visible.clone(),
        definitions: definitions.clone(),
        replaced: RwLock::default(),
    };
    catalog.register_schema("pg_catalog", Arc::new(corrected))?;
    ctx.register_udf(create_udf(
        "pg_table_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let oids = ColumnarValue::values_to_arrays(args)?;
            let oids = oids[0].as_primitive::<Int32Type>();
            let seen = visible.0.read();
            let answer: BooleanArray = (0..oids.len())
                .map(|i| {
                    (!oids.is_null(i))
                        .then(|| seen.as_ref().is_none_or(|s| s.contains(&oids.value(i))))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(answer)))
        }),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(ViewDef {
        definitions,
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Int32]),
                TypeSignature::Exact(vec![DataType::Int32, DataType::Boolean]),
            ],
            Volatility::Stable,
        ),
    }));
    Ok(())
}

/// `pg_get_viewdef(oid [, pretty])`: a materialized view's query; NULL for other relations.
#[derive(Debug)]
struct ViewDef {
    definitions: Arc<Definitions>,
    signature: Signature,
}

impl PartialEq for ViewDef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.definitions, &other.definitions)
    }
}

impl Eq for ViewDef {}

impl std::hash::Hash for ViewDef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_get_viewdef".hash(state);
    }
}

impl ScalarUDFImpl for ViewDef {
    fn name(&self) -> &str {
        "pg_get_viewdef"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let oids = ColumnarValue::values_to_arrays(&args.args[..1])?;
        let oids = oids[0].as_primitive::<Int32Type>();
        let known = self.definitions.0.read();
        let answer: StringArray = (0..oids.len())
            .map(|i| {
                (!oids.is_null(i))
                    .then(|| known.get(&oids.value(i)).map(|q| format!(" {q};")))
                    .flatten()
            })
            .collect();
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &answer, 0,
            )?));
        }
        Ok(ColumnarValue::Array(Arc::new(answer)))
    }
}

/// The library's `pg_catalog` with `pg_class` corrected.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
    visible: Arc<Visible>,
    definitions: Arc<Definitions>,
    /// Tables registered over the library's, by lowercase name.
    replaced: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for name in self.replaced.read().keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .replaced
            .write()
            .insert(name.to_ascii_lowercase(), table))
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        if let Some(table) = self.replaced.read().get(&name) {
            return Ok(Some(table.clone()));
        }
        let table = self.inner.table(&name).await?;
        if let Some(arrays) = array_columns(&name) {
            return match table {
                Some(table) => Ok(Some(empty_with_arrays(table.schema(), arrays)?)),
                None => Ok(None),
            };
        }
        if name != "pg_class" {
            return Ok(table);
        }
        let (Some(classes), Some(namespaces)) = (table, self.inner.table("pg_namespace").await?)
        else {
            return Ok(None);
        };
        Ok(Some(Arc::new(PgClass {
            classes,
            namespaces,
            catalogs: self.catalogs.clone(),
            visible: self.visible.clone(),
            definitions: self.definitions.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.replaced
            .read()
            .contains_key(&name.to_ascii_lowercase())
            || self.inner.table_exist(name)
    }
}

/// The array columns of an emptied catalog table, with their element types.
fn array_columns(table: &str) -> Option<&'static [(&'static str, DataType)]> {
    match table {
        "pg_index" => Some(&[
            ("indkey", DataType::Int16),
            ("indcollation", DataType::Int32),
            ("indclass", DataType::Int32),
            ("indoption", DataType::Int16),
        ]),
        "pg_constraint" => Some(&[
            ("conkey", DataType::Int16),
            ("confkey", DataType::Int16),
            ("conpfeqop", DataType::Int32),
            ("conppeqop", DataType::Int32),
            ("conffeqop", DataType::Int32),
            ("confdelsetcols", DataType::Int16),
            ("conexclop", DataType::Int32),
        ]),
        _ => None,
    }
}

/// An empty table of `schema` with `arrays` typed as lists of their element type.
fn empty_with_arrays(
    schema: SchemaRef,
    arrays: &[(&str, DataType)],
) -> Result<Arc<dyn TableProvider>> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match arrays.iter().find(|(name, _)| name == f.name()) {
            Some((_, element)) => Field::new(
                f.name(),
                DataType::List(Arc::new(Field::new("item", element.clone(), true))),
                true,
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// `reloptions text[]`, which the library's `pg_class` lacks.
fn reloptions() -> Field {
    let text = Arc::new(Field::new("item", DataType::Utf8, true));
    Field::new("reloptions", DataType::List(text), true)
}

/// `pg_class` with materialized views as `'m'`.
#[derive(Debug)]
struct PgClass {
    classes: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
    visible: Arc<Visible>,
    definitions: Arc<Definitions>,
}

/// Every row of `table`.
async fn all_rows(table: &dyn TableProvider, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let plan: Arc<dyn ExecutionPlan> = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog lacks column {name}")))
}

impl PgClass {
    /// The query of every materialized view, by `(schema, name)`.
    async fn materialized_views(&self) -> Result<HashMap<(String, String), String>> {
        let mut found = HashMap::new();
        for catalog_name in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                if ["pg_catalog", "information_schema"].contains(&schema_name.as_str()) {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for name in schema.table_names() {
                    if let Some(table) = schema.table(&name).await? {
                        if let Some(view) = table.downcast_ref::<ViewTable>() {
                            found.insert((schema_name.clone(), name), view.definition().into());
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// The library's rows with materialized views' relkind corrected; records visibility.
    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let mut schema_of: HashMap<i32, String> = HashMap::new();
        for batch in all_rows(self.namespaces.as_ref(), state).await? {
            let oids = column(&batch, "oid")?.as_primitive::<Int32Type>();
            let names = column(&batch, "nspname")?.as_string::<i32>();
            for i in 0..batch.num_rows() {
                schema_of.insert(oids.value(i), names.value(i).to_string());
            }
        }
        let views = self.materialized_views().await?;
        let mut visible = HashSet::new();
        let mut definitions = HashMap::new();
        let mut out = Vec::new();
        for batch in all_rows(self.classes.as_ref(), state).await? {
            let oids = column(&batch, "oid")?.as_primitive::<Int32Type>();
            let spaces = column(&batch, "relnamespace")?.as_primitive::<Int32Type>();
            let names = column(&batch, "relname")?.as_string::<i32>();
            let kinds = column(&batch, "relkind")?.as_string::<i32>();
            let mut relkind = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                let schema = schema_of.get(&spaces.value(i)).cloned().unwrap_or_default();
                if SEARCH_PATH.contains(&schema.as_str()) {
                    visible.insert(oids.value(i));
                }
                let kind = kinds.value(i);
                let view = (kind == "v")
                    .then(|| views.get(&(schema, names.value(i).into())))
                    .flatten();
                if let Some(query) = view {
                    definitions.insert(oids.value(i), query.clone());
                }
                relkind.push(if view.is_some() { "m" } else { kind });
            }
            let at = batch.schema().index_of("relkind")?;
            let mut columns = batch.columns().to_vec();
            columns[at] = Arc::new(StringArray::from(relkind));
            columns.push(new_null_array(reloptions().data_type(), batch.num_rows()));
            out.push(RecordBatch::try_new(self.schema(), columns)?);
        }
        *self.visible.0.write() = Some(visible);
        *self.definitions.0.write() = definitions;
        Ok(out)
    }
}

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        let library = self.classes.schema();
        let mut fields: Vec<Field> = library
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(reloptions());
        Arc::new(Schema::new_with_metadata(
            fields,
            library.metadata().clone(),
        ))
    }

    fn table_type(&self) -> TableType {
        self.classes.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.rows(state).await?;
        scan_batches(self.schema(), rows, state, projection, filters, limit).await
    }
}
