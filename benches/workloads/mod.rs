//! Divan benches of the shared workloads (`examples/common/workloads.rs`), compiled into each
//! allocator's bench target. The target provides `configs()` (labels of the configurations to
//! sweep; `[""]` for a fixed allocator) and `configure(label)`, called before each benchmark.
//!
//! Every closure frees its buffers before returning, so the timed region includes the release
//! (Divan would otherwise keep returned values alive until the sample ends).

#[path = "../../examples/common/workloads.rs"]
pub mod shared;

use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;
use shared::{size_label, Workload, MIB};
use std::fmt;

/// A benchmark argument: one configuration of the target, one size.
pub struct Arg {
    config: String,
    workload: Workload,
    size: usize,
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.config.is_empty() {
            write!(f, "{} ", self.config)?;
        }
        f.write_str(&size_label(self.workload, self.size))
    }
}

fn args(workload: Workload, sizes: &[usize]) -> Vec<Arg> {
    let configs = crate::configs();
    configs
        .iter()
        .flat_map(|config| {
            sizes.iter().map(|&size| Arg {
                config: config.clone(),
                workload,
                size,
            })
        })
        .collect()
}

fn bench(bencher: Bencher, arg: &Arg) {
    crate::configure(&arg.config);
    let (workload, size) = (arg.workload, arg.size);
    let bencher = if workload.counts_entries() {
        bencher.counter(ItemsCount::new(size))
    } else {
        bencher.counter(BytesCount::new(size))
    };
    let mut round = 0;
    bencher.bench_local(|| {
        round += 1;
        shared::run_round(workload, size, round)
    });
}

/// `vec![0u8; size]`, every byte written, freed: 1 MiB (glibc's heap), 16 MiB (between
/// jemalloc's 8 MiB oversize threshold and glibc's 32 MiB mmap-threshold cap), 64 MiB.
#[divan::bench(args = args(Workload::Zeroed, &[MIB, 16 * MIB, 64 * MIB]))]
fn zeroed(bencher: Bencher, arg: &Arg) {
    bench(bencher, arg);
}

/// `Vec<u64>` grown by `push` to 16 MiB and 256 MiB, then dropped (realloc growth).
#[divan::bench(args = args(Workload::VecPush, &[16 * MIB, 256 * MIB]))]
fn vec_push(bencher: Bencher, arg: &Arg) {
    bench(bencher, arg);
}

/// `HashMap<u64, u64>` with 1 M and 4 M entries built and dropped (table doublings).
#[divan::bench(args = args(Workload::HashMap, &[1 << 20, 4 << 20]))]
fn hashmap(bencher: Bencher, arg: &Arg) {
    bench(bencher, arg);
}

/// Two threads replacing buffers of 256 KiB..=32 MiB, 100 each, one byte written per page.
#[divan::bench(args = args(Workload::MixedThreads, &[32 * MIB]))]
fn mixed_threads(bencher: Bencher, arg: &Arg) {
    bench(bencher, arg);
}

/// malloc-large: 100 replacements of 20 slots by zero-filled 5..=25 MiB buffers.
#[divan::bench(args = args(Workload::MallocLarge, &[25 * MIB]))]
fn malloc_large(bencher: Bencher, arg: &Arg) {
    bench(bencher, arg);
}

/// One thread replacing 4 slots by buffers of 256 KiB..=48 MiB, 100 times, one byte written per
/// page.
#[divan::bench(args = args(Workload::Random, &[48 * MIB]))]
fn random(bencher: Bencher, arg: &Arg) {
    bench(bencher, arg);
}

/// Eight threads, each allocating 100 buffers of 4..=5 MiB one at a time, writing one byte per
/// page and dropping each.
#[divan::bench(args = args(Workload::MixedThreads8, &[5 * MIB]))]
fn mixed_threads8(bencher: Bencher, arg: &Arg) {
    bench(bencher, arg);
}

/// Divan with defaults that keep a target's sweep to a few minutes; command-line options
/// (`--sample-count`, `--max-time`, …) override them.
pub fn main() {
    divan::Divan::default()
        .sample_count(10)
        .sample_size(1)
        .max_time(std::time::Duration::from_secs(2))
        .config_with_args()
        .main();
}
