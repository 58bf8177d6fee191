//! Run with: cargo bench --bench mimalloc
//!
//! The shared workloads (`benches/workloads/mod.rs`) under mimalloc (`mimalloc` crate, default settings).

mod workloads;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fixed allocator: one unnamed configuration.
fn configs() -> Vec<String> {
    vec![String::new()]
}

fn configure(_: &str) {}

fn main() {
    workloads::main();
}
