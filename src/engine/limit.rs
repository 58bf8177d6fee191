//! The soft limit (issue #13): while usage is at or over it, or a fresh mapping would take it
//! over, cached ranges go back (oldest first) before anything is mapped, and freed ranges are not
//! cached (`adaptive` frees with `MADV_DONTNEED` instead). It never fails an allocation.
//!
//! Usage and limit are the cgroup's when one is watched (`PAGEWISE_CGROUP`: `memory.current`
//! against the lower of `memory.high` and `memory.max`, or v1's `usage_in_bytes` against
//! `limit_in_bytes`); without a cgroup, a limit in bytes applies to the process's resident memory
//! (`/proc/self/statm`). Both are read at most every [`LIMIT_POLL_MS`] (a fresh open of each file,
//! like the pressure source), by whichever thread needs them first: a miss, a free, or the
//! background thread, which polls that often while something is cached, so that memory goes back
//! within tens of milliseconds even if the program allocates nothing.

use core::fmt;
use core::ptr;
use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};

use super::{Engine, Why};
use crate::cgroup::{self, CgroupDir, CgroupSetting};
use crate::os;
use crate::policy::{Cgroup, Limit};

/// How often usage and limit are read at most, and how often the background thread checks them
/// while something is cached.
pub(crate) const LIMIT_POLL_MS: u64 = 10;

/// An engine's soft limit: its setting, the cgroup it watches, and the last reading.
pub(super) struct SoftLimit {
    /// The `Limit` setting, as [`Limit::to_word`].
    setting: AtomicU64,
    /// The cgroup setting: 0 auto, 1 none, 2 the path in `cgroup_path`.
    cgroup_kind: AtomicU64,
    cgroup_path: AtomicPtr<core::ffi::c_char>,
    /// The cgroup in force once resolved; null for none (yet).
    cgroup: AtomicPtr<CgroupDir>,
    /// Whether the cgroup resolution is final (found, off or unknown for good).
    resolved: AtomicBool,
    /// The soft limit in bytes at the last reading, 0 for none.
    bytes: AtomicU64,
    /// Usage at the last reading, minus what was released since.
    usage: AtomicU64,
    read_ms: AtomicU64,
    reading: AtomicBool,
}

impl SoftLimit {
    pub(super) const fn new() -> SoftLimit {
        SoftLimit {
            setting: AtomicU64::new(0),
            cgroup_kind: AtomicU64::new(1),
            cgroup_path: AtomicPtr::new(ptr::null_mut()),
            cgroup: AtomicPtr::new(ptr::null_mut()),
            resolved: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            usage: AtomicU64::new(0),
            read_ms: AtomicU64::new(0),
            reading: AtomicBool::new(false),
        }
    }

    /// Takes new settings; the next check reads usage and limit again.
    pub(super) fn configure(&self, limit: Limit, cgroup: Cgroup) {
        self.setting.store(limit.to_word(), Relaxed);
        let (kind, path) = match cgroup {
            Cgroup::Auto => (0, ptr::null_mut()),
            Cgroup::None => (1, ptr::null_mut()),
            Cgroup::Path(p) => (2, p.as_ptr().cast_mut()),
        };
        self.cgroup_path.store(path, Relaxed);
        self.cgroup_kind.store(kind, Relaxed);
        self.cgroup.store(ptr::null_mut(), Relaxed);
        self.resolved.store(false, Relaxed);
        self.read_ms.store(0, Relaxed);
        self.resolve_cgroup();
    }

    pub(super) fn limit_setting(&self) -> Limit {
        Limit::from_word(self.setting.load(Relaxed))
    }

    pub(super) fn cgroup_setting(&self) -> CgroupSetting {
        match self.cgroup_kind.load(Relaxed) {
            0 => Cgroup::Auto,
            2 => {
                let p = self.cgroup_path.load(Relaxed);
                if p.is_null() {
                    return Cgroup::None;
                }
                // SAFETY: non-null paths come from a `&'static CStr` in `configure`.
                Cgroup::Path(unsafe { core::ffi::CStr::from_ptr(p) })
            }
            _ => Cgroup::None,
        }
    }

    /// Resolves the cgroup if not done yet (another thread may be discovering it: then later).
    fn resolve_cgroup(&self) -> Option<&'static CgroupDir> {
        if !self.resolved.load(Relaxed) {
            let r = cgroup::resolution(self.cgroup_setting());
            if let Some(c) = r.cgroup() {
                self.cgroup.store(ptr::from_ref(c).cast_mut(), Relaxed);
            }
            if r.is_final() {
                self.resolved.store(true, Relaxed);
            }
        }
        let c = self.cgroup.load(Relaxed);
        // SAFETY: non-null values are `&'static CgroupDir` from `cgroup::resolution`.
        (!c.is_null()).then(|| unsafe { &*c })
    }

    /// The cgroup watched, if any (resolved at `configure`, or later if it was pending).
    pub(super) fn cgroup(&self) -> Option<&'static CgroupDir> {
        self.resolve_cgroup()
    }

    /// `(usage, soft limit)` in bytes, the limit 0 for none; read again if `fresh`, or if the
    /// last reading is older than [`LIMIT_POLL_MS`], unless another thread is reading.
    ///
    /// A miss reads afresh (a few microseconds, against the mapping and faults it is about to
    /// pay): between two readings several misses would otherwise each see the usage from before
    /// the others, and together map past the limit. A free reads at most every interval.
    pub(super) fn state(&self, now: u64, fresh: bool) -> (u64, u64) {
        let setting = self.limit_setting();
        if setting == Limit::None {
            return (0, 0);
        }
        let last = self.read_ms.load(Relaxed);
        if (fresh || last == 0 || now.saturating_sub(last) >= LIMIT_POLL_MS)
            && !self.reading.swap(true, Relaxed)
        {
            let cgroup = self.resolve_cgroup();
            let limit = match setting {
                Limit::Percent(_) => setting.bytes(cgroup.and_then(CgroupDir::limit)),
                _ => setting.bytes(None),
            };
            // Usage matters only under a limit: without one, one file read per interval.
            let usage = match (limit, cgroup) {
                (None, _) => None,
                (Some(_), Some(c)) => c.usage(),
                (Some(_), None) => os::resident_bytes(),
            };
            self.bytes.store(limit.unwrap_or(0), Relaxed);
            // Unknown usage: assume none (the limit never fails an allocation, and a guess
            // would only release cached memory for nothing).
            self.usage.store(usage.unwrap_or(0), Relaxed);
            self.read_ms.store(now.max(1), Relaxed);
            self.reading.store(false, Relaxed);
        }
        (self.usage.load(Relaxed), self.bytes.load(Relaxed))
    }

    /// Records that `bytes` of resident memory went back since the last reading.
    fn note_released(&self, bytes: u64) {
        let _ = self
            .usage
            .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(bytes)));
    }

    /// Records that a block of `bytes` is about to be mapped (and soon resident).
    fn note_mapped(&self, bytes: u64) {
        if bytes != 0 {
            self.usage.fetch_add(bytes, Relaxed);
        }
    }

    /// The soft limit in force at the last reading, 0 for none.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

impl Engine {
    /// Whether usage is at or over the soft limit.
    pub(super) fn over_limit(&self, now: u64) -> bool {
        let (usage, limit) = self.limit.state(now, false);
        self.counters.limit_bytes.store(limit, Relaxed);
        limit != 0 && usage >= limit
    }

    /// Gives back cached ranges, resident ones first and oldest first, until usage plus `extra`
    /// bytes is below the soft limit or nothing resident is cached. Called before a fresh
    /// mapping of `extra` bytes, and by maintenance with `extra` 0.
    pub(super) fn enforce_limit(&self, extra: u64, now: u64) {
        let (mut usage, mut limit) = self.limit.state(now, false);
        // Read afresh only near the limit (within the mapping plus 64 MiB): far from it a stale
        // reading cannot matter, and a miss should not pay three file reads for nothing.
        if extra != 0 && limit != 0 && usage.saturating_add(2 * extra + (64 << 20)) >= limit {
            (usage, limit) = self.limit.state(now, true);
        }
        self.counters.limit_bytes.store(limit, Relaxed);
        if limit == 0 {
            return;
        }
        while usage.saturating_add(extra) >= limit {
            let Some(r) = self.cache.take_oldest_resident(u64::MAX) else {
                break;
            };
            let len = r.len as u64;
            if !self.evict(r, Why::Limit) {
                break; // back in the cache: taking it again would not help
            }
            usage = usage.saturating_sub(len);
            self.limit.note_released(len);
        }
        // The block about to be mapped will be resident soon: count it until the next reading.
        self.limit.note_mapped(extra);
    }
}

/// The `PAGEWISE_VERBOSE` line about the cgroup and the soft limit: what was found, the cgroup's
/// limit and where it came from, and the soft limit in force.
pub(super) struct Describe {
    pub(super) cgroup: cgroup::Resolution,
    pub(super) setting: Limit,
    pub(super) from: crate::config::Source,
    pub(super) soft: u64,
    pub(super) usage: Option<u64>,
}

impl fmt::Display for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cgroup)?;
        if let Some(c) = self.cgroup.cgroup() {
            write!(f, "; cgroup {}", c.limit_detail())?;
        }
        f.write_str("; soft limit: ")?;
        if self.soft == 0 {
            f.write_str("none")?;
        } else {
            write!(f, "{}", cgroup::Size(self.soft))?;
        }
        write!(f, " ({}=", crate::config::Setting::Limit.var())?;
        crate::config::show_limit(f, self.setting)?;
        write!(f, ", {}", self.from.name())?;
        if let (Limit::Percent(_), 0) = (self.setting, self.soft) {
            f.write_str(": no cgroup limit to take a share of")?;
        }
        f.write_str("); usage now ")?;
        match self.usage {
            Some(u) => write!(f, "{}", cgroup::Size(u)),
            None => f.write_str("unknown"),
        }
    }
}
