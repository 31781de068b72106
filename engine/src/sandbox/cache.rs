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

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    /// The cached artifact for `sha256`, mapped from its file. A file wasmtime refuses
    /// (corrupt, foreign) is removed so that it is rebuilt.
    fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was produced by `precompile_component` of this very wasmtime
        // version and engine configuration (both are in the directory name), or copied
        // from an artifact build.rs produced that way. The cache directory is as trusted as
        // the binary itself: whoever can write it can run code as the user. A corrupt or
        // foreign file is rejected by wasmtime's header checks and rebuilt.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Write `artifact` as the entry for `sha256`: a temporary name, then a rename, so a
    /// concurrent process or a crash never leaves a torn entry. A cache that cannot be
    /// written (read-only home, full disk) only costs speed, hence the `bool`.
    fn store(&self, sha256: &str, artifact: &[u8]) -> bool {
        if std::fs::create_dir_all(&self.dir).is_err() {
            return false;
        }
        let tmp = self
            .dir
            .join(format!(".{sha256}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, artifact).is_ok()
            && std::fs::rename(&tmp, self.path(sha256)).is_ok()
        {
            return true;
        }
        let _ = std::fs::remove_file(&tmp);
        false
    }

    pub fn get_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        if let Some(c) = self.load(engine, sha256) {
            return Ok(c);
        }
        let serialized = engine
            .precompile_component(bytes)
            .map_err(|e| format!("{e:#}"))?;
        self.store(sha256, &serialized);
        // SAFETY: `serialized` was just produced by this engine.
        unsafe { Component::deserialize(engine, &serialized) }.map_err(|e| format!("{e:#}"))
    }

    /// A built-in step's artifact, precompiled by build.rs and embedded in the binary: it
    /// is copied once into the cache and then mapped from that file. Mapping shares the
    /// page cache and faults pages in lazily, where deserializing the embedded bytes
    /// copies the whole artifact (hundreds of KiB) into fresh memory on every start.
    /// `None` when the cache cannot hold it; the caller then uses the embedded bytes.
    pub fn get_or_store(
        &self,
        engine: &Engine,
        sha256: &str,
        precompiled: &[u8],
    ) -> Option<Component> {
        if let Some(c) = self.load(engine, sha256) {
            return Some(c);
        }
        if precompiled.is_empty() || !self.store(sha256, precompiled) {
            return None;
        }
        self.load(engine, sha256)
    }
}
