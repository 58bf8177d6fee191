//! Run with: cargo run --release --example worker_jemalloc -- zeroed 64M --iters 40
//!
//! One workload under jemalloc (`tikv-jemallocator`, defaults; tune with `_RJEM_MALLOC_CONF`), for `examples/report`.
//! See `examples/common/worker.rs` for the arguments and the output line.

#[path = "common/worker.rs"]
mod worker;
#[path = "common/workloads.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    worker::run("jemalloc");
}
