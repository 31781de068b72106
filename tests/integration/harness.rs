//! A fluent builder around the real `aetherflow` binary:
//! `Test::new().flow("...").env("K", "v").run_args(&["run", "flow.yaml"]).status(0)`.
//!
//! Every test gets its own temporary directory (`{ROOT}` in files is replaced by its path),
//! a clean environment (no inherited `AETHERFLOW_*` variables), JSON logs, and a component
//! cache shared by all tests so components compile once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_aetherflow");

pub struct Test {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("tempdir"),
            env: vec![
                ("AETHERFLOW_LOG_FORMAT".into(), "json".into()),
                (
                    "AETHERFLOW_CACHE_DIR".into(),
                    cache_dir().display().to_string(),
                ),
            ],
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write a file (parents created); `{ROOT}` is replaced by the test directory.
    pub fn file(self, rel: &str, contents: &str) -> Test {
        self.write(rel, contents);
        self
    }

    /// Like [`Test::file`], for a test already built.
    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(
            &p,
            contents.replace("{ROOT}", &self.root().display().to_string()),
        )
        .unwrap();
    }

    /// `flow.yaml` in the test directory.
    pub fn flow(self, yaml: &str) -> Test {
        self.file("flow.yaml", yaml)
    }

    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Test {
        self.env.push((key.into(), value.as_ref().into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.root());
        for (k, _) in std::env::vars() {
            if k.starts_with("AETHERFLOW_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run_args(&self, args: &[&str]) -> Outcome {
        Outcome::from(self.command(args).output().expect("spawn aetherflow"))
    }

    /// Start in the background (stdout/stderr piped).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn aetherflow")
    }

    /// The state store of a flow whose `state.path` is `{ROOT}/state.sqlite`.
    pub fn store(&self) -> aetherflow_state::SqliteStore {
        aetherflow_state::SqliteStore::open(
            self.path("state.sqlite"),
            aetherflow_state::Durability::Process,
        )
        .expect("open state store")
    }
}

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(o: Output) -> Outcome {
        Outcome {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Outcome {
    #[track_caller]
    pub fn status(&self, code: i32) -> &Outcome {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Outcome {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Outcome {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    /// Every stderr line as JSON (JSON log mode); panics on a line that is not JSON.
    #[track_caller]
    pub fn events(&self) -> Vec<Value> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The events named `name`.
    pub fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// The error of step `step` from its `step_end` event (`""` if it has none).
    pub fn step_error(&self, step: &str) -> String {
        self.named("step_end")
            .into_iter()
            .find(|e| e["step_id"] == step)
            .unwrap_or_else(|| panic!("no step_end for {step}\n{}", self.stderr))["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The run id from the result line on stdout.
    pub fn run_id(&self) -> String {
        let line = self.stdout.lines().last().unwrap_or_default();
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("run_id="))
            .unwrap_or_else(|| panic!("no run_id in stdout: {}", self.stdout))
            .to_string()
    }
}

/// Job status from the state store.
pub fn job_status(
    store: &aetherflow_state::SqliteStore,
    flow: &str,
    run: &str,
    job: &str,
) -> String {
    use aetherflow_state::{JobKey, StateStore};
    store
        .job(&JobKey::new(flow, run, job))
        .unwrap()
        .map(|r| r.status.as_str().to_string())
        .unwrap_or_else(|| "<none>".into())
}

/// The flow header used by most tests: workspace and state under the test directory.
pub fn header(id: &str) -> String {
    format!(
        "version: 1\nflow:\n  id: {id}\n  workspace:\n    root: \"{{ROOT}}/work\"\n    cleanup_policy: never\n  state:\n    path: \"{{ROOT}}/state.sqlite\"\n"
    )
}

/// A flow whose one job `j` has one `db_extract` step reading `sql` from the `db` resource
/// (given as its YAML mapping) into `out.tsv`.
pub fn db_flow(id: &str, resource: &str, sql: &str) -> String {
    header(id)
        + &format!(
            "resources:\n  db: {resource}\njobs:\n  - id: j\n    steps:\n      - {{id: e, type: db_extract, inputs: {{resource: db, sql: \"{sql}\", output: out.tsv}}}}\n"
        )
}

/// The `out.tsv` a [`db_flow`] run wrote.
pub fn out_tsv(t: &Test, flow: &str, run: &str) -> String {
    std::fs::read_to_string(t.path(&format!("work/{flow}/j/{run}/artifacts/out.tsv")))
        .unwrap_or_else(|e| panic!("no output: {e}"))
}

/// The value of a test-server variable (`AF_TEST_...`, printed by
/// `scripts/test-servers.sh start`). When it is missing the test is skipped with a loud
/// message (`None`), or fails when `AETHERFLOW_TEST_SERVERS=required` (CI).
#[allow(dead_code)] // used by the connector tests
pub fn server_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let msg = format!(
                "test server not running: {var} is not set. Start the servers with \
                 `eval \"$(bash scripts/test-servers.sh start)\"` (or run `bash scripts/test.sh`)"
            );
            if std::env::var("AETHERFLOW_TEST_SERVERS").as_deref() == Ok("required") {
                panic!("{msg}");
            }
            eprintln!("\n*** SKIPPED: {msg} ***\n");
            None
        }
    }
}

/// A loopback port where TCP connects hang, as with a host that drops packets: a listener
/// with the smallest accept queue, filled and never accepted, so the kernel drops further
/// SYNs and a client waits for its connect timeout. Keep the value alive while testing.
pub struct SilentPort {
    pub port: u16,
    _fd: std::os::fd::OwnedFd,
    _queued: Vec<std::net::TcpStream>,
}

pub fn silent_port() -> SilentPort {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; `addr` outlives them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        let mut got = len;
        libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut got);
        let port = u16::from_be(addr.sin_port);
        // Fill the queue: connects succeed until it is full, then they hang.
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut queued = Vec::new();
        for _ in 0..8 {
            match std::net::TcpStream::connect_timeout(
                &target,
                std::time::Duration::from_millis(300),
            ) {
                Ok(s) => queued.push(s),
                Err(_) => break,
            }
        }
        assert!(
            std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_millis(300))
                .is_err(),
            "the accept queue of port {port} did not fill"
        );
        SilentPort {
            port,
            _fd: owned,
            _queued: queued,
        }
    }
}

/// Step `step` of job `job` in a `runs show --json` report.
#[allow(dead_code)] // used by some test modules
pub fn report_step<'v>(show: &'v Value, job: &str, step: &str) -> &'v Value {
    let j = show["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == job)
        .unwrap_or_else(|| panic!("no job {job}"));
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == step)
        .unwrap_or_else(|| panic!("no step {step}"))
}
