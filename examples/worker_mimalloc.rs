//! Run with: cargo run --release --example worker_mimalloc -- zeroed 64M --iters 40
//!
//! One workload under mimalloc (`mimalloc` crate, defaults; tune with `MIMALLOC_*`), for `examples/report`.
//! See `examples/common/worker.rs` for the arguments and the output line.

#[path = "common/worker.rs"]
mod worker;
#[path = "common/workloads.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    worker::run("mimalloc");
}
