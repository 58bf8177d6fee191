//! Run with: cargo bench --bench system
//!
//! The shared workloads (`benches/workloads/mod.rs`) under glibc malloc (`std::alloc::System`).

mod workloads;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

/// A fixed allocator: one unnamed configuration.
fn configs() -> Vec<String> {
    vec![String::new()]
}

fn configure(_: &str) {}

fn main() {
    workloads::main();
}
