//! The choices an operator makes: how freed pages go back ([`Release`]), how fresh pages come in
//! ([`Prefetch`]), and how much memory to stay under ([`Limit`]).
//!
//! Each variant's documentation states what it does to RSS and to the contents of the pages, with
//! the kernel version it needs. The semantics are those of madvise(2):
//! <https://man7.org/linux/man-pages/man2/madvise.2.html>.

/// What happens to the pages of a large block when it is freed.
///
/// Every policy except [`Release::Unmap`] keeps the freed *address range* in a bounded cache (see
/// `PAGEWISE_CACHE`), so that the next large allocation of a fitting size skips `mmap`; they differ
/// in what they do to the *pages* inside it. Whatever the policy, cached pages idle for longer than
/// the decay time (`PAGEWISE_DECAY_MS`) are unmapped, so RSS falls when the program goes quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Release {
    /// `munmap` at free; no cache. RSS falls at once; every allocation is a fresh `mmap` whose
    /// pages fault again on first touch (about one minor fault per 4 KiB page). This is what
    /// glibc does above its mmap threshold.
    Unmap,
    /// Keep the range, drop its pages with `MADV_DONTNEED`. RSS falls at once; reuse saves the
    /// `mmap`/`munmap` pair but the pages fault again, and they read as zero (so `alloc_zeroed`
    /// skips the clearing).
    DontNeed,
    /// Keep the range, mark its pages `MADV_FREE` (Linux 4.5+; falls back to `MADV_DONTNEED`
    /// where the kernel refuses it). The kernel takes the pages only under memory pressure, so
    /// reuse is usually fault-free; until then they stay in RSS (shown as `LazyFree` in
    /// `/proc/self/smaps_rollup`). Contents are stale or zero, page by page, so `alloc_zeroed`
    /// clears them.
    Free,
    /// Keep range and pages resident. Reuse is as fast as it gets (no syscall, no fault); RSS
    /// stays up until decay, pressure or [`PageAlloc::purge`](crate::PageAlloc::purge) releases
    /// the cache.
    Retain,
    /// `MADV_FREE` while memory is calm, `MADV_DONTNEED` (and a shrunken cache) while the pressure
    /// signal (`PAGEWISE_PRESSURE_FILE`, PSI) says the system is reclaiming: the user-space form
    /// of the purge-when-pressure-is-severe idea from the `MADV_FREE` patch discussion.
    Adaptive,
}

impl Release {
    /// Every policy, in the order the documentation lists them.
    pub const ALL: [Release; 5] = [
        Release::Unmap,
        Release::DontNeed,
        Release::Free,
        Release::Retain,
        Release::Adaptive,
    ];

    /// The name used by `PAGEWISE_RELEASE`.
    pub const fn name(self) -> &'static str {
        match self {
            Release::Unmap => "unmap",
            Release::DontNeed => "dontneed",
            Release::Free => "free",
            Release::Retain => "retain",
            Release::Adaptive => "adaptive",
        }
    }

    /// Parses a `PAGEWISE_RELEASE` value (ASCII case-insensitive, no surrounding blanks allowed).
    pub fn parse(value: &[u8]) -> Option<Release> {
        Release::ALL
            .into_iter()
            .find(|r| value.eq_ignore_ascii_case(r.name().as_bytes()))
    }

    /// Whether freed ranges go to the cache at all.
    pub(crate) const fn caches(self) -> bool {
        !matches!(self, Release::Unmap)
    }

    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            Release::Unmap => 0,
            Release::DontNeed => 1,
            Release::Free => 2,
            Release::Retain => 3,
            Release::Adaptive => 4,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Release {
        match v {
            0 => Release::Unmap,
            1 => Release::DontNeed,
            2 => Release::Free,
            4 => Release::Adaptive,
            _ => Release::Retain,
        }
    }
}

/// How the pages of a *fresh* large mapping are brought in.
///
/// Pages reused from the cache that are still resident need nothing; pages the kernel has
/// dropped are populated again when the mode says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prefetch {
    /// Demand paging: each 4 KiB page faults on first touch (about 1.3 µs a page on the
    /// development VM).
    None,
    /// Fault every page in at allocation with `MADV_POPULATE_WRITE` (Linux 5.14+), falling back to
    /// `MAP_POPULATE` on older kernels. Costs the same page allocation up front but without one
    /// trap per page (about 25% less than touching); wasted on memory never written.
    Populate,
    /// Give blocks of 2 MiB and more a 2 MiB-aligned mapping marked `MADV_HUGEPAGE`, so that a
    /// fault brings in a whole transparent huge page (one fault per 2 MiB instead of 512). This is
    /// what Changkun Ou's 2021 post on page faults vs. prefetching called "prefetch". Needs THP in
    /// `madvise` or `always` mode.
    HugePage,
    /// Both: an aligned `MADV_HUGEPAGE` mapping, populated at allocation.
    PopulateHugePage,
}

impl Prefetch {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [Prefetch; 4] = [
        Prefetch::None,
        Prefetch::Populate,
        Prefetch::HugePage,
        Prefetch::PopulateHugePage,
    ];

    /// The name used by `PAGEWISE_PREFETCH`.
    pub const fn name(self) -> &'static str {
        match self {
            Prefetch::None => "none",
            Prefetch::Populate => "populate",
            Prefetch::HugePage => "hugepage",
            Prefetch::PopulateHugePage => "populate+hugepage",
        }
    }

    /// Parses a `PAGEWISE_PREFETCH` value (ASCII case-insensitive; `hugepage+populate` is accepted
    /// as a synonym of `populate+hugepage`).
    pub fn parse(value: &[u8]) -> Option<Prefetch> {
        if value.eq_ignore_ascii_case(b"hugepage+populate") {
            return Some(Prefetch::PopulateHugePage);
        }
        Prefetch::ALL
            .into_iter()
            .find(|p| value.eq_ignore_ascii_case(p.name().as_bytes()))
    }

    /// Whether fresh pages are faulted in at allocation.
    pub const fn populates(self) -> bool {
        matches!(self, Prefetch::Populate | Prefetch::PopulateHugePage)
    }

    /// Whether blocks of 2 MiB and more get aligned `MADV_HUGEPAGE` mappings.
    pub const fn huge_pages(self) -> bool {
        matches!(self, Prefetch::HugePage | Prefetch::PopulateHugePage)
    }

    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            Prefetch::None => 0,
            Prefetch::Populate => 1,
            Prefetch::HugePage => 2,
            Prefetch::PopulateHugePage => 3,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Prefetch {
        match v {
            0 => Prefetch::None,
            1 => Prefetch::Populate,
            3 => Prefetch::PopulateHugePage,
            _ => Prefetch::HugePage,
        }
    }
}

/// The soft limit on memory (`PAGEWISE_LIMIT`, [`Config::limit`](crate::Config::limit)): while
/// usage is at or over it, or a fresh mapping would take it over, pagewise gives cached ranges
/// back before mapping and caches no freed range until usage falls below it again. It never
/// makes an allocation fail.
///
/// Usage is the cgroup's (`memory.current`, or `memory.usage_in_bytes` in cgroup v1) when
/// pagewise watches one (`PAGEWISE_CGROUP`): that of the cgroup whose limit binds, which may be
/// a parent (a systemd slice, a Kubernetes pod). Else the process's resident memory.
///
/// The soft limit is the process's: over it, the oldest cached ranges of every `PageAlloc` go
/// first, whichever allocator noticed. The cgroup's limit is read again while the program runs
/// (at least every 50 ms while anything is cached), so a limit that appears, drops, rises or
/// goes takes effect within about that time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// No soft limit.
    None,
    /// A size in bytes.
    Bytes(u64),
    /// A percentage (1 to 100) of the cgroup's limit: the lowest `memory.high` or `memory.max`
    /// from the cgroup up to the root of its mount in cgroup v2; the lowest
    /// `memory.limit_in_bytes` on that way, and `memory.stat`'s `hierarchical_memory_limit`, in
    /// v1. No soft limit when there is no cgroup or no limit on the way.
    Percent(u8),
}

impl Limit {
    /// As one word, for an atomic (the kind in the low two bits; sizes past 2^62 bytes are no
    /// limit in practice and are clamped there).
    pub(crate) const fn to_word(self) -> u64 {
        match self {
            Limit::None => 0,
            Limit::Bytes(b) => {
                let b = if b > u64::MAX >> 2 { u64::MAX >> 2 } else { b };
                b << 2 | 1
            }
            Limit::Percent(p) => (p as u64) << 2 | 2,
        }
    }

    /// The inverse of [`Limit::to_word`].
    pub(crate) const fn from_word(word: u64) -> Limit {
        match word & 3 {
            1 => Limit::Bytes(word >> 2),
            2 => Limit::Percent((word >> 2) as u8),
            _ => Limit::None,
        }
    }

    /// The soft limit in bytes, given the cgroup's limit (if any).
    pub(crate) const fn bytes(self, cgroup_limit: Option<u64>) -> Option<u64> {
        match (self, cgroup_limit) {
            (Limit::Bytes(b), _) => Some(b),
            (Limit::Percent(p), Some(max)) => {
                Some(max / 100 * p as u64 + max % 100 * p as u64 / 100)
            }
            _ => None,
        }
    }
}

/// Which cgroup pagewise watches for its limit, usage and pressure (`PAGEWISE_CGROUP`,
/// [`Config::cgroup`](crate::Config::cgroup)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cgroup {
    /// The process's own memory cgroup, found from `/proc/self/cgroup` and
    /// `/proc/self/mountinfo` (cgroup v2, or the v1 `memory` controller); limits are read from
    /// it and every parent up to the mount point.
    Auto,
    /// None: the soft limit, if a size, applies to the process's resident memory.
    None,
    /// This cgroup directory (an absolute path; v2 if it has `memory.max` or
    /// `cgroup.controllers`, v1 if it has `memory.limit_in_bytes`). Its usage is read; limits
    /// are read from it and from each parent that is a cgroup of the same version too.
    Path(&'static core::ffi::CStr),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_round_trip() {
        for r in Release::ALL {
            assert_eq!(Release::parse(r.name().as_bytes()), Some(r));
            assert_eq!(Release::from_u8(r.to_u8()), r);
            let upper = r.name().to_ascii_uppercase();
            assert_eq!(Release::parse(upper.as_bytes()), Some(r));
        }
        assert_eq!(Release::parse(b"munmap"), None);
        assert_eq!(Release::parse(b" free"), None);
        assert_eq!(Release::parse(b""), None);
    }

    #[test]
    fn limit_words_round_trip() {
        for l in [
            Limit::None,
            Limit::Bytes(0),
            Limit::Bytes(6 << 30),
            Limit::Percent(90),
        ] {
            assert_eq!(Limit::from_word(l.to_word()), l);
        }
        assert_eq!(
            Limit::from_word(Limit::Bytes(u64::MAX).to_word()),
            Limit::Bytes(u64::MAX >> 2)
        );
    }

    #[test]
    fn limit_bytes() {
        assert_eq!(Limit::None.bytes(Some(1 << 30)), None);
        assert_eq!(Limit::Bytes(5).bytes(None), Some(5));
        assert_eq!(Limit::Percent(90).bytes(None), None);
        assert_eq!(Limit::Percent(90).bytes(Some(1000)), Some(900));
        assert_eq!(Limit::Percent(100).bytes(Some(u64::MAX)), Some(u64::MAX));
        assert_eq!(Limit::Percent(50).bytes(Some(3)), Some(1));
    }

    #[test]
    fn prefetch_names_round_trip() {
        for p in Prefetch::ALL {
            assert_eq!(Prefetch::parse(p.name().as_bytes()), Some(p));
            assert_eq!(Prefetch::from_u8(p.to_u8()), p);
        }
        assert_eq!(
            Prefetch::parse(b"HugePage+Populate"),
            Some(Prefetch::PopulateHugePage)
        );
        assert_eq!(Prefetch::parse(b"willneed"), None);
        assert!(Prefetch::PopulateHugePage.populates() && Prefetch::PopulateHugePage.huge_pages());
        assert!(!Prefetch::None.populates() && !Prefetch::None.huge_pages());
    }
}
