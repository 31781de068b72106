//! `db_extract_stream` with `format: parquet` on real SQLite, read back with the
//! `parquet` crate's own reader (a code path of its own, independent of the writer the step
//! uses): the schema from the dtypes (given or inferred), values, nulls (`""` and NULL in a
//! typed column are null, `""` stays in a string column), row groups, compression, the
//! sha256 output, clear failures that leave no file, and memory bounded by one row group.
//! Postgres' typed values: `db_postgres.rs`; the chain example: `examples.rs`.

use std::path::Path;

use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::{json, Value};

use crate::harness::{header, Test};

/// A parquet file as the tests look at it.
pub struct Parquet {
    /// `name: PHYSICAL [logical]`, e.g. `day: INT32 Date`.
    pub schema: Vec<String>,
    /// Whether every column is OPTIONAL (nullable).
    pub all_optional: bool,
    pub row_groups: Vec<i64>,
    /// Every column chunk's codec.
    pub codecs: Vec<Compression>,
    pub rows: Vec<Vec<Field>>,
}

pub fn read_parquet(path: &Path) -> Parquet {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = SerializedFileReader::new(file).unwrap();
    let meta = reader.metadata();
    let descr = meta.file_metadata().schema_descr();
    let schema = (0..descr.num_columns())
        .map(|i| {
            let c = descr.column(i);
            let logical = match c.logical_type_ref() {
                None => String::new(),
                Some(parquet::basic::LogicalType::Timestamp(t)) => {
                    format!(" Timestamp({:?}, utc={})", t.unit, t.is_adjusted_to_u_t_c)
                }
                Some(l) => format!(" {l:?}"),
            };
            format!("{}: {}{logical}", c.name(), c.physical_type())
        })
        .collect();
    let all_optional = (0..descr.num_columns()).all(|i| {
        descr.column(i).self_type().get_basic_info().repetition()
            == parquet::basic::Repetition::OPTIONAL
    });
    let row_groups = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    let codecs = meta
        .row_groups()
        .iter()
        .flat_map(|g| g.columns().iter().map(|c| c.compression()))
        .collect();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| {
            r.unwrap()
                .get_column_iter()
                .map(|(_, f)| f.clone())
                .collect()
        })
        .collect();
    Parquet {
        schema,
        all_optional,
        row_groups,
        codecs,
        rows,
    }
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The outputs of a step from `runs show --json`.
pub fn step_outputs(t: &Test, run: &str, job: &str, step: &str) -> Value {
    let out = t.run_args(&["runs", "show", run, "--state", "state.sqlite", "--json"]);
    out.status(0);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    crate::harness::report_step(&v, job, step)["outputs"].clone()
}

/// The db golden fixture (`awkward`) plus a table of blanks in typed columns.
fn fixture(t: &Test) {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/db/fixture.sql");
    let conn = rusqlite::Connection::open(t.path("fixture.sqlite")).unwrap();
    conn.execute_batch(&std::fs::read_to_string(golden).unwrap())
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE blanks (k INTEGER PRIMARY KEY, i INTEGER, s TEXT, f REAL, b INTEGER, d TEXT);
         INSERT INTO blanks VALUES
           (1, 1, 'a', 1.5, 1, '2024-01-01'),
           (2, '', '', '', '', ''),
           (3, NULL, NULL, NULL, NULL, NULL),
           (4, ' 42 ', 'x', '2.5', 'true', '1970-01-01');",
    )
    .unwrap();
}

fn db_resource() -> &'static str {
    "resources:\n  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/fixture.sqlite\"}}\n"
}

fn s(v: &str) -> Field {
    Field::Str(v.into())
}

#[test]
fn parquet_types_values_nulls_and_row_groups() {
    let flow = header("pq")
        + db_resource()
        + r#"jobs:
  - id: j
    steps:
      - id: inferred
        type: db_extract_stream
        inputs: {resource: db, sql: "SELECT id, name, amount, big, flag FROM awkward ORDER BY id", output: out/inferred.parquet, format: parquet, fetch_size: 4, emit_dtypes: true}
      - id: declared
        type: db_extract_stream
        inputs:
          resource: db
          sql: "SELECT id, name, amount, day, ts, flag FROM awkward ORDER BY id"
          output: declared.parquet
          format: PARQUET
          fetch_size: 3
          row_group_size: 5
          compression: none
          dtypes_json: '{"id": "int", "amount": "FLOAT", "day": "date", "ts": "datetime", "flag": "bool"}'
      - id: blanks
        type: db_extract_stream
        inputs:
          resource: db
          sql: "SELECT i, s, f, b, d FROM blanks ORDER BY k"
          output: blanks.parquet
          format: parquet
          compression: lz4
          dtypes: {i: int, s: string, f: float, b: bool, d: date}
"#;
    let t = Test::new().flow(&flow);
    fixture(&t);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    let arts = t.path("work/pq/j/r1/artifacts");

    // Inferred dtypes (first non-null value of each column); several fetches, one row group.
    let p = read_parquet(&arts.join("out/inferred.parquet"));
    assert_eq!(
        p.schema,
        [
            "id: INT64",
            "name: BYTE_ARRAY String",
            "amount: DOUBLE",
            "big: INT64",
            "flag: INT64"
        ]
    );
    assert!(p.all_optional);
    assert_eq!(p.row_groups, [13]);
    assert!(
        p.codecs.iter().all(|c| *c == Compression::SNAPPY),
        "{:?}",
        p.codecs
    );
    assert_eq!(p.rows.len(), 13);
    assert_eq!(
        p.rows[0],
        [
            Field::Long(1),
            s("plain"),
            Field::Double(0.1),
            Field::Long(i64::MAX),
            Field::Long(1)
        ]
    );
    assert_eq!(
        p.rows[1],
        [
            Field::Long(2),
            s("héllo wörld ✓ 日本 😀"),
            Field::Double(1e20),
            Field::Long(i64::MIN),
            Field::Long(0)
        ]
    );
    // "" stays in a string column; NULL is null everywhere.
    assert_eq!(
        p.rows[5],
        [
            Field::Long(6),
            s(""),
            Field::Double(3.0),
            Field::Null,
            Field::Long(0)
        ]
    );
    assert_eq!(
        p.rows[6],
        [
            Field::Long(7),
            Field::Null,
            Field::Null,
            Field::Null,
            Field::Null
        ]
    );
    assert_eq!(p.rows[3][1], s("line1\nline2\r\nline3"));
    assert_eq!(p.rows[9][2], Field::Double(f64::INFINITY));
    assert_eq!(p.rows[10][2], Field::Double(f64::NEG_INFINITY));
    let o = step_outputs(&t, "r1", "j", "inferred");
    assert_eq!(o["format"], "parquet");
    assert_eq!(o["row_count"], 13);
    assert_eq!(o["columns"], json!(["id", "name", "amount", "big", "flag"]));
    assert_eq!(
        o["dtypes"],
        json!({"id": "int", "name": "string", "amount": "float", "big": "int", "flag": "int"})
    );
    assert_eq!(
        o["artifact_path"],
        arts.join("out/inferred.parquet").to_string_lossy().as_ref()
    );
    assert_eq!(o["sha256"], sha256_file(&arts.join("out/inferred.parquet")));

    // Declared dtypes (a JSON text, any case; unlisted columns are strings): dates and
    // datetimes parsed from SQLite's text, "" null in typed columns, row groups of 5.
    let p = read_parquet(&arts.join("declared.parquet"));
    assert_eq!(
        p.schema,
        [
            "id: INT64",
            "name: BYTE_ARRAY String",
            "amount: DOUBLE",
            "day: INT32 Date",
            "ts: INT64 Timestamp(MILLIS, utc=false)",
            "flag: BOOLEAN"
        ]
    );
    assert_eq!(p.row_groups, [5, 5, 3]);
    assert!(
        p.codecs.iter().all(|c| *c == Compression::UNCOMPRESSED),
        "{:?}",
        p.codecs
    );
    assert_eq!(
        p.rows[0],
        [
            Field::Long(1),
            s("plain"),
            Field::Double(0.1),
            Field::Date(19782),                    // 2024-02-29
            Field::TimestampMillis(1704164645000), // 2024-01-02 03:04:05
            Field::Bool(true)
        ]
    );
    // 2000-01-01T00:00:00.123456: the microseconds are truncated, as pyarrow does.
    assert_eq!(p.rows[1][3], Field::Date(10956));
    assert_eq!(p.rows[1][4], Field::TimestampMillis(946684800123));
    assert_eq!(p.rows[1][5], Field::Bool(false));
    assert_eq!(
        p.rows[5],
        [
            Field::Long(6),
            s(""),
            Field::Double(3.0),
            Field::Null,
            Field::Null,
            Field::Bool(false)
        ]
    );
    assert_eq!(p.rows[12][0], Field::Long(13));
    let o = step_outputs(&t, "r1", "j", "declared");
    assert_eq!(o["row_count"], 13);
    assert_eq!(o["sha256"], sha256_file(&arts.join("declared.parquet")));
    assert!(o.get("dtypes").is_none(), "no emit_dtypes: {o}");

    // Blanks and numbers stored as text in typed columns; lz4 (LZ4_RAW, as pyarrow's lz4).
    let p = read_parquet(&arts.join("blanks.parquet"));
    assert!(
        p.codecs.iter().all(|c| *c == Compression::LZ4_RAW),
        "{:?}",
        p.codecs
    );
    assert_eq!(
        p.schema,
        [
            "i: INT64",
            "s: BYTE_ARRAY String",
            "f: DOUBLE",
            "b: BOOLEAN",
            "d: INT32 Date"
        ]
    );
    assert_eq!(
        p.rows,
        [
            vec![
                Field::Long(1),
                s("a"),
                Field::Double(1.5),
                Field::Bool(true),
                Field::Date(19723)
            ],
            vec![Field::Null, s(""), Field::Null, Field::Null, Field::Null],
            vec![Field::Null; 5],
            vec![
                Field::Long(42),
                s("x"),
                Field::Double(2.5),
                Field::Bool(true),
                Field::Date(0)
            ],
        ]
    );
}

#[test]
fn parquet_failures_name_column_row_and_value_and_leave_no_file() {
    let flow = header("pqerr")
        + db_resource()
        + r#"jobs:
  - id: a
    steps:
      - id: baddate
        type: db_extract_stream
        inputs: {resource: db, sql: "SELECT id, CASE id WHEN 9 THEN '2024-02-30' ELSE day END AS day FROM awkward ORDER BY id", output: bad.parquet, format: parquet, dtypes: {day: date}, row_group_size: 2, fetch_size: 1}
  - id: b
    steps:
      - {id: badts, type: db_extract_stream, inputs: {resource: db, sql: "SELECT '2024-01-02 25:00:00' AS ts", output: ts.parquet, format: parquet, dtypes: {ts: datetime}}}
  - id: c
    steps:
      - {id: badint, type: db_extract_stream, inputs: {resource: db, sql: "SELECT 1 AS k, 'x1' AS n", output: n.parquet, format: parquet, dtypes: {n: int}}}
  - id: d
    steps:
      - {id: blob, type: db_extract_stream, inputs: {resource: db, sql: "SELECT id, data FROM awkward ORDER BY id", output: blob.parquet, format: parquet}}
  - id: e
    steps:
      - {id: codec, type: db_extract_stream, inputs: {resource: db, sql: "SELECT 1", output: c.parquet, format: parquet, compression: lzo}}
  - id: f
    steps:
      - {id: csvcodec, type: db_extract_stream, inputs: {resource: db, sql: "SELECT 1", output: c.csv, format: csv, compression: none}}
"#;
    let t = Test::new().flow(&flow);
    fixture(&t);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "e1"]);
    out.status(1);
    assert_eq!(
        out.step_error("baddate"),
        "db_extract_stream: column \"day\" row 9: cannot write \"2024-02-30\" as date (YYYY-MM-DD is expected)"
    );
    let e = out.step_error("badts");
    assert!(
        e.contains("column \"ts\" row 1: cannot write \"2024-01-02 25:00:00\" as datetime"),
        "{e}"
    );
    assert_eq!(
        out.step_error("badint"),
        "db_extract_stream: column \"n\" row 1: cannot write \"x1\" as int (an integer is expected)"
    );
    let e = out.step_error("blob");
    assert!(
        e.contains("column \"data\" row 1: cannot write b\"\\x00\\xff'\" as string")
            && e.contains("not UTF-8"),
        "{e}"
    );
    let e = out.step_error("codec");
    assert!(e.contains("unsupported parquet compression \"lzo\""), "{e}");
    let e = out.step_error("csvcodec");
    assert!(
        e.contains("compression applies to format parquet only"),
        "{e}"
    );
    // Four row groups were written before row 9 failed: neither the file nor its temp file
    // is left.
    for (job, f) in [
        ("a", "bad.parquet"),
        ("b", "ts.parquet"),
        ("c", "n.parquet"),
        ("d", "blob.parquet"),
    ] {
        let dir = t.path(&format!("work/pqerr/{job}/e1/artifacts"));
        for name in [f.to_string(), format!("{f}.tmp")] {
            assert!(!dir.join(&name).exists(), "{name} left behind");
        }
    }
}

/// 300,000 rows of ~110 bytes (33 MB of values, incompressible hex) under a 24 MiB memory
/// cap: with row groups of 20,000 rows the step streams them; the same rows in one row
/// group (the default size) exceed the cap, so the cap is real and memory follows the row
/// group, not the result.
#[test]
fn parquet_memory_is_bounded_by_the_row_group() {
    let t = Test::new();
    let conn = rusqlite::Connection::open(t.path("big.sqlite")).unwrap();
    conn.execute_batch(
        "CREATE TABLE big (n INTEGER, h TEXT);
         INSERT INTO big WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 300000)
           SELECT n, hex(randomblob(50)) FROM g;",
    )
    .unwrap();
    drop(conn);
    let flow = |rgs: &str| {
        header("pqbig")
            + "resources:\n  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/big.sqlite\"}}\n"
            + &format!(
                "jobs:\n  - id: j\n    steps:\n      - {{id: x, type: db_extract_stream, inputs: {{resource: db, sql: \"SELECT n, h FROM big ORDER BY n\", output: big.parquet, format: parquet, fetch_size: 1000{rgs}}}}}\n"
            )
    };
    t.write("small-groups.yaml", &flow(", row_group_size: 20000"));
    t.write("one-group.yaml", &flow(""));
    let t = t.env("AETHERFLOW_STEP_MEMORY_MB", "24");

    t.run_args(&["run", "small-groups.yaml", "--run-id", "s1"])
        .status(0);
    let path = t.path("work/pqbig/j/s1/artifacts/big.parquet");
    let p = read_parquet(&path);
    assert_eq!(p.schema, ["n: INT64", "h: BYTE_ARRAY String"]);
    assert_eq!(p.row_groups, vec![20_000; 15]);
    assert_eq!(p.rows.len(), 300_000);
    assert_eq!(p.rows[0][0], Field::Long(1));
    assert_eq!(p.rows[299_999][0], Field::Long(300_000));
    assert!(
        p.rows
            .iter()
            .all(|r| matches!(&r[1], Field::Str(h) if h.len() == 100)),
        "every h is 100 hex digits"
    );
    let o = step_outputs(&t, "s1", "j", "x");
    assert_eq!(o["row_count"], 300_000);
    assert_eq!(o["sha256"], sha256_file(&path));

    let out = t.run_args(&["run", "one-group.yaml", "--run-id", "o1"]);
    out.status(1);
    let e = out.step_error("x");
    assert!(e.contains("exceeded its memory limit of 24 MiB"), "{e}");
    // Killed by the sandbox, the step could not remove its temp file, but nothing is left
    // under the final name.
    assert!(!t.path("work/pqbig/j/o1/artifacts/big.parquet").exists());
}
