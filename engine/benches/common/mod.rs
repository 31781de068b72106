//! What the benchmarks share: running a command and measuring it (wall time, CPU time,
//! peak RSS), locating our binary and the Python reference, and the results table.
#![allow(dead_code)] // each bench uses a part

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `cmd` without the caller's `AETHERFLOW_*` variables, plus `env`.
pub fn scrubbed(cmd: &mut Command, env: &[(&'static str, OsString)]) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AETHERFLOW_") {
            cmd.env_remove(&k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

pub struct Sample {
    pub wall: Duration,
    /// User + system CPU time of the child (less sensitive to a busy machine than wall).
    pub cpu: Duration,
    pub maxrss_kb: i64,
    pub ok: bool,
}

/// One run: wall time from spawn to reap, and the child's own peak RSS; its output goes to
/// `log` (shown when the run fails).
pub fn run_cmd(cmd: &Command, log_path: &Path) -> Sample {
    let mut cmd = clone_cmd(cmd);
    let log = File::create(log_path).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    let t0 = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("\nbench: cannot start {:?}: {e}", cmd.get_program());
            return Sample {
                wall: Duration::ZERO,
                cpu: Duration::ZERO,
                maxrss_kb: 0,
                ok: false,
            };
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: plain FFI call with valid out-pointers; `child` is never waited on by std.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t0.elapsed();
    drop(child);
    let ok = r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let out = std::fs::read_to_string(log_path).unwrap_or_default();
        eprintln!(
            "\nbench: run of {:?} FAILED (status {status}):\n{}",
            cmd.get_args().collect::<Vec<_>>(),
            out.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    Sample {
        wall,
        cpu,
        maxrss_kb: ru.ru_maxrss,
        ok,
    }
}

pub fn clone_cmd(cmd: &Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    copy_dir_env(cmd, &mut c);
    c
}

/// `cmd` run through `wrapper wrapper_args...` (e.g. strace), in its directory and with
/// its environment.
pub fn wrapped(cmd: &Command, wrapper: &Path, wrapper_args: &[&std::ffi::OsStr]) -> Command {
    let mut c = Command::new(wrapper);
    c.args(wrapper_args)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    copy_dir_env(cmd, &mut c);
    c
}

fn copy_dir_env(from: &Command, to: &mut Command) {
    if let Some(d) = from.get_current_dir() {
        to.current_dir(d);
    }
    for (k, v) in from.get_envs() {
        match v {
            Some(v) => to.env(k, v),
            None => to.env_remove(k),
        };
    }
}

pub struct Runs {
    pub samples: Vec<Sample>,
    pub failures: usize,
}

pub fn repeat(n: usize, mut f: impl FnMut() -> Sample) -> Runs {
    let mut samples = Vec::new();
    let mut failures = 0;
    for _ in 0..n {
        let s = f();
        if s.ok {
            samples.push(s);
        } else {
            failures += 1;
        }
    }
    Runs { samples, failures }
}

impl Runs {
    pub fn sorted_ms(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.wall.as_secs_f64() * 1e3)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }
    pub fn median_ms(&self) -> f64 {
        median(self.sorted_ms())
    }
    pub fn median_cpu_ms(&self) -> f64 {
        let mut v: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.cpu.as_secs_f64() * 1e3)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        median(v)
    }
    pub fn min_ms(&self) -> f64 {
        self.sorted_ms().first().copied().unwrap_or(f64::NAN)
    }
    pub fn max_ms(&self) -> f64 {
        self.sorted_ms().last().copied().unwrap_or(f64::NAN)
    }
    pub fn max_rss_mb(&self) -> f64 {
        // Linux: ru_maxrss is in KiB.
        self.samples.iter().map(|s| s.maxrss_kb).max().unwrap_or(0) as f64 / 1024.0
    }
}

pub fn median(v: Vec<f64>) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

// ---- locating the binaries ---------------------------------------------------------------

/// Our release binary: cargo builds it for bench targets and tells us where; if it is
/// missing anyway, build it (honouring CARGO_TARGET_DIR).
pub fn our_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_aetherflow"));
    if bin.is_file() {
        return bin;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let built = target.join("release").join("aetherflow");
    if !built.is_file() {
        eprintln!(
            "bench: {} missing; running cargo build --release -p aetherflow",
            bin.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--release", "-p", "aetherflow"])
            .current_dir(workspace)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cargo build --release -p aetherflow failed");
    }
    assert!(built.is_file(), "no binary at {}", built.display());
    built
}

pub enum Reference {
    /// `python -m aetherflow.core.cli` with the real interpreter (not a pyenv shim).
    Module(PathBuf),
    /// An `aetherflow` executable on PATH that is not ours.
    Cli(PathBuf),
}

impl Reference {
    pub fn describe(&self) -> String {
        match self {
            Reference::Module(py) => format!("{} -m aetherflow.core.cli", py.display()),
            Reference::Cli(p) => p.display().to_string(),
        }
    }

    /// `run --flow-yaml <yaml>` in `dir`.
    pub fn cmd(&self, yaml: &Path, dir: &Path, env: &[(&'static str, OsString)]) -> Command {
        let mut c = match self {
            Reference::Module(py) => {
                let mut c = Command::new(py);
                c.args(["-m", "aetherflow.core.cli"]);
                c
            }
            Reference::Cli(p) => Command::new(p),
        };
        c.arg("run").arg("--flow-yaml").arg(yaml).current_dir(dir);
        scrubbed(&mut c, env);
        c
    }
}

pub fn find_reference(ours: &Path) -> Option<Reference> {
    for py in ["python3", "python"] {
        let Some(shim) = which(py, None) else {
            continue;
        };
        // Resolve the interpreter behind pyenv/asdf shims so their start-up is not timed.
        let real = Command::new(&shim)
            .args([
                "-c",
                "import sys, aetherflow.core.cli; print(sys.executable)",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if let Some(real) = real.filter(|p| p.is_file()) {
            return Some(Reference::Module(real));
        }
    }
    let ours_dir = ours.parent().and_then(|p| p.canonicalize().ok());
    if let Some(cli) = which("aetherflow", ours_dir.as_deref()) {
        let same = cli.canonicalize().ok() == ours.canonicalize().ok();
        if !same {
            return Some(Reference::Cli(cli));
        }
    }
    println!("!!!!! REFERENCE NOT INSTALLED (no `python3 -m aetherflow.core.cli`, no other `aetherflow` on PATH):");
    println!("!!!!! the reference column is skipped. Install it with `pip install aetherflow-core==0.0.14`.");
    None
}

/// `name` on PATH, skipping directories under `exclude`.
pub fn which(name: &str, exclude: Option<&Path>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        if let (Some(ex), Ok(d)) = (exclude, dir.canonicalize()) {
            if d.starts_with(ex) {
                continue;
            }
        }
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

// ---- table -------------------------------------------------------------------------------

pub enum Ratio {
    RefOverOurs,
    None,
}

#[derive(Default)]
pub struct Table {
    rows: Vec<[String; 6]>,
}

pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

pub fn num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Table {
    pub fn row(
        &mut self,
        metric: &str,
        ours: Option<f64>,
        reference: Option<f64>,
        ratio: Ratio,
        target: String,
        pass: Option<bool>,
    ) {
        let ratio = match (ratio, ours, reference) {
            (Ratio::RefOverOurs, Some(o), Some(r)) if o > 0.0 && !o.is_nan() && !r.is_nan() => {
                format!("{:.1}x", r / o)
            }
            _ => "-".into(),
        };
        let verdict = match pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "-",
        };
        self.rows.push([
            metric.into(),
            ours.map_or("n/a".into(), num),
            reference.map_or("n/a".into(), num),
            ratio,
            target,
            verdict.into(),
        ]);
    }

    pub fn print(&self, with_ref: bool) {
        let head = [
            "metric",
            "ours",
            if with_ref {
                "reference"
            } else {
                "reference (n/a)"
            },
            "ref/ours",
            "target",
            "verdict",
        ];
        let mut w = head.map(str::len);
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        let line = |c: [&str; 6]| {
            println!(
                "| {:<w0$} | {:>w1$} | {:>w2$} | {:>w3$} | {:<w4$} | {:<w5$} |",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4],
                w5 = w[5]
            )
        };
        line(head);
        println!(
            "|{}|{}|{}|{}|{}|{}|",
            "-".repeat(w[0] + 2),
            "-".repeat(w[1] + 2),
            "-".repeat(w[2] + 2),
            "-".repeat(w[3] + 2),
            "-".repeat(w[4] + 2),
            "-".repeat(w[5] + 2)
        );
        for r in &self.rows {
            line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]);
        }
    }
}
