//! `information_schema` as Postgres clients read it.
//!
//! DataFusion's own `information_schema.columns` names Arrow types (`Int64`, `Utf8`) and has
//! no `udt_name`, which Grafana's query builder, SQLAlchemy and JDBC tools read to learn a
//! column's type. Neither datafusion-postgres nor datafusion-pg-catalog 0.19 replaces it, so
//! Weir registers this schema in its catalog (with DataFusion's built-in one switched off):
//! `columns` is computed here with PostgreSQL's type names, the other tables are DataFusion's.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;

use super::tables::scan_batches;

/// The schema's name.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// `information_schema`: `columns` from [`Columns`], the rest from DataFusion.
#[derive(Debug)]
pub struct PgInformationSchema {
    catalogs: Arc<dyn CatalogProviderList>,
    builtin: InformationSchemaProvider,
}

impl PgInformationSchema {
    pub fn new(catalogs: Arc<dyn CatalogProviderList>) -> Self {
        Self {
            builtin: InformationSchemaProvider::new(catalogs.clone()),
            catalogs,
        }
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.builtin.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case("columns") {
            return Ok(Some(Arc::new(Columns {
                catalogs: self.catalogs.clone(),
            })));
        }
        self.builtin.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.builtin.table_exist(name)
    }
}

/// How Postgres describes a column type in `information_schema.columns`.
struct PgColumnType {
    data_type: String,
    udt_name: String,
    numeric_precision: Option<i32>,
    numeric_radix: Option<i32>,
    numeric_scale: Option<i32>,
    datetime_precision: Option<i32>,
}

fn column_type(arrow: &DataType) -> PgColumnType {
    let udt_name = into_pg_type(arrow)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|_| "text".into());
    let data_type = match udt_name.as_str() {
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        name if name.starts_with('_') => "ARRAY",
        name => name,
    }
    .to_string();
    let (bits, radix, scale) = match arrow {
        DataType::Decimal128(p, s) => (Some(*p as i32), Some(10), Some(*s as i32)),
        _ => match udt_name.as_str() {
            "int2" => (Some(16), Some(2), Some(0)),
            "int4" => (Some(32), Some(2), Some(0)),
            "int8" => (Some(64), Some(2), Some(0)),
            "float4" => (Some(24), Some(2), None),
            "float8" => (Some(53), Some(2), None),
            _ => (None, None, None),
        },
    };
    let datetime_precision = match arrow {
        DataType::Timestamp(TimeUnit::Second, _) => Some(0),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Some(3),
        DataType::Timestamp(..) | DataType::Time64(_) | DataType::Time32(_) => Some(6),
        DataType::Date32 | DataType::Date64 => Some(0),
        _ => None,
    };
    PgColumnType {
        data_type,
        udt_name,
        numeric_precision: bits,
        numeric_radix: radix,
        numeric_scale: scale,
        datetime_precision,
    }
}

/// `information_schema.columns`, computed from the catalog when scanned.
#[derive(Debug)]
struct Columns {
    catalogs: Arc<dyn CatalogProviderList>,
}

fn columns_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let int = |name: &str| Field::new(name, DataType::Int32, true);
    Arc::new(Schema::new(vec![
        text("table_catalog", false),
        text("table_schema", false),
        text("table_name", false),
        text("column_name", false),
        int("ordinal_position"),
        text("column_default", true),
        text("is_nullable", false),
        text("data_type", false),
        int("character_maximum_length"),
        int("numeric_precision"),
        int("numeric_precision_radix"),
        int("numeric_scale"),
        int("datetime_precision"),
        text("udt_catalog", false),
        text("udt_schema", false),
        text("udt_name", false),
        text("is_updatable", false),
    ]))
}

impl Columns {
    async fn batch(&self) -> Result<RecordBatch> {
        let mut text: Vec<StringBuilder> = (0..11).map(|_| StringBuilder::new()).collect();
        let mut ints: Vec<Int32Builder> = (0..6).map(|_| Int32Builder::new()).collect();
        for catalog_name in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                if schema_name == INFORMATION_SCHEMA {
                    continue;
                }
                for table_name in schema.table_names() {
                    let Some(table) = schema.table(&table_name).await? else {
                        continue;
                    };
                    for (i, field) in table.schema().fields().iter().enumerate() {
                        let t = column_type(field.data_type());
                        let nullable = if field.is_nullable() { "YES" } else { "NO" };
                        let row_text = [
                            Some(catalog_name.as_str()),
                            Some(schema_name.as_str()),
                            Some(table_name.as_str()),
                            Some(field.name().as_str()),
                            None,
                            Some(nullable),
                            Some(t.data_type.as_str()),
                            Some(catalog_name.as_str()),
                            Some("pg_catalog"),
                            Some(t.udt_name.as_str()),
                            Some("NO"),
                        ];
                        for (b, v) in text.iter_mut().zip(row_text) {
                            b.append_option(v);
                        }
                        let row_ints = [
                            Some(i as i32 + 1),
                            None,
                            t.numeric_precision,
                            t.numeric_radix,
                            t.numeric_scale,
                            t.datetime_precision,
                        ];
                        for (b, v) in ints.iter_mut().zip(row_ints) {
                            b.append_option(v);
                        }
                    }
                }
            }
        }
        let mut text = text
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut ints = ints
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        // Columns in schema order: 4 text, ordinal, 3 text, 5 ints, 4 text.
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(17);
        cols.extend(text.by_ref().take(4));
        cols.push(ints.next().expect("ordinal"));
        cols.extend(text.by_ref().take(3));
        cols.extend(ints.by_ref().take(5));
        cols.extend(text);
        Ok(RecordBatch::try_new(columns_schema(), cols)?)
    }
}

#[async_trait]
impl TableProvider for Columns {
    fn schema(&self) -> SchemaRef {
        columns_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.batch().await?;
        scan_batches(
            columns_schema(),
            vec![batch],
            state,
            projection,
            filters,
            limit,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_named_as_postgres_names_them() {
        let cases = [
            (DataType::Int64, "bigint", "int8"),
            (DataType::UInt64, "numeric", "numeric"),
            (DataType::Float64, "double precision", "float8"),
            (DataType::Utf8, "text", "text"),
            (DataType::Boolean, "boolean", "bool"),
            (
                DataType::Timestamp(TimeUnit::Millisecond, None),
                "timestamp without time zone",
                "timestamp",
            ),
        ];
        for (arrow, data_type, udt) in cases {
            let t = column_type(&arrow);
            assert_eq!(
                (t.data_type.as_str(), t.udt_name.as_str()),
                (data_type, udt)
            );
        }
    }
}
