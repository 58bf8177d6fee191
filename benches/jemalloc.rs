//! Run with: cargo bench --bench jemalloc
//!
//! The shared workloads (`benches/workloads/mod.rs`) under jemalloc (`tikv-jemallocator`, default settings).

mod workloads;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A fixed allocator: one unnamed configuration.
fn configs() -> Vec<String> {
    vec![String::new()]
}

fn configure(_: &str) {}

fn main() {
    workloads::main();
}
