//! `format: parquet`: the query's rows, streamed into a parquet file with the
//! low-level column writers of the `parquet` crate (no arrow).
//!
//! Schema: one optional (nullable) column per result column, typed by its dtype, as the
//! reference's pyarrow schema: `int` → INT64, `float` → DOUBLE, `bool` → BOOLEAN,
//! `date` → INT32 (DATE), `datetime` → INT64 (TIMESTAMP(MILLIS, not adjusted to UTC),
//! pyarrow's `timestamp("ms")`), anything else → BYTE_ARRAY (STRING). The dtypes are
//! the `dtypes` input or, without one, inferred from the first 200 rows (as for
//! `emit_dtypes`); those rows are read before the schema is fixed, the only rows ever
//! held besides the current batch.
//!
//! Row groups: rows go through one column writer per column as each batch arrives; the
//! encoded, compressed pages of the open row group are kept in memory (one buffer per
//! column) and spliced into the file when the group ends, at `row_group_size` rows or
//! once the group's values reach [`ROW_GROUP_BYTES`], whichever comes first. Memory
//! therefore stays bounded by one row group, whatever the number of rows.

use std::io::Write;
use std::sync::Arc;

use aetherflow_sdk::pyfmt::{decimal_to_float, write_cell_str};
use aetherflow_sdk::sql::{Cell, Cursor, DtypeSampler};
use aetherflow_sdk::{log, Error, Map, Value};
use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::column::page::PageWriter;
use parquet::column::writer::{ColumnCloseResult, ColumnWriterImpl};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor, Type};

/// Default rows per row group (pyarrow's and arrow-rs's default).
pub const DEFAULT_ROW_GROUP_SIZE: i64 = 1024 * 1024;

/// A row group also ends once its values (8 bytes a number, a string's length) reach
/// this size, so wide or text-heavy rows do not hold a million rows in memory.
pub const ROW_GROUP_BYTES: usize = 64 << 20;

/// The codecs this build has: snappy (the default, as pyarrow's), LZ4_RAW (what pyarrow
/// writes for `lz4`) and none. gzip (+130 KB of component) and zstd (C code) are left out.
pub fn parse_compression(name: &str) -> Result<Compression, Error> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        "snappy" | "" => Compression::SNAPPY,
        "lz4" | "lz4_raw" => Compression::LZ4_RAW,
        other => {
            return Err(Error::invalid_input(format!(
                "db_extract_stream: unsupported parquet compression {other:?}; \
                 use snappy, lz4 or none"
            )))
        }
    })
}

/// A column's parquet type, from its dtype name (case-insensitive, as the reference's
/// `_pa_type`; unknown names are strings).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Date,
    Datetime,
    Str,
}

impl Kind {
    pub fn of(dtype: &str) -> Kind {
        match dtype.to_lowercase().as_str() {
            "int" => Kind::Int,
            "float" => Kind::Float,
            "bool" => Kind::Bool,
            "date" => Kind::Date,
            "datetime" => Kind::Datetime,
            _ => Kind::Str,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Bool => "bool",
            Kind::Date => "date",
            Kind::Datetime => "datetime",
            Kind::Str => "string",
        }
    }

    fn field(self, name: &str) -> Result<Type, ParquetError> {
        let (physical, logical) = match self {
            Kind::Int => (Physical::INT64, None),
            Kind::Float => (Physical::DOUBLE, None),
            Kind::Bool => (Physical::BOOLEAN, None),
            Kind::Date => (Physical::INT32, Some(LogicalType::Date)),
            Kind::Datetime => (
                Physical::INT64,
                Some(LogicalType::timestamp(false, TimeUnit::MILLIS)),
            ),
            Kind::Str => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
        };
        Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()
    }
}

/// What the parquet path needs from the step's inputs.
pub struct Options<'a> {
    pub fetch_size: u32,
    pub dtypes: Option<&'a Map>,
    pub compression: Compression,
    pub row_group_size: usize,
}

pub struct Written {
    pub columns: Vec<String>,
    pub rows: u64,
    pub sampler: DtypeSampler,
    pub row_groups: usize,
}

fn pq_err(e: ParquetError) -> Error {
    Error::io(format!("db_extract_stream: writing parquet failed: {e}"))
}

/// Rows from the cursor, in chunks that never cross a row-group boundary.
struct Rows<'c> {
    cursor: &'c Cursor,
    fetch_size: u32,
    buf: Vec<Vec<Cell>>,
    pos: usize,
    done: bool,
}

impl Rows<'_> {
    /// Up to `max` rows; empty once the result is exhausted.
    fn next_chunk(&mut self, max: usize) -> Result<&[Vec<Cell>], Error> {
        if self.pos >= self.buf.len() {
            if self.done {
                return Ok(&[]);
            }
            self.buf = self.cursor.next_batch(self.fetch_size)?;
            self.pos = 0;
            if self.buf.is_empty() {
                self.done = true;
                return Ok(&[]);
            }
        }
        let start = self.pos;
        let end = (start + max).min(self.buf.len());
        self.pos = end;
        Ok(&self.buf[start..end])
    }

    fn exhausted(&mut self) -> Result<bool, Error> {
        if self.pos < self.buf.len() {
            return Ok(false);
        }
        if self.done {
            return Ok(true);
        }
        self.buf = self.cursor.next_batch(self.fetch_size)?;
        self.pos = 0;
        self.done = self.buf.is_empty();
        Ok(self.done)
    }
}

/// One column's values of the current chunk, ready for its column writer.
enum Values {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
    Date(Vec<i32>),
    Datetime(Vec<i64>),
    Str(Vec<ByteArray>),
}

impl Values {
    fn new(kind: Kind) -> Values {
        match kind {
            Kind::Int => Values::Int(Vec::new()),
            Kind::Float => Values::Float(Vec::new()),
            Kind::Bool => Values::Bool(Vec::new()),
            Kind::Date => Values::Date(Vec::new()),
            Kind::Datetime => Values::Datetime(Vec::new()),
            Kind::Str => Values::Str(Vec::new()),
        }
    }

    fn clear(&mut self) {
        match self {
            Values::Int(v) | Values::Datetime(v) => v.clear(),
            Values::Float(v) => v.clear(),
            Values::Bool(v) => v.clear(),
            Values::Date(v) => v.clear(),
            Values::Str(v) => v.clear(),
        }
    }
}

struct Column {
    name: String,
    kind: Kind,
    values: Values,
    /// Definition levels: 1 for a value, 0 for a null.
    defs: Vec<i16>,
    text: String,
    /// Whether the decimal-to-float warning was logged.
    warned: bool,
}

impl Column {
    /// Append one cell; returns the bytes its value takes (for the row-group cap).
    fn push(&mut self, cell: &Cell, row: u64) -> Result<usize, Error> {
        let bad = |what: &str| {
            // The value as Python shows it: a quoted string, bytes as b'...', else str().
            let mut shown = String::new();
            write_cell_str(&mut shown, cell);
            if matches!(
                cell,
                Cell::Text(_) | Cell::Decimal(_) | Cell::Date(_) | Cell::Datetime(_)
            ) {
                shown = format!("{shown:?}");
            }
            Error::invalid_input(format!(
                "db_extract_stream: column {:?} row {row}: cannot write {shown} as {}{what}",
                self.name,
                self.kind.name()
            ))
        };
        // NULL is null; "" is null in every column but a string one (as the reference).
        let is_null = match cell {
            Cell::Null => true,
            Cell::Text(s) => s.is_empty() && self.kind != Kind::Str,
            _ => false,
        };
        if is_null {
            self.defs.push(0);
            return Ok(0);
        }
        let size = match &mut self.values {
            Values::Int(v) => {
                v.push(to_int(cell).ok_or_else(|| bad(" (an integer is expected)"))?);
                8
            }
            Values::Float(v) => {
                if matches!(cell, Cell::Decimal(_)) && !self.warned {
                    // As the reference: float64 holds about 15 significant digits.
                    self.warned = true;
                    log::warn(format!(
                        "db_extract_stream: column {:?}: exact decimals written as float64 \
                         (precision loss possible)",
                        self.name
                    ));
                }
                v.push(to_float(cell).ok_or_else(|| bad(" (a number is expected)"))?);
                8
            }
            Values::Bool(v) => {
                v.push(
                    to_bool(cell)
                        .ok_or_else(|| bad(" (true/false, yes/no, t/f, y/n or 1/0 is expected)"))?,
                );
                1
            }
            Values::Date(v) => {
                let days = match cell {
                    Cell::Date(s) | Cell::Text(s) => parse_date(s.trim()),
                    _ => None,
                };
                v.push(days.ok_or_else(|| bad(" (YYYY-MM-DD is expected)"))?);
                4
            }
            Values::Datetime(v) => {
                let ms = match cell {
                    Cell::Datetime(s) | Cell::Date(s) | Cell::Text(s) => {
                        parse_datetime_ms(s.trim())
                    }
                    _ => None,
                };
                v.push(ms.ok_or_else(|| {
                    bad(" (YYYY-MM-DD[ HH:MM[:SS[.fff]]] with an optional T, Z or ±HH:MM is expected)")
                })?);
                8
            }
            Values::Str(v) => {
                let b = match cell {
                    Cell::Text(s) => ByteArray::from(s.as_str()),
                    // Bytes are stored as their text when they are UTF-8 (as pyarrow
                    // does); other bytes have no faithful string form.
                    Cell::Blob(b) => match std::str::from_utf8(b) {
                        Ok(s) => ByteArray::from(s),
                        Err(_) => {
                            return Err(bad(
                                " (these bytes are not UTF-8 text; convert them in the query, \
                                 e.g. hex(column))",
                            ))
                        }
                    },
                    other => {
                        // Python's str() of the value, as the tsv and csv formats write it.
                        self.text.clear();
                        write_cell_str(&mut self.text, other);
                        ByteArray::from(self.text.as_str())
                    }
                };
                let n = b.len();
                v.push(b);
                n
            }
        };
        self.defs.push(1);
        Ok(size)
    }

    fn write(&mut self, w: &mut Writer<'_>) -> Result<(), ParquetError> {
        let defs = Some(self.defs.as_slice());
        match (&self.values, w) {
            (Values::Int(v) | Values::Datetime(v), Writer::Int64(w)) => {
                w.write_batch(v, defs, None)?;
            }
            (Values::Float(v), Writer::Double(w)) => {
                w.write_batch(v, defs, None)?;
            }
            (Values::Bool(v), Writer::Bool(w)) => {
                w.write_batch(v, defs, None)?;
            }
            (Values::Date(v), Writer::Int32(w)) => {
                w.write_batch(v, defs, None)?;
            }
            (Values::Str(v), Writer::Bytes(w)) => {
                w.write_batch(v, defs, None)?;
            }
            _ => {
                return Err(ParquetError::General(format!(
                    "column {:?}: writer of the wrong type",
                    self.name
                )))
            }
        }
        self.values.clear();
        self.defs.clear();
        Ok(())
    }
}

/// A column writer of one of the five physical types we write (typed directly rather
/// than through `get_column_writer`, so the other three are not compiled in).
enum Writer<'a> {
    Int64(ColumnWriterImpl<'a, Int64Type>),
    Double(ColumnWriterImpl<'a, DoubleType>),
    Bool(ColumnWriterImpl<'a, BoolType>),
    Int32(ColumnWriterImpl<'a, Int32Type>),
    Bytes(ColumnWriterImpl<'a, ByteArrayType>),
}

impl<'a> Writer<'a> {
    fn new(
        kind: Kind,
        descr: ColumnDescPtr,
        props: WriterPropertiesPtr,
        pages: Box<dyn PageWriter + 'a>,
    ) -> Writer<'a> {
        match kind {
            Kind::Int | Kind::Datetime => Writer::Int64(ColumnWriterImpl::new(descr, props, pages)),
            Kind::Float => Writer::Double(ColumnWriterImpl::new(descr, props, pages)),
            Kind::Bool => Writer::Bool(ColumnWriterImpl::new(descr, props, pages)),
            Kind::Date => Writer::Int32(ColumnWriterImpl::new(descr, props, pages)),
            Kind::Str => Writer::Bytes(ColumnWriterImpl::new(descr, props, pages)),
        }
    }

    fn close(self) -> Result<ColumnCloseResult, ParquetError> {
        match self {
            Writer::Int64(w) => w.close(),
            Writer::Double(w) => w.close(),
            Writer::Bool(w) => w.close(),
            Writer::Int32(w) => w.close(),
            Writer::Bytes(w) => w.close(),
        }
    }
}

fn to_int(cell: &Cell) -> Option<i64> {
    match cell {
        Cell::Integer(i) => Some(*i),
        Cell::Boolean(b) => Some(*b as i64),
        Cell::Real(f) => float_to_int(*f),
        Cell::Decimal(s) | Cell::Text(s) => {
            let t = s.trim();
            t.parse::<i64>().ok().or_else(|| {
                // An exact decimal with a zero fraction (`42.00`).
                let (int, frac) = t.split_once('.')?;
                if !frac.is_empty() && frac.bytes().all(|b| b == b'0') {
                    int.parse::<i64>().ok()
                } else {
                    None
                }
            })
        }
        _ => None,
    }
}

fn float_to_int(f: f64) -> Option<i64> {
    // -2^63 ..= 2^63 (exclusive upper bound) with no fraction.
    if f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        Some(f as i64)
    } else {
        None
    }
}

fn to_float(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Real(f) => Some(*f),
        Cell::Integer(i) => Some(*i as f64),
        Cell::Boolean(b) => Some(if *b { 1.0 } else { 0.0 }),
        Cell::Decimal(s) => Some(decimal_to_float(s)),
        Cell::Text(s) => {
            let t = s.trim();
            // Python's float() spellings; Rust's parser alone would also take "infinity" etc.
            match t.to_ascii_lowercase().as_str() {
                "nan" | "+nan" | "-nan" => Some(f64::NAN),
                "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
                "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
                _ if t
                    .bytes()
                    .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) =>
                {
                    None
                }
                _ => t.parse::<f64>().ok(),
            }
        }
        _ => None,
    }
}

fn to_bool(cell: &Cell) -> Option<bool> {
    match cell {
        Cell::Boolean(b) => Some(*b),
        Cell::Integer(0) => Some(false),
        Cell::Integer(1) => Some(true),
        Cell::Real(f) if *f == 0.0 => Some(false),
        Cell::Real(f) if *f == 1.0 => Some(true),
        Cell::Text(s) | Cell::Decimal(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Some(true),
            "false" | "f" | "no" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn digits(s: &str, n: usize) -> Option<i64> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// `YYYY-MM-DD` (years 0001 to 9999, a real calendar day) → days since 1970-01-01.
fn date_days(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&s[..4], 4)?;
    let m = digits(&s[5..7], 2)?;
    let d = digits(&s[8..], 2)?;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => return None,
    };
    if y < 1 || d < 1 || d > days_in_month {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// A date value: `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<i32> {
    date_days(s).map(|d| d as i32)
}

/// A datetime value → milliseconds since 1970-01-01 00:00 (sub-millisecond digits are
/// truncated, as pyarrow's conversion of a Python datetime to `timestamp("ms")`):
/// `YYYY-MM-DD`, then optionally `T` or a space, `HH:MM`, `:SS`, `.f` (1 to 9 digits),
/// and an offset `Z`, `±HH`, `±HH:MM` or `±HHMM`, which is applied (the value is stored
/// as UTC, as pyarrow stores an aware datetime in a zone-less timestamp column).
pub fn parse_datetime_ms(s: &str) -> Option<i64> {
    let days = date_days(s.get(..10)?)?;
    let rest = &s[10..];
    let mut ms = days * 86_400_000;
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // Split off the offset: the first 'Z', '+' or '-' after the time.
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (hms, frac) = match time.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (time, None),
    };
    let mut parts = hms.split(':');
    let h = digits(parts.next()?, 2)?;
    let mi = digits(parts.next()?, 2)?;
    let sec = match parts.next() {
        Some(x) => digits(x, 2)?,
        None if frac.is_none() => 0,
        None => return None,
    };
    if parts.next().is_some() || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    ms += (h * 3600 + mi * 60 + sec) * 1000;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut milli = 0;
        for (i, b) in f.bytes().take(3).enumerate() {
            milli += (b - b'0') as i64 * [100, 10, 1][i];
        }
        ms += milli;
    }
    if let Some(off) = offset {
        let secs = match off {
            "Z" | "z" => 0,
            _ => {
                let sign = if off.starts_with('-') { -1 } else { 1 };
                let o = &off[1..];
                let (oh, om) = match o.len() {
                    2 => (digits(o, 2)?, 0),
                    4 => (digits(&o[..2], 2)?, digits(&o[2..], 2)?),
                    5 if o.as_bytes()[2] == b':' => (digits(&o[..2], 2)?, digits(&o[3..], 2)?),
                    _ => return None,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                sign * (oh * 3600 + om * 60)
            }
        };
        ms -= secs * 1000;
    }
    Some(ms)
}

/// The file sink: hashes what it writes.
pub struct Hashing<W: Write> {
    pub inner: W,
    pub hash: aetherflow_sdk::digest::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Stream the result of `cursor` into `sink` as parquet. Returns the sink (flushed).
pub fn write<W: Write + Send>(
    cursor: &Cursor,
    sink: W,
    opts: &Options<'_>,
) -> Result<(Written, W), Error> {
    let columns: Vec<String> = cursor.columns().iter().map(|c| c.name.clone()).collect();
    let mut rows = Rows {
        cursor,
        fetch_size: opts.fetch_size,
        buf: Vec::new(),
        pos: 0,
        done: false,
    };
    // The dtypes: given, or inferred from the first rows (read ahead, at most 200 plus
    // the rest of the batch that reaches them).
    let mut sampler = DtypeSampler::new(columns.len());
    while rows.buf.len() < DtypeSampler::SAMPLE_ROWS && !rows.done {
        let batch = cursor.next_batch(opts.fetch_size)?;
        if batch.is_empty() {
            rows.done = true;
        }
        rows.buf.extend(batch);
    }
    for r in &rows.buf {
        sampler.observe(r);
    }
    let dtypes = match opts.dtypes {
        Some(m) => m.clone(),
        None => sampler.dtypes(&columns),
    };
    let kinds: Vec<Kind> = columns
        .iter()
        .map(|c| match dtypes.get(c) {
            Some(Value::String(s)) => Kind::of(s),
            Some(Value::Null) | None => Kind::Str,
            Some(other) => Kind::of(&other.to_string()),
        })
        .collect();

    let fields = columns
        .iter()
        .zip(&kinds)
        .map(|(c, k)| k.field(c).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(pq_err)?;
    let schema = Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .map_err(pq_err)?,
    );
    let descr = SchemaDescriptor::new(schema.clone());
    let props: WriterPropertiesPtr = Arc::new(
        WriterProperties::builder()
            .set_compression(opts.compression)
            .build(),
    );
    let mut file = SerializedFileWriter::new(sink, schema, props.clone()).map_err(pq_err)?;
    let mut cols: Vec<Column> = columns
        .iter()
        .zip(&kinds)
        .map(|(name, &kind)| Column {
            name: name.clone(),
            kind,
            values: Values::new(kind),
            defs: Vec::new(),
            text: String::new(),
            warned: false,
        })
        .collect();
    let descrs: Vec<ColumnDescPtr> = (0..descr.num_columns()).map(|i| descr.column(i)).collect();

    let mut total: u64 = 0;
    let mut row_groups = 0;
    while !rows.exhausted()? {
        write_row_group(
            &mut file,
            &mut rows,
            &mut cols,
            &descrs,
            &props,
            opts.row_group_size,
            &mut total,
        )?;
        row_groups += 1;
    }
    let mut sink = file.into_inner().map_err(pq_err)?;
    sink.flush()
        .map_err(|e| Error::io(format!("db_extract_stream: writing parquet failed: {e}")))?;
    Ok((
        Written {
            columns,
            rows: total,
            sampler,
            row_groups,
        },
        sink,
    ))
}

fn write_row_group<W: Write + Send>(
    file: &mut SerializedFileWriter<W>,
    rows: &mut Rows<'_>,
    cols: &mut [Column],
    descrs: &[ColumnDescPtr],
    props: &WriterPropertiesPtr,
    row_group_size: usize,
    total: &mut u64,
) -> Result<(), Error> {
    // One in-memory buffer per column; the column writers encode and compress into them
    // as the rows arrive, and the chunks are spliced into the file when the group ends.
    let mut sinks: Vec<TrackedWrite<Vec<u8>>> = descrs
        .iter()
        .map(|_| TrackedWrite::new(Vec::new()))
        .collect();
    let closed: Vec<ColumnCloseResult> = {
        let mut writers: Vec<Writer<'_>> = sinks
            .iter_mut()
            .zip(descrs)
            .zip(cols.iter())
            .map(|((s, d), c)| {
                let pages = Box::new(SerializedPageWriter::new(s));
                Writer::new(c.kind, d.clone(), props.clone(), pages)
            })
            .collect();
        let mut in_group = 0usize;
        let mut bytes = 0usize;
        while in_group < row_group_size && bytes < ROW_GROUP_BYTES {
            let chunk = rows.next_chunk(row_group_size - in_group)?;
            if chunk.is_empty() {
                break;
            }
            for row in chunk {
                *total += 1;
                in_group += 1;
                for (i, col) in cols.iter_mut().enumerate() {
                    bytes += col.push(row.get(i).unwrap_or(&Cell::Null), *total)?;
                }
            }
            for (col, w) in cols.iter_mut().zip(writers.iter_mut()) {
                col.write(w).map_err(pq_err)?;
            }
        }
        writers
            .into_iter()
            .map(|w| w.close())
            .collect::<Result<_, _>>()
            .map_err(pq_err)?
    };
    let mut group = file.next_row_group().map_err(pq_err)?;
    for (sink, close) in sinks.into_iter().zip(closed) {
        let chunk = Bytes::from(sink.into_inner().map_err(pq_err)?);
        group.append_column(&chunk, close).map_err(pq_err)?;
    }
    group.close().map_err(pq_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19782));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("2024-1-01"), None);
        assert_eq!(parse_date("0000-01-01"), None);
        assert_eq!(parse_date("infinity"), None);
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01"), Some(0));
        assert_eq!(parse_datetime_ms("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01.5"), Some(1500));
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01.123456"), Some(1123));
        assert_eq!(parse_datetime_ms("1970-01-01 01:00"), Some(3_600_000));
        assert_eq!(parse_datetime_ms("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(parse_datetime_ms("1970-01-01 00:00:00Z"), Some(0));
        assert_eq!(
            parse_datetime_ms("1970-01-01 00:00:00-0130"),
            Some(5_400_000)
        );
        assert_eq!(parse_datetime_ms("1969-12-31 23:59:59.999"), Some(-1));
        assert_eq!(parse_datetime_ms("2024-01-02 24:00:00"), None);
        assert_eq!(parse_datetime_ms("2024-01-02 03:04:05."), None);
        assert_eq!(parse_datetime_ms("2024-01-02x03:04:05"), None);
        assert_eq!(parse_datetime_ms("2024-01-02 03:04:05+5"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(to_int(&Cell::Text(" 42 ".into())), Some(42));
        assert_eq!(to_int(&Cell::Decimal("42.00".into())), Some(42));
        assert_eq!(to_int(&Cell::Decimal("42.5".into())), None);
        assert_eq!(to_int(&Cell::Real(3.0)), Some(3));
        assert_eq!(to_int(&Cell::Real(3.5)), None);
        assert_eq!(to_int(&Cell::Real(9.3e18)), None);
        assert_eq!(to_float(&Cell::Text("1e3".into())), Some(1000.0));
        assert_eq!(to_float(&Cell::Text("abc".into())), None);
        assert_eq!(to_bool(&Cell::Integer(2)), None);
        assert_eq!(to_bool(&Cell::Text("Yes".into())), Some(true));
    }
}
