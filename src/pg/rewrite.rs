//! Client query texts rewritten before datafusion-postgres parses them.
//!
//! Grafana's table and column discovery asks which schemas are on the `search_path` with a
//! subquery DataFusion cannot run (a scalar function in `FROM`, `generate_series(...) AS i`
//! naming its column `i`, bare `user`). datafusion-pg-catalog 0.19 replaces that subquery
//! with `''` before any rewrite rule runs, so the query matches no schema: Grafana then
//! finds no columns for an unqualified table name. Weir replaces it first, at the token
//! level as the library does, with the connection's search path as literals.

use std::borrow::Cow;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use pgwire::api::{ClientInfo, METADATA_USER};

use super::settings;

/// The subquery Grafana sends (its `buildSchemaConstraint`), compared token by token.
const GRAFANA_SEARCH_PATH: &str = r#"SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s"#;

static PATTERN: LazyLock<Vec<Token>> = LazyLock::new(|| {
    tokens(GRAFANA_SEARCH_PATH)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect()
});

fn tokens(sql: &str) -> Option<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()
}

fn quote(literal: &str) -> String {
    format!("'{}'", literal.replace('\'', "''"))
}

/// The schemas of `search_path` (`"$user"` is `user`) as a list of literals: the subquery
/// stands inside `IN (...)`, and a list (unlike a subquery) also works in `ORDER BY`.
fn schema_list(search_path: &str, user: &str) -> String {
    let schemas: Vec<String> = search_path
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            quote(if s == "\"$user\"" {
                user
            } else {
                s.trim_matches('"')
            })
        })
        .collect();
    if schemas.is_empty() {
        "''".into()
    } else {
        schemas.join(", ")
    }
}

/// `sql` as the connection `client` means it (its search path and user).
pub fn rewrite_for<'a, C: ClientInfo + ?Sized>(client: &C, sql: &'a str) -> Cow<'a, str> {
    if !sql.contains("search_path") {
        return Cow::Borrowed(sql);
    }
    let search_path = settings::lookup("search_path")
        .map(|s| settings::session_value(client.metadata(), s))
        .unwrap_or_default();
    let user = client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default();
    rewrite_client_sql(sql, &search_path, &user)
}

/// `sql` with Grafana's search-path subquery replaced by the schemas of `search_path`.
pub fn rewrite_client_sql<'a>(sql: &'a str, search_path: &str, user: &str) -> Cow<'a, str> {
    if !sql.contains("search_path") {
        return Cow::Borrowed(sql);
    }
    let Some(all) = tokens(sql) else {
        return Cow::Borrowed(sql);
    };
    // Positions (in `all`) of the tokens that are not whitespace.
    let solid: Vec<usize> = (0..all.len())
        .filter(|&i| !matches!(all[i], Token::Whitespace(_)))
        .collect();
    let pattern = PATTERN.as_slice();
    let mut out = String::with_capacity(sql.len());
    let (mut copied, mut k, mut matched) = (0, 0, false);
    while k + pattern.len() <= solid.len() {
        if (0..pattern.len()).all(|j| all[solid[k + j]] == pattern[j]) {
            let (from, to) = (solid[k], solid[k + pattern.len() - 1] + 1);
            all[copied..from]
                .iter()
                .for_each(|t| out.push_str(&t.to_string()));
            out.push_str(&schema_list(search_path, user));
            copied = to;
            k += pattern.len();
            matched = true;
        } else {
            k += 1;
        }
    }
    if !matched {
        return Cow::Borrowed(sql);
    }
    all[copied..]
        .iter()
        .for_each(|t| out.push_str(&t.to_string()));
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_search_path_becomes_the_session_schemas() {
        let sql = format!("SELECT 1 WHERE x IN ({GRAFANA_SEARCH_PATH}) AND y = 'a'");
        let out = rewrite_client_sql(&sql, "\"$user\", public", "ana");
        assert_eq!(out, "SELECT 1 WHERE x IN ('ana', 'public') AND y = 'a'");
        let plain = "SELECT current_setting('search_path')";
        assert!(matches!(
            rewrite_client_sql(plain, "public", "ana"),
            Cow::Borrowed(_)
        ));
    }
}
