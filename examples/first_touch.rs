//! Run with: cargo run --release --example first_touch [-- --mib N --idle-ms N]
//!
//! What a page costs the first time it is touched, huge (`MADV_HUGEPAGE`) against 4 KiB
//! (`MADV_NOHUGEPAGE`), in fresh anonymous mappings. Each kind is measured after the machine has
//! left its memory free for `--idle-ms` (default 8000) and then again right after (the second and
//! third rounds reuse what the first freed).
//!
//! Why it is here (issue #20): on this report's VM (a Firecracker guest whose balloon device
//! reports free memory to the host), memory the guest has left free for a few seconds is given
//! back to the host in 2 MiB blocks or bigger, and the guest's next touch of it faults on the
//! host too. A huge page always needs a free 2 MiB block, so it is the one that pays: measured
//! 0.37–0.43 GB/s for the first round of huge pages after 5–8 s idle, 8 GB/s for the rounds
//! after, and 2.6–2.8 GB/s for 4 KiB pages either way. So a workload that faults fresh memory
//! in its timed part is slower with huge pages on such a VM only, and how much depends on how
//! long the memory sat free before: `mixed_threads` took 840–926 ms with the default
//! (huge pages) and 704–755 ms with `none` when run after 8 s idle, but 715–765 against
//! 726–810 ms right after huge pages had been touched and freed. On bare metal a huge-page fault
//! is the cheaper one (FACTS.md §5.1: 141 µs per 2 MiB against 0.71 µs per 4 KiB page).

use std::time::{Duration, Instant};

#[path = "common/mapping.rs"]
mod mapping;

use mapping::{advise, touch_pages, Mapping};

const MIB: usize = 1 << 20;
const HUGE: usize = 2 * MIB;

/// Maps `len` bytes (2 MiB-aligned), advises them, writes one byte per 4 KiB page, unmaps them.
/// Returns GB/s of memory touched.
fn touch(len: usize, huge: bool) -> f64 {
    let m = Mapping::new(len + HUGE);
    let p = (m.ptr as usize).next_multiple_of(HUGE) as *mut u8;
    let advice = if huge {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    advise(p, len, advice).expect("madvise");
    let start = Instant::now();
    // p..p+len lies inside the mapping, which is readable and writable.
    touch_pages(p, len, 1);
    let secs = start.elapsed().as_secs_f64();
    len as f64 / secs / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| {
                v.parse().unwrap_or_else(|_| panic!("{name} N"))
            })
    };
    let len = value("--mib", 256) as usize * MIB;
    let idle = Duration::from_millis(value("--idle-ms", 8000));
    println!(
        "first touch of {} MiB, one byte per 4 KiB page, after {} ms idle, then again:",
        len / MIB,
        idle.as_millis()
    );
    for huge in [true, false] {
        std::thread::sleep(idle);
        let rounds: Vec<String> = (0..3).map(|_| format!("{:.2}", touch(len, huge))).collect();
        let kind = if huge { "huge pages" } else { "4 KiB pages" };
        println!("  {kind:<12} GB/s: {}", rounds.join(", "));
    }
}
