//! Run with: cargo run --release --example worker_system -- zeroed 64M --iters 40
//!
//! One workload under glibc malloc via `std::alloc::System`, for `examples/report`.
//! See `examples/common/worker.rs` for the arguments and the output line.

#[path = "common/worker.rs"]
mod worker;
#[path = "common/workloads.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    worker::run("system");
}
