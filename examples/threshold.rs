//! Run with: cargo run --release --example threshold [-- --quick]
//!
//! How the default `PAGEWISE_THRESHOLD` was chosen: churn of buffers of one size (allocate, write
//! one byte per page, free; with 1 or 8 buffers alive at a time) through glibc (`System`) and
//! through a pagewise allocator whose threshold is below that size, so pagewise serves them from
//! its cache. Below the size where pagewise stops losing, glibc's heap is as fast and denser, so
//! the threshold goes there. Sides alternate, three rounds each; the line shows the medians.

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Instant;

use pagewise::{Config, PageAlloc};

#[path = "common/median.rs"]
mod median;
use median::median;

/// Nanoseconds per allocate-touch-free cycle of `size`-byte buffers, `live` of them in a ring.
fn churn<A: GlobalAlloc>(a: &A, size: usize, live: usize, cycles: usize) -> f64 {
    let layout = Layout::from_size_align(size, 16).unwrap();
    let mut ring = vec![std::ptr::null_mut::<u8>(); live];
    let start = Instant::now();
    for i in 0..cycles {
        let slot = &mut ring[i % live];
        // SAFETY: a non-null slot holds a block from `a` with this layout; the new block has
        // `size` bytes, so every offset written is inside it.
        unsafe {
            if !slot.is_null() {
                a.dealloc(*slot, layout);
            }
            *slot = a.alloc(layout);
            assert!(!slot.is_null(), "out of memory");
            for offset in (0..size).step_by(4096) {
                *slot.add(offset) = i as u8;
            }
        }
    }
    for p in ring.into_iter().filter(|p| !p.is_null()) {
        // SAFETY: p came from `a` with this layout.
        unsafe { a.dealloc(p, layout) };
    }
    start.elapsed().as_nanos() as f64 / cycles as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let pagewise = PageAlloc::new().with_config(Config::DEFAULT.ignore_env().threshold(16 << 10));
    let bytes_per_run: usize = if quick { 256 << 20 } else { 2 << 30 };
    println!("size      live   glibc ns/cycle   pagewise ns/cycle   pagewise/glibc");
    for size in [
        64usize << 10,
        128 << 10,
        256 << 10,
        512 << 10,
        1 << 20,
        4 << 20,
    ] {
        for live in [1usize, 8] {
            let cycles = (bytes_per_run / size).max(16);
            // One untimed round each, so both sides are measured warm.
            churn(&System, size, live, cycles / 4);
            churn(&pagewise, size, live, cycles / 4);
            let (mut g, mut p) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                g.push(churn(&System, size, live, cycles));
                p.push(churn(&pagewise, size, live, cycles));
            }
            let (g, p) = (median(g), median(p));
            println!(
                "{:>5} KiB {live:>4} {g:>16.0} {p:>19.0} {:>16.2}",
                size >> 10,
                p / g
            );
        }
    }
}
