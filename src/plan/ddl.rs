//! Parsing Weir's DDL: sources with watermarks, materialized views, DROP and SHOW.
//!
//! Statements that are not Weir DDL return `None` and go to DataFusion unchanged.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr, Query, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::interval::interval_ms;
use super::PlanError;

/// A column of `CREATE SOURCE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: DataType,
}

/// Kafka message metadata a source can expose as columns with `INCLUDE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaMeta {
    Partition,
    Offset,
    Key,
    Timestamp,
}

static META_TYPES: [DataType; 4] = [
    DataType::Int32,
    DataType::Int64,
    DataType::Utf8,
    DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None),
];

impl KafkaMeta {
    pub fn data_type_ref(&self) -> &'static DataType {
        &META_TYPES[*self as usize]
    }
}

/// `INCLUDE <meta> AS <name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct IncludeColumn {
    pub meta: KafkaMeta,
    pub name: String,
}

/// `WATERMARK FOR col AS col - INTERVAL '...'`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDef {
    pub column: String,
    pub delay_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    /// Kafka metadata columns, after the declared ones.
    pub include: Vec<IncludeColumn>,
    pub watermark: Option<WatermarkDef>,
    /// `WITH (...)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    pub name: String,
    pub if_not_exists: bool,
    pub query: Box<Query>,
    /// `WITH (retention = '...')`: windows that ended longer ago than this before the
    /// watermark are deleted.
    pub retention_ms: Option<i64>,
}

/// The options of `CREATE MATERIALIZED VIEW v WITH (...) AS ...`.
fn view_retention(options: &ast::CreateTableOptions) -> Result<Option<i64>, PlanError> {
    let list = match options {
        ast::CreateTableOptions::None => return Ok(None),
        ast::CreateTableOptions::With(list) => list,
        other => {
            return Err(PlanError::Unsupported(format!(
                "view options {other} are not supported; use WITH (retention = '30 days')"
            )))
        }
    };
    let mut retention = None;
    for option in list {
        match option {
            ast::SqlOption::KeyValue { key, value }
                if key.value.eq_ignore_ascii_case("retention") =>
            {
                let text = match value {
                    Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => Some(s.clone()),
                        _ => None,
                    },
                    _ => None,
                }
                .ok_or_else(|| {
                    PlanError::Invalid(format!(
                        "retention must be an interval in quotes such as '30 days', got {value}"
                    ))
                })?;
                let ms = super::interval::interval_text_ms(&text)?;
                if ms <= 0 {
                    return Err(PlanError::Invalid("retention must be positive".into()));
                }
                retention = Some(ms);
            }
            other => {
                return Err(PlanError::Unsupported(format!(
                    "unknown view option {other}; a view takes retention = '<interval>'"
                )))
            }
        }
    }
    Ok(retention)
}

/// A statement Weir handles itself.
#[derive(Debug, Clone, PartialEq)]
pub enum WeirStatement {
    CreateSource(CreateSource),
    CreateView(CreateView),
    DropSource { name: String, if_exists: bool },
    DropView { name: String, if_exists: bool },
    ShowSources,
    ShowViews,
}

/// The first few words of a statement, upper-cased, skipping comments and whitespace.
pub fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return Vec::new();
    };
    tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(n)
        .map(|t| match t {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect()
}

/// Parses `sql` if it is Weir DDL; `Ok(None)` means "not ours, let DataFusion run it".
pub fn parse_statement(sql: &str) -> Result<Option<WeirStatement>, PlanError> {
    let words = leading_words(sql, 3);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?;
    let stmt = match w.as_slice() {
        ["CREATE", "SOURCE", ..] => WeirStatement::CreateSource(parse_create_source(&mut parser)?),
        ["CREATE", "MATERIALIZED", "VIEW"] => parse_create_view(&mut parser)?,
        ["DROP", "SOURCE", ..] => {
            skip_words(&mut parser, 2);
            let (name, if_exists) = parse_drop_target(&mut parser)?;
            WeirStatement::DropSource { name, if_exists }
        }
        ["DROP", "MATERIALIZED", "VIEW"] => {
            skip_words(&mut parser, 3);
            let (name, if_exists) = parse_drop_target(&mut parser)?;
            WeirStatement::DropView { name, if_exists }
        }
        ["SHOW", "SOURCES", ..] => {
            skip_words(&mut parser, 2);
            expect_end(&mut parser)?;
            WeirStatement::ShowSources
        }
        ["SHOW", "MATERIALIZED", "VIEWS"] => {
            skip_words(&mut parser, 3);
            expect_end(&mut parser)?;
            WeirStatement::ShowViews
        }
        _ => return Ok(None),
    };
    Ok(Some(stmt))
}

fn skip_words(parser: &mut Parser, n: usize) {
    for _ in 0..n {
        parser.next_token();
    }
}

fn expect_end(parser: &mut Parser) -> Result<(), PlanError> {
    while parser.consume_token(&Token::SemiColon) {}
    match parser.peek_token().token {
        Token::EOF => Ok(()),
        t => Err(PlanError::Syntax(format!(
            "unexpected {t} at the end of the statement"
        ))),
    }
}

fn parse_name(parser: &mut Parser) -> Result<String, PlanError> {
    let name = parser.parse_object_name(false)?;
    if name.0.len() != 1 {
        return Err(PlanError::Invalid(format!(
            "use an unqualified name (sources and views live in schema public), got {name}"
        )));
    }
    Ok(ident_text(
        &name.0[0]
            .as_ident()
            .cloned()
            .unwrap_or_else(|| ast::Ident::new(name.to_string())),
    ))
}

/// Identifiers fold to lower case unless quoted, as in Postgres.
fn ident_text(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn parse_drop_target(parser: &mut Parser) -> Result<(String, bool), PlanError> {
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = parse_name(parser)?;
    expect_end(parser)?;
    Ok((name, if_exists))
}

fn peek_word_is(parser: &Parser, word: &str) -> bool {
    matches!(&parser.peek_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// Maps a declared SQL type to its Arrow type.
fn arrow_type(ty: &ast::DataType) -> Result<DataType, PlanError> {
    use ast::DataType as T;
    Ok(match ty {
        T::Text | T::Varchar(_) | T::String(_) | T::CharacterVarying(_) | T::Char(_) => DataType::Utf8,
        T::BigInt(_) | T::Int8(_) => DataType::Int64,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int32,
        T::SmallInt(_) | T::Int2(_) => DataType::Int16,
        T::Double(_) | T::DoublePrecision | T::Float8 | T::Float64 => DataType::Float64,
        T::Real | T::Float4 | T::Float(_) => DataType::Float32,
        T::Boolean | T::Bool => DataType::Boolean,
        T::Timestamp(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp(TimeUnit::Millisecond, None)
        }
        other => {
            return Err(PlanError::Unsupported(format!(
                "column type {other} is not supported; use TEXT, VARCHAR, BIGINT, INT, DOUBLE, BOOLEAN or TIMESTAMP"
            )))
        }
    })
}

fn parse_create_source(parser: &mut Parser) -> Result<CreateSource, PlanError> {
    skip_words(parser, 2);
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parse_name(parser)?;
    parser.expect_token(&Token::LParen)?;
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut watermark = None;
    loop {
        if peek_word_is(parser, "WATERMARK") {
            parser.next_token();
            parser.expect_keyword(Keyword::FOR)?;
            let column = ident_text(&parser.parse_identifier()?);
            parser.expect_keyword(Keyword::AS)?;
            let expr = parser.parse_expr()?;
            let delay_ms = watermark_delay(&column, &expr)?;
            if watermark
                .replace(WatermarkDef { column, delay_ms })
                .is_some()
            {
                return Err(PlanError::Invalid(
                    "a source has at most one WATERMARK".into(),
                ));
            }
        } else {
            let col = ident_text(&parser.parse_identifier()?);
            let data_type = arrow_type(&parser.parse_data_type()?)?;
            if columns.iter().any(|c| c.name == col) {
                return Err(PlanError::Invalid(format!(
                    "column \"{col}\" is declared twice"
                )));
            }
            columns.push(ColumnDef {
                name: col,
                data_type,
            });
        }
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    let include = if peek_word_is(parser, "INCLUDE") {
        parser.next_token();
        parse_include(parser, &columns)?
    } else {
        Vec::new()
    };
    if let Some(wm) = &watermark {
        let declared = columns
            .iter()
            .map(|c| (c.name.as_str(), &c.data_type))
            .chain(
                include
                    .iter()
                    .map(|c| (c.name.as_str(), c.meta.data_type_ref())),
            );
        match declared.into_iter().find(|(name, _)| *name == wm.column) {
            Some((_, DataType::Timestamp(_, _))) => {}
            Some(_) => {
                return Err(PlanError::Invalid(format!(
                    "WATERMARK column \"{}\" must be a TIMESTAMP",
                    wm.column
                )))
            }
            None => {
                return Err(PlanError::Invalid(format!(
                    "WATERMARK column \"{}\" is not a declared column",
                    wm.column
                )))
            }
        }
    }
    parser.expect_keyword(Keyword::WITH)?;
    parser.expect_token(&Token::LParen)?;
    let mut options = BTreeMap::new();
    loop {
        let key = match parser.next_token().token {
            Token::Word(w) => {
                let mut key = w.value.to_lowercase();
                while parser.consume_token(&Token::Period) {
                    key.push('.');
                    key.push_str(&parser.parse_identifier()?.value.to_lowercase());
                }
                key
            }
            Token::SingleQuotedString(s) => s.to_lowercase(),
            t => {
                return Err(PlanError::Syntax(format!(
                    "expected an option name, found {t}"
                )))
            }
        };
        parser.expect_token(&Token::Eq)?;
        let value = match parser.next_token().token {
            Token::SingleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            t => {
                return Err(PlanError::Syntax(format!(
                    "expected a value for option {key}, found {t}"
                )))
            }
        };
        if options.insert(key.clone(), value).is_some() {
            return Err(PlanError::Invalid(format!("option {key} is given twice")));
        }
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    expect_end(parser)?;
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        include,
        watermark,
        options,
    })
}

/// `INCLUDE partition AS p, offset AS o, key AS k, timestamp AS t` (after the word INCLUDE).
fn parse_include(
    parser: &mut Parser,
    columns: &[ColumnDef],
) -> Result<Vec<IncludeColumn>, PlanError> {
    let mut include: Vec<IncludeColumn> = Vec::new();
    loop {
        let meta = match parser.next_token().token {
            Token::Word(w) => match w.value.to_lowercase().as_str() {
                "partition" => KafkaMeta::Partition,
                "offset" => KafkaMeta::Offset,
                "key" => KafkaMeta::Key,
                "timestamp" => KafkaMeta::Timestamp,
                other => {
                    return Err(PlanError::Invalid(format!(
                        "cannot INCLUDE '{other}': use partition, offset, key or timestamp"
                    )))
                }
            },
            t => {
                return Err(PlanError::Syntax(format!(
                    "expected partition, offset, key or timestamp after INCLUDE, found {t}"
                )))
            }
        };
        parser.expect_keyword(Keyword::AS)?;
        let name = ident_text(&parser.parse_identifier()?);
        if columns.iter().any(|c| c.name == name) || include.iter().any(|c| c.name == name) {
            return Err(PlanError::Invalid(format!(
                "column \"{name}\" is declared twice"
            )));
        }
        include.push(IncludeColumn { meta, name });
        if !parser.consume_token(&Token::Comma) {
            return Ok(include);
        }
    }
}

/// `ts - INTERVAL '5 seconds'` (or just `ts`): the delay in milliseconds.
fn watermark_delay(column: &str, expr: &Expr) -> Result<i64, PlanError> {
    let is_col = |e: &Expr| matches!(e, Expr::Identifier(i) if ident_text(i) == column);
    match expr {
        e if is_col(e) => Ok(0),
        Expr::BinaryOp { left, op: BinaryOperator::Minus, right } if is_col(left) => {
            let ms = interval_ms(right)?;
            if ms < 0 {
                return Err(PlanError::Invalid("the watermark delay must not be negative".into()));
            }
            Ok(ms)
        }
        _ => Err(PlanError::Unsupported(format!(
            "WATERMARK FOR {column} AS must be `{column}` or `{column} - INTERVAL '...'`, got {expr}"
        ))),
    }
}

fn parse_create_view(parser: &mut Parser) -> Result<WeirStatement, PlanError> {
    let stmt = parser.parse_statement()?;
    expect_end(parser)?;
    match stmt {
        Statement::CreateView(view) => {
            if !view.columns.is_empty() {
                return Err(PlanError::Unsupported(
                    "a column list after the view name is not supported; name columns with AS in the SELECT".into(),
                ));
            }
            if view.name.0.len() != 1 {
                return Err(PlanError::Invalid(format!(
                    "use an unqualified view name, got {}",
                    view.name
                )));
            }
            let name = view.name.0[0]
                .as_ident()
                .map(ident_text)
                .ok_or_else(|| PlanError::Invalid(format!("bad view name {}", view.name)))?;
            Ok(WeirStatement::CreateView(CreateView {
                name,
                if_not_exists: view.if_not_exists,
                retention_ms: view_retention(&view.options)?,
                query: view.query,
            }))
        }
        other => Err(PlanError::Syntax(format!(
            "expected CREATE MATERIALIZED VIEW name AS SELECT ..., got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_source_with_watermark_and_options() {
        let sql = "CREATE SOURCE IF NOT EXISTS Events (id TEXT, n BIGINT, ok BOOLEAN, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5 seconds') WITH (connector = 'file', path = '/tmp/x', format = 'json');";
        let Some(WeirStatement::CreateSource(s)) = parse_statement(sql).unwrap() else {
            panic!()
        };
        assert_eq!(s.name, "events");
        assert!(s.if_not_exists);
        assert_eq!(s.columns.len(), 4);
        assert_eq!(
            s.watermark,
            Some(WatermarkDef {
                column: "ts".into(),
                delay_ms: 5000
            })
        );
        assert_eq!(s.options["path"], "/tmp/x");
    }

    #[test]
    fn other_statements_are_not_ours() {
        assert!(parse_statement("SELECT 1").unwrap().is_none());
        assert!(parse_statement("  -- hi\n select * from t")
            .unwrap()
            .is_none());
    }

    #[test]
    fn drop_show_and_views() {
        assert_eq!(
            parse_statement("DROP SOURCE IF EXISTS s").unwrap(),
            Some(WeirStatement::DropSource {
                name: "s".into(),
                if_exists: true
            })
        );
        assert_eq!(
            parse_statement("show materialized views").unwrap(),
            Some(WeirStatement::ShowViews)
        );
        let v = parse_statement(
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, count(*) FROM TUMBLE(s, ts, INTERVAL '1 minute') GROUP BY 1",
        )
        .unwrap();
        assert!(
            matches!(v, Some(WeirStatement::CreateView(CreateView { ref name, .. })) if name == "v")
        );
    }

    #[test]
    fn bad_ddl_is_a_clear_error() {
        let e = parse_statement(
            "CREATE SOURCE s (a TEXT, WATERMARK FOR a AS a) WITH (connector='file')",
        )
        .unwrap_err();
        assert!(e.to_string().contains("TIMESTAMP"), "{e}");
        assert!(parse_statement("CREATE SOURCE s (a BLOB) WITH (connector='file')").is_err());
    }
}
