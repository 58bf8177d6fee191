//! The process's memory cgroup (issue #13, "container-aware"): which directory, which version,
//! and its limit, usage and pressure file, read without allocating and without blocking.
//!
//! # Where the cgroup is
//!
//! With `PAGEWISE_CGROUP=auto` (the default) the directory is found from two files (proc(5),
//! <https://man7.org/linux/man-pages/man7/cgroups.7.html> and
//! <https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html>):
//!
//! - `/proc/self/cgroup`, one line per hierarchy, `hierarchy-ID:controller-list:cgroup-path`.
//!   The unified (v2) hierarchy is `0::/path`; the v1 memory controller is `N:memory:/path`, or
//!   `N:a,memory,b:/path` when it is co-mounted with others.
//! - `/proc/self/mountinfo`, where each hierarchy is mounted: `id parent major:minor root
//!   mount-point options [optional fields...] - fstype source super-options`. A v2 mount has
//!   fstype `cgroup2`; a v1 memory mount has fstype `cgroup` and `memory` among its super
//!   options. The directory is the mount point joined with the cgroup path taken relative to the
//!   mount's `root` field: `/` for an ordinary mount; the container's own cgroup when a runtime
//!   bind-mounts it (cgroup v1 without cgroup namespaces), and then the process's path starts
//!   with that root. A path outside the root, or one that leaves the cgroup namespace (`/..`,
//!   cgroup_namespaces(7)), is not visible from here: unknown.
//!
//! v2 is preferred when its hierarchy has the memory controller, that is when the cgroup's
//! `cgroup.controllers` lists `memory`. On a hybrid system (systemd's `unified` mount beside the
//! v1 controllers, as on the development machine) the v2 mount exists without it, and the v1
//! memory cgroup is used. With no v1 memory cgroup either, the v2 cgroup is still used: its
//! `memory.pressure` works without the memory controller (PSI belongs to cgroup core); the
//! memory files are missing then, and read as unknown.
//!
//! With `PAGEWISE_CGROUP=/some/dir` that directory is watched, its version inferred from the
//! files in it (`from_given`), and its parents read for limits as long as they have that
//! version's files too. With `none`, nothing is.
//!
//! # What is read
//!
//! The files are described in the kernel's cgroup-v2.rst
//! (<https://docs.kernel.org/admin-guide/cgroup-v2.html>, "Memory Interface Files") and
//! cgroup-v1/memory.rst (<https://docs.kernel.org/admin-guide/cgroup-v1/memory.html>):
//!
//! | | v2 | v1 |
//! |---|---|---|
//! | limit | the lower of `memory.high` (throttling starts) and `memory.max` (OOM kill); `max` = none; the lowest of the chain up to the mount point (`chain.rs`) | `memory.limit_in_bytes`; unset reads as `PAGE_COUNTER_MAX` pages, 2^63 − 4096 with 4 KiB pages; the lowest of the chain, and `memory.stat`'s `hierarchical_memory_limit` |
//! | usage | `memory.current` of the cgroup whose limit binds | `memory.usage_in_bytes` of the cgroup whose limit binds |
//! | pressure | `memory.pressure`, PSI format | none |
//!
//! Each value is read the way the pressure source reads its file (issue #10): a fresh
//! `O_NONBLOCK` open, an `fstat` check that it is a regular file, a read, a close
//! ([`os::read_regular_file`]). A file that is missing, replaced, deleted, a FIFO, a directory,
//! or holds no number gives "unknown" for that read, with the reason ([`Unknown`]) for
//! `PAGEWISE_VERBOSE`, never a hang or a crash; the next read tries again.
//!
//! A limit set on an ancestor (a systemd slice above the process's scope, a Kubernetes pod above
//! its containers) binds too: the chain of directories from the cgroup up to its mount point is
//! read for limits, and usage is that of the cgroup whose limit binds (`chain.rs`, issue #19).
//!
//! # Resolved once per process
//!
//! [`resolution`] runs at first use, possibly inside `alloc`, so it allocates nothing, takes no
//! lock and never waits. The first caller discovers and publishes the answer (found, or unknown
//! with the reason) in a static written once, with `Release`/`Acquire`, like the configuration's
//! copy of `PAGEWISE_PRESSURE_FILE`. A caller that arrives while another thread is discovering
//! gets [`Resolution::Pending`], unknown for now: discovering for itself would need a second
//! `'static` place to hand out, and waiting could deadlock a signal handler that allocates while
//! its own thread is discovering. It asks again later; discovery takes tens of microseconds
//! (60 µs on the development machine).
//!
//! Limits: a cgroup directory longer than [`MAX_DIR_LEN`] bytes (or a path in
//! `/proc/self/cgroup` or mountinfo longer than a path buffer, 543 bytes) gives unknown
//! ([`Unknown::TooLong`]). `/proc/self/cgroup` and
//! `/proc/self/mountinfo` are read in chunks through one [`LINE_CAP`]-byte line buffer, so their
//! size does not matter. Discovery takes about 10 KiB of stack, once (measured by padding a
//! 64 KiB thread stack until it overflowed, before issue #19 kept each hierarchy's mount point
//! too, about 1 KiB more; optimised, it still runs on a 16 KiB thread, which a test checks). A
//! line longer than the buffer is skipped, which matters only if it was the line needed (then
//! unknown, and the reason says that long lines were skipped). Docker's overlay root mount is
//! such a line; cgroup lines are short.

mod chain;
mod dir;
mod discover;
mod display;
#[cfg(test)]
mod tests;

pub(crate) use chain::ChainReport;
pub(crate) use dir::{CgroupDir, PathBuf};
use discover::{discover, from_given, Os};
pub(crate) use display::Size;

use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::decimal::parse_u64;
use crate::os::{self, Errno, FileError, RegularFile};
use crate::report::write_escaped;

/// The longest cgroup directory kept, in bytes (without the NUL).
pub(crate) const MAX_DIR_LEN: usize = 511;

/// Room for a `/`, the longest file name appended to a directory (`memory.limit_in_bytes`,
/// `memory.usage_in_bytes`: 21 bytes) and the NUL.
const NAME_ROOM: usize = 1 + 31 + 1;

/// A path buffer: a directory of [`MAX_DIR_LEN`] bytes and one file name in it.
const PATH_CAP: usize = MAX_DIR_LEN + NAME_ROOM;

/// The line buffer for `/proc/self/cgroup` and `/proc/self/mountinfo`: longer lines are skipped.
pub(crate) const LINE_CAP: usize = 2048;

/// Limit values from this one on mean "no limit". v1 shows an unset limit as `PAGE_COUNTER_MAX`
/// pages: 2^63 − 4096 with 4 KiB pages, 2^63 − 65536 with 64 KiB pages. Anything this large is
/// no limit in practice, so the same rule applies to v2's numbers (v2 writes `max` instead).
pub(crate) const NO_LIMIT_FROM: u64 = 1 << 62;

/// `PAGEWISE_CGROUP`: which cgroup to watch (the public [`crate::Cgroup`]).
pub(crate) use crate::policy::Cgroup as CgroupSetting;

/// The cgroup interface version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// The legacy v1 `memory` controller.
    V1,
    /// The unified hierarchy.
    V2,
}

/// How the cgroup was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// From `/proc/self/cgroup` and `/proc/self/mountinfo`.
    Discovered,
    /// As [`Origin::Discovered`], but the v2 cgroup has no memory controller and there is no v1
    /// memory cgroup: only `memory.pressure` can be read.
    DiscoveredWithoutMemoryController,
    /// The directory given in `PAGEWISE_CGROUP`; its version is that of this file, found in it.
    Given(&'static str),
}

/// Why something about the cgroup is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// The cgroup's file could not be read.
    File(FileError),
    /// The cgroup's file holds no number (nor `max`, for a limit).
    Malformed,
    /// A path is longer than [`MAX_DIR_LEN`] bytes.
    TooLong,
    /// `/proc/self/cgroup` could not be read.
    ProcCgroup(FileError),
    /// `/proc/self/mountinfo` could not be read.
    Mountinfo(FileError),
    /// `/proc/self/cgroup` has neither a v2 line nor a v1 `memory` line.
    NotInCgroup,
    /// `/proc/self/mountinfo` mounts none of the process's hierarchies.
    NoMount {
        /// Lines longer than [`LINE_CAP`] were skipped (one of them may have been the mount).
        long_lines: bool,
    },
    /// The process's cgroup is outside the root of every mount of its hierarchy.
    OutsideMount,
    /// The given directory has none of the files that tell a cgroup's version.
    NoMemoryFiles,
    /// A v1 cgroup has no `memory.pressure`.
    NotV2,
    /// Another `PAGEWISE_CGROUP` directory was resolved first in this process.
    OtherPath,
}

/// A cgroup file that holds a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Knob {
    /// v2 `memory.max`: the hard limit (OOM kill beyond it).
    Max,
    /// v2 `memory.high`: the throttle limit (reclaim and stalls beyond it).
    High,
    /// v2 `memory.current`: the usage.
    Current,
    /// v1 `memory.limit_in_bytes`: the hard limit.
    LimitInBytes,
    /// v1 `memory.usage_in_bytes`: the usage.
    UsageInBytes,
    /// v1 `hierarchical_memory_limit` in `memory.stat`: the lowest limit of the cgroup and its
    /// ancestors, visible or not.
    HierarchicalLimit,
}

impl Knob {
    /// The file's name in the cgroup's directory.
    pub(crate) const fn file_name(self) -> &'static str {
        match self {
            Knob::Max => "memory.max",
            Knob::High => "memory.high",
            Knob::Current => "memory.current",
            Knob::LimitInBytes => "memory.limit_in_bytes",
            Knob::UsageInBytes => "memory.usage_in_bytes",
            Knob::HierarchicalLimit => "memory.stat",
        }
    }

    /// What verbose calls the value: the file's name, and the key for `memory.stat`.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Knob::HierarchicalLimit => "memory.stat hierarchical_memory_limit",
            _ => self.file_name(),
        }
    }

    /// Whether the file is a limit (`max` and huge values mean none).
    const fn is_limit(self) -> bool {
        matches!(
            self,
            Knob::Max | Knob::High | Knob::LimitInBytes | Knob::HierarchicalLimit
        )
    }
}

/// A number read from a cgroup file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// Bytes.
    Bytes(u64),
    /// A limit that is not set (`max`, or at least [`NO_LIMIT_FROM`]).
    NoLimit,
}

/// One file read: which, and what it gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) knob: Knob,
    pub(crate) value: Result<Value, Unknown>,
}

impl Reading {
    /// The number of bytes read, if any.
    pub(crate) fn bytes(self) -> Option<u64> {
        match self.value {
            Ok(Value::Bytes(n)) => Some(n),
            _ => None,
        }
    }
}

/// The limit and the files it came from (v2 reads two, v1 one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit {
    pub(crate) readings: [Option<Reading>; 2],
}

impl Limit {
    /// The reading that sets the limit: the lowest number (on a tie, the first one read,
    /// `memory.max`). `None` if no file gave a number.
    pub(crate) fn source(&self) -> Option<Reading> {
        let mut best: Option<Reading> = None;
        for r in self.readings.iter().flatten() {
            if let Some(n) = r.bytes() {
                if best.and_then(Reading::bytes).is_none_or(|b| n < b) {
                    best = Some(*r);
                }
            }
        }
        best
    }

    /// The limit in bytes, if any file gave one.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> Option<u64> {
        self.source().and_then(Reading::bytes)
    }

    /// Whether every file read says "no limit" (as opposed to unknown).
    pub(crate) fn is_unset(&self) -> bool {
        self.readings
            .iter()
            .flatten()
            .all(|r| r.value == Ok(Value::NoLimit))
    }
}

// ---- The process-wide answer ----

/// What [`resolution`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resolution {
    /// This cgroup.
    Found(&'static CgroupDir),
    /// `PAGEWISE_CGROUP=none`.
    Off,
    /// No cgroup could be found, for this reason (final).
    Unknown(Unknown),
    /// Another thread is resolving it right now: unknown for now, ask again later.
    Pending,
}

impl Resolution {
    /// The cgroup, if one was found.
    pub(crate) fn cgroup(self) -> Option<&'static CgroupDir> {
        match self {
            Resolution::Found(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the answer will not change (everything but [`Resolution::Pending`]).
    pub(crate) fn is_final(self) -> bool {
        !matches!(self, Resolution::Pending)
    }
}

const VACANT: u8 = 0;
const RESOLVING: u8 = 1;
const READY: u8 = 2;

/// What a slot holds once resolved: the path it was resolved for (empty for `auto`), and the
/// answer.
#[derive(Clone, Copy)]
struct Outcome {
    key: PathBuf,
    result: Result<CgroupDir, Unknown>,
}

/// One resolution, published once: `outcome` is written by the one thread that moved `state`
/// from `VACANT` to `RESOLVING`, and read only after `READY` was seen (stored with `Release`
/// after the write, loaded with `Acquire`). Nothing writes it after that.
struct Slot {
    state: AtomicU8,
    outcome: UnsafeCell<Outcome>,
}

// SAFETY: `outcome` is written only by the thread that won `state`'s VACANT→RESOLVING exchange
// (one thread, and no reader: readers need READY), before its Release store of READY; it is read
// only after an Acquire load saw READY, and never written after that. A fork child resets
// RESOLVING (never READY) to VACANT, so a later winner writes an outcome no one can be reading.
unsafe impl Sync for Slot {}

impl Slot {
    const fn new() -> Slot {
        Slot {
            state: AtomicU8::new(VACANT),
            outcome: UnsafeCell::new(Outcome {
                key: PathBuf::new(),
                result: Err(Unknown::NotInCgroup),
            }),
        }
    }

    /// The answer for `key`: found by `find` if this thread is the first, published otherwise.
    fn resolve(
        &'static self,
        key: &[u8],
        find: impl FnOnce() -> Result<CgroupDir, Unknown>,
    ) -> Resolution {
        match self
            .state
            .compare_exchange(VACANT, RESOLVING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                let outcome = Outcome {
                    key: PathBuf::from(key).unwrap_or(PathBuf::new()),
                    result: find(),
                };
                // SAFETY: this thread won the exchange above, so it alone writes the outcome, and
                // no one reads it before the READY store below (see `impl Sync for Slot`).
                unsafe { *self.outcome.get() = outcome };
                self.state.store(READY, Ordering::Release);
                self.answer(key)
            }
            Err(READY) => self.answer(key),
            Err(_) => Resolution::Pending,
        }
    }

    /// The published answer; only after READY was seen.
    fn answer(&'static self, key: &[u8]) -> Resolution {
        // SAFETY: READY was seen (Release/Acquire), so the outcome is written and will never be
        // written again: a shared reference for 'static is sound.
        let outcome: &'static Outcome = unsafe { &*self.outcome.get() };
        if outcome.key.as_bytes() != key {
            return Resolution::Unknown(Unknown::OtherPath);
        }
        match &outcome.result {
            Ok(c) => Resolution::Found(c),
            Err(e) => Resolution::Unknown(*e),
        }
    }

    fn after_fork(&self) {
        let _ =
            self.state
                .compare_exchange(RESOLVING, VACANT, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// The `auto` answer, and the answer for the first directory given.
static AUTO: Slot = Slot::new();
static GIVEN: Slot = Slot::new();

/// The cgroup for `setting`, resolved once per process (once for `auto`, once for the first
/// directory given): never allocates, blocks or waits. See [`Resolution`] for the answers; a
/// `Path` other than the first one given in this process gets [`Unknown::OtherPath`].
pub(crate) fn resolution(setting: CgroupSetting) -> Resolution {
    match setting {
        CgroupSetting::None => Resolution::Off,
        CgroupSetting::Auto => AUTO.resolve(b"", || discover(&Os)),
        CgroupSetting::Path(p) => {
            let dir = p.to_bytes();
            if dir.len() > MAX_DIR_LEN {
                return Resolution::Unknown(Unknown::TooLong);
            }
            GIVEN.resolve(dir, || from_given(&Os, dir))
        }
    }
}

/// In a fork child: a resolution interrupted by the fork belonged to a thread that is gone, so
/// the next call resolves again.
pub(crate) fn after_fork_in_child() {
    AUTO.after_fork();
    GIVEN.after_fork();
}
