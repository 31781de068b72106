//! Builds the built-in step components in `steps/` for `wasm32-wasip2` and generates
//! `builtins.rs`, which embeds them in the binary. No prebuilt `.wasm` is committed.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let steps = root.join("steps");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    for p in [
        steps.join("Cargo.toml"),
        steps.join("Cargo.lock"),
        root.join("wit"),
        root.join("sdk/rust/src"),
        root.join("sdk/rust/Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let members = step_members(&steps);
    for m in &members {
        println!(
            "cargo:rerun-if-changed={}",
            steps.join(m).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            steps.join(m).join("Cargo.toml").display()
        );
    }

    pack_relative_relocations(&out_dir);

    let target_dir = out_dir.join("guests");
    build_guests(&steps.join("Cargo.toml"), &target_dir);

    // Precompile every built-in with the engine's own configuration, so that a fresh
    // install runs them without compiling (and without Cranelift's memory peak).
    let engine = precompile_engine();
    let mut code = String::from(
        "/// Built-in step components: (crate name, component bytes, the same precompiled for\n\
         /// this engine (empty if the build could not), sha256 of the bytes).\n\
         pub const BUILTIN_COMPONENTS: &[(&str, &[u8], &[u8], &str)] = &[\n",
    );
    for m in &members {
        let wasm = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", m.replace('-', "_")));
        assert!(wasm.exists(), "guest build produced no {}", wasm.display());
        let bytes = fs::read(&wasm).unwrap();
        // The digest keys the precompiled-component cache; computing it here saves hashing
        // the embedded bytes on every start.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let cwasm = out_dir.join(format!("{m}.cwasm"));
        let precompiled = match &engine {
            Some(e) => e
                .precompile_component(&bytes)
                .unwrap_or_else(|err| panic!("precompiling the built-in step {m} failed: {err:#}")),
            None => Vec::new(),
        };
        fs::write(&cwasm, precompiled).unwrap();
        code.push_str(&format!(
            "    ({m:?}, include_bytes!({:?}), include_bytes!({:?}), {hex:?}),\n",
            wasm.display().to_string(),
            cwasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), code).unwrap();
}

mod sandbox_config {
    include!("src/sandbox/engine_config.rs");
}

/// The engine that precompiles the built-ins: the sandbox's configuration, for the target
/// being built. `None` (nothing precompiled; the engine compiles at first use) when that
/// target cannot be compiled for here.
fn precompile_engine() -> Option<wasmtime::Engine> {
    println!("cargo:rerun-if-changed=src/sandbox/engine_config.rs");
    let mut cfg = sandbox_config::engine_config();
    let target = env::var("TARGET").unwrap();
    if target != env::var("HOST").unwrap() {
        if let Err(e) = cfg.target(&target) {
            println!("cargo:warning=built-in steps not precompiled for {target}: {e}");
            return None;
        }
    }
    match wasmtime::Engine::new(&cfg) {
        Ok(e) => Some(e),
        Err(e) => {
            println!("cargo:warning=built-in steps not precompiled: {e:#}");
            None
        }
    }
}

/// The step crates: every directory of `steps/` holding a Cargo.toml.
fn step_members(steps: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(steps)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The built-in steps' shadow stack: 128 KiB instead of Rust's default 1 MiB. Every
/// attempt gets a fresh instance whose linear memory is reset when it ends, and the cost
/// of that reset grows with the memory's size; these steps never recurse deeply (inputs
/// are JSON, whose parser stops at 128 levels).
const GUEST_RUSTFLAGS: &str = "-Clink-arg=-zstack-size=131072";

/// `cargo build --release --target wasm32-wasip2` on a guest workspace, with a target dir
/// under OUT_DIR and without the flags the outer build passes to its own crates.
pub fn build_guests(manifest: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", GUEST_RUSTFLAGS)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .output()
        .expect("failed to run cargo for the wasm guests");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\nhint: install the target with `rustup target add wasm32-wasip2`"
            } else {
                ""
            };
        panic!(
            "building the wasm guests in {} failed:\n{stderr}{hint}",
            manifest.display()
        );
    }
}

/// Link the `aetherflow` binary with packed relative relocations (`DT_RELR`) when the
/// toolchain can. The binary is position-independent (address-space randomisation) and
/// has about 63,000 relative relocations: as RELA entries they are 1.5 MB that the dynamic
/// loader reads and applies at every start; packed they are 18 KB, and `--version` starts
/// about 0.5 ms sooner (docs/performance.md). Needs GNU ld 2.38+ or lld, and glibc 2.36+
/// where the binary runs; probed by linking an empty C program the same way, so another
/// toolchain simply links as before.
fn pack_relative_relocations(out_dir: &Path) {
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu || env::var_os("HOST") != env::var_os("TARGET") {
        return;
    }
    const FLAG: &str = "-Wl,-z,pack-relative-relocs";
    let src = out_dir.join("relr-probe.c");
    let bin = out_dir.join("relr-probe");
    if fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return;
    }
    let probe = Command::new("cc")
        .args(["-pie", "-fPIE", FLAG, "-o"])
        .arg(&bin)
        .arg(&src)
        .output();
    // A linker that does not know the option fails; one that cannot use it (a glibc
    // without DT_RELR) warns: either way, leave the link alone.
    if probe.is_ok_and(|o| o.status.success() && o.stderr.is_empty())
        && Command::new(&bin).status().is_ok_and(|s| s.success())
    {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}
