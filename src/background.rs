//! The background release thread: applies decay and the pressure signal to every allocator even
//! when the program makes no further allocation (like jemalloc's `background_thread` or Go's
//! scavenger).
//!
//! It is a bare `pthread_create` thread, not `std::thread::spawn`: spawning from std allocates
//! (an `Arc`, the thread name), and we are started from inside the allocator. pagewise holds no
//! lock anywhere, so starting it from `dealloc` cannot deadlock. While some cache holds ranges it
//! wakes at the next decay deadline or every [`PRESSURE_POLL_MS`], whichever is sooner, and reads
//! the pressure file once per wake-up; while every cache is empty it wakes every
//! [`IDLE_TICK_MS`] and does nothing. Turn it off with
//! `PAGEWISE_BACKGROUND=0` or [`Config::background`](crate::Config::background); decay and
//! pressure then run on large allocations and frees only.

use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::engine::ENGINES;
use crate::os;

/// Longest sleep while something is cached: the pressure signal is read at least this often,
/// so pressure is acted on within about this much time.
pub(crate) const PRESSURE_POLL_MS: u64 = 50;
/// Wake-up period while every cache is empty (a range freed meanwhile is looked at within this
/// time; a wake-up with nothing cached reads nothing).
pub(crate) const IDLE_TICK_MS: u64 = 50;

const IDLE: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(IDLE);

/// Whether the thread is running (in this process: a `fork` child starts without it).
pub(crate) fn running() -> bool {
    STATE.load(Ordering::Relaxed) == RUNNING
}

/// Starts the thread once per process. Never blocks; if two threads race, one starts it.
pub(crate) fn ensure_started() {
    if STATE.load(Ordering::Relaxed) != IDLE
        || STATE
            .compare_exchange(IDLE, STARTING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    // The new thread inherits the creating thread's signal mask: block every signal around the
    // create, so that it starts with all of them blocked. Blocking them only inside `run` would
    // leave a window in which a process-directed signal could run the program's handler on the
    // helper's 64 KiB stack (issue #10).
    // SAFETY: attr is initialised by pthread_attr_init before use and destroyed after; the sets
    // are valid sigset_t values (filled by sigfillset, or written by pthread_sigmask before the
    // restore reads them); the thread entry point is an `extern "C"` fn that never unwinds and
    // takes no argument.
    let ok = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut saved: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        let masked = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved) == 0;
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 << 10);
        let mut tid: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut tid, &attr, run, ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        if masked {
            libc::pthread_sigmask(libc::SIG_SETMASK, &saved, ptr::null_mut());
        }
        rc == 0
    };
    STATE.store(if ok { RUNNING } else { FAILED }, Ordering::Release);
}

/// In a `fork` child the thread does not exist: let the child start its own when needed.
pub(crate) fn after_fork_in_child() {
    STATE.store(IDLE, Ordering::Relaxed);
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    // Every signal is blocked already (inherited from `ensure_started`); block them again in case
    // the creator's pthread_sigmask failed: the handlers belong to the program's own threads.
    // SAFETY: set is a valid sigset_t filled by sigfillset before use.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
    }
    loop {
        let now = os::now_ms();
        let mut sleep = IDLE_TICK_MS;
        for e in &ENGINES {
            if e.is_active() && e.background_enabled() && e.has_cached() {
                let next = e.maintain(now);
                if e.has_cached() {
                    // Wake for the next decay deadline (plus one coarse-clock tick), or to poll
                    // the pressure signal, whichever comes first.
                    let until_due = next.map_or(u64::MAX, |due| due.saturating_sub(now) + 4);
                    sleep = sleep.min(PRESSURE_POLL_MS).min(until_due);
                }
            }
        }
        sleep_ms(sleep.max(1));
    }
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: ts is a valid timespec; an early wake-up (EINTR) is harmless.
    unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
}
