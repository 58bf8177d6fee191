//! Process lifecycle hooks: `pthread_atfork` so that a `fork` child can allocate at once, and
//! `atexit` for `PAGEWISE_STATS=1`.
//!
//! pagewise takes no lock, so a child never inherits one held by a thread that no longer exists;
//! what it can inherit is cache slots or a pressure read marked busy by such a thread, and a
//! background thread that does not exist in the child. The child handler clears those.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::engine::ENGINES;
use crate::{background, os, report};

static REGISTERED: AtomicBool = AtomicBool::new(false);
static AT_EXIT: AtomicBool = AtomicBool::new(false);

/// Registers the fork handler once per process.
pub(crate) fn register() {
    if REGISTERED.swap(true, Ordering::Relaxed) {
        return;
    }
    // If glibc refuses (out of memory), a child inherits busy marks and no background thread;
    // nothing can be done about it from inside the allocator.
    let _ = os::at_fork_child(child);
}

extern "C" fn child() {
    background::after_fork_in_child();
    crate::map_count::after_fork_in_child();
    crate::cgroup::after_fork_in_child();
    for e in &ENGINES {
        e.after_fork_in_child();
    }
}

/// Registers the exit hook that prints every allocator's statistics, once per process.
pub(crate) fn print_stats_at_exit() {
    if AT_EXIT.swap(true, Ordering::Relaxed) {
        return;
    }
    // If glibc refuses (out of memory), the statistics are not printed.
    let _ = os::at_exit(print_stats);
}

extern "C" fn print_stats() {
    for (i, e) in ENGINES.iter().enumerate() {
        if e.is_active() {
            report::line(&format_args!("stats[{i}]: {}", e.stats()));
        }
    }
}
