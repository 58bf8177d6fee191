//! The background release thread: applies decay and the pressure signal to every allocator even
//! when the program makes no further allocation (like jemalloc's `background_thread` or Go's
//! scavenger).
//!
//! It is a bare `pthread_create` thread ([`os::spawn_detached`]), not `std::thread::spawn`:
//! spawning from std allocates (an `Arc`, the thread name), and we are started from inside the
//! allocator. pagewise holds no lock anywhere, so starting it from `dealloc` cannot deadlock.
//! While some cache holds ranges it wakes at the next decay deadline or every
//! [`PRESSURE_POLL_MS`], whichever is sooner (every [`LIMIT_POLL_MS`] under a soft limit), and
//! reads the pressure file and the limits up the watched cgroup chain once per wake-up; while
//! every cache is empty it wakes every [`IDLE_TICK_MS`] and does nothing. It is started by the
//! first cached free that has something for it to do: decay, `adaptive`, or a soft limit that is
//! in force or could appear on a watched cgroup (issue #19: with decay off and no limit yet, a
//! limit written later must still be seen). Turn it off with
//! `PAGEWISE_BACKGROUND=0` or [`Config::background`](crate::Config::background); decay and
//! pressure then run on large allocations and frees only.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::engine::{background_poll, set_background_running, ENGINES, LIMIT_POLL_MS};
use crate::os;

/// Longest sleep while something is cached: the pressure signal is read at least this often,
/// so pressure is acted on within about this much time.
pub(crate) const PRESSURE_POLL_MS: u64 = 50;
/// Wake-up period while every cache is empty (a range freed meanwhile is looked at within this
/// time; a wake-up with nothing cached reads nothing).
pub(crate) const IDLE_TICK_MS: u64 = 50;
/// The thread's stack: it only walks the engines and makes syscalls.
const STACK_BYTES: usize = 64 << 10;

const IDLE: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(IDLE);

/// Starts the thread once per process. Never blocks; if two threads race, one starts it.
pub(crate) fn ensure_started() {
    if STATE.load(Ordering::Relaxed) != IDLE
        || STATE
            .compare_exchange(IDLE, STARTING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    // The new thread starts with every signal blocked (`spawn_detached` blocks them around the
    // create): blocking them only inside `run` would leave a window in which a process-directed
    // signal could run the program's handler on the helper's 64 KiB stack (issue #10).
    let ok = os::spawn_detached(run, STACK_BYTES);
    STATE.store(if ok { RUNNING } else { FAILED }, Ordering::Release);
    set_background_running(ok);
}

/// In a `fork` child the thread does not exist: let the child start its own when needed.
pub(crate) fn after_fork_in_child() {
    STATE.store(IDLE, Ordering::Relaxed);
    set_background_running(false);
}

fn run() {
    // Every signal is blocked already (see `ensure_started`); block them again in case the
    // creator could not change its mask: the handlers belong to the program's own threads.
    os::block_all_signals();
    loop {
        let now = os::now_ms();
        let mut sleep = IDLE_TICK_MS;
        // The soft limit covers every engine's cache (issue #19): while anything is cached, an
        // engine that watches a limit checks it even if its own cache is empty.
        let any_cached = ENGINES.iter().any(|e| e.is_active() && e.has_cached());
        if any_cached {
            background_poll(now);
        }
        for e in &ENGINES {
            if !(e.is_active() && e.background_enabled()) {
                continue;
            }
            if any_cached && e.watches_limit() && !e.has_cached() {
                e.check_limit(now);
                if e.has_limit() {
                    sleep = sleep.min(LIMIT_POLL_MS);
                }
            }
            if e.has_cached() {
                let next = e.maintain(now);
                if e.has_cached() {
                    // Wake for the next decay deadline (plus one coarse-clock tick), or to poll
                    // the pressure signal, whichever comes first.
                    let until_due = next.map_or(u64::MAX, |due| due.saturating_sub(now) + 4);
                    sleep = sleep.min(PRESSURE_POLL_MS).min(until_due);
                    if e.has_limit() {
                        // The soft limit is checked more often: usage can cross it at any time.
                        sleep = sleep.min(LIMIT_POLL_MS);
                    }
                }
            }
        }
        os::sleep_ms(sleep.max(1));
    }
}
