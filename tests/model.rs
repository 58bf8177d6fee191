//! Model test (proptest): random sequences of alloc / realloc / free on a local `PageAlloc`,
//! checked against a model of what every live block must contain. A failure shrinks to a
//! minimal sequence. One property per release policy; the prefetch mode is part of the input.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64 per policy to keep CI short).

mod common;

use std::alloc::{GlobalAlloc, Layout};

use common::*;
use pagewise::{Config, PageAlloc, Prefetch, Release};
use proptest::prelude::*;

const THRESHOLD: usize = 64 * KIB;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_pow: u32,
        zeroed: bool,
    },
    Realloc {
        idx: usize,
        new_size: usize,
    },
    Free {
        idx: usize,
    },
    /// Ask the kernel to drop lazily freed pages everywhere (what memory pressure would do).
    Reclaim,
}

/// Sizes around the interesting places: tiny, just below/at/above the threshold, page
/// boundaries, a few MiB.
fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..4096,
        (THRESHOLD - 8)..(THRESHOLD + 8),
        (1usize..64).prop_map(|k| k * 4096),
        (1usize..64).prop_map(|k| k * 4096 + 1),
        (THRESHOLD..(12 * MIB)),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (size_strategy(), 3u32..22, any::<bool>())
            .prop_map(|(size, align_pow, zeroed)| Op::Alloc { size, align_pow, zeroed }),
        3 => (any::<usize>(), size_strategy())
            .prop_map(|(idx, new_size)| Op::Realloc { idx, new_size }),
        3 => any::<usize>().prop_map(|idx| Op::Free { idx }),
        1 => Just(Op::Reclaim),
    ]
}

fn prefetch_strategy() -> impl Strategy<Value = Prefetch> {
    prop::sample::select(Prefetch::ALL.to_vec())
}

/// What the model knows about a live block: its layout, and that it holds the pattern of `id`.
struct Live {
    ptr: *mut u8,
    size: usize,
    align: usize,
    id: u64,
}

fn run(release: Release, prefetch: Prefetch, ops: &[Op]) -> Result<(), TestCaseError> {
    let a = PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(release)
            .prefetch(prefetch)
            .threshold(THRESHOLD)
            .cache(64 * MIB)
            .decay_ms(Some(20))
            .background(true),
    );
    let mut live: Vec<Live> = Vec::new();
    let mut next_id = 0u64;
    let result = (|| {
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::Alloc {
                    size,
                    align_pow,
                    zeroed,
                } => {
                    let align = 1usize << align_pow;
                    let l = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: size >= 1.
                    let ptr = unsafe { alloc_maybe_zeroed(&a, l, zeroed) };
                    prop_assert!(!ptr.is_null(), "op {n} {op:?}: null");
                    prop_assert_eq!(ptr as usize % align, 0, "op {} {:?}: misaligned", n, op);
                    // SAFETY: fresh block of size bytes.
                    let s = unsafe { std::slice::from_raw_parts_mut(ptr, size) };
                    if zeroed {
                        prop_assert_eq!(first_not(s, 0), None, "op {} {:?}: not zeroed", n, op);
                    }
                    next_id += 1;
                    fill_pattern(s, next_id);
                    live.push(Live {
                        ptr,
                        size,
                        align,
                        id: next_id,
                    });
                }
                Op::Realloc { idx, new_size } if !live.is_empty() => {
                    let i = idx % live.len();
                    let b = &mut live[i];
                    let l = Layout::from_size_align(b.size, b.align).unwrap();
                    // SAFETY: b.ptr is live with layout l; new_size >= 1.
                    let q = unsafe { a.realloc(b.ptr, l, new_size) };
                    prop_assert!(!q.is_null(), "op {n} {op:?}: realloc returned null");
                    prop_assert_eq!(q as usize % b.align, 0, "op {} {:?}: misaligned", n, op);
                    let keep = b.size.min(new_size);
                    // SAFETY: q is live with new_size >= keep bytes.
                    let s = unsafe { std::slice::from_raw_parts_mut(q, new_size) };
                    prop_assert_eq!(
                        check_pattern(&s[..keep], b.id),
                        None,
                        "op {} {:?}: realloc {} -> {} lost content",
                        n,
                        op,
                        b.size,
                        new_size
                    );
                    fill_pattern(s, b.id);
                    b.ptr = q;
                    b.size = new_size;
                }
                Op::Free { idx } if !live.is_empty() => {
                    let b = live.swap_remove(idx % live.len());
                    // SAFETY: b.ptr is live with b.size bytes.
                    let s = unsafe { std::slice::from_raw_parts(b.ptr, b.size) };
                    prop_assert_eq!(
                        check_pattern(s, b.id),
                        None,
                        "op {} {:?}: content wrong before free",
                        n,
                        op
                    );
                    // SAFETY: live block with this layout.
                    unsafe { a.dealloc(b.ptr, Layout::from_size_align(b.size, b.align).unwrap()) };
                }
                Op::Reclaim => {
                    let mut maps = Vec::new();
                    anon_rw_mappings(&mut maps);
                    for (s, e) in maps {
                        let _ = advise(s as *mut u8, e - s, MADV_PAGEOUT);
                    }
                }
                _ => {}
            }
            // Every live block must still hold its pattern after every op.
            for b in &live {
                // SAFETY: b.ptr is live with b.size bytes.
                let s = unsafe { std::slice::from_raw_parts(b.ptr, b.size) };
                prop_assert_eq!(
                    check_pattern(s, b.id),
                    None,
                    "after op {} {:?}: block id {} ({} bytes) corrupted",
                    n,
                    op,
                    b.id,
                    b.size
                );
            }
        }
        Ok(())
    })();
    for b in live.drain(..) {
        // SAFETY: live block with this layout.
        unsafe { a.dealloc(b.ptr, Layout::from_size_align(b.size, b.align).unwrap()) };
    }
    result?;
    let s = a.stats();
    prop_assert_eq!(s.live_bytes, 0, "live_bytes with nothing live: {:?}", s);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

macro_rules! model_test {
    ($name:ident, $release:expr) => {
        proptest! {
            #![proptest_config(ProptestConfig {
                cases: cases(),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]
            #[test]
            fn $name(prefetch in prefetch_strategy(),
                     ops in prop::collection::vec(op_strategy(), 1..40)) {
                run($release, prefetch, &ops)?;
            }
        }
    };
}

model_test!(model_unmap, Release::Unmap);
model_test!(model_dontneed, Release::DontNeed);
model_test!(model_free, Release::Free);
model_test!(model_retain, Release::Retain);
model_test!(model_adaptive, Release::Adaptive);

/// The cache's byte counts after every operation of a random sequence, with no background thread
/// (nothing else moves ranges meanwhile): within the budget, split by page state as the policy
/// allows, and all zero once everything is freed and purged. Whoever keeps the counts (the
/// engine, or the cache itself: issue #11), they must say this.
fn run_counts(release: Release, ops: &[Op]) -> Result<(), TestCaseError> {
    let budget = 64 * MIB as u64;
    let a = PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(release)
            .prefetch(Prefetch::None)
            .threshold(THRESHOLD)
            .cache(budget as usize)
            .decay_ms(Some(20))
            .background(false),
    );
    let mut live: Vec<(*mut u8, Layout)> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Alloc {
                size,
                align_pow,
                zeroed,
            } => {
                let l = Layout::from_size_align(size, 1 << align_pow).unwrap();
                // SAFETY: size >= 1.
                let p = unsafe { alloc_maybe_zeroed(&a, l, zeroed) };
                prop_assert!(!p.is_null());
                live.push((p, l));
            }
            Op::Realloc { idx, new_size } if !live.is_empty() => {
                let i = idx % live.len();
                let b = &mut live[i];
                // SAFETY: b.0 is live with layout b.1; new_size >= 1.
                let q = unsafe { a.realloc(b.0, b.1, new_size) };
                prop_assert!(!q.is_null());
                *b = (q, Layout::from_size_align(new_size, b.1.align()).unwrap());
            }
            Op::Free { idx } if !live.is_empty() => {
                let (p, l) = live.swap_remove(idx % live.len());
                // SAFETY: live block with this layout.
                unsafe { a.dealloc(p, l) };
            }
            _ => {}
        }
        let s = a.stats();
        let (total, resident, lazy) =
            (s.cached_bytes, s.cached_resident_bytes, s.cached_lazy_bytes);
        prop_assert!(
            resident + lazy <= total && total <= budget,
            "op {n} {op:?}: {s}"
        );
        let allowed = match release {
            Release::Unmap => total == 0,
            Release::Retain => resident == total,
            Release::DontNeed => resident + lazy == 0,
            Release::Free => resident == 0,
            _ => true,
        };
        prop_assert!(allowed, "op {n} {op:?}: {release:?} cannot cache this: {s}");
        // The cache's own invariants (no overlap, whole pages, counts = sum of slots); the
        // background thread is off here, so nothing else touches the cache.
        if let Err(fault) = a.check_cache() {
            prop_assert!(false, "op {n} {op:?}: cache invariant broken: {fault}");
        }
    }
    for (p, l) in live.drain(..) {
        // SAFETY: live block with this layout.
        unsafe { a.dealloc(p, l) };
    }
    a.purge();
    let s = a.stats();
    prop_assert_eq!(
        (s.cached_bytes, s.cached_resident_bytes, s.cached_lazy_bytes),
        (0, 0, 0),
        "after purge: {}",
        s
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn model_cached_byte_counts(release in prop::sample::select(Release::ALL.to_vec()),
                                ops in prop::collection::vec(op_strategy(), 1..40)) {
        run_counts(release, &ops)?;
    }
}
