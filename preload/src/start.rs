//! Start-up: when pagewise takes over large requests, and the threshold that routes them.
//!
//! The first `malloc` may come from the dynamic loader or from a constructor before `main`, and
//! from any thread. Until pagewise has started every request goes to glibc; that is always
//! correct, because `free` tells blocks apart by the table of pagewise's blocks (`owners`), not
//! by size. Starting reads the `PAGEWISE_*` environment and the cgroup through the root crate,
//! which does both without allocating (`getenv(3)` and raw `open`/`read`), and registers the
//! `fork` and exit handlers, which may call `malloc`: such a nested call, like a call from
//! another thread meanwhile, finds the start under way and goes to glibc; nothing waits.
//! Start-up is tried again on a later call if the C library's `environ` is not set up yet (a
//! call from the loader before libc's own initialisation), so that the variables are never
//! missed.

use core::ffi::c_char;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::engine;

/// The threshold in force; 0 until started (so that every request takes the slow path once).
static THRESHOLD: AtomicUsize = AtomicUsize::new(0);

const IDLE: u8 = 0;
const STARTING: u8 = 1;
const STARTED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(IDLE);

extern "C" {
    /// The C library's environment (`environ(7)`), null until libc has initialised it.
    static environ: *const *const c_char;
}

/// The threshold: requests of this many bytes and more are pagewise's. 0 before start-up.
#[inline]
pub(crate) fn threshold() -> usize {
    THRESHOLD.load(Ordering::Relaxed)
}

/// The threshold, starting pagewise if it has not started; `None` while it cannot start (see
/// the module documentation): the caller serves the request from glibc.
#[cold]
pub(crate) fn start() -> Option<usize> {
    if STATE.load(Ordering::Acquire) == STARTED {
        return Some(threshold());
    }
    // SAFETY: `environ` is a plain pointer variable of libc; reading it has no side effect.
    let env_ready = unsafe { !core::ptr::addr_of!(environ).read_volatile().is_null() };
    if !env_ready
        || STATE
            .compare_exchange(IDLE, STARTING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return None;
    }
    let config = engine::start();
    let t = config.get_threshold();
    THRESHOLD.store(t, Ordering::Relaxed);
    STATE.store(STARTED, Ordering::Release);
    if config.get_verbose() {
        say_preloaded(t);
    }
    Some(t)
}

/// `PAGEWISE_VERBOSE=1`: one line saying that pagewise runs preloaded and what it serves (the
/// root crate has printed the configuration just before).
fn say_preloaded(threshold: usize) {
    let mut line = Line::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = write!(
        line,
        "pagewise: preloaded (libpagewise.so, pid {pid}): malloc and friends of {threshold} bytes \
         and more, or aligned to that, are pagewise's blocks; smaller ones go to glibc's malloc"
    );
    line.emit();
}

/// A stderr line built on the stack and written with one `write(2)`: printing must not allocate.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    const fn new() -> Line {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    fn emit(mut self) {
        let n = self.len.min(self.buf.len() - 1);
        self.buf[n] = b'\n';
        // SAFETY: buf[..n + 1] is initialised; fd 2 may be closed, then write fails harmlessly.
        let _ = unsafe { libc::write(2, self.buf.as_ptr().cast(), n + 1) };
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
