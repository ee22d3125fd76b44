//! Values in PostgreSQL's text format, where pgwire 0.41 prints them otherwise.
//!
//! pgwire formats a whole double as `105.0` (ryu), infinities as `inf`/`-inf` and every
//! timestamp with six fractional digits (`2026-01-01 00:00:00.000000`); PostgreSQL prints
//! `105`, `Infinity`/`-Infinity`, `1e+16` and `2026-01-01 00:00:00`. Clients that compare
//! or parse text values (psql output, Grafana's time column, drivers without binary
//! transfer) see the difference. Neither pgwire nor arrow-pg lets a server choose these
//! formats, so the encoded text rows of a query are rewritten here, field by field, for
//! float and timestamp columns only; binary results are untouched. `COPY ... TO STDOUT`
//! prints its rows through the same [`TextFix`].

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response};
use pgwire::api::{ClientInfo, Type};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

/// How a column's text needs fixing.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Keep,
    Float8,
    Float4,
    Time,
    TimeTz,
}

fn kind(field: &FieldInfo) -> Kind {
    if field.format() != FieldFormat::Text {
        return Kind::Keep;
    }
    match *field.datatype() {
        Type::FLOAT8 => Kind::Float8,
        Type::FLOAT4 => Kind::Float4,
        Type::TIMESTAMP | Type::TIME => Kind::Time,
        Type::TIMESTAMPTZ => Kind::TimeTz,
        _ => Kind::Keep,
    }
}

/// `mantissa e exponent` as PostgreSQL writes it: sign always, at least two digits.
fn exponent_form(scientific: &str) -> String {
    let (mantissa, exp) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// A float's shortest exact text, positional unless the decimal exponent is below -4 or at
/// least `digits` (15 for float8, 6 for float4), as PostgreSQL's float8out/float4out.
fn float_text(text: &str, kind: Kind, shortest: bool) -> Option<String> {
    match text {
        "inf" => return Some("Infinity".into()),
        "-inf" => return Some("-Infinity".into()),
        _ if !shortest => return None,
        _ => {}
    }
    let (scientific, positional, digits) = if kind == Kind::Float4 {
        let v: f32 = text.parse().ok()?;
        (format!("{v:e}"), format!("{v}"), 6)
    } else {
        let v: f64 = text.parse().ok()?;
        (format!("{v:e}"), format!("{v}"), 15)
    };
    if !scientific.contains('e') {
        return None; // NaN
    }
    let exp: i32 = scientific.split_once('e')?.1.parse().ok()?;
    let out = if !(-4..digits).contains(&exp) {
        exponent_form(&scientific)
    } else {
        positional
    };
    (out != text).then_some(out)
}

/// A time or timestamp without trailing zero fractional digits, a `+00:00` offset as `+00`.
fn time_text(text: &str, with_zone: bool) -> Option<String> {
    let dot = text.rfind('.')?;
    let digits = text[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let fraction = text[dot + 1..dot + 1 + digits].trim_end_matches('0');
    let rest = &text[dot + 1 + digits..];
    let mut out = text[..dot].to_string();
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    match rest.strip_suffix(":00") {
        Some(hours) if with_zone && hours.len() == 3 => out.push_str(hours),
        _ => out.push_str(rest),
    }
    (out != text).then_some(out)
}

/// The values of an encoded row, in order (`None` for NULL); `None` if it is malformed.
pub fn row_values(row: &DataRow) -> Option<Vec<Option<&[u8]>>> {
    let data = &row.data;
    let mut values = Vec::with_capacity(row.field_count.max(0) as usize);
    let mut pos = 0;
    while pos < data.len() {
        let len = i32::from_be_bytes(data.get(pos..pos + 4)?.try_into().ok()?);
        pos += 4;
        if len < 0 {
            values.push(None);
            continue;
        }
        values.push(Some(data.get(pos..pos + len as usize)?));
        pos += len as usize;
    }
    Some(values)
}

/// How the text values of one result's rows are rewritten.
pub struct TextFix {
    kinds: Vec<Kind>,
    shortest: bool,
}

impl TextFix {
    /// For rows of `fields` on a session with `extra_float_digits` (shortest exact floats
    /// when it is at least 1, pgwire's rounding otherwise).
    pub fn new(fields: &[FieldInfo], extra_float_digits: i8) -> Self {
        Self {
            kinds: fields.iter().map(kind).collect(),
            shortest: extra_float_digits >= 1,
        }
    }

    fn is_noop(&self) -> bool {
        self.kinds.iter().all(|k| *k == Kind::Keep)
    }

    /// `row` with the fields that need it rewritten.
    pub fn apply(&self, row: DataRow) -> DataRow {
        if self.is_noop() {
            return row;
        }
        let Some(values) = row_values(&row).filter(|v| v.len() == self.kinds.len()) else {
            return row;
        };
        let mut out = BytesMut::with_capacity(row.data.len());
        for (value, &kind) in values.into_iter().zip(&self.kinds) {
            let Some(value) = value else {
                out.put_i32(-1);
                continue;
            };
            let fixed = std::str::from_utf8(value).ok().and_then(|text| match kind {
                Kind::Float8 | Kind::Float4 => float_text(text, kind, self.shortest),
                Kind::Time => time_text(text, false),
                Kind::TimeTz => time_text(text, true),
                Kind::Keep => None,
            });
            let bytes = fixed.as_ref().map_or(value, |f| f.as_bytes());
            out.put_i32(bytes.len() as i32);
            out.put_slice(bytes);
        }
        DataRow::new(out, row.field_count)
    }
}

/// The session's `extra_float_digits` (pgwire's default when it never set it).
pub fn extra_float_digits<C: ClientInfo + ?Sized>(client: &C) -> i8 {
    FormatOptions::from_client_metadata(client.metadata()).extra_float_digits
}

/// `response` with its text values as PostgreSQL prints them, on a session with
/// `extra_float_digits`.
pub fn postgres_text(response: Response, extra_float_digits: i8) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let fix = TextFix::new(&query.row_schema, extra_float_digits);
    if fix.is_noop() {
        return Response::Query(query);
    }
    let QueryResponse {
        command_tag,
        row_schema,
        data_rows,
        ..
    } = query;
    let rows = data_rows.map(move |row| row.map(|r| fix.apply(r)));
    let mut fixed = QueryResponse::new(row_schema, rows);
    fixed.set_command_tag(&command_tag);
    Response::Query(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_postgres_prints_them() {
        let f8 = |t| float_text(t, Kind::Float8, true);
        assert_eq!(f8("105.0").as_deref(), Some("105"));
        assert_eq!(f8("inf").as_deref(), Some("Infinity"));
        assert_eq!(f8("-inf").as_deref(), Some("-Infinity"));
        assert_eq!(f8("NaN"), None);
        assert_eq!(f8("0.1"), None);
        assert_eq!(f8("1e16").as_deref(), Some("1e+16"));
        assert_eq!(f8("1000000000000000.0").as_deref(), Some("1e+15"));
        assert_eq!(f8("1.5e-7").as_deref(), Some("1.5e-07"));
        assert_eq!(f8("0.0001"), None);
        assert_eq!(
            float_text("100000.0", Kind::Float4, true).as_deref(),
            Some("100000")
        );
        assert_eq!(
            float_text("1000000.0", Kind::Float4, true).as_deref(),
            Some("1e+06")
        );
    }

    #[test]
    fn rows_are_fixed_field_by_field() {
        let field = |t| FieldInfo::new("c".into(), None, None, t, FieldFormat::Text);
        let fix = TextFix::new(
            &[field(Type::FLOAT8), field(Type::TEXT), field(Type::FLOAT8)],
            1,
        );
        let mut data = BytesMut::new();
        for value in [Some("105.0"), Some("105.0"), None] {
            match value {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.put_slice(v.as_bytes());
                }
                None => data.put_i32(-1),
            }
        }
        let fixed = fix.apply(DataRow::new(data, 3));
        let values = row_values(&fixed).unwrap();
        assert_eq!(values, [Some(&b"105"[..]), Some(&b"105.0"[..]), None]);
    }

    #[test]
    fn times_drop_zero_fractions() {
        let ts = |t| time_text(t, false);
        assert_eq!(
            ts("2026-01-01 00:00:00.000000").as_deref(),
            Some("2026-01-01 00:00:00")
        );
        assert_eq!(
            ts("2026-01-01 00:00:00.500000").as_deref(),
            Some("2026-01-01 00:00:00.5")
        );
        assert_eq!(ts("2026-01-01 00:00:00"), None);
        assert_eq!(
            time_text("2026-01-01 00:00:00.000000+00:00", true).as_deref(),
            Some("2026-01-01 00:00:00+00")
        );
        assert_eq!(
            time_text("2026-01-01 00:00:00.250000+05:30", true).as_deref(),
            Some("2026-01-01 00:00:00.25+05:30")
        );
    }
}
