//! Waits that end at the deadline. Epoch interruption stops a guest only while its wasm
//! code runs: a guest blocked in `wasi:io/poll` on a long `subscribe-duration` (what
//! `std::thread::sleep` does) would outlive its deadline by as long as it asked (a 4 s
//! sleep under a 1 s deadline used to end after 4 s). So the two `monotonic-clock`
//! subscriptions are replaced by ones whose wait never passes the deadline, and the two
//! blocking `wasi:io/poll` calls (`poll`, `pollable.block`) trap as a timeout when they
//! return after it. With sockets disabled, a clock is the only pollable that can wait for
//! long; the replacements call wasmtime-wasi's own implementations.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime::{StoreContextMut, Trap};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host as _;
use wasmtime_wasi::p2::bindings::sync::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::p2::DynPollable;

use super::{HostState, EPOCH_TICK};

/// The interfaces as wasmtime-wasi 48 defines them (a guest importing an older 0.2.x is
/// linked to these by semver).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
const POLL: &str = "wasi:io/poll@0.2.12";

/// Call after `wasmtime_wasi::p2::add_to_linker_sync`: replaces four of its functions.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, HostState>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let s = store.data_mut();
            let ready = s.table.poll(pollables)?;
            s.check_deadline()?;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, HostState>, (pollable,): (Resource<DynPollable>,)| {
            let s = store.data_mut();
            s.table.block(pollable)?;
            s.check_deadline()
        },
    )?;
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
            let s = store.data_mut();
            let wait = s.cap_wait(Duration::from_nanos(nanos));
            Ok((subscribe(s, wait)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
            let s = store.data_mut();
            let now = clocks(s).now()?;
            let wait = s.cap_wait(Duration::from_nanos(when.saturating_sub(now)));
            Ok((subscribe(s, wait)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn clocks(s: &mut HostState) -> WasiClocksCtxView<'_> {
    WasiClocksCtxView {
        ctx: s.wasi.clocks(),
        table: &mut s.table,
    }
}

/// wasmtime-wasi's own duration pollable.
fn subscribe(s: &mut HostState, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
    clocks(s).subscribe_duration(nanos)
}

impl HostState {
    /// A wait of `d`, cut so that it ends just after the deadline; unchanged without one.
    fn cap_wait(&self, d: Duration) -> Duration {
        match self.deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                d.min(left + EPOCH_TICK)
            }
            None => d,
        }
    }

    /// A blocking call that returns after the deadline ends the call as a timeout, the
    /// same trap the epoch check raises in running code.
    pub(super) fn check_deadline(&self) -> wasmtime::Result<()> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(Trap::Interrupt.into()),
            _ => Ok(()),
        }
    }
}
