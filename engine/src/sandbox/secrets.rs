//! Host side of the `secrets-provider` world (wit/secrets.wit): a secrets provider
//! written as a WebAssembly component.
//!
//! The provider gets less than a step: WASI preview 2 with no preopened directories, no
//! environment variables, no arguments and no sockets, and none of the step world's
//! imports (`log`, `sql`). Every call gets a fresh `Store` and instance, a deadline and a
//! memory cap, so one call can never see what an earlier one decoded. Its stdout/stderr
//! are discarded: they could hold secrets.
//!
//! Messages never contain a value passed to or returned by the provider; an `err` from
//! `decode` that echoes the value has it replaced by `***`.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use super::{hex, HostState, Sandbox, SandboxError};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "secrets-provider",
    });
}

/// How long one `decode` or `expand-env` call may run.
pub const SECRETS_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Linear memory one provider instance may use.
pub const SECRETS_MEMORY_BYTES: usize = 64 << 20;

/// A loaded secrets-provider component. Cheap to call from any thread; each call
/// instantiates afresh.
///
/// Deadlines are driven by the epoch ticker of the [`Sandbox`] that loaded it: keep that
/// sandbox alive as long as the provider is used.
pub struct ComponentSecretsProvider {
    engine: Engine,
    pre: bindings::SecretsProviderPre<HostState>,
    origin: String,
    sha256: String,
    timeout: Duration,
    memory_bytes: usize,
}

impl std::fmt::Debug for ComponentSecretsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentSecretsProvider")
            .field("origin", &self.origin)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Compile (or fetch from the component cache) and link a component implementing the
    /// `aetherflow:step/secrets-provider` world. `origin` names it in every message.
    pub fn load_secrets_provider(
        &self,
        bytes: &[u8],
        origin: impl std::fmt::Display,
    ) -> Result<ComponentSecretsProvider, SandboxError> {
        let origin = origin.to_string();
        let load_err = |message: String| SandboxError::Load {
            origin: origin.clone(),
            message,
        };
        let sha256 = hex(&Sha256::digest(bytes));
        let component = match &self.cache {
            Some(cache) => cache.get_or_compile(&self.engine, &sha256, bytes),
            None => Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}")),
        }
        .map_err(|e| load_err(format!("not a WebAssembly component: {e}")))?;
        // WASI only: a provider never reaches connectors or the step log.
        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| super::deadline::add_to_linker(&mut linker))
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            load_err(format!(
                "{e:#} (a secrets provider may import only WASI preview 2 without sockets)"
            ))
        })?;
        let pre = bindings::SecretsProviderPre::new(pre).map_err(|e| {
            load_err(format!(
                "it does not implement the `aetherflow:step/secrets-provider` world (exports `decode` and `expand-env`): {e:#}"
            ))
        })?;
        Ok(ComponentSecretsProvider {
            engine: self.engine.clone(),
            pre,
            origin,
            sha256,
            timeout: SECRETS_CALL_TIMEOUT,
            memory_bytes: SECRETS_MEMORY_BYTES,
        })
    }
}

impl ComponentSecretsProvider {
    /// Where the component came from (its path), as given to `load_secrets_provider`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The same provider with other per-call limits.
    pub fn with_limits(mut self, timeout: Duration, memory_bytes: usize) -> Self {
        self.timeout = timeout;
        self.memory_bytes = memory_bytes;
        self
    }

    /// Run `f` against a fresh instance in a fresh store; a trap becomes a message that
    /// names the provider (never an argument).
    fn call<R>(
        &self,
        what: &str,
        f: impl FnOnce(
            &bindings::SecretsProvider,
            &mut wasmtime::Store<HostState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = HostState::new(wasi.build(), self.memory_bytes, None);
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        super::set_fuel(&mut store, None);
        super::arm_deadline(&mut store, self.timeout);
        let started = Instant::now();
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(&instance, &mut store));
        result.map_err(|err| {
            let who = format!("secrets provider component `{}`", self.origin);
            match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => format!(
                    "{who} timed out in `{what}` after {:.1}s (limit {}s)",
                    started.elapsed().as_secs_f64(),
                    self.timeout.as_secs()
                ),
                _ if store.data().limiter.exceeded.is_some() => format!(
                    "{who} exceeded its memory limit of {} MiB in `{what}`",
                    self.memory_bytes >> 20
                ),
                Some(trap) => {
                    let t = trap.to_string();
                    let t = t.strip_prefix("wasm trap: ").unwrap_or(&t).to_string();
                    format!("{who} crashed in `{what}`: {t}")
                }
                None => format!("{who} failed in `{what}`: {}", first_line(&err)),
            }
        })
    }

    /// `decode`: `Ok(Ok(secret))`, `Ok(Err(reason))` when the provider rejects the value
    /// (the value itself is masked out of `reason`), `Err(message)` on a trap.
    pub fn decode(&self, value: &str) -> Result<Result<String, String>, String> {
        let r = self.call("decode", |p, store| p.call_decode(store, value))?;
        Ok(r.map_err(|reason| scrub(&reason, value)))
    }

    /// `expand-env`: the environment for one resource, from a copy of the snapshot.
    pub fn expand_env(&self, env: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
        self.call("expand-env", |p, store| p.call_expand_env(store, env))
    }
}

/// `reason` with every occurrence of `value` replaced by `***`.
fn scrub(reason: &str, value: &str) -> String {
    let mut out = reason.to_string();
    if !value.is_empty() {
        out = out.replace(value, "***");
        let trimmed = value.trim();
        if !trimmed.is_empty() {
            out = out.replace(trimmed, "***");
        }
    }
    out
}

/// The first line of an error chain (wasmtime appends a multi-line backtrace).
fn first_line(err: &wasmtime::Error) -> String {
    let s = format!("{err:#}");
    s.lines().next().unwrap_or("").to_string()
}
