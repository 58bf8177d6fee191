//! When the kernel refuses a mapping, the inner allocator serves the large block (issue #10),
//! and `dealloc` and `realloc` reach the allocator that made each block.
//!
//! A child process lowers `RLIMIT_AS` so that no mapping can be made any more, over an inner
//! allocator that serves from memory it mapped before the limit (a bump allocator that records
//! every block it hands out and checks every block it is given back). Blocks of alignment 8,
//! 4 KiB and 2 MiB are allocated, written, grown, shrunk below the threshold and freed.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use pagewise::{Config, PageAlloc, Release};

const TEST: &str = "the_inner_allocator_serves_what_the_kernel_refuses";
const ARENA: usize = 512 * MIB;

/// Serves from one region mapped up front; remembers what is live, checks what comes back.
struct Bump {
    base: AtomicUsize,
    next: AtomicUsize,
    live: Mutex<Vec<(usize, Layout)>>,
    frees: AtomicUsize,
}

impl Bump {
    fn new() -> Bump {
        // SAFETY: a fresh anonymous mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ARENA,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Bump {
            base: AtomicUsize::new(p as usize),
            next: AtomicUsize::new(p as usize),
            live: Mutex::new(Vec::new()),
            frees: AtomicUsize::new(0),
        }
    }
}

// SAFETY: blocks are distinct, aligned ranges of the arena, never handed out twice.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let start = (self.next.load(Ordering::Relaxed) + l.align() - 1) & !(l.align() - 1);
        if start + l.size() > self.base.load(Ordering::Relaxed) + ARENA {
            return std::ptr::null_mut();
        }
        self.next.store(start + l.size(), Ordering::Relaxed);
        self.live.lock().unwrap().push((start, l));
        start as *mut u8
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let mut live = self.live.lock().unwrap();
        let i = live
            .iter()
            .position(|&(a, _)| a == p as usize)
            .unwrap_or_else(|| panic!("inner dealloc of {p:p}, which it never handed out"));
        assert_eq!(live[i].1, l, "inner dealloc of {p:p} with another layout");
        live.swap_remove(i);
        self.frees.fetch_add(1, Ordering::Relaxed);
    }
}

static BUMP: std::sync::LazyLock<Bump> = std::sync::LazyLock::new(Bump::new);

/// The inner allocator of the test: the one static `Bump`, so the test can inspect it.
struct Inner;

// SAFETY: forwards to BUMP, a valid allocator.
unsafe impl GlobalAlloc for Inner {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { BUMP.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { BUMP.dealloc(p, l) }
    }
}

fn child_main() {
    std::sync::LazyLock::force(&BUMP);
    let a = PageAlloc::with_inner(Inner)
        .with_config(Config::DEFAULT.ignore_env().release(Release::Retain));
    // Use the allocator once before the limit (config, engine).
    let warm = Layout::from_size_align(MIB, 8).unwrap();
    // SAFETY: non-zero size; freed at once.
    unsafe { a.dealloc(a.alloc(warm), warm) };
    a.purge();
    let rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: lowering our own soft limit is always allowed. 0: no new mapping at all.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);

    let mut blocks = Vec::new();
    for (i, align) in [8usize, 4096, 2 * MIB].into_iter().enumerate() {
        let l = Layout::from_size_align(3 * MIB + 123, align).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe {
            if i == 1 {
                a.alloc_zeroed(l)
            } else {
                a.alloc(l)
            }
        };
        assert!(!p.is_null(), "align {align}: the fallback must serve");
        assert_eq!(p as usize % align, 0, "align {align}: misaligned {p:p}");
        // SAFETY: p is a live block of l.size() bytes.
        let s = unsafe { std::slice::from_raw_parts_mut(p, l.size()) };
        if i == 1 {
            assert_eq!(first_not(s, 0), None, "alloc_zeroed from the fallback");
        }
        fill_pattern(s, i as u64);
        blocks.push((p, l, i as u64));
    }
    let s = a.stats();
    assert_eq!(s.fallback_allocs, 3, "{s}");
    // Grow (large to large: no mapping possible, so the fallback again), then shrink below the
    // threshold (to the inner allocator); contents kept at each step.
    for (p, l, id) in blocks.iter_mut() {
        let old = l.size();
        // SAFETY: *p is live with layout *l; the new size is non-zero.
        let q = unsafe { a.realloc(*p, *l, 5 * MIB) };
        assert!(!q.is_null(), "grow of a fallback block");
        // SAFETY: q holds at least `old` bytes.
        let kept = unsafe { std::slice::from_raw_parts(q, old) };
        assert_eq!(check_pattern(kept, *id), None, "grow lost the contents");
        let grown = Layout::from_size_align(5 * MIB, l.align()).unwrap();
        // SAFETY: q is live with layout `grown`.
        let r = unsafe { a.realloc(q, grown, 64 * KIB) };
        assert!(!r.is_null(), "shrink below the threshold");
        // SAFETY: r holds 64 KiB.
        let kept = unsafe { std::slice::from_raw_parts(r, 64 * KIB) };
        assert_eq!(check_pattern(kept, *id), None, "shrink lost the contents");
        *p = r;
        *l = Layout::from_size_align(64 * KIB, l.align()).unwrap();
    }
    for (p, l, _) in blocks {
        // SAFETY: p is live with layout l.
        unsafe { a.dealloc(p, l) };
    }
    let s = a.stats();
    println!("after: {s}");
    assert_eq!(
        s.fallback_allocs, 6,
        "3 allocations and 3 grown copies: {s}"
    );
    assert_eq!(s.copied_reallocs, 3, "{s}");
    assert_eq!(s.large_allocs, s.large_frees, "{s}");
    let live = BUMP.live.lock().unwrap().len();
    assert_eq!(live, 0, "every inner block was given back");
    assert_eq!(
        BUMP.frees.load(Ordering::Relaxed),
        9,
        "6 large and 3 small inner frees"
    );
}

#[test]
fn the_inner_allocator_serves_what_the_kernel_refuses() {
    if child_mode().as_deref() == Some("fallback") {
        child_main();
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let out = run_child(TEST, "fallback", &[], Duration::from_secs(60));
    println!("{}", out.stdout);
    assert!(out.status.success(), "child failed:\n{}", out.describe());
}
