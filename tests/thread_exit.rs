//! Large blocks freed and allocated while a thread exits, from its thread-local destructors,
//! while threads take turns freeing (so each free and allocation goes through the thread's own
//! range, `engine/affinity.rs`, which lives in a thread-local itself): every block goes back to
//! the engine, none is lost or stranded in an exited thread, and what was written reads back.

mod common;

use std::cell::RefCell;
use std::sync::{Arc, Barrier};

use common::{first_not, MIB, PAGE};
use pagewise::PageAlloc;

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

/// Frees its buffer when the thread's thread-locals are destroyed, after allocating, filling and
/// checking another one there.
struct AtExit(Vec<u8>);

impl Drop for AtExit {
    fn drop(&mut self) {
        let seed = self.0[0];
        assert_eq!(first_not(&self.0, seed), None, "the block kept its bytes");
        let mut late = std::hint::black_box(vec![seed ^ 0xFF; self.0.len() + 3 * PAGE + 5]);
        late[12345] = 1;
        assert_eq!(late.iter().filter(|&&b| b != seed ^ 0xFF).count(), 1);
        drop(late);
        self.0 = Vec::new();
    }
}

std::thread_local! {
    static HELD: RefCell<Option<AtExit>> = const { RefCell::new(None) };
}

#[test]
fn blocks_freed_by_thread_local_destructors_go_back() {
    let before = GLOBAL.stats();
    let threads = 8;
    for round in 0..3u8 {
        let turns = Arc::new(Barrier::new(threads));
        // `std::thread::spawn` and `join`, not `std::thread::scope`: a scope returns once each
        // thread's closure has returned, which can be before its thread-local destructors have run;
        // `join` waits for the thread itself to end (pthread_join).
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let turns = Arc::clone(&turns);
                std::thread::spawn(move || {
                    // Take turns freeing 2–3 MiB blocks, so the engine sees threads sharing.
                    for i in 0..20 {
                        let n = 2 * MIB + (t * 7919 + i * 104_729) % MIB;
                        // black_box: without it the optimiser may drop the allocation entirely.
                        let v = std::hint::black_box(vec![t as u8; n]);
                        assert_eq!(v[n - 1], t as u8);
                        drop(v);
                        if i % 5 == 0 {
                            turns.wait();
                        }
                    }
                    let seed = round.wrapping_mul(31).wrapping_add(t as u8) | 1;
                    let kept = std::hint::black_box(vec![seed; 2 * MIB + t * PAGE + 100]);
                    HELD.with(|h| *h.borrow_mut() = Some(AtExit(kept)));
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a thread failed");
        }
    }
    let after = GLOBAL.stats();
    let allocs = after.large_allocs - before.large_allocs;
    let frees = after.large_frees - before.large_frees;
    // Per thread and round: 20 churned blocks, the kept one and the one allocated at exit.
    assert!(
        allocs >= 3 * threads as u64 * 22,
        "the large path was used: {after:?}"
    );
    assert_eq!(allocs, frees, "every block allocated was freed: {after:?}");
    assert_eq!(after.live_bytes, 0, "nothing left live: {after:?}");
    assert!(
        after.cache_hits > before.cache_hits,
        "freed ranges were reused: {after:?}"
    );
    // No range is held back by an exited thread: purge returns every cached byte.
    GLOBAL.purge();
    let purged = GLOBAL.stats();
    assert_eq!(purged.cached_bytes, 0, "nothing stranded: {purged:?}");
    assert_eq!(purged.live_bytes, 0, "{purged:?}");
}
