//! The soft limit (issues #13 and #19): while usage is at or over it, or a fresh mapping would
//! take it over, cached ranges go back (oldest first) before anything is mapped, and freed ranges
//! are not cached (`adaptive` frees with `MADV_DONTNEED` instead). It never fails an allocation.
//!
//! Usage and limit are the cgroup's when one is watched (`PAGEWISE_CGROUP`): the lowest limit on
//! the chain from the process's cgroup up (`cgroup/chain.rs`: `memory.max` and `memory.high` of
//! each directory in v2, `memory.limit_in_bytes` and `memory.stat`'s `hierarchical_memory_limit`
//! in v1), against the usage of the cgroup whose limit binds. Without a cgroup, a limit in bytes
//! applies to the process's resident memory (`/proc/self/statm`).
//!
//! # One view per process
//!
//! The soft limit is a property of the process, not of one allocator: the global allocator and
//! per-collection instances (`allocator-api2`) watch the same cgroup, so they share one reading
//! of it ([`Watch`], one per source: the discovered cgroup, the given one, the process's RSS),
//! and what one of them gives back lowers the usage the others see. Over the limit, the oldest
//! resident cached ranges go first *across every engine*, each counted in the `limit_releases`
//! of the engine that held it. An allocator whose own setting is `Limit::None` does not check,
//! but its cache is not exempt when another finds the process over its limit.
//!
//! # When the files are read
//!
//! Limits can change while the program runs (`docker update --memory`, Kubernetes resizing a pod
//! in place, `systemctl set-property`): the chain is read at most every [`CHAIN_POLL_MS`], usage
//! at most every [`LIMIT_POLL_MS`] while a soft limit is in force (and afresh by a miss near it),
//! by whichever thread needs them first: a miss, a free, `stats()`, or the background thread.
//! That thread runs whenever a cgroup is watched and something is cached, whatever the decay and
//! policy, and wakes every [`LIMIT_POLL_MS`] under a limit and at least every
//! `background::PRESSURE_POLL_MS` (50 ms) without one, so a limit that appears or drops takes
//! effect within about 50 ms and one that rises or goes lets the cache serve again as soon.

use core::fmt;
use core::ptr;
use core::sync::atomic::Ordering::{self, Relaxed};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};

use super::maintain::evict_oldest_resident;
use super::{Engine, Why, ENGINES};
use crate::cache::Range;
use crate::cgroup::{self, CgroupDir, CgroupSetting};
use crate::os;
use crate::policy::{Cgroup, Limit};

/// How often usage is read at most while a soft limit is in force, and how often the background
/// thread checks it then.
pub(crate) const LIMIT_POLL_MS: u64 = 10;

/// How often the limits on the cgroup chain are read at most. Below the background thread's
/// 50 ms wake-up without a limit, so that each wake-up reads them.
pub(crate) const CHAIN_POLL_MS: u64 = 25;

/// One source of usage and limit, shared by every engine that watches it.
struct Watch {
    /// The cgroup read, once a reading was made (null for the RSS watch).
    cgroup: AtomicPtr<CgroupDir>,
    /// The lowest limit on the cgroup chain at the last reading, 0 for none.
    cgroup_limit: AtomicU64,
    /// The chain's directory whose usage is read (0: the process's own cgroup).
    usage_level: AtomicU64,
    /// Usage at the last reading, minus what was released since, plus what is being mapped.
    usage: AtomicU64,
    chain_ms: AtomicU64,
    usage_ms: AtomicU64,
    reading: AtomicBool,
}

impl Watch {
    const fn new() -> Watch {
        Watch {
            cgroup: AtomicPtr::new(ptr::null_mut()),
            cgroup_limit: AtomicU64::new(0),
            usage_level: AtomicU64::new(0),
            usage: AtomicU64::new(0),
            chain_ms: AtomicU64::new(0),
            usage_ms: AtomicU64::new(0),
            reading: AtomicBool::new(false),
        }
    }

    /// Whether a reading older than `every` ms (or none yet) is due.
    fn due(at: &AtomicU64, now: u64, every: u64) -> bool {
        let last = at.load(Relaxed);
        last == 0 || now.saturating_sub(last) >= every
    }

    /// Reads the chain's limits if older than `every` ms; unless another thread is reading.
    fn refresh_chain(&self, cgroup: Option<&'static CgroupDir>, now: u64, every: u64) {
        if !Watch::due(&self.chain_ms, now, every) || self.reading.swap(true, Relaxed) {
            return;
        }
        if let Some(c) = cgroup {
            // Release: the background thread dereferences what it loads (`background_poll`).
            self.cgroup
                .store(ptr::from_ref(c).cast_mut(), Ordering::Release);
            let chain = c.chain();
            self.cgroup_limit.store(chain.bytes().unwrap_or(0), Relaxed);
            let level = chain.usage_level() as u64;
            if self.usage_level.swap(level, Relaxed) != level {
                self.usage_ms.store(0, Relaxed); // another cgroup's usage: read it now
            }
        }
        self.chain_ms.store(now.max(1), Relaxed);
        self.reading.store(false, Relaxed);
    }

    /// Reads usage if `fresh` or due; unless another thread is reading.
    fn refresh_usage(&self, cgroup: Option<&CgroupDir>, now: u64, fresh: bool) {
        if !(fresh || Watch::due(&self.usage_ms, now, LIMIT_POLL_MS))
            || self.reading.swap(true, Relaxed)
        {
            return;
        }
        let usage = match cgroup {
            Some(c) => c.usage_at(self.usage_level.load(Relaxed) as usize).bytes(),
            None => os::resident_bytes(),
        };
        // Unknown usage: assume none (the limit never fails an allocation, and a guess would
        // only release cached memory for nothing).
        self.usage.store(usage.unwrap_or(0), Relaxed);
        self.usage_ms.store(now.max(1), Relaxed);
        self.reading.store(false, Relaxed);
    }
}

/// The process's RSS (no cgroup), the discovered cgroup, the given cgroup: one reading each.
static WATCHES: [Watch; 3] = [const { Watch::new() }; 3];

/// The background thread's poll, at each of its wake-ups while anything is cached: the limits
/// of every cgroup watched are read again if older than [`LIMIT_POLL_MS`], so that a limit that
/// appears or drops is acted on at this wake-up rather than after a reading another thread made
/// just before the change ([`CHAIN_POLL_MS`] earlier at most).
pub(crate) fn background_poll(now: u64) {
    for w in &WATCHES[1..] {
        let c = w.cgroup.load(Ordering::Acquire);
        if !c.is_null() {
            // SAFETY: non-null values are `&'static CgroupDir` stored by `refresh_chain`.
            w.refresh_chain(Some(unsafe { &*c }), now, LIMIT_POLL_MS);
        }
    }
}

/// Whether any engine was ever configured with a soft limit that can be in force (a size, or a
/// share of a cgroup's limit with a cgroup to watch), so that a free in an engine without one
/// still starts the background thread: the limit covers its cache too.
static ANY_LIMIT: AtomicBool = AtomicBool::new(false);

/// Whether any engine was ever configured with a soft limit that can be in force.
pub(super) fn any_engine_has_limit() -> bool {
    ANY_LIMIT.load(Relaxed)
}

/// In a fork child: a reading interrupted by the fork belonged to a thread that is gone.
pub(super) fn after_fork_in_child() {
    for w in &WATCHES {
        w.reading.store(false, Relaxed);
    }
}

/// An engine's soft limit: its setting and the cgroup it watches; the readings are shared.
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
    /// This engine's soft limit in bytes at the last reading, 0 for none.
    bytes: AtomicU64,
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
        }
    }

    /// Takes new settings; the next check reads usage and limit again.
    pub(super) fn configure(&self, limit: Limit, cgroup: Cgroup) {
        self.setting.store(limit.to_word(), Relaxed);
        let may_have_limit = match limit {
            Limit::None => false,
            Limit::Bytes(_) => true,
            _ => !matches!(cgroup, Cgroup::None),
        };
        if may_have_limit {
            ANY_LIMIT.store(true, Relaxed);
        }
        let (kind, path) = match cgroup {
            Cgroup::Auto => (0, ptr::null_mut()),
            Cgroup::None => (1, ptr::null_mut()),
            Cgroup::Path(p) => (2, p.as_ptr().cast_mut()),
        };
        self.cgroup_path.store(path, Relaxed);
        self.cgroup_kind.store(kind, Relaxed);
        self.cgroup.store(ptr::null_mut(), Relaxed);
        self.resolved.store(false, Relaxed);
        self.bytes.store(0, Relaxed);
        let w = self.watch(self.resolve_cgroup());
        w.chain_ms.store(0, Relaxed);
        w.usage_ms.store(0, Relaxed);
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

    /// Whether a limit could come from a cgroup while the program runs: a share of the cgroup's
    /// limit is asked for, and a cgroup is watched (or still being resolved). The background
    /// thread then runs while anything is cached, whatever the decay and the policy.
    pub(super) fn watches_cgroup(&self) -> bool {
        matches!(self.limit_setting(), Limit::Percent(_))
            && (self.resolve_cgroup().is_some() || !self.resolved.load(Relaxed))
    }

    /// The shared reading for `cgroup` (see [`WATCHES`]).
    fn watch(&self, cgroup: Option<&CgroupDir>) -> &'static Watch {
        match (cgroup, self.cgroup_kind.load(Relaxed)) {
            (None, _) => &WATCHES[0],
            (Some(_), 0) => &WATCHES[1],
            (Some(_), _) => &WATCHES[2],
        }
    }

    /// `(usage, soft limit)` in bytes, the limit 0 for none. The chain's limits are read again
    /// if older than [`CHAIN_POLL_MS`]; usage, under a limit, if `fresh` or older than
    /// [`LIMIT_POLL_MS`]; unless another thread is reading.
    ///
    /// A miss reads usage afresh (a few microseconds, against the mapping and faults it is about
    /// to pay): between two readings several misses would otherwise each see the usage from
    /// before the others, and together map past the limit. A free reads at most every interval.
    pub(super) fn state(&self, now: u64, fresh: bool) -> (u64, u64) {
        let setting = self.limit_setting();
        if setting == Limit::None {
            self.bytes.store(0, Relaxed);
            return (0, 0);
        }
        let cgroup = self.resolve_cgroup();
        let w = self.watch(cgroup);
        let soft = match setting {
            Limit::Percent(_) => {
                w.refresh_chain(cgroup, now, CHAIN_POLL_MS);
                let limit = w.cgroup_limit.load(Relaxed);
                setting.bytes((limit != 0).then_some(limit))
            }
            _ => setting.bytes(None),
        };
        let soft = soft.unwrap_or(0);
        self.bytes.store(soft, Relaxed);
        if soft == 0 {
            // Usage matters only under a limit.
            return (0, 0);
        }
        if matches!(setting, Limit::Bytes(_)) {
            // A limit in bytes is compared with the usage of the cgroup whose limit binds too.
            w.refresh_chain(cgroup, now, CHAIN_POLL_MS);
        }
        w.refresh_usage(cgroup, now, fresh);
        (w.usage.load(Relaxed), soft)
    }

    /// Records that `bytes` of resident memory went back since the last reading.
    fn note_released(&self, bytes: u64) {
        let _ = self
            .watch(self.cgroup())
            .usage
            .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(bytes)));
    }

    /// Records that a block of `bytes` is about to be mapped (and soon resident).
    fn note_mapped(&self, bytes: u64) {
        if bytes != 0 {
            self.watch(self.cgroup()).usage.fetch_add(bytes, Relaxed);
        }
    }

    /// This engine's soft limit at the last reading, 0 for none.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

/// The resident cached range freed longest ago in any engine's cache, and that engine.
fn take_oldest_resident_anywhere() -> Option<(&'static Engine, Range)> {
    // A peek may be stale by the time the range is taken: look again a few times.
    for _ in 0..4 {
        let mut best: Option<(&'static Engine, u64)> = None;
        for e in ENGINES.iter().skip(1) {
            if !e.is_active() || !e.has_cached() {
                continue;
            }
            if let Some(since) = e.cache.oldest_resident_since() {
                if best.is_none_or(|(_, b)| since < b) {
                    best = Some((e, since));
                }
            }
        }
        let (e, since) = best?;
        if let Some(r) = e.cache.take_oldest_resident(since) {
            return Some((e, r));
        }
    }
    None
}

impl Engine {
    /// Whether usage is at or over the soft limit.
    pub(super) fn over_limit(&self, now: u64) -> bool {
        let (usage, limit) = self.limit.state(now, false);
        self.counters.limit_bytes.store(limit, Relaxed);
        limit != 0 && usage >= limit
    }

    /// Gives back cached ranges of every engine, resident ones first and oldest first, until
    /// usage plus `extra` bytes is below the soft limit or nothing resident is cached. Called
    /// before a fresh mapping of `extra` bytes, and by maintenance with `extra` 0.
    pub(super) fn enforce_limit(&self, extra: u64, now: u64) {
        let (mut usage, mut limit) = self.limit.state(now, false);
        // Read afresh only near the limit (within the mapping plus 64 MiB): far from it a stale
        // reading cannot matter, and a miss should not pay the file reads for nothing.
        if extra != 0 && limit != 0 && usage.saturating_add(2 * extra + (64 << 20)) >= limit {
            (usage, limit) = self.limit.state(now, true);
        }
        self.counters.limit_bytes.store(limit, Relaxed);
        if limit == 0 {
            return;
        }
        // Bytes that must go for usage plus `extra` to be below the limit.
        let over = |released: usize| {
            let after = usage.saturating_sub(released as u64).saturating_add(extra);
            (after + 1).saturating_sub(limit) as usize
        };
        let released =
            evict_oldest_resident(Why::Limit, false, take_oldest_resident_anywhere, over);
        self.limit.note_released(released as u64);
        // The block about to be mapped will be resident soon: count it until the next reading.
        self.limit.note_mapped(extra);
    }

    /// The soft limit's check on its own, for the background thread: the limit covers every
    /// engine's cache, so an engine with nothing cached checks too.
    pub(crate) fn check_limit(&self, now: u64) {
        self.enforce_limit(0, now);
    }

    /// The soft limit in force now (read again if the last reading is old), 0 for none.
    pub(crate) fn limit_now(&self) -> u64 {
        let (_, limit) = self.limit.state(os::now_ms(), false);
        limit
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
            write!(f, "; own {}; {}", c.limit_detail(), cgroup::ChainReport(c))?;
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
