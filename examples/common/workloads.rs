//! The workloads shared by the Divan benches (`benches/*.rs`) and the report workers
//! (`examples/worker_*.rs`), so every global allocator runs the very same code.
//!
//! Each function is one *round* of a workload: it allocates, touches and frees its buffers before
//! returning, so a caller timing it times the release too. The `*_bound` variants do the same work
//! on buffers the caller keeps alive and has already faulted in: the fault-free bound of issue 6.

// Each including target (bench, worker, report) uses a different subset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::hint::black_box;

/// One mebibyte.
pub const MIB: usize = 1 << 20;
/// The page size the touch loops step by.
pub const PAGE: usize = 4096;

/// A workload of the report, with the unit of its `size` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `vec![0u8; size]`, every byte written, freed: a reused I/O or decode buffer.
    Zeroed,
    /// `Vec<u64>` grown by `push` to `size` bytes, then dropped.
    VecPush,
    /// `HashMap<u64, u64>` with `size` entries built by `insert`, then dropped.
    HashMap,
    /// Two threads, each replacing 8 slots with zeroed buffers of random size in
    /// 256 KiB..=`size` and writing one byte per page.
    MixedThreads,
    /// A port of mimalloc-bench's malloc-large: 20 slots, random buffers of `size/5..=size`
    /// bytes, each filled with zeros by `resize` (every page written).
    MallocLarge,
    /// One thread replacing 4 slots with zeroed buffers of random size in 256 KiB..=`size`,
    /// writing one byte per page: a few live buffers of scattered sizes.
    Random,
    /// Eight threads (more than the cores), each allocating a zeroed buffer of random size in
    /// `size*4/5..=size`, writing one byte per page and dropping it: one live buffer per thread.
    MixedThreads8,
}

/// The shape of a churn workload ([`churn`]): `threads` threads, each replacing `slots` buffers
/// (or, with no slots, dropping each buffer at once) by `vec![0u8; n]`, `n` random in
/// `min..=max`, each buffer written one byte per page at `touch_offset` into each page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Churn {
    pub threads: usize,
    pub slots: usize,
    pub min: usize,
    pub max: usize,
    /// 0 in the report. The worker's `--touch-offset N` changes it, to show how much of a time
    /// depends on where in its page a buffer starts (issue #20's note).
    pub touch_offset: usize,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 7] = [
        Workload::Zeroed,
        Workload::VecPush,
        Workload::HashMap,
        Workload::MixedThreads,
        Workload::MallocLarge,
        Workload::Random,
        Workload::MixedThreads8,
    ];

    /// The name used on the command line and in the CSV files.
    pub const fn name(self) -> &'static str {
        match self {
            Workload::Zeroed => "zeroed",
            Workload::VecPush => "vec_push",
            Workload::HashMap => "hashmap",
            Workload::MixedThreads => "mixed_threads",
            Workload::MallocLarge => "malloc_large",
            Workload::Random => "random",
            Workload::MixedThreads8 => "mixed_threads8",
        }
    }

    /// Parses [`Workload::name`].
    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Whether `size` counts entries rather than bytes.
    pub const fn counts_entries(self) -> bool {
        matches!(self, Workload::HashMap)
    }

    /// The shape of a churn workload of maximum buffer size `size`; `None` for the others.
    pub const fn churn(self, size: usize) -> Option<Churn> {
        const MIN: usize = 256 << 10;
        let (threads, slots, min) = match self {
            Workload::MixedThreads => (2, 8, MIN),
            Workload::Random => (1, 4, MIN),
            Workload::MixedThreads8 => (8, 0, size * 4 / 5),
            _ => return None,
        };
        Some(Churn {
            threads,
            slots,
            min,
            max: size,
            touch_offset: 0,
        })
    }

    /// Whether `--iters` counts iterations of one multi-round run (the churn workloads and
    /// [`Workload::MallocLarge`]) rather than rounds.
    pub const fn multi_round(self) -> bool {
        matches!(self, Workload::MallocLarge) || self.churn(0).is_some()
    }

    /// Whether a fault-free bound variant exists.
    pub const fn has_bound(self) -> bool {
        matches!(self, Workload::Zeroed | Workload::VecPush)
    }

    /// Bytes a round writes (for throughput counters); entries for [`Workload::HashMap`].
    pub const fn bytes_per_round(self, size: usize) -> usize {
        match self {
            Workload::HashMap => size * 16,
            _ => size,
        }
    }
}

/// Formats a size argument the way the tables print it: `64M`, `4M entries`.
pub fn size_label(workload: Workload, size: usize) -> String {
    let (n, suffix) = if size >= MIB && size % MIB == 0 {
        (size / MIB, "M")
    } else if size >= 1024 && size % 1024 == 0 {
        (size / 1024, "K")
    } else {
        (size, "")
    };
    if workload.counts_entries() {
        format!("{n}{suffix} entries")
    } else {
        format!("{n}{suffix}iB")
    }
}

/// Parses `64M`, `256K`, `4194304`.
pub fn parse_size(s: &str) -> Option<usize> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

/// Runs one round of `workload`; `round` varies the written values and random seeds.
pub fn run_round(workload: Workload, size: usize, round: usize) -> u64 {
    match workload {
        Workload::Zeroed => zeroed(size, round),
        Workload::VecPush => vec_push(size),
        Workload::HashMap => hashmap(size),
        Workload::MallocLarge => malloc_large(size, 100, round as u64),
        Workload::MixedThreads | Workload::Random | Workload::MixedThreads8 => {
            let shape = workload.churn(size).expect("a churn workload");
            churn(shape, 100, round as u64)
        }
    }
}

/// A few bytes of `buf`, so the optimiser keeps the writes.
fn sample(buf: &[u8]) -> u64 {
    match buf {
        [] => 0,
        [first, .., last] => u64::from(*first) + u64::from(buf[buf.len() / 2]) + u64::from(*last),
        [only] => u64::from(*only),
    }
}

/// `vec![0u8; size]`, every byte written, freed.
pub fn zeroed(size: usize, round: usize) -> u64 {
    let mut buf = black_box(vec![0u8; size]);
    buf.fill(round as u8 | 1);
    sample(&buf)
}

/// [`zeroed`] on a retained, pre-faulted buffer: clear it (what `vec![0; n]` promises), write it.
pub fn zeroed_bound(buf: &mut [u8], round: usize) -> u64 {
    buf.fill(0);
    let buf = black_box(buf);
    buf.fill(round as u8 | 1);
    sample(buf)
}

/// A `Vec<u64>` grown by `push` to `bytes`, then dropped.
pub fn vec_push(bytes: usize) -> u64 {
    let mut v = Vec::new();
    for i in 0..(bytes / 8) as u64 {
        v.push(i);
    }
    black_box(&v).last().copied().unwrap_or(0)
}

/// [`vec_push`] into a retained vector whose capacity is already faulted in.
pub fn vec_push_bound(v: &mut Vec<u64>, bytes: usize) -> u64 {
    v.clear();
    for i in 0..(bytes / 8) as u64 {
        v.push(i);
    }
    black_box(&*v).last().copied().unwrap_or(0)
}

/// A `HashMap<u64, u64>` with `entries` entries built by `insert`, then dropped.
pub fn hashmap(entries: usize) -> u64 {
    let mut map = HashMap::new();
    for i in 0..entries as u64 {
        map.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
    }
    black_box(&map).len() as u64
}

/// xorshift64*: a tiny deterministic generator, so every allocator sees the same sizes.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// `shape.threads` threads, each doing `iters` iterations: `vec![0u8; n]`, `n` random in
/// `shape.min..=shape.max`, one byte written per page, then stored in a random one of
/// `shape.slots` slots (the buffer it replaces is freed after the new one exists) or, with no
/// slots, freed at once. Thread `t` draws from `Rng::new(seed * 31 + t + 1)`. A single thread
/// runs on the caller's thread (its allocator caches carry over from one call to the next, as in
/// [`malloc_large`]). Everything is freed before return.
pub fn churn(shape: Churn, iters: usize, seed: u64) -> u64 {
    let body = move |t: u64| {
        let mut rng = Rng::new(seed * 31 + t + 1);
        let mut slots: Vec<Vec<u8>> = (0..shape.slots).map(|_| Vec::new()).collect();
        let mut sum = 0;
        for _ in 0..iters {
            let mut buf = vec![0u8; rng.range(shape.min, shape.max.max(shape.min))];
            for i in (shape.touch_offset.min(buf.len())..buf.len()).step_by(PAGE) {
                buf[i] = 1;
            }
            sum += sample(&buf);
            if !slots.is_empty() {
                let slot = rng.range(0, slots.len() - 1);
                slots[slot] = buf;
            }
        }
        sum
    };
    if shape.threads == 1 {
        return body(0);
    }
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..shape.threads as u64)
            .map(|t| s.spawn(move || body(t)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

/// mimalloc-bench's malloc-large: 20 slots, `iters` replacements by buffers of random size in
/// `max/5..=max`, each zero-filled by `resize` (so every page is written whatever the allocator).
// Deliberately not `vec![0; n]`: the C++ original writes its zeros, it does not get them free.
#[allow(clippy::slow_vector_initialization)]
pub fn malloc_large(max: usize, iters: usize, seed: u64) -> u64 {
    let mut rng = Rng::new(seed + 7);
    let mut slots: Vec<Vec<u8>> = (0..20).map(|_| Vec::new()).collect();
    let mut sum = 0;
    for _ in 0..iters {
        let n = rng.range(max / 5, max);
        let mut buf = Vec::with_capacity(n);
        buf.resize(n, 0u8);
        sum += sample(black_box(&buf));
        let slot = rng.range(0, slots.len() - 1);
        slots[slot] = buf;
    }
    sum
}
