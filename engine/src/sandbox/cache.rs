//! On-disk cache of precompiled components, so a second run never compiles again.
//!
//! Key: wasmtime version + the engine's compatibility hash (its configuration and target)
//! as the directory, the component's sha256 as the file name. Files are written to a
//! temporary name and renamed, so concurrent processes and crashes never leave a torn
//! entry; an entry that fails to load is discarded and rebuilt.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::component::Component;
use wasmtime::Engine;

/// Pinned in engine/Cargo.toml (`=48.0.8`); part of the cache key.
const WASMTIME_VERSION: &str = "48.0.8";

pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    pub fn new(base: PathBuf, engine: &Engine) -> Self {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let dir = base.join(format!("wasmtime-{WASMTIME_VERSION}-{:016x}", h.finish()));
        ComponentCache { dir }
    }

    pub fn get_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        let path = self.dir.join(format!("{sha256}.cwasm"));
        if path.exists() {
            // SAFETY: the file was produced by `precompile_component` of this very wasmtime
            // version and engine configuration (both are in the directory name). The cache
            // directory is as trusted as the binary itself: whoever can write it can run
            // code as the user. A corrupt or foreign file is rejected by wasmtime's header
            // checks and rebuilt below.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let serialized = engine
            .precompile_component(bytes)
            .map_err(|e| format!("{e:#}"))?;
        // A cache that cannot be written (read-only home, full disk) only costs speed.
        if std::fs::create_dir_all(&self.dir).is_ok() {
            let tmp = self
                .dir
                .join(format!(".{sha256}.{}.tmp", std::process::id()));
            if std::fs::write(&tmp, &serialized).is_ok() {
                if std::fs::rename(&tmp, &path).is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
            } else {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        // SAFETY: `serialized` was just produced by this engine.
        unsafe { Component::deserialize(engine, &serialized) }.map_err(|e| format!("{e:#}"))
    }
}
