//! Throughput of a large SQLite extract: our engine against the Python reference and a
//! plain native Rust program doing the same extract, in one run.
//!
//! Run with `cargo bench -p aetherflow --bench extract`. It is a benchmark, not a timed
//! test: it prints figures and PASS/MISS per target and never fails on a missed target.
//!
//! A SQLite table of `ROWS` rows (ints, text, reals, dates, some NULLs) is written once.
//! Then, for tsv (`db_extract`) and csv (`db_extract_stream`, when this build has it):
//!
//! - ours: `aetherflow run` of a one-step flow (median of `RUNS` runs, warm component cache);
//! - the reference: `python -m aetherflow.core.cli run` of the same flow, if installed;
//! - native: this bench itself reading the table with rusqlite and writing the same file
//!   through a `BufWriter`, hashing it for csv as `db_extract_stream` does (the price of
//!   the sandbox is ours / native).
//!
//! Memory must be flat in the number of rows: our peak RSS for `ROWS` rows is compared with
//! the peak for `ROWS / 10` rows.

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;

const ROWS: usize = 1_000_000;
const RUNS: usize = 3;
const TARGET_VS_REFERENCE: f64 = 5.0;
const TARGET_VS_NATIVE: f64 = 1.3;
const TARGET_RSS_GROWTH: f64 = 1.25;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "extract bench: skipped (run it with `cargo bench -p aetherflow --bench extract`)"
        );
        return;
    }
    let ours = our_binary();
    let reference = find_reference(&ours);
    let tmp = tempfile::Builder::new()
        .prefix("aetherflow-extract-bench-")
        .tempdir()
        .expect("cannot create a temporary directory");
    let root = tmp.path();
    println!("extract bench: ours      = {}", ours.display());
    if let Some(r) = &reference {
        println!("extract bench: reference = {}", r.describe());
    }
    println!("extract bench: scratch   = {}", root.display());

    let big = root.join("sales-big.sqlite");
    let small = root.join("sales-small.sqlite");
    eprint!("extract bench: writing {ROWS} rows ...");
    make_db(&big, ROWS);
    make_db(&small, ROWS / 10);
    eprintln!(" done");

    let cache = root.join("cache");
    let env_ours: Vec<(&'static str, OsString)> = vec![
        ("AETHERFLOW_LOG_LEVEL", "WARNING".into()),
        ("AETHERFLOW_STATE_SYNC", "normal".into()),
        ("AETHERFLOW_CACHE_DIR", cache.into_os_string()),
    ];
    let env_ref: Vec<(&'static str, OsString)> = vec![("AETHERFLOW_LOG_LEVEL", "WARNING".into())];

    let mut table = Table::default();
    for format in [Format::Tsv, Format::Csv] {
        let big_flow = Extract::new(root, format, &big, "big");
        let small_flow = Extract::new(root, format, &small, "small");
        if !big_flow.supported(&ours) {
            println!(
                "\nextract bench: {} skipped: this build has no `{}` step",
                format.name(),
                format.step()
            );
            continue;
        }
        eprint!("extract bench: {} ours ...", format.name());
        let _ = big_flow.run_ours(&ours, &env_ours); // warm the component cache
        let ours_runs = repeat(RUNS, || big_flow.run_ours(&ours, &env_ours));
        let small_runs = repeat(RUNS, || small_flow.run_ours(&ours, &env_ours));
        let out_bytes = big_flow.output_bytes();
        eprint!(" native ...");
        let native_runs = repeat(RUNS, || big_flow.run_native(&big));
        let native_bytes = std::fs::metadata(big_flow.native_output())
            .map(|m| m.len())
            .unwrap_or(0);
        let ref_runs = reference.as_ref().map(|r| {
            eprint!(" reference ...");
            repeat(1, || big_flow.run_reference(r, &env_ref))
        });
        eprintln!(" done");

        let secs = |r: &Runs| r.median_ms() / 1e3;
        let o = secs(&ours_runs);
        let n = secs(&native_runs);
        let rf = ref_runs.as_ref().map(secs);
        let mb = out_bytes as f64 / 1e6;
        println!(
            "\n{}: ours {:.2} s ({:.0} rows/s, {:.0} MB/s, CPU {:.2} s, peak RSS {:.1} MB), native {:.2} s ({:.0} rows/s, {:.0} MB/s){}",
            format.name(),
            o,
            ROWS as f64 / o,
            mb / o,
            ours_runs.median_cpu_ms() / 1e3,
            ours_runs.max_rss_mb(),
            n,
            ROWS as f64 / n,
            native_bytes as f64 / 1e6 / n,
            match rf {
                Some(r) => format!(
                    ", reference {:.2} s ({:.0} rows/s, {:.0} MB/s)",
                    r,
                    ROWS as f64 / r,
                    mb / r
                ),
                None => String::new(),
            }
        );
        if out_bytes != native_bytes {
            println!(
                "{}: NOTE our file has {out_bytes} bytes, the native one {native_bytes}",
                format.name()
            );
        }
        let f = format.name();
        table.row(
            &format!("{f}: rows/s, ours vs reference"),
            Some(ROWS as f64 / o),
            rf.map(|r| ROWS as f64 / r),
            Ratio::None,
            format!(">= {TARGET_VS_REFERENCE}x reference"),
            rf.map(|r| r / o >= TARGET_VS_REFERENCE),
        );
        table.row(
            &format!("{f}: time ours / native"),
            Some(o / n),
            None,
            Ratio::None,
            format!("<= {TARGET_VS_NATIVE}"),
            Some(o / n <= TARGET_VS_NATIVE),
        );
        let growth = ours_runs.max_rss_mb() / small_runs.max_rss_mb();
        table.row(
            &format!(
                "{f}: peak RSS {}k rows / {}k rows",
                ROWS / 1000,
                ROWS / 10_000
            ),
            Some(growth),
            None,
            Ratio::None,
            format!("<= {TARGET_RSS_GROWTH} (flat)"),
            Some(growth <= TARGET_RSS_GROWTH),
        );
    }
    println!();
    table.print(reference.is_some());
}

#[derive(Clone, Copy)]
enum Format {
    Tsv,
    Csv,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Tsv => "tsv",
            Format::Csv => "csv",
        }
    }
    fn step(self) -> &'static str {
        match self {
            Format::Tsv => "db_extract",
            Format::Csv => "db_extract_stream",
        }
    }
}

const QUERY: &str = "SELECT id, region, amount, sold_on, note FROM sales ORDER BY id";

fn make_db(path: &Path, rows: usize) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE sales(id INTEGER PRIMARY KEY, region TEXT, amount REAL, sold_on TEXT, note TEXT);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut ins = tx
            .prepare("INSERT INTO sales VALUES(?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        let regions = ["north", "south", "east", "west", "Zürich"];
        for i in 0..rows {
            let note: Option<String> = (i % 7 != 0).then(|| format!("order {i} ok"));
            ins.execute(rusqlite::params![
                i as i64 + 1,
                regions[i % regions.len()],
                // Binary fractions, so every float formats the same in Python and Rust.
                (i % 100_000) as f64 / 4.0,
                format!("2026-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
                note,
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// One extract flow over one database.
struct Extract {
    dir: PathBuf,
    yaml: PathBuf,
    format: Format,
}

impl Extract {
    fn new(root: &Path, format: Format, db: &Path, tag: &str) -> Extract {
        let dir = root.join(format!("{}-{tag}", format.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let inputs = match format {
            Format::Tsv => "format: tsv".to_string(),
            Format::Csv => "format: csv".to_string(),
        };
        let yaml = format!(
            "version: 1\nflow:\n  id: extract\n  workspace: {{root: {work}, cleanup_policy: never}}\n  state: {{path: {state}}}\nresources:\n  sales: {{kind: db, driver: sqlite3, config: {{path: {db}}}}}\njobs:\n  - id: j\n    steps:\n      - id: x\n        type: {step}\n        inputs: {{resource: sales, sql: \"{QUERY}\", output: out/sales.{ext}, {inputs}}}\n",
            work = dir.join("work").display(),
            state = dir.join("state.sqlite").display(),
            db = db.display(),
            step = format.step(),
            ext = format.name(),
        );
        let path = dir.join("flow.yaml");
        std::fs::write(&path, yaml).unwrap();
        Extract {
            dir,
            yaml: path,
            format,
        }
    }

    fn reset(&self) {
        let _ = std::fs::remove_dir_all(self.dir.join("work"));
        for f in ["state.sqlite", "state.sqlite-wal", "state.sqlite-shm"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
    }

    /// Whether our binary knows the step (`validate` passes).
    fn supported(&self, ours: &Path) -> bool {
        std::process::Command::new(ours)
            .arg("validate")
            .arg(&self.yaml)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn run_ours(&self, bin: &Path, env: &[(&'static str, OsString)]) -> Sample {
        self.reset();
        let mut c = std::process::Command::new(bin);
        c.arg("run").arg(&self.yaml).current_dir(&self.dir);
        scrubbed(&mut c, env);
        run_cmd(&c, &self.dir.join("last-run.log"))
    }

    fn run_reference(&self, r: &Reference, env: &[(&'static str, OsString)]) -> Sample {
        self.reset();
        run_cmd(
            &r.cmd(&self.yaml, &self.dir, env),
            &self.dir.join("last-run.log"),
        )
    }

    /// Size of the file the last run of ours or the reference wrote.
    fn output_bytes(&self) -> u64 {
        let name = format!("sales.{}", self.format.name());
        find_file(&self.dir.join("work"), &name)
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    fn native_output(&self) -> PathBuf {
        self.dir.join(format!("native.{}", self.format.name()))
    }

    /// The same extract as plain Rust: rusqlite rows written through a `BufWriter`, values
    /// formatted as Python's `str()` would for this data.
    fn run_native(&self, db: &Path) -> Sample {
        let t0 = Instant::now();
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare(QUERY).unwrap();
        let cols: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
        let tmp = self.native_output().with_extension("tmp");
        // db_extract_stream's outputs include the file's sha256, so the native csv
        // extract hashes what it writes too (db_extract, the tsv one, does not hash).
        let mut w = BufWriter::with_capacity(
            1 << 16,
            Hashing {
                file: File::create(&tmp).unwrap(),
                hash: matches!(self.format, Format::Csv).then(<sha2::Sha256 as sha2::Digest>::new),
            },
        );
        let sep = match self.format {
            Format::Tsv => b'\t',
            Format::Csv => b',',
        };
        w.write_all(cols.join(if sep == b'\t' { "\t" } else { "," }).as_bytes())
            .unwrap();
        w.write_all(b"\n").unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut field = String::new();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..cols.len() {
                if i > 0 {
                    w.write_all(&[sep]).unwrap();
                }
                field.clear();
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => {}
                    rusqlite::types::ValueRef::Integer(v) => {
                        use std::fmt::Write as _;
                        let _ = write!(field, "{v}");
                    }
                    rusqlite::types::ValueRef::Real(v) => {
                        use std::fmt::Write as _;
                        if v.fract() == 0.0 && v.abs() < 1e16 {
                            let _ = write!(field, "{v:.1}");
                        } else {
                            let _ = write!(field, "{v}");
                        }
                    }
                    rusqlite::types::ValueRef::Text(t) => {
                        field.push_str(std::str::from_utf8(t).unwrap())
                    }
                    rusqlite::types::ValueRef::Blob(_) => field.push_str("<blob>"),
                }
                match self.format {
                    Format::Csv if field.contains([',', '"', '\n', '\r']) => {
                        w.write_all(b"\"").unwrap();
                        w.write_all(field.replace('"', "\"\"").as_bytes()).unwrap();
                        w.write_all(b"\"").unwrap();
                    }
                    _ => w.write_all(field.as_bytes()).unwrap(),
                }
            }
            w.write_all(b"\n").unwrap();
        }
        let sink = w.into_inner().unwrap_or_else(|_| panic!("flush failed"));
        if let Some(h) = sink.hash {
            use sha2::Digest as _;
            std::hint::black_box(h.finalize());
        }
        std::fs::rename(&tmp, self.native_output()).unwrap();
        let wall = t0.elapsed();
        Sample {
            wall,
            cpu: wall,
            maxrss_kb: 0,
            ok: true,
        }
    }
}

/// A file that hashes what is written to it (when `hash` is set).
struct Hashing {
    file: File,
    hash: Option<sha2::Sha256>,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hash {
            sha2::Digest::update(h, &buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}
