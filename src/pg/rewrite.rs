//! Client query texts rewritten before datafusion-postgres parses them.
//!
//! Grafana's table and column discovery asks which schemas are on the `search_path` with a
//! subquery DataFusion cannot run (a scalar function in `FROM`, `generate_series(...) AS i`
//! naming its column `i`, bare `user`). datafusion-pg-catalog 0.19 replaces that subquery
//! with `''` before any rewrite rule runs, so the query matches no schema: Grafana then
//! finds no columns for an unqualified table name. Weir replaces it first, at the token
//! level as the library does, with the connection's search path as literals.
//!
//! `current_setting('name')` is a scalar function of the context all connections share, so
//! it cannot see a connection's own `SET`. A call with a literal name of a setting Weir
//! knows is replaced here by the connection's value, as a string literal. A prepared
//! statement keeps the value it had when it was parsed.
//!
//! `LIKE ... ESCAPE` in catalog queries is rewritten by `catalog_sql`.

use std::borrow::Cow;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use pgwire::api::{ClientInfo, METADATA_USER};

use super::catalog_sql::rewrite_like_escapes;
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

/// `sql` as the connection `client` means it (its search path, user and settings).
pub fn rewrite_for<'a, C: ClientInfo + ?Sized>(client: &C, sql: &'a str) -> Cow<'a, str> {
    let metadata = client.metadata();
    let grafana = if sql.contains("search_path") {
        let search_path = settings::lookup("search_path")
            .map(|s| settings::session_value(metadata, s))
            .unwrap_or_default();
        let user = metadata.get(METADATA_USER).cloned().unwrap_or_default();
        rewrite_client_sql(sql, &search_path, &user)
    } else {
        Cow::Borrowed(sql)
    };
    let session_value =
        |name: &str| settings::lookup(name).map(|s| settings::session_value(metadata, s));
    let inlined = and_then(grafana, |sql| inline_current_settings(sql, session_value));
    and_then(inlined, rewrite_like_escapes)
}

/// `sql` after `step`, borrowing as long as no step changed it.
fn and_then<'a>(sql: Cow<'a, str>, step: impl FnOnce(&str) -> Cow<'_, str>) -> Cow<'a, str> {
    let changed = match step(&sql) {
        Cow::Owned(changed) => Some(changed),
        Cow::Borrowed(_) => None,
    };
    changed.map_or(sql, Cow::Owned)
}

/// The solid-token index of the `)` closing `current_setting` at solid index `k`, and the
/// setting's name, when the call is `current_setting('name' [, true|false])`.
fn literal_call(all: &[Token], solid: &[usize], k: usize) -> Option<(usize, String)> {
    let at = |j: usize| solid.get(j).map(|&i| &all[i]);
    if at(k + 1) != Some(&Token::LParen) {
        return None;
    }
    let Some(Token::SingleQuotedString(name)) = at(k + 2) else {
        return None;
    };
    let boolean = |t: Option<&Token>| matches!(t, Some(Token::Word(w)) if ["true", "false"].iter().any(|b| w.value.eq_ignore_ascii_case(b)));
    match at(k + 3)? {
        Token::RParen => Some((k + 3, name.clone())),
        Token::Comma if boolean(at(k + 4)) && at(k + 5) == Some(&Token::RParen) => {
            Some((k + 5, name.clone()))
        }
        _ => None,
    }
}

/// `sql` with each `[pg_catalog.]current_setting('name' [, missing_ok])` whose setting
/// `value_of` knows replaced by that value as a literal; other calls are left to the
/// function (which errs on an unknown name, or answers NULL when `missing_ok`).
pub fn inline_current_settings<'a>(
    sql: &'a str,
    value_of: impl Fn(&str) -> Option<String>,
) -> Cow<'a, str> {
    if !sql.to_ascii_lowercase().contains("current_setting") {
        return Cow::Borrowed(sql);
    }
    let Some(all) = tokens(sql) else {
        return Cow::Borrowed(sql);
    };
    let solid = solid_positions(&all);
    let word = |k: usize, w: &str| matches!(&all[solid[k]], Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    let mut replaced = Vec::new();
    let mut k = 0;
    while k < solid.len() {
        let call = word(k, "current_setting")
            .then(|| literal_call(&all, &solid, k))
            .flatten()
            .and_then(|(end, name)| value_of(&name).map(|v| (end, v)));
        let Some((end, value)) = call else {
            k += 1;
            continue;
        };
        let qualified = k >= 2 && all[solid[k - 1]] == Token::Period && word(k - 2, "pg_catalog");
        let from = solid[if qualified { k - 2 } else { k }];
        replaced.push((from, solid[end] + 1, quote(&value)));
        k = end + 1;
    }
    splice(sql, &all, replaced)
}

/// Positions (in `all`) of the tokens that are not whitespace.
fn solid_positions(all: &[Token]) -> Vec<usize> {
    (0..all.len())
        .filter(|&i| !matches!(all[i], Token::Whitespace(_)))
        .collect()
}

/// `sql` (tokenized as `all`) with the token ranges of `replaced` (`from..to`, in order)
/// replaced by their texts; borrowed when there are none.
fn splice<'a>(sql: &'a str, all: &[Token], replaced: Vec<(usize, usize, String)>) -> Cow<'a, str> {
    if replaced.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (from, to, text) in replaced {
        all[copied..from]
            .iter()
            .for_each(|t| out.push_str(&t.to_string()));
        out.push_str(&text);
        copied = to;
    }
    all[copied..]
        .iter()
        .for_each(|t| out.push_str(&t.to_string()));
    Cow::Owned(out)
}

/// `sql` with Grafana's search-path subquery replaced by the schemas of `search_path`.
pub fn rewrite_client_sql<'a>(sql: &'a str, search_path: &str, user: &str) -> Cow<'a, str> {
    if !sql.contains("search_path") {
        return Cow::Borrowed(sql);
    }
    let Some(all) = tokens(sql) else {
        return Cow::Borrowed(sql);
    };
    let solid = solid_positions(&all);
    let pattern = PATTERN.as_slice();
    let mut replaced = Vec::new();
    let mut k = 0;
    while k + pattern.len() <= solid.len() {
        if (0..pattern.len()).all(|j| all[solid[k + j]] == pattern[j]) {
            let (from, to) = (solid[k], solid[k + pattern.len() - 1] + 1);
            replaced.push((from, to, schema_list(search_path, user)));
            k += pattern.len();
        } else {
            k += 1;
        }
    }
    splice(sql, &all, replaced)
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

    #[test]
    fn current_setting_of_a_known_setting_becomes_the_session_value() {
        let value_of = |name: &str| (name == "application_name").then(|| "it's".to_string());
        let sql = "SELECT pg_catalog.current_setting('application_name'), \
                   current_setting('application_name', true)::text, current_setting('nope'), \
                   current_setting(name)";
        assert_eq!(
            inline_current_settings(sql, value_of),
            "SELECT 'it''s', 'it''s'::text, current_setting('nope'), current_setting(name)"
        );
        assert!(matches!(
            inline_current_settings("SELECT 1", value_of),
            Cow::Borrowed(_)
        ));
    }
}
