// The wasmtime configuration of the step sandbox. This file is compiled twice: into the
// engine (`sandbox/mod.rs`) and into `build.rs`, which precompiles the built-in steps with
// it. Compiled code is only usable by an engine with the same configuration, so both must
// come from here.

/// Bytes of each pooled linear memory / table kept resident between instances.
pub const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
pub const KEEP_RESIDENT_TABLE: usize = 16 << 10;

/// The engine configuration: the component model, epoch interruption for deadlines, fuel
/// metering for CPU budgets, and the pooling allocator.
pub fn engine_config() -> wasmtime::Config {
    let mut cfg = wasmtime::Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    // Every step is compiled with fuel metering, whether or not it has a budget: one engine
    // and one artifact per component. Measured (debug build, docs/security.md): no visible
    // cost per step on a 500-step check_items flow; about 10 % more CPU in compute-heavy
    // guest code (deflate); compiled code about 20 % larger. A store without a budget gets
    // u64::MAX fuel.
    cfg.consume_fuel(true);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    // Steps run one at a time; a few slots cover nested with_lock and describe calls.
    pool.total_component_instances(16);
    pool.total_core_instances(128);
    pool.total_memories(32);
    pool.total_tables(64);
    pool.total_stacks(16);
    pool.max_memory_size(4 << 30);
    // A finished instance's memory and tables are reset in place (up to these sizes; on
    // Linux only the pages it dirtied, found with the PAGEMAP_SCAN ioctl) instead of being
    // returned to the kernel and faulted in again by the next attempt. Only dirtied pages
    // stay resident. See docs/performance.md.
    pool.linear_memory_keep_resident(KEEP_RESIDENT_MEMORY);
    pool.table_keep_resident(KEEP_RESIDENT_TABLE);
    cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    cfg
}
