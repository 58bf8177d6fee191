//! Process-level wrappers: the background thread and its signal mask, sleeping, the `fork` and
//! exit hooks, fault counts, the process id and the environment.
//!
//! The shared contract of [`os`](super) holds here too: nothing allocates from Rust (no
//! `std::thread`, no `std::env`), nothing panics, and every failure is reported to the caller,
//! which carries on without the feature. `pthread_create`, `pthread_atfork` and `atexit` may use a
//! few bytes of glibc's own `malloc` inside; that is C's heap, not the Rust global allocator, so
//! it never re-enters pagewise.

use core::ffi::{c_int, c_void, CStr};
use core::ptr;

/// Starts `entry` on a new detached thread with a stack of `stack_bytes` and every signal
/// blocked. Returns whether the thread was created.
///
/// A new thread inherits its creator's signal mask, so every signal is blocked on the calling
/// thread around `pthread_create` and the caller's mask is restored afterwards: the new thread
/// never has a moment in which a process-directed signal could run one of the program's handlers
/// on its (small) stack (issue #10). If the mask cannot be changed the thread is created anyway;
/// `entry` should then call [`block_all_signals`] first.
///
/// A `stack_bytes` below `PTHREAD_STACK_MIN` is refused by glibc and the default stack size is
/// used instead. `entry` must not panic: a panic cannot unwind out of the thread's C entry point
/// and aborts the process. If `entry` returns, the thread ends.
pub(crate) fn spawn_detached(entry: fn(), stack_bytes: usize) -> bool {
    let saved = mask_all_signals();
    let created = create_detached(entry, stack_bytes);
    if let Some(saved) = saved {
        set_signal_mask(&saved);
    }
    created
}

/// Blocks every signal on the calling thread (best effort: glibc keeps its own two internal
/// signals, and a failure leaves the mask as it was). For a helper thread whose signals belong to
/// the program's own threads.
pub(crate) fn block_all_signals() {
    let all = full_signal_set();
    // SAFETY: `all` is a valid, filled sigset_t; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, ptr::null_mut()) };
}

/// Sleeps for about `ms` milliseconds. A signal may end the sleep early (`EINTR`), which callers
/// that sleep in a loop take as an early wake-up.
pub(crate) fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        // u64::MAX / 1000 fits in a 64-bit time_t.
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: ts is a valid timespec with tv_nsec below one second; the remaining-time pointer
    // may be null.
    unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
}

/// Registers `handler` to run in the child after every `fork` (`pthread_atfork` with only a child
/// handler). Returns whether it was registered (glibc refuses only when out of memory).
///
/// The handler runs in a copy of a possibly multi-threaded process of which only the forking
/// thread exists: it should only reset state (atomics), never wait, lock or allocate. It must not
/// panic (that aborts the child).
pub(crate) fn at_fork_child(handler: extern "C" fn()) -> bool {
    // SAFETY: the handler is a plain `extern "C" fn()` that lives for the whole program (it is
    // code); the prepare and parent handlers are absent, which pthread_atfork allows.
    unsafe { libc::pthread_atfork(None, None, Some(handler)) == 0 }
}

/// Registers `handler` to run at normal process exit (`atexit`; not on `_exit`, a signal or
/// abort). Returns whether it was registered. The handler must not panic (that aborts the
/// process while it exits).
pub(crate) fn at_exit(handler: extern "C" fn()) -> bool {
    // SAFETY: the handler is a plain `extern "C" fn()` that lives for the whole program.
    unsafe { libc::atexit(handler) == 0 }
}

/// A descriptor kept open, and the file it named when it was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SavedFd {
    pub(crate) fd: c_int,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// The file `fd` names now (`fstat`), or `None` if it is not open.
fn file_of(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: st is a valid stat to fill; a bad fd is an error return.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// A close-on-exec copy of stderr at a high descriptor number (at least 100, out of the way of
/// programs that count on small ones), for a line written at exit: many programs close stderr
/// from an `atexit` handler that runs before pagewise's (GNU coreutils' `close_stdout`).
pub(crate) fn copy_stderr() -> Option<SavedFd> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates fd 2 onto the lowest free descriptor >= 100, or fails.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 100) };
    if fd < 0 {
        return None;
    }
    let Some((dev, ino)) = file_of(fd) else {
        // SAFETY: fd was just opened above and is ours.
        unsafe { libc::close(fd) };
        return None;
    };
    Some(SavedFd { fd, dev, ino })
}

/// Whether `saved` still names the file it was opened on: a program that closes descriptors it
/// did not open (daemons, `close_range`) may have closed it and reused the number for a file of
/// its own, which must never get pagewise's output (issue #10).
pub(crate) fn still_open(saved: SavedFd) -> bool {
    file_of(saved.fd) == Some((saved.dev, saved.ino))
}

/// The process's page faults so far, `(minor, major)`, from `getrusage(RUSAGE_SELF)`; `None` if
/// the call fails.
pub(crate) fn rusage_faults() -> Option<(u64, u64)> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: ru is a valid rusage to fill; RUSAGE_SELF is a valid target.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    Some((ru.ru_minflt as u64, ru.ru_majflt as u64))
}

/// This process's id (`getpid`, which cannot fail).
pub(crate) fn pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    pid as u32
}

/// The value of the environment variable `name`, if set, read with `getenv(3)` (`std::env`
/// allocates, and this is read from inside the allocator).
///
/// The string belongs to the environment block, not to pagewise: it stays valid, unchanged, until
/// the environment is modified (`setenv`, `unsetenv`, `putenv`, `std::env::set_var` or
/// `remove_var`, which Rust 2024 makes `unsafe` for this reason: their callers must ensure that no
/// other thread reads the environment, or holds a string from it, meanwhile). A value that must
/// outlive such a change is copied by the caller. glibc happens to keep replaced strings alive,
/// but pagewise does not rely on it.
pub(crate) fn getenv(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: name is NUL-terminated; getenv returns null or a pointer into the environment block.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: a non-null getenv result is a NUL-terminated string, valid for as long as the
    // contract above says.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })
}

/// A signal set with every signal in it.
fn full_signal_set() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid value for sigfillset to overwrite.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: set is a valid sigset_t to fill (sigfillset cannot fail with a valid pointer).
    unsafe { libc::sigfillset(&mut set) };
    set
}

/// Blocks every signal on the calling thread and returns the mask it had, or `None` (mask
/// unchanged) if that failed.
fn mask_all_signals() -> Option<libc::sigset_t> {
    let all = full_signal_set();
    // SAFETY: an all-zero sigset_t is a valid value for pthread_sigmask to overwrite.
    let mut saved: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `all` is a valid, filled set and `saved` a valid set to write the old mask into.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved) };
    (rc == 0).then_some(saved)
}

/// Sets the calling thread's signal mask to `mask` (a mask saved by [`mask_all_signals`]).
fn set_signal_mask(mask: &libc::sigset_t) {
    // SAFETY: mask is a valid sigset_t written by pthread_sigmask; a null old-set pointer is
    // allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, ptr::null_mut()) };
}

/// `pthread_create` of a detached thread running `entry` (through [`thread_start`]).
fn create_detached(entry: fn(), stack_bytes: usize) -> bool {
    // SAFETY: an all-zero pthread_attr_t is valid storage for pthread_attr_init to initialise.
    let mut attr: libc::pthread_attr_t = unsafe { core::mem::zeroed() };
    // SAFETY: attr is valid storage; on success it must be destroyed, which is done below.
    if unsafe { libc::pthread_attr_init(&mut attr) } != 0 {
        return false;
    }
    // SAFETY: attr was initialised above and is destroyed once, after the create. A refused
    // stack size (below PTHREAD_STACK_MIN) leaves the default. The entry point is an
    // `extern "C"` fn, and its argument is `entry` cast to a pointer, which `thread_start` casts
    // back; the thread id is written into `tid` and not used further (the thread is detached).
    unsafe {
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, stack_bytes);
        let mut tid: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut tid, &attr, thread_start, entry as *mut c_void);
        libc::pthread_attr_destroy(&mut attr);
        rc == 0
    }
}

/// The C entry point of a thread started by [`spawn_detached`]: calls the `fn()` passed as its
/// argument. A panic in it cannot unwind through this `extern "C"` fn: the process aborts.
extern "C" fn thread_start(arg: *mut c_void) -> *mut c_void {
    // SAFETY: arg is the `fn()` that create_detached cast to a pointer; function and data pointers
    // have the same size and representation on every Linux target, so this restores it.
    let entry = unsafe { core::mem::transmute::<*mut c_void, fn()>(arg) };
    entry();
    ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::time::{Duration, Instant};

    /// The calling thread's signal mask.
    fn current_mask() -> libc::sigset_t {
        // SAFETY: a zeroed sigset_t is valid to overwrite; a null new set only reads the mask.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &mut set),
                0
            );
            set
        }
    }

    fn blocks(set: &libc::sigset_t, signal: libc::c_int) -> bool {
        // SAFETY: set is a valid sigset_t and signal a valid signal number.
        unsafe { libc::sigismember(set, signal) == 1 }
    }

    const WATCHED: [libc::c_int; 5] = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGCHLD,
        libc::SIGPROF,
    ];

    /// 0 until the spawned thread looked at its mask; then 1 if it found every watched signal
    /// blocked, 2 if not.
    static SEEN: AtomicU8 = AtomicU8::new(0);

    fn check_own_mask() {
        let mask = current_mask();
        let all = WATCHED.iter().all(|&s| blocks(&mask, s));
        SEEN.store(if all { 1 } else { 2 }, Ordering::Release);
    }

    #[test]
    fn spawned_thread_starts_with_every_signal_blocked_and_the_callers_mask_is_kept() {
        // Run on a thread of our own whose mask we know: SIGUSR1 blocked, the rest open.
        std::thread::spawn(|| {
            // SAFETY: a zeroed sigset_t is valid for sigemptyset/sigaddset to fill.
            unsafe {
                let mut one: libc::sigset_t = core::mem::zeroed();
                libc::sigemptyset(&mut one);
                libc::sigaddset(&mut one, libc::SIGUSR1);
                libc::pthread_sigmask(libc::SIG_SETMASK, &one, ptr::null_mut());
            }
            assert!(spawn_detached(check_own_mask, 64 << 10));
            let after = current_mask();
            assert!(blocks(&after, libc::SIGUSR1));
            assert!(!blocks(&after, libc::SIGINT) && !blocks(&after, libc::SIGTERM));
            let start = Instant::now();
            while SEEN.load(Ordering::Acquire) == 0 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "thread never ran"
                );
                sleep_ms(1);
            }
            assert_eq!(SEEN.load(Ordering::Acquire), 1, "a signal was open");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn block_all_signals_blocks_them_on_this_thread_only() {
        let blocked = std::thread::spawn(|| {
            block_all_signals();
            let mask = current_mask();
            WATCHED.iter().all(|&s| blocks(&mask, s))
        })
        .join()
        .unwrap();
        assert!(blocked);
    }

    #[test]
    fn sleeps_at_least_the_time_asked() {
        let start = Instant::now();
        sleep_ms(20);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    extern "C" fn nothing() {}

    #[test]
    fn hooks_register() {
        assert!(at_exit(nothing));
        assert!(at_fork_child(nothing));
    }

    // `getenv` is tested by config::env, the one test in this binary that touches the
    // environment: reading it here could race with that test's `set_var`.
    #[test]
    fn reads_faults_and_pid() {
        let (minor, _major) = rusage_faults().expect("getrusage");
        assert!(minor > 0);
        assert_eq!(pid(), std::process::id());
    }
}
