//! Run with: cargo run --release --example sort_merge [-- --quick]
//!
//! An external-sort style job: generate runs of random keys, sort each run (the stable sort
//! allocates a scratch buffer half the run's size), then merge the runs pairwise until one sorted
//! vector is left. Every merge allocates its output and frees both inputs: large buffers of many
//! sizes come and go.

#[path = "common/measure.rs"]
mod measure;

use pagewise::PageAlloc;

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

/// Merges two sorted vectors into a new one.
fn merge(a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        out.push(if x <= y { a.next() } else { b.next() }.unwrap());
    }
    out.extend(a);
    out.extend(b);
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, runs, run_len) = if quick {
        (2, 8, 1 << 19)
    } else {
        (3, 8, 4 << 20)
    };
    let measure = measure::Measure::start();

    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut checksum = 0u64;
    for _ in 0..rounds {
        let mut runs: Vec<Vec<u64>> = (0..runs)
            .map(|_| {
                let mut run: Vec<u64> = (0..run_len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state
                    })
                    .collect();
                run.sort();
                run
            })
            .collect();
        while runs.len() > 1 {
            runs = runs
                .chunks_mut(2)
                .map(|pair| match pair {
                    [a, b] => merge(std::mem::take(a), std::mem::take(b)),
                    [a] => std::mem::take(a),
                    _ => unreachable!(),
                })
                .collect();
        }
        let sorted = runs.pop().unwrap();
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
        checksum = checksum.wrapping_add(sorted[sorted.len() / 2]);
    }
    println!("{rounds} rounds of {runs} x {run_len} keys sorted and merged; median-key checksum {checksum:x}");

    measure.finish(GLOBAL.config());
}
