//! `libpagewise.so`: pagewise for any dynamically linked Linux program, without a rebuild.
//!
//! ```sh
//! cargo build --release -p pagewise-preload
//! LD_PRELOAD=$PWD/target/release/libpagewise.so PAGEWISE_VERBOSE=1 python3 -c 'b"x" * (64 << 20)'
//! ```
//!
//! The library exports glibc's allocation functions (`abi`). A request below the threshold
//! (`PAGEWISE_THRESHOLD`, 256 KiB by default) goes straight to glibc's allocator, through the
//! `__libc_*` symbols glibc exports for this (`glibc`): one compare and one call. A larger one is
//! a block of a `pagewise::PageAlloc` (`engine`), the allocator Rust programs put behind
//! `#[global_allocator]`, with the same `PAGEWISE_*` variables, release policies and counters.
//! `free` tells the two kinds apart by a table of pagewise's blocks (`owners`), never by size or
//! by reading memory around the pointer; start-up (`start`) waits for nothing and goes to glibc
//! until the environment can be read.
//!
//! `include/pagewise.h` declares the two functions beyond glibc's: `pagewise_stats` (`stats`)
//! and `pagewise_purge`.
#![deny(unsafe_op_in_unsafe_fn, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod abi;
mod engine;
mod glibc;
mod owners;
mod start;
mod stats;
