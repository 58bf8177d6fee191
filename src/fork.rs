//! Process lifecycle hooks: `pthread_atfork` so that a `fork` child can allocate at once, and
//! `atexit` for `PAGEWISE_STATS=1` (written to a copy of stderr, which survives programs that
//! close stderr in their own exit handlers; the one descriptor pagewise keeps, and only then).
//!
//! pagewise takes no lock, so a child never inherits one held by a thread that no longer exists;
//! what it can inherit is cache slots or a pressure read marked busy by such a thread, and a
//! background thread that does not exist in the child. The child handler clears those.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

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

/// A copy of stderr taken when the exit hook is registered (descriptor, device, inode; -1: none),
/// for programs that close stderr before pagewise's exit hook runs (`os::copy_stderr`).
static STATS_FD: AtomicI32 = AtomicI32::new(-1);
static STATS_DEV: AtomicU64 = AtomicU64::new(0);
static STATS_INO: AtomicU64 = AtomicU64::new(0);

/// Registers the exit hook that prints every allocator's statistics, once per process.
pub(crate) fn print_stats_at_exit() {
    if AT_EXIT.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(saved) = os::copy_stderr() {
        STATS_DEV.store(saved.dev, Ordering::Relaxed);
        STATS_INO.store(saved.ino, Ordering::Relaxed);
        STATS_FD.store(saved.fd, Ordering::Release);
    }
    // If glibc refuses (out of memory), the statistics are not printed.
    let _ = os::at_exit(print_stats);
}

/// Where the statistics go: the copy of stderr while it still names the same file, else fd 2.
fn stats_fd() -> core::ffi::c_int {
    let saved = os::SavedFd {
        fd: STATS_FD.load(Ordering::Acquire),
        dev: STATS_DEV.load(Ordering::Relaxed),
        ino: STATS_INO.load(Ordering::Relaxed),
    };
    if saved.fd >= 0 && os::still_open(saved) {
        saved.fd
    } else {
        2
    }
}

extern "C" fn print_stats() {
    let fd = stats_fd();
    for (i, e) in ENGINES.iter().enumerate() {
        if e.is_active() {
            report::line_to(fd, &format_args!("stats[{i}]: {}", e.stats()));
        }
    }
}
