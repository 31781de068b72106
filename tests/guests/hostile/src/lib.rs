//! One hostile step with many attacks, chosen by the `attack` input. Each tries to escape
//! the sandbox, exhaust the engine or leave something behind; the hostile-guest suite
//! (tests/integration/hostile.rs) asserts that every one is contained. When an escape
//! attempt is refused inside the guest, the step fails with what the guest saw, so the
//! tests can check the refusal; an attempt that worked returns what it got (and the test
//! fails).
use std::hint::black_box;

use aetherflow_sdk::{export_step, json, sql, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    attack: String,
    /// For read/write/symlink: the path to attack.
    #[serde(default)]
    path: String,
    /// For alloc: MiB to allocate and touch.
    #[serde(default)]
    mb: usize,
    /// The db resource the flow grants (cursor-trap).
    #[serde(default)]
    resource: Option<String>,
    /// A resource the flow does not grant (ungranted).
    #[serde(default)]
    target: String,
}

struct Hostile;

impl Step for Hostile {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("test_hostile", "0.1.0").needs("db", "resource")
    }

    fn run(ctx: &Context, i: Inputs) -> Result<Outcome, Error> {
        match i.attack.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "recurse" => Outcome::success(json!({"depth": recurse(black_box(0))})),
            "alloc" => {
                let mut v: Vec<u8> = Vec::with_capacity(i.mb << 20);
                v.resize(i.mb << 20, 1);
                let pages: u64 = v.iter().step_by(4096).map(|b| *b as u64).sum();
                Outcome::success(json!({"pages": pages}))
            }
            "panic" => panic!("deliberate panic from the hostile guest"),
            "read" => match std::fs::read(&i.path) {
                Ok(b) => Outcome::success(json!({"escaped": String::from_utf8_lossy(&b)})),
                Err(e) => Err(Error::io(format!("read {}: {e}", i.path))),
            },
            "write" => match std::fs::write(&i.path, b"escaped") {
                Ok(()) => Outcome::success(json!({"escaped": i.path})),
                Err(e) => Err(Error::io(format!("write {}: {e}", i.path))),
            },
            "list" => match std::fs::read_dir(&i.path) {
                Ok(d) => {
                    let names: Vec<String> = d
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    Outcome::success(json!({"escaped": names}))
                }
                Err(e) => Err(Error::io(format!("list {}: {e}", i.path))),
            },
            // Make a link in the workspace that points at `path` (with WASI's own call;
            // std has no stable one), then read through it.
            "symlink" => {
                let dirs = wasip2::filesystem::preopens::get_directories();
                let Some((dir, _)) = dirs
                    .iter()
                    .find(|(_, p)| std::path::Path::new(p) == ctx.workspace)
                else {
                    return Err(Error::internal("the workspace is not preopened"));
                };
                if let Err(e) = dir.symlink_at(&i.path, "hostile-link") {
                    return Err(Error::io(format!("symlink to {}: {e:?}", i.path)));
                }
                let link = ctx.workspace.join("hostile-link");
                match std::fs::read(&link) {
                    Ok(b) => Outcome::success(json!({"escaped": String::from_utf8_lossy(&b)})),
                    Err(e) => Err(Error::io(format!("read through a link to {}: {e}", i.path))),
                }
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                Outcome::success(json!({"vars": vars, "args": args}))
            }
            "socket" => match std::net::TcpStream::connect("127.0.0.1:22") {
                Ok(_) => Outcome::success(json!({"escaped": "connected"})),
                Err(e) => Err(Error::io(format!("connect: {e}"))),
            },
            // Open a cursor on the granted resource, take one batch, then trap with the
            // cursor (and its statement) still open.
            "cursor-trap" => {
                let resource = i.resource.as_deref().unwrap_or_default();
                let cursor = sql::query(resource, "SELECT * FROM big", &Value::Null)?;
                let first = cursor.next_batch(10)?;
                black_box(&first);
                panic!("trap with an open cursor ({} rows read)", first.len());
            }
            "ungranted" => {
                let cursor = sql::query(&i.target, "SELECT 1", &Value::Null)?;
                Outcome::success(json!({"escaped": cursor.columns().len()}))
            }
            other => Err(Error::invalid_input(format!("unknown attack {other}"))),
        }
    }
}

/// Unbounded recursion with a frame the optimiser cannot drop.
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let frame = black_box([n; 32]);
    recurse(frame[3] + 1) + frame[7]
}

export_step!(Hostile);
