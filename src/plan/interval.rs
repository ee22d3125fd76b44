//! Interval literals (`INTERVAL '1 minute'`) as fixed durations in milliseconds.

use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
use datafusion::sql::sqlparser::ast::{Expr, Value};

use super::PlanError;

/// The length of an `INTERVAL` expression in milliseconds; months are not a fixed length.
pub fn interval_ms(expr: &Expr) -> Result<i64, PlanError> {
    let Expr::Interval(interval) = expr else {
        return Err(PlanError::Invalid(format!(
            "expected an INTERVAL such as INTERVAL '1 minute', got {expr}"
        )));
    };
    let text = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            other => {
                return Err(PlanError::Invalid(format!(
                    "unsupported interval value {other}"
                )))
            }
        },
        other => {
            return Err(PlanError::Invalid(format!(
                "unsupported interval value {other}"
            )))
        }
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{text} {field}"),
        None => text,
    };
    interval_text_ms(&text)
}

/// The length of an interval written as text (`'30 seconds'`) in milliseconds.
pub fn interval_text_ms(text: &str) -> Result<i64, PlanError> {
    let parsed = parse_interval_month_day_nano(text)
        .map_err(|e| PlanError::Invalid(format!("bad interval '{text}': {e}")))?;
    if parsed.months != 0 {
        return Err(PlanError::Invalid(format!(
            "interval '{text}' has months, which have no fixed length; use days or smaller units"
        )));
    }
    let ms = parsed.days as i64 * 86_400_000 + parsed.nanoseconds / 1_000_000;
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn ms(sql: &str) -> Result<i64, PlanError> {
        let expr = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        interval_ms(&expr)
    }

    #[test]
    fn intervals_in_milliseconds() {
        assert_eq!(ms("INTERVAL '1 minute'").unwrap(), 60_000);
        assert_eq!(ms("INTERVAL '5 seconds'").unwrap(), 5_000);
        assert_eq!(ms("INTERVAL '10' SECOND").unwrap(), 10_000);
        assert_eq!(ms("INTERVAL '1 day 2 hours'").unwrap(), 93_600_000);
        assert!(ms("INTERVAL '1 month'").is_err());
        assert_eq!(interval_text_ms("30 seconds").unwrap(), 30_000);
    }
}
