//! Splitting a simple-protocol query string into statements at top-level semicolons.

/// The statements of `sql`, split at `;` outside quotes, comments and parentheses.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i, mut depth) = (0, 0, 0i32);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => {
                push_statement(&mut out, &sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_statement(&mut out, &sql[start.min(sql.len())..]);
    out
}

/// Keeps a statement unless it is only whitespace and comments.
fn push_statement<'a>(out: &mut Vec<&'a str>, stmt: &'a str) {
    let meaningful = stmt
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .any(|l| !l.trim().is_empty());
    if meaningful {
        out.push(stmt.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "CREATE SOURCE s (a TEXT) WITH (path = 'a;b'); -- c;\nSELECT ';' ; /* x; */ SELECT 2;\n-- end";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE SOURCE s (a TEXT) WITH (path = 'a;b')",
                "-- c;\nSELECT ';'",
                "/* x; */ SELECT 2"
            ]
        );
        assert!(split_statements("  ;; -- nothing\n").is_empty());
    }
}
