//! Run with: cargo run --release --example word_index [-- --quick]
//!
//! An index builder: generates a corpus whose word frequencies follow Zipf's law, counts each
//! shard's words into a `HashMap`, and merges the shards into one index. The shard text buffers
//! and the hash tables (which double as they grow) are the large allocations.

#[path = "common/measure.rs"]
mod measure;

use pagewise::PageAlloc;
use std::collections::HashMap;

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

/// The `rank`-th word of the vocabulary: "a", "b", …, "z", "aa", "ab", … (frequent words short).
fn word(mut rank: usize, out: &mut String) {
    let mut letters = [0u8; 8];
    let mut start = letters.len();
    loop {
        start -= 1;
        letters[start] = b'a' + (rank % 26) as u8;
        if rank < 26 {
            break;
        }
        rank = rank / 26 - 1;
    }
    out.push_str(std::str::from_utf8(&letters[start..]).unwrap());
}

/// Samples ranks with probability proportional to 1 / (rank + 1) (Zipf, s = 1).
struct Zipf {
    cumulative: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(vocabulary: usize) -> Zipf {
        let cumulative = (1..=vocabulary)
            .scan(0.0, |total, k| {
                *total += 1.0 / k as f64;
                Some(*total)
            })
            .collect();
        Zipf {
            cumulative,
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn sample(&mut self) -> usize {
        // xorshift64, scaled to [0, total).
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64 * self.cumulative.last().unwrap();
        self.cumulative.partition_point(|&c| c < u)
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (shards, words_per_shard, vocabulary) = if quick {
        (4, 500_000, 100_000)
    } else {
        (16, 2_000_000, 500_000)
    };
    let measure = measure::Measure::start();

    let mut zipf = Zipf::new(vocabulary);
    let mut index: HashMap<String, u64> = HashMap::new();
    for _ in 0..shards {
        let mut text = String::new();
        for _ in 0..words_per_shard {
            word(zipf.sample(), &mut text);
            text.push(' ');
        }
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for w in text.split_ascii_whitespace() {
            *counts.entry(w).or_default() += 1;
        }
        for (w, n) in counts {
            *index.entry(w.to_owned()).or_default() += n;
        }
    }
    let mut top: Vec<(&String, &u64)> = index.iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = top
        .iter()
        .take(5)
        .map(|(w, n)| format!("{w}:{n}"))
        .collect();
    println!(
        "{} distinct words in {} shards; top: {}",
        index.len(),
        shards,
        top.join(" ")
    );

    measure.finish(GLOBAL.config());
}
