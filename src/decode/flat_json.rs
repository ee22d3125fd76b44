//! The fast path for flat JSON lines: one object per line whose values are scalars (numbers,
//! strings without escapes, `true`, `false`, `null`), read straight into Arrow builders.
//!
//! arrow-json (the general path, [`super::JsonDecoder`]) first turns each line into a tape of
//! tokens and then each column into an array; for the flat events most streams carry, that
//! tape is the largest part of a decode thread's time. This path reads each value once and
//! appends it to its column. It accepts only input whose meaning is beyond doubt — anything
//! else (nesting, escapes, a string where a number belongs, a time with an offset, a number
//! that does not fit, a repeated key) makes it give up on the whole chunk, and arrow-json
//! decodes that chunk as before. So every batch it returns is the batch arrow-json would
//! return; the unit tests check that on random lines.
//!
//! Why not a crate: the JSON crates (serde_json, simd-json, sonic-rs) build a value or a tape
//! per document, the step this path exists to skip; none appends to Arrow builders.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

/// Decodes chunks of flat JSON lines into batches of one schema, or declines.
#[derive(Debug, Clone)]
pub struct FlatJson {
    schema: SchemaRef,
    names: Vec<Box<[u8]>>,
    /// Per column whose name has no byte a JSON string would escape (a quote, a backslash, a
    /// control character), its key as it appears quoted in a line: a key then is that name
    /// exactly when its bytes are.
    quoted: Vec<Option<QuotedKey>>,
    kinds: Vec<Kind>,
    /// Per column, whether no reader of the batches needs it ([`FlatJson::skipping`]).
    skipped: Vec<bool>,
}

/// The column types this path reads.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    Text,
    Timestamp,
}

/// One scalar JSON value, still as its bytes.
enum Value<'a> {
    /// A string's content (between the quotes; no escapes).
    Str(&'a str),
    /// A number's text, and its value when it is an integer (no fraction, no exponent) of at
    /// most 18 digits (so it cannot overflow).
    Num(&'a [u8], Option<i64>),
    Bool(bool),
    Null,
}

/// A value as its column's type reads it: what arrow-json stores for it.
enum Typed<'a> {
    Null,
    Int(i64),
    Float32(f32),
    Float64(f64),
    Bool(bool),
    Str(&'a str),
}

/// Where one column's values go.
enum Builder {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Text(StringBuilder),
    Timestamp(TimestampMillisecondBuilder),
    /// A column no reader of the batch needs: its values are checked as if kept, so a line
    /// declines exactly when it would with the column read, and the column comes out null.
    Skipped,
}

/// One column of a chunk being decoded.
struct Column {
    kind: Kind,
    /// The minute of the column's last time (timestamp columns).
    last: LastMinute,
    out: Builder,
}

impl FlatJson {
    /// A fast path for `schema`, or None when a column has a type it does not read.
    pub fn new(schema: SchemaRef) -> Option<Self> {
        let kinds = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int16 => Some(Kind::Int16),
                DataType::Int32 => Some(Kind::Int32),
                DataType::Int64 => Some(Kind::Int64),
                DataType::Float32 => Some(Kind::Float32),
                DataType::Float64 => Some(Kind::Float64),
                DataType::Boolean => Some(Kind::Boolean),
                DataType::Utf8 => Some(Kind::Text),
                DataType::Timestamp(TimeUnit::Millisecond, None) => Some(Kind::Timestamp),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let names: Vec<Box<[u8]>> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_bytes().into())
            .collect();
        // Keys are matched to the one column of their name.
        let unique: std::collections::HashSet<&[u8]> = names.iter().map(|n| &**n).collect();
        if unique.len() != names.len() {
            return None;
        }
        let quoted = names
            .iter()
            .map(|n| {
                let plain = !n.iter().any(|b| matches!(b, b'"' | b'\\' | 0..=0x1f));
                plain.then(|| QuotedKey::new(n))
            })
            .collect();
        Some(Self {
            skipped: vec![false; names.len()],
            schema,
            names,
            quoted,
            kinds,
        })
    }

    /// The same fast path keeping only the columns not marked in `skipped`; the others come
    /// out all null (nullable columns only: a non-nullable one is always kept). Their values
    /// are still checked, so which lines decode does not change.
    pub fn skipping(mut self, skipped: &[bool]) -> Self {
        for (i, field) in self.schema.fields().iter().enumerate() {
            self.skipped[i] = field.is_nullable() && skipped.get(i).copied().unwrap_or(false);
        }
        self
    }

    /// The lines `spans` of `data` as one batch, one row per line; None when any line is not
    /// one this path reads (arrow-json then decodes the chunk).
    pub fn decode(&self, data: &[u8], spans: &[(usize, usize)]) -> Option<RecordBatch> {
        // A text column's offsets are 32-bit: arrow-json reports an overflow where a
        // builder would panic (chunks are far smaller than this).
        if data.len() > i32::MAX as usize / 2 {
            return None;
        }
        let n = spans.len();
        let mut columns: Vec<Column> = self
            .kinds
            .iter()
            .zip(&self.skipped)
            .map(|(&kind, &skipped)| Column {
                kind,
                last: LastMinute::default(),
                out: match kind {
                    _ if skipped => Builder::Skipped,
                    Kind::Int16 => Builder::Int16(Int16Builder::with_capacity(n)),
                    Kind::Int32 => Builder::Int32(Int32Builder::with_capacity(n)),
                    Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(n)),
                    Kind::Float32 => Builder::Float32(Float32Builder::with_capacity(n)),
                    Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(n)),
                    Kind::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(n)),
                    Kind::Text => Builder::Text(StringBuilder::with_capacity(n, n * 16)),
                    Kind::Timestamp => {
                        Builder::Timestamp(TimestampMillisecondBuilder::with_capacity(n))
                    }
                },
            })
            .collect();
        // The line on which each column last got a value (a repeated key declines).
        let mut filled = vec![usize::MAX; self.names.len()];
        for (line, &(start, end)) in spans.iter().enumerate() {
            self.line(&data[start..end], line, &mut columns, &mut filled)?;
        }
        let columns: Vec<ArrayRef> = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(column, field)| column.out.finish(field.data_type(), n))
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns).ok()
    }

    /// Appends one line's values (nulls for the columns it lacks) to `columns`.
    fn line(
        &self,
        text: &[u8],
        line: usize,
        columns: &mut [Column],
        filled: &mut [usize],
    ) -> Option<()> {
        let mut c = Cursor { b: text, i: 0 };
        c.ws();
        c.eat(b'{')?;
        c.ws();
        // Keys usually come in the same order on every line: try the next column first.
        let mut guess = 0;
        let mut given = 0;
        if c.peek() == Some(b'}') {
            c.i += 1;
        } else {
            loop {
                let col = match self.expected_key(&mut c, guess) {
                    Some(col) => Some(col),
                    None => self.column(c.string()?.as_bytes(), guess),
                };
                c.ws();
                c.eat(b':')?;
                c.ws();
                let value = c.value()?;
                if let Some(col) = col {
                    if filled[col] == line {
                        return None;
                    }
                    filled[col] = line;
                    given += 1;
                    columns[col].append(value)?;
                    guess = col + 1;
                }
                c.ws();
                match c.next()? {
                    b',' => c.ws(),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        c.ws();
        if c.i != text.len() {
            return None;
        }
        // A column appears once a line at most, so a line that gave as many as there are
        // gave every one.
        if given < columns.len() {
            for (col, column) in columns.iter_mut().enumerate() {
                if filled[col] != line {
                    column.out.push(Typed::Null);
                }
            }
        }
        Some(())
    }

    /// Column `guess` when the cursor is at its name as a key (quotes included), past it;
    /// otherwise None and the cursor stays. Keys mostly come in the schema's order, so this
    /// skips scanning the key as a string and searching the names.
    #[inline]
    fn expected_key(&self, c: &mut Cursor<'_>, guess: usize) -> Option<usize> {
        let key = self.quoted.get(guess)?.as_ref()?;
        key.is_at(c.b, c.i).then(|| {
            c.i += key.bytes.len();
            guess
        })
    }

    fn column(&self, key: &[u8], guess: usize) -> Option<usize> {
        if self.names.get(guess).is_some_and(|n| same_key(n, key)) {
            return Some(guess);
        }
        self.names.iter().position(|n| same_key(n, key))
    }
}

/// Whether two keys are equal. Keys are short (a column name); comparing them a word at a
/// time, with no library call, matters when every value of every line compares one.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((x, rest_a)), Some((y, rest_b))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y) {
            return false;
        }
        (a, b) = (rest_a, rest_b);
    }
    let tail = |s: &[u8]| s.iter().fold(0u64, |w, c| (w << 8) | u64::from(*c));
    tail(a) == tail(b)
}

/// A column's name with its quotes, as one or two words to compare a line's bytes with: most
/// names are short, and comparing them byte by byte past their first eight bytes was about
/// 15% of a decode thread (Nexmark bids).
#[derive(Debug, Clone)]
struct QuotedKey {
    bytes: Box<[u8]>,
    /// The first 16 bytes as two little-endian words, zero past the key's end, and the masks
    /// that keep just the key's bytes of a line's words.
    words: [u64; 2],
    masks: [u64; 2],
}

impl QuotedKey {
    fn new(name: &[u8]) -> Self {
        let bytes: Box<[u8]> = [&b"\""[..], name, b"\""].concat().into();
        let (mut words, mut masks) = ([0u64; 2], [0u64; 2]);
        for (i, b) in bytes.iter().take(16).enumerate() {
            words[i / 8] |= u64::from(*b) << (8 * (i % 8));
            masks[i / 8] |= 0xFF << (8 * (i % 8));
        }
        Self {
            bytes,
            words,
            masks,
        }
    }

    /// Whether `line` has this key at `at`.
    #[inline]
    fn is_at(&self, line: &[u8], at: usize) -> bool {
        match line.get(at..at + 16) {
            Some(next) if self.bytes.len() <= 16 => {
                let (a, b) = next.split_at(8);
                let a = u64::from_le_bytes(a.try_into().expect("eight bytes"));
                let b = u64::from_le_bytes(b.try_into().expect("eight bytes"));
                (a & self.masks[0]) == self.words[0] && (b & self.masks[1]) == self.words[1]
            }
            // Near the line's end, or a long name.
            _ => line.get(at..at + self.bytes.len()) == Some(&self.bytes[..]),
        }
    }
}

impl Column {
    /// Appends `value`; None when it is not exactly what arrow-json makes of it.
    #[inline]
    fn append(&mut self, value: Value<'_>) -> Option<()> {
        let typed = typed(self.kind, value, &mut self.last)?;
        self.out.push(typed);
        Some(())
    }
}

/// `value` as a column of `kind` reads it; None when arrow-json would read it otherwise or
/// refuse it. Every value it gives is `Null` or the one variant that `kind` stores.
#[inline]
fn typed<'a>(kind: Kind, value: Value<'a>, last: &mut LastMinute) -> Option<Typed<'a>> {
    Some(match (kind, value) {
        (_, Value::Null) => Typed::Null,
        (Kind::Int16, Value::Num(_, Some(v))) => Typed::Int(i16::try_from(v).ok()?.into()),
        (Kind::Int32, Value::Num(_, Some(v))) => Typed::Int(i32::try_from(v).ok()?.into()),
        (Kind::Int64 | Kind::Timestamp, Value::Num(_, Some(v))) => Typed::Int(v),
        (Kind::Float32, Value::Num(t, _)) => Typed::Float32(float(t)?),
        (Kind::Float64, Value::Num(t, _)) => Typed::Float64(float(t)?),
        (Kind::Boolean, Value::Bool(v)) => Typed::Bool(v),
        (Kind::Text, Value::Str(s)) => Typed::Str(s),
        (Kind::Timestamp, Value::Str(s)) => Typed::Int(timestamp_ms(s.as_bytes(), last)?),
        _ => return None,
    })
}

impl Builder {
    /// Appends a value [`typed`] gave for this builder's kind. Always inlined: as a call per
    /// value it was 15% of a decode thread's samples.
    #[inline(always)]
    fn push(&mut self, value: Typed<'_>) {
        // The integer casts cannot truncate: `typed` checked the range of its kind.
        match (self, value) {
            (Builder::Skipped, _) => {}
            (Builder::Int16(b), Typed::Int(v)) => b.append_value(v as i16),
            (Builder::Int32(b), Typed::Int(v)) => b.append_value(v as i32),
            (Builder::Int64(b), Typed::Int(v)) => b.append_value(v),
            (Builder::Timestamp(b), Typed::Int(v)) => b.append_value(v),
            (Builder::Float32(b), Typed::Float32(v)) => b.append_value(v),
            (Builder::Float64(b), Typed::Float64(v)) => b.append_value(v),
            (Builder::Boolean(b), Typed::Bool(v)) => b.append_value(v),
            (Builder::Text(b), Typed::Str(s)) => b.append_value(s),
            // `Null`: `typed` gives a kind no other variant.
            (Builder::Int16(b), _) => b.append_null(),
            (Builder::Int32(b), _) => b.append_null(),
            (Builder::Int64(b), _) => b.append_null(),
            (Builder::Timestamp(b), _) => b.append_null(),
            (Builder::Float32(b), _) => b.append_null(),
            (Builder::Float64(b), _) => b.append_null(),
            (Builder::Boolean(b), _) => b.append_null(),
            (Builder::Text(b), _) => b.append_null(),
        }
    }

    /// The column: `len` nulls of `data_type` when it was skipped.
    fn finish(self, data_type: &DataType, len: usize) -> ArrayRef {
        match self {
            Builder::Int16(mut b) => Arc::new(b.finish()),
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Float32(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Boolean(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Timestamp(mut b) => Arc::new(b.finish()),
            Builder::Skipped => new_null_array(data_type, len),
        }
    }
}

/// The longest number token read as a float. std's parser stops reading an exponent at
/// 65,536 where arrow-json's (lexical) reads on, so a token of thousands of digits with an
/// exponent to match (`0.000…1e700000`) would come out differently; with at most 64 digits,
/// an exponent that large gives infinity or zero in both.
const MAX_FLOAT_TOKEN: usize = 64;

/// A number token as a float (correctly rounded, as lexical rounds it).
fn float<F: std::str::FromStr>(token: &[u8]) -> Option<F> {
    if token.len() > MAX_FLOAT_TOKEN {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// Bytes of a time's date, hour and minute with their separators: `YYYY-MM-DD?HH:MM:`.
const MINUTE_PREFIX: usize = 17;

/// The last minute a column's times were in: times of one stream mostly share their date,
/// hour and minute with the time before, and then only seconds and fraction are read.
#[derive(Default)]
struct LastMinute {
    /// A validated `YYYY-MM-DD?HH:MM:`.
    prefix: [u8; MINUTE_PREFIX],
    /// Its minute in milliseconds since the epoch; None before the first time.
    ms: Option<i64>,
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z]` as milliseconds since the epoch (UTC); None for any
/// other shape, which arrow-json then reads (offsets, dates alone, and so on).
fn timestamp_ms(s: &[u8], last: &mut LastMinute) -> Option<i64> {
    let prefix = s.get(..MINUTE_PREFIX)?;
    let minute = match last.ms {
        Some(ms) if same_key(prefix, &last.prefix) => ms,
        _ => {
            let ms = minute_ms(prefix)?;
            last.prefix.copy_from_slice(prefix);
            last.ms = Some(ms);
            ms
        }
    };
    Some(minute + within_minute_ms(&s[MINUTE_PREFIX..])?)
}

/// The digits `s[from..from + len]` as a number.
fn digits(s: &[u8], from: usize, len: usize) -> Option<i64> {
    let part = s.get(from..from + len)?;
    part.iter().try_fold(0i64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

/// `YYYY-MM-DD[T ]HH:MM:` as its minute in milliseconds since the epoch.
fn minute_ms(s: &[u8]) -> Option<i64> {
    let at = |i: usize, expected: &[u8]| s.get(i).is_some_and(|b| expected.contains(b));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    let (hour, minute) = (digits(s, 11, 2)?, digits(s, 14, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    let minutes = days_from_civil(year, month, day) * 1440 + hour * 60 + minute;
    Some(minutes * 60_000)
}

/// `SS[.f{1,9}][Z]` (the rest of a time after its minute) as milliseconds.
fn within_minute_ms(s: &[u8]) -> Option<i64> {
    let second = digits(s, 0, 2)?;
    if second > 59 {
        return None;
    }
    let mut i = 2;
    let mut millis: i64 = 0;
    if s.get(i) == Some(&b'.') {
        let fraction = s[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&fraction) {
            return None;
        }
        // Milliseconds are the first three digits (fewer: padded with zeros); arrow-json
        // drops the rest too.
        let first = &s[i + 1..i + 1 + fraction.min(3)];
        millis = first.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'));
        millis *= [100, 10, 1][first.len() - 1];
        i += 1 + fraction;
    }
    if matches!(s.get(i), Some(b'Z' | b'z')) {
        i += 1;
    }
    (i == s.len()).then_some(second * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date: years counted from March, so
/// the leap day ends a year; 146,097 days to a 400-year era.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A position in one line.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters, in valid UTF-8: its content. Eight
    /// bytes at a time while none is a quote, a backslash, a control character or non-ASCII
    /// (one test of the word for all four), then byte by byte; only a string with non-ASCII
    /// bytes is validated as UTF-8 as well.
    fn string(&mut self) -> Option<&'a str> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        self.eat(b'"')?;
        let (b, start) = (self.b, self.i);
        let mut i = start;
        while let Some(Ok(word)) = b.get(i..i + 8).map(<[u8; 8]>::try_from) {
            let x = u64::from_le_bytes(word);
            let quote = x ^ (ONES * u64::from(b'"'));
            let slash = x ^ (ONES * u64::from(b'\\'));
            // A byte's high bit is set in each term where that byte is zero (a quote, a
            // backslash), below 0x20, or itself has its high bit set.
            let special = ((quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (x.wrapping_sub(ONES * 0x20) & !x)
                | x)
                & HIGHS;
            if special != 0 {
                // A borrow can mark bytes after the first special byte, never before it: the
                // lowest mark is that byte, where the loop below goes on.
                i += (special.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        let mut ascii = true;
        loop {
            match *b.get(i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                0x80.. => ascii = false,
                _ => {}
            }
            i += 1;
        }
        let content = &b[start..i];
        self.i = i + 1;
        if ascii {
            // SAFETY: every byte of `content` is below 0x80, and ASCII is valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(content) })
        } else {
            std::str::from_utf8(content).ok()
        }
    }

    /// A JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; an integer's
    /// value is read in the same pass.
    fn number(&mut self) -> Option<Value<'a>> {
        let start = self.i;
        let digits = |c: &mut Self| {
            let from = c.i;
            while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                c.i += 1;
            }
            c.i - from
        };
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let mut magnitude: i64 = 0;
        let whole = self.i;
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                // At most 18 digits cannot overflow; wrapping past that is never used.
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    magnitude = magnitude.wrapping_mul(10).wrapping_add(i64::from(d - b'0'));
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let value = (self.i - whole <= 18).then_some(if negative { -magnitude } else { magnitude });
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return None;
            }
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
            integer = false;
        }
        Some(Value::Num(
            &self.b[start..self.i],
            value.filter(|_| integer),
        ))
    }

    fn literal(&mut self, word: &[u8], value: Value<'a>) -> Option<Value<'a>> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| {
            self.i = end;
            value
        })
    }

    /// A scalar value; None for objects, arrays and anything not JSON.
    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::json::ReaderBuilder;

    fn schema() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("s", DataType::Int16, true),
            Field::new("x", DataType::Float64, true),
            Field::new("f", DataType::Float32, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", ts, true),
        ]))
    }

    /// arrow-json's batch for the lines, or None when it refuses them.
    fn arrow(schema: &SchemaRef, lines: &[String]) -> Option<RecordBatch> {
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(lines.len() + 1)
            .build_decoder()
            .ok()?;
        for line in lines {
            decoder.decode(line.as_bytes()).ok()?;
            if decoder.has_partial_record() {
                return None;
            }
        }
        let batch = decoder.flush().ok()??;
        (batch.num_rows() == lines.len()).then_some(batch)
    }

    fn fast(schema: &SchemaRef, lines: &[String]) -> Option<RecordBatch> {
        fast_skipping(schema, lines, &[])
    }

    fn fast_skipping(
        schema: &SchemaRef,
        lines: &[String],
        skipped: &[bool],
    ) -> Option<RecordBatch> {
        let data = lines.join("\n");
        let mut spans = Vec::new();
        let mut start = 0;
        for line in lines {
            spans.push((start, start + line.len()));
            start += line.len() + 1;
        }
        FlatJson::new(schema.clone())?
            .skipping(skipped)
            .decode(data.as_bytes(), &spans)
    }

    /// `batch` with the columns marked in `skipped` all null.
    fn nulled(batch: &RecordBatch, skipped: &[bool]) -> RecordBatch {
        let columns = batch
            .columns()
            .iter()
            .zip(skipped)
            .map(|(c, skip)| match skip {
                true => new_null_array(c.data_type(), c.len()),
                false => c.clone(),
            })
            .collect();
        RecordBatch::try_new(batch.schema(), columns).unwrap()
    }

    /// A small deterministic generator (splitmix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let at = self.0;
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            crate::source::generator::mix(at)
        }
        fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
            options[(self.next() % options.len() as u64) as usize]
        }
    }

    /// A value for column `key`, usually of its type, sometimes not, sometimes odd.
    fn value(rng: &mut Rng, key: &str) -> String {
        if rng.next().is_multiple_of(25) {
            return rng
                .pick(&[
                    "null",
                    "true",
                    "\"7\"",
                    "1.5",
                    "-0",
                    "1e3",
                    "[1]",
                    "{}",
                    "\"a\\\"b\"",
                    "01",
                    "99999999999999999999",
                    "-",
                    "\"\"",
                    "tru",
                    "40000",
                    "\"é\"",
                ])
                .to_string();
        }
        match key {
            "id" | "n" => format!("{}", (rng.next() % 200_000) as i64 - 100_000),
            "s" => format!("{}", (rng.next() % 60_000) as i64 - 30_000),
            "x" | "f" => rng
                .pick(&[
                    "0.1",
                    "-2.5e-3",
                    "123456.789",
                    "1E10",
                    "3",
                    "-0.0",
                    "1.7976931348623157e308",
                ])
                .to_string(),
            "ok" => rng.pick(&["true", "false"]).to_string(),
            "name" => format!(
                "\"{}\"",
                rng.pick(&["alice", "b ob", "", "ü", "x/y", "tab\tin"])
            ),
            _ => {
                let year = 1900 + rng.next() % 200;
                let month = 1 + rng.next() % 12;
                let day = 1 + rng.next() % 31;
                let fraction = rng.pick(&[
                    "",
                    ".1",
                    ".12",
                    ".123",
                    ".1234",
                    ".123456789",
                    ".1234567891",
                ]);
                let sep = rng.pick(&["T", " ", "t"]);
                let zone = rng.pick(&["", "", "", "Z", "z", "+02:00"]);
                let (h, m, s) = (rng.next() % 25, rng.next() % 60, rng.next() % 61);
                format!(
                    "\"{year:04}-{month:02}-{day:02}{sep}{h:02}:{m:02}:{s:02}{fraction}{zone}\""
                )
            }
        }
    }

    fn line(rng: &mut Rng) -> String {
        let mut keys = vec!["id", "n", "s", "x", "f", "ok", "name", "ts", "other"];
        if rng.next().is_multiple_of(4) {
            let k = (rng.next() % keys.len() as u64) as usize;
            keys.swap(0, k);
        }
        let mut parts = Vec::new();
        for key in keys {
            match rng.next() % 12 {
                0 => continue,
                1 => parts.push(format!("\"{key}\" : {}", value(rng, key))),
                _ => parts.push(format!("\"{key}\":{}", value(rng, key))),
            }
        }
        if rng.next().is_multiple_of(40) {
            parts.push(format!("\"id\":{}", rng.next() % 10));
        }
        // Keys a byte away from a column's name, or that name with an escape in it.
        if rng.next().is_multiple_of(10) {
            let near = rng.pick(&["nam", "names", "i", "ids", "Id", r"i\u0064", r#"n\"ame"#]);
            let at = (rng.next() % (parts.len() as u64 + 1)) as usize;
            parts.insert(at, format!("\"{near}\":{}", rng.next() % 10));
        }
        let body = format!("{{{}}}", parts.join(","));
        match rng.next() % 30 {
            0 => format!(" {body} "),
            1 => format!("{body}{{}}"),
            2 => body[..body.len() - 1].to_string(),
            _ => body,
        }
    }

    #[test]
    fn every_batch_it_returns_is_the_batch_arrow_json_returns() {
        let schema = schema();
        let mut rng = Rng(20261206);
        let (mut agreed, mut declined) = (0, 0);
        for case in 0..12_000 {
            // Single lines, then chunks of three.
            let n = if case < 9_000 { 1 } else { 3 };
            let lines: Vec<String> = (0..n).map(|_| line(&mut rng)).collect();
            let full = fast(&schema, &lines);
            match &full {
                Some(batch) => {
                    let expected = arrow(&schema, &lines);
                    assert_eq!(Some(batch), expected.as_ref(), "lines {lines:?}");
                    agreed += 1;
                }
                None => declined += 1,
            }
            // Columns no reader needs are checked all the same: the same lines decline, and
            // the rest of the batch is the same.
            let skipped: Vec<bool> = (0..8).map(|_| rng.next().is_multiple_of(2)).collect();
            let part = fast_skipping(&schema, &lines, &skipped);
            let expected = full.map(|b| nulled(&b, &skipped));
            assert_eq!(part, expected, "lines {lines:?}, skipped {skipped:?}");
        }
        // Both outcomes are common, so the comparison covers what it means to.
        assert!(
            agreed > 2_000 && declined > 2_000,
            "{agreed} agreed, {declined} declined"
        );
    }

    #[test]
    fn plain_event_lines_take_the_fast_path() {
        let schema = schema();
        let lines: Vec<String> = (0..100)
            .map(|i| {
                format!(
                    r#"{{"id":{i},"n":-{i},"s":7,"x":{i}.5,"f":0.25,"ok":true,"name":"user-{i}","ts":"2026-12-06T06:17:{:02}.{:03}"}}"#,
                    i % 60,
                    i * 7
                )
            })
            .chain([r#"{"id":null,"other":"skipped","ts":1765000000123}"#.to_string(), "{}".into()])
            .collect();
        let batch = fast(&schema, &lines).expect("flat lines decode on the fast path");
        assert_eq!(Some(batch), arrow(&schema, &lines));
    }

    #[test]
    fn a_string_ends_at_its_first_special_byte_wherever_it_is() {
        let read = |text: &str| {
            let mut c = Cursor {
                b: text.as_bytes(),
                i: 0,
            };
            c.string().map(|s| (s.to_string(), c.i))
        };
        for at in 0..24 {
            let plain = "a".repeat(at);
            // The closing quote, with another string after it.
            let text = format!("\"{plain}\" \"{}\"", "b".repeat(30));
            assert_eq!(read(&text), Some((plain.clone(), at + 2)), "{text}");
            // An escape or a control byte: declined.
            for special in ["\\n", "\u{1}", "\t"] {
                assert_eq!(read(&format!("\"{plain}{special}xxxxxxxxxx\"")), None);
            }
            // Non-ASCII: read on to the quote, whole.
            let text = format!("\"{plain}é{plain}\"");
            let expected = format!("{plain}é{plain}");
            assert_eq!(read(&text), Some((expected, text.len())), "{text}");
        }
    }

    #[test]
    fn a_quoted_key_is_found_where_its_bytes_are() {
        let mut rng = Rng(11);
        let alphabet = b"ab\"c";
        for _ in 0..20_000 {
            let name: Vec<u8> = (0..rng.next() % 20)
                .map(|_| b"abc"[(rng.next() % 3) as usize])
                .collect();
            let key = QuotedKey::new(&name);
            let quoted = [&b"\""[..], &name, b"\""].concat();
            // A line with the key (or a copy with one byte changed) at `at`, then up to 20
            // more bytes: the key's end falls before, at and after the 16 bytes compared.
            let at = (rng.next() % 4) as usize;
            let mut line: Vec<u8> = (0..at).map(|_| b' ').collect();
            line.extend(&quoted);
            if let Some(byte) = line.get_mut(at + (rng.next() % 24) as usize) {
                *byte = alphabet[(rng.next() % 4) as usize];
            }
            line.extend((0..rng.next() % 20).map(|_| alphabet[(rng.next() % 4) as usize]));
            let expected = line.get(at..at + quoted.len()) == Some(&quoted[..]);
            assert_eq!(
                key.is_at(&line, at),
                expected,
                "{name:?} in {line:?} at {at}"
            );
        }
    }

    #[test]
    fn keys_compare_as_bytes_do() {
        let mut rng = Rng(7);
        let alphabet = b"ab\0\xff";
        let mut differ = 0;
        for _ in 0..20_000 {
            let len = (rng.next() % 20) as usize;
            let a: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next() % 4) as usize])
                .collect();
            // The same key with at most one byte changed.
            let mut b = a.clone();
            if let Some(byte) = b.get_mut((rng.next() % 24) as usize) {
                *byte = alphabet[(rng.next() % 4) as usize];
            }
            assert_eq!(same_key(&a, &b), a == b, "{a:?} {b:?}");
            assert!(!same_key(&a, &a[..len / 2]) || len == 0);
            differ += usize::from(a != b);
        }
        assert!(differ > 5_000, "{differ} pairs differ");
    }

    #[test]
    fn times_match_the_calendar() {
        let fresh = |s: &[u8]| timestamp_ms(s, &mut LastMinute::default());
        assert_eq!(fresh(b"1970-01-01T00:00:00"), Some(0));
        assert_eq!(fresh(b"1969-12-31 23:59:59.999Z"), Some(-1));
        assert_eq!(fresh(b"2000-02-29T12:00:00.5"), Some(951_825_600_500));
        assert_eq!(fresh(b"2001-02-29T12:00:00"), None);
        assert_eq!(fresh(b"2026-12-06T06:17:31+01:00"), None);
        assert_eq!(fresh(b"2026-12-06T06:17"), None);
        // Times in the minute of the time before read their seconds alone, with the same
        // checks; any other time is read whole, and a bad one leaves the last minute as it was.
        let mut last = LastMinute::default();
        let minute = 1_796_537_820_000;
        for (time, expected) in [
            (&b"2026-12-06T06:17:31.5"[..], Some(minute + 31_500)),
            (b"2026-12-06T06:17:59Z", Some(minute + 59_000)),
            (b"2026-12-06T06:17:60", None),
            (b"2026-12-06T06:17:5", None),
            (b"2026-12-06T06:17:05.1234567891", None),
            (b"2026-13-06T06:17:00", None),
            (b"2026-12-06T06:17:00.001", Some(minute + 1)),
            (b"2026-12-06 06:17:02", Some(minute + 2_000)),
            (b"2026-12-06T06:18:00", Some(minute + 60_000)),
            (b"2026-12-06T06:17:03z", Some(minute + 3_000)),
        ] {
            assert_eq!(timestamp_ms(time, &mut last), expected, "{time:?}");
            assert_eq!(fresh(time), expected, "{time:?}");
        }
    }

    #[test]
    fn nested_values_long_floats_and_other_schemas_decline() {
        let schema = schema();
        assert!(fast(&schema, &[r#"{"id":1,"other":{"a":1}}"#.to_string()]).is_none());
        // Thousands of digits with an exponent to match: std and lexical read these apart.
        let long = format!(r#"{{"x":0.{}1e70000}}"#, "0".repeat(69_999));
        assert!(fast(&schema, &[long]).is_none());
        let short = r#"{"x":1.25e-3,"f":12345678901234567890123456789.5e2}"#.to_string();
        let decoded = fast(&schema, std::slice::from_ref(&short));
        assert!(decoded.is_some(), "{short}");
        assert_eq!(decoded, arrow(&schema, &[short]));
        let twice = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
        ]));
        assert!(FlatJson::new(twice).is_none());
        let listy = Arc::new(Schema::new(vec![Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        )]));
        assert!(FlatJson::new(listy).is_none());
    }
}
