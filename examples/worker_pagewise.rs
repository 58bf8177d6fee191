//! Run with: PAGEWISE_RELEASE=retain cargo run --release --example worker_pagewise -- zeroed 64M --iters 40
//!
//! One workload under pagewise, configured by the `PAGEWISE_*` environment variables, for
//! `examples/report`. See `examples/common/worker.rs` for the arguments and the output line.

#[path = "common/worker.rs"]
mod worker;
#[path = "common/workloads.rs"]
mod workloads;

use pagewise::PageAlloc;

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

fn main() {
    let config = GLOBAL.config();
    let label = format!(
        "pagewise-{}/{}",
        config.get_release().name(),
        config.get_prefetch().name()
    );
    worker::run(&label);
}
