//! End-to-end benchmark of `aetherflow run` against the Python reference (aetherflow-core).
//!
//! Run with `cargo bench -p aetherflow --bench engine`. It is a benchmark, not a timed test:
//! it prints figures and PASS/MISS per target and never fails because a target is missed.
//!
//! What it measures, in one run (flows are generated in a temporary directory):
//!
//! - wall time of a 500-step `check_items` flow and of a 1-step flow, with
//!   `AETHERFLOW_STATE_SYNC=normal` and `=full` (warm component cache); time per step is
//!   `(t500 - t1) / 499` (medians);
//! - cold start: wall time of the 1-step flow with a warm component cache and with an empty
//!   one (median of `RUNS_1` runs each);
//! - peak RSS of every run, from `wait4(2)`'s `ru_maxrss` of that very child;
//! - fsyncs per step (`strace -f -c -e trace=fsync,fdatasync`), if strace is installed;
//! - the same for the reference (`python3 -m aetherflow.core.cli run --flow-yaml F`), if it is
//!   installed; otherwise its column is skipped with a loud notice.
//!
//! Every run gets a fresh state database and workspace, so runs are comparable.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// Steps in the long flow.
const STEPS: usize = 500;
/// Runs of the 500-step flow (ours / reference). Nine, not five: a step costs about
/// 0.08 ms here, so one burst of load on the host during a block of five runs was enough
/// to move the median across the 0.1 ms target.
const RUNS_500: usize = 9;
const RUNS_500_REF: usize = 3;
/// Runs of the 1-step flow (cold start), each configuration.
const RUNS_1: usize = 10;

// Targets (from the issue).
const TARGET_STEP_MS: f64 = 0.1;
const TARGET_COLD_WARM_MS: f64 = 15.0;
const TARGET_RSS_MB: f64 = 25.0;
/// "Exactly one fsync per step": SQLite's periodic WAL checkpoint adds a few amortised
/// fsyncs per run; up to this much above 1.0 per step counts as one.
const FSYNC_TOLERANCE: f64 = 0.05;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` / `--all-targets` does not:
    // do not spend minutes there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine bench: skipped (run it with `cargo bench -p aetherflow --bench engine`)");
        return;
    }
    let ours = our_binary();
    let reference = find_reference(&ours);
    let strace = find_strace();
    let tmp = tempfile::Builder::new()
        .prefix("aetherflow-bench-")
        .tempdir()
        .expect("cannot create a temporary directory");
    let root = tmp.path();
    println!("engine bench: ours      = {}", ours.display());
    if let Some(r) = &reference {
        println!("engine bench: reference = {}", r.describe());
    }
    println!("engine bench: scratch   = {}", root.display());
    println!();

    let warm_cache = root.join("cache-warm");
    let env_ours = |sync: &str, cache: &Path| -> Vec<(&'static str, OsString)> {
        vec![
            ("AETHERFLOW_LOG_LEVEL", "WARNING".into()),
            ("AETHERFLOW_STATE_SYNC", sync.into()),
            ("AETHERFLOW_CACHE_DIR", cache.as_os_str().to_owned()),
        ]
    };

    // ---- ours -------------------------------------------------------------------------
    let f1n = Flow::new(root, "ours-1-normal", 1);
    let f1f = Flow::new(root, "ours-1-full", 1);
    let f500n = Flow::new(root, "ours-500-normal", STEPS);
    let f500f = Flow::new(root, "ours-500-full", STEPS);
    let f1c = Flow::new(root, "ours-1-coldcache", 1);

    // Warm the component cache (and the page cache for the binary) once.
    let warmup = run(&ours_cmd(&ours, &f1f, &env_ours("full", &warm_cache)), &f1f);
    if !warmup.ok {
        eprintln!("engine bench: our engine failed on the 1-step flow; aborting");
        std::process::exit(1);
    }

    eprint!("engine bench: ours 1-step (warm cache) ...");
    let o1n = repeat(RUNS_1, || {
        run(
            &ours_cmd(&ours, &f1n, &env_ours("normal", &warm_cache)),
            &f1n,
        )
    });
    let o1f = repeat(RUNS_1, || {
        run(&ours_cmd(&ours, &f1f, &env_ours("full", &warm_cache)), &f1f)
    });
    eprint!(" 1-step (cold cache) ...");
    let mut cold_n = 0;
    let o1c = repeat(RUNS_1, || {
        cold_n += 1;
        let cache = root.join(format!("cache-cold-{cold_n}"));
        let s = run(&ours_cmd(&ours, &f1c, &env_ours("full", &cache)), &f1c);
        let _ = std::fs::remove_dir_all(&cache);
        s
    });
    eprint!(" 500-step normal ...");
    let o500n = repeat(RUNS_500, || {
        run(
            &ours_cmd(&ours, &f500n, &env_ours("normal", &warm_cache)),
            &f500n,
        )
    });
    eprint!(" 500-step full ...");
    let o500f = repeat(RUNS_500, || {
        run(
            &ours_cmd(&ours, &f500f, &env_ours("full", &warm_cache)),
            &f500f,
        )
    });
    eprintln!(" done");

    // fsyncs: (n500 - n1) / 499 in each mode.
    let fsync_ours = strace.as_ref().map(|st| {
        let count = |f: &Flow, sync: &str| {
            f.reset();
            fsync_count(st, &ours_cmd(&ours, f, &env_ours(sync, &warm_cache)), f)
        };
        (
            (count(&f500f, "full"), count(&f1f, "full")),
            (count(&f500n, "normal"), count(&f1n, "normal")),
        )
    });

    // ---- reference --------------------------------------------------------------------
    let refr = reference.as_ref().map(|r| {
        let env_ref = vec![("AETHERFLOW_LOG_LEVEL", OsString::from("WARNING"))];
        let r1 = Flow::new(root, "ref-1", 1);
        let r500 = Flow::new(root, "ref-500", STEPS);
        let _ = run(&ref_cmd(r, &r1, &env_ref), &r1); // page cache, .pyc
        eprint!("engine bench: reference 1-step ...");
        let t1 = repeat(RUNS_1, || run(&ref_cmd(r, &r1, &env_ref), &r1));
        eprint!(" 500-step ...");
        let t500 = repeat(RUNS_500_REF, || run(&ref_cmd(r, &r500, &env_ref), &r500));
        eprintln!(" done");
        let fs = strace.as_ref().map(|st| {
            r500.reset();
            let a = fsync_count(st, &ref_cmd(r, &r500, &env_ref), &r500);
            r1.reset();
            let b = fsync_count(st, &ref_cmd(r, &r1, &env_ref), &r1);
            (a, b)
        });
        (t1, t500, fs)
    });

    // ---- report -----------------------------------------------------------------------
    let per_step =
        |t500: &Runs, t1: &Runs| (t500.median_ms() - t1.median_ms()) / (STEPS as f64 - 1.0);
    let step_n = per_step(&o500n, &o1n);
    let cpu_step =
        |t500: &Runs, t1: &Runs| (t500.median_cpu_ms() - t1.median_cpu_ms()) / (STEPS as f64 - 1.0);
    let cpu_n = cpu_step(&o500n, &o1n);
    let cpu_f = cpu_step(&o500f, &o1f);
    let ref_cpu = refr.as_ref().map(|(t1, t500, _)| cpu_step(t500, t1));
    let step_f = per_step(&o500f, &o1f);
    let ref_step = refr.as_ref().map(|(t1, t500, _)| per_step(t500, t1));
    let ref_cold = refr.as_ref().map(|(t1, _, _)| t1.median_ms());
    let ref_rss = refr
        .as_ref()
        .map(|(t1, t500, _)| t1.max_rss_mb().max(t500.max_rss_mb()));
    let per =
        |pair: Option<(u64, u64)>| pair.map(|(a, b)| (a as f64 - b as f64) / (STEPS as f64 - 1.0));
    let fs_full = fsync_ours.and_then(|((a, b), _)| per(a.zip(b)));
    let fs_norm = fsync_ours.and_then(|(_, (a, b))| per(a.zip(b)));
    let fs_ref = refr
        .as_ref()
        .and_then(|(_, _, fs)| fs.and_then(|(a, b)| per(a.zip(b))));
    let rss_warm = o1n
        .max_rss_mb()
        .max(o1f.max_rss_mb())
        .max(o500n.max_rss_mb())
        .max(o500f.max_rss_mb());

    println!();
    println!("Raw wall times (median / min / max over runs, ms), CPU time (median, ms) and peak RSS (max, MB):");
    let raw = |name: &str, r: &Runs| {
        println!(
            "  {name:<34} {:>9.1} / {:>9.1} / {:>9.1}   cpu {:>8.1}   {:>6.1} MB   ({} runs{})",
            r.median_ms(),
            r.min_ms(),
            r.max_ms(),
            r.median_cpu_ms(),
            r.max_rss_mb(),
            r.samples.len(),
            if r.failures > 0 {
                format!(", {} FAILED", r.failures)
            } else {
                String::new()
            }
        )
    };
    raw("ours 1-step, normal, warm cache", &o1n);
    raw("ours 1-step, full, warm cache", &o1f);
    raw("ours 1-step, full, cold cache", &o1c);
    raw("ours 500-step, normal, warm cache", &o500n);
    raw("ours 500-step, full, warm cache", &o500f);
    if let Some((t1, t500, _)) = &refr {
        raw("reference 1-step", t1);
        raw("reference 500-step", t500);
    }
    match (&strace, &fsync_ours) {
        (Some(_), Some(((a, b), (c, d)))) => {
            println!(
                "  fsync+fdatasync calls: ours full 500-step {} / 1-step {}; ours normal 500-step {} / 1-step {}",
                opt(*a), opt(*b), opt(*c), opt(*d)
            );
            if let Some((_, _, Some((a, b)))) = &refr {
                println!(
                    "  fsync+fdatasync calls: reference 500-step {} / 1-step {}",
                    opt(*a),
                    opt(*b)
                );
            }
        }
        _ => println!("  strace not installed: fsync count not measured"),
    }

    println!();
    let mut t = Table::default();
    t.row(
        "time per step, sync=normal (ms)",
        Some(step_n),
        ref_step,
        Ratio::RefOverOurs,
        format!("<= {TARGET_STEP_MS} ms"),
        Some(step_n <= TARGET_STEP_MS),
    );
    t.row(
        "time per step, sync=full (ms)",
        Some(step_f),
        ref_step,
        Ratio::RefOverOurs,
        "-".into(),
        None,
    );
    t.row(
        "CPU per step, sync=normal (ms)",
        Some(cpu_n),
        ref_cpu,
        Ratio::RefOverOurs,
        "-".into(),
        None,
    );
    t.row(
        "CPU per step, sync=full (ms)",
        Some(cpu_f),
        ref_cpu,
        Ratio::RefOverOurs,
        "-".into(),
        None,
    );
    t.row(
        "fsyncs per step, sync=full",
        fs_full,
        fs_ref,
        Ratio::None,
        format!("1 (+<= {FSYNC_TOLERANCE} amortised)"),
        fs_full.map(|x| (1.0 - 1e-9..=1.0 + FSYNC_TOLERANCE).contains(&x)),
    );
    t.row(
        "fsyncs per step, sync=normal",
        fs_norm,
        None,
        Ratio::None,
        "0 (process-crash safe)".into(),
        fs_norm.map(|x| x < 0.05),
    );
    t.row(
        "cold start 1-step, warm cache (ms)",
        Some(o1f.median_ms()),
        ref_cold,
        Ratio::RefOverOurs,
        format!("<= {TARGET_COLD_WARM_MS} ms"),
        Some(o1f.median_ms() <= TARGET_COLD_WARM_MS),
    );
    t.row(
        "CPU of 1-step run, warm cache (ms)",
        Some(o1f.median_cpu_ms()),
        refr.as_ref().map(|(t1, _, _)| t1.median_cpu_ms()),
        Ratio::RefOverOurs,
        "-".into(),
        None,
    );
    t.row(
        "cold start 1-step, cold cache (ms)",
        Some(o1c.median_ms()),
        ref_cold,
        Ratio::RefOverOurs,
        "-".into(),
        None,
    );
    t.row(
        "peak RSS, warm cache, 1|500 steps (MB)",
        Some(rss_warm),
        ref_rss,
        Ratio::RefOverOurs,
        format!("<= {TARGET_RSS_MB} MB"),
        Some(rss_warm <= TARGET_RSS_MB),
    );
    t.row(
        "peak RSS, cold cache (compiling) (MB)",
        Some(o1c.max_rss_mb()),
        ref_rss,
        Ratio::RefOverOurs,
        format!("<= {TARGET_RSS_MB} MB"),
        Some(o1c.max_rss_mb() <= TARGET_RSS_MB),
    );
    t.print(reference.is_some());
    if reference.is_none() {
        println!();
        println!("!!!!! REFERENCE NOT INSTALLED: the reference column is empty !!!!!");
    }
    if strace.is_none() {
        println!("strace not installed: fsync count not measured");
    }
    println!();
    println!(
        "time per step = (median t500 - median t1) / {}; the reference has no component",
        STEPS - 1
    );
    println!(
        "cache, so both its cold-start figures are its plain 1-step run time. The default sync"
    );
    println!(
        "mode is full (power-loss safe); ratio = reference / ours. Wall times include waiting"
    );
    println!(
        "for the CPU on a busy machine; the CPU rows (user + system time of the child) do not."
    );
}

// ---- running -----------------------------------------------------------------------------

/// A generated flow with its own state file and workspace.
struct Flow {
    dir: PathBuf,
    yaml: PathBuf,
}

impl Flow {
    fn new(root: &Path, name: &str, steps: usize) -> Flow {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = format!(
            "version: 1\nflow:\n  id: bench\n  workspace: {{root: {work}, cleanup_policy: on_success}}\n  state: {{path: {state}}}\njobs:\n  - id: j\n    steps:\n",
            work = dir.join("work").display(),
            state = dir.join("state.sqlite").display(),
        );
        for i in 1..=steps {
            s.push_str(&format!(
                "      - {{id: s{i}, type: check_items, inputs: {{items: \"a,b,c\"}}}}\n"
            ));
        }
        let yaml = dir.join("flow.yaml");
        std::fs::write(&yaml, s).unwrap();
        Flow { dir, yaml }
    }

    /// A fresh state database and workspace for the next run.
    fn reset(&self) {
        for f in [
            "state.sqlite",
            "state.sqlite-wal",
            "state.sqlite-shm",
            "state.sqlite-journal",
        ] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let _ = std::fs::remove_dir_all(self.dir.join("work"));
    }

    fn log(&self) -> PathBuf {
        self.dir.join("last-run.log")
    }
}

/// One run of `flow` with a fresh state database and workspace.
fn run(cmd: &Command, flow: &Flow) -> Sample {
    flow.reset();
    run_cmd(cmd, &flow.log())
}

fn ref_cmd(r: &Reference, flow: &Flow, env: &[(&'static str, OsString)]) -> Command {
    r.cmd(&flow.yaml, &flow.dir, env)
}

fn ours_cmd(bin: &Path, flow: &Flow, env: &[(&'static str, OsString)]) -> Command {
    let mut c = Command::new(bin);
    c.arg("run").arg(&flow.yaml).current_dir(&flow.dir);
    scrubbed(&mut c, env);
    c
}

// ---- fsync counting ----------------------------------------------------------------------

fn find_strace() -> Option<PathBuf> {
    let st = which("strace", None)?;
    // ptrace may be forbidden (containers): check it works.
    let ok = Command::new(&st)
        .args(["-f", "-c", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("strace cannot trace here (ptrace not permitted?): fsync count not measured");
        return None;
    }
    Some(st)
}

/// fsync + fdatasync calls made by the command and its threads/children.
fn fsync_count(strace: &Path, cmd: &Command, flow: &Flow) -> Option<u64> {
    let out = flow.dir.join("strace.txt");
    let args: Vec<&std::ffi::OsStr> = ["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"]
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([out.as_os_str()])
        .collect();
    let mut c = wrapped(cmd, strace, &args);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !c.status().ok()?.success() {
        eprintln!("engine bench: strace run of {} failed", flow.yaml.display());
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    let mut n = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if matches!(cols.last(), Some(&"fsync") | Some(&"fdatasync")) && cols.len() >= 5 {
            n += cols[3].parse::<u64>().ok()?;
        }
    }
    Some(n)
}
