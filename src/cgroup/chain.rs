//! Limits set above the process's cgroup (issue #19).
//!
//! systemd puts a service in a slice whose limit is on the slice; Kubernetes sets the limit on
//! the pod, each container a child cgroup; docker's `--cgroup-parent` does the same. The limit
//! that kills the process is the lowest one on the way up, so the limit is read from every
//! directory of a chain: the cgroup's own, then each parent up to the top (the mount point when
//! discovered; for a given directory, the highest ancestor that still has the cgroup's files),
//! at most [`MAX_LEVELS`] directories.
//!
//! - v2: the lowest `memory.max` or `memory.high` of the chain. A missing file (the root cgroup
//!   has neither) limits nothing.
//! - v1: the lowest `memory.limit_in_bytes` of the chain, and `memory.stat`'s
//!   `hierarchical_memory_limit` of the process's own cgroup, which the kernel keeps as the lowest
//!   limit of the cgroup and all its ancestors, also those above the mount (a container that sees
//!   only its own cgroup, bind-mounted).
//!
//! Usage is that of the cgroup whose limit binds (the one whose usage reaching its limit starts
//! reclaim): on a tie, the higher directory, whose usage includes the lower one's. When the limit
//! comes from `hierarchical_memory_limit` alone, the cgroup it belongs to cannot be read from
//! here, and usage is that of the highest directory visible, the closest estimate (part of the
//! binding cgroup's usage, so an underestimate). Without any limit, the process's own cgroup.
//!
//! Reading the chain costs two small file reads per directory in v2 (one in v1, plus
//! `memory.stat`; 13.5 µs for three v1 directories on the development machine): the soft limit
//! reads it at most every `engine::limit::CHAIN_POLL_MS` (25 ms), and at each wake-up of the
//! background thread while anything is cached (every 10 ms under a limit, 50 ms without).

use super::dir::{parse_value, read_in};
use super::discover::for_each_line;
use super::*;

/// The most directories read in one walk: the cgroup's own and 15 ancestors (systemd nests
/// five deep, Kubernetes four).
pub(crate) const MAX_LEVELS: usize = 16;

/// Where the limit that binds was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// No directory has a limit that could be read.
    None,
    /// The directory `level` steps above the process's cgroup (0: its own).
    Level(usize),
    /// v1: `hierarchical_memory_limit` is lower than every visible directory's limit: it is set
    /// on a cgroup above the highest directory visible here.
    Above,
}

/// One walk up the chain: the lowest limit, where it was found, and `memory.stat`'s (v1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    /// Directories read: the cgroup's own and `levels - 1` ancestors.
    pub(crate) levels: usize,
    /// The lowest limit of a directory of the chain: its level and the file it came from.
    pub(crate) lowest: Option<(usize, Reading)>,
    /// v1: `hierarchical_memory_limit` of the cgroup's own `memory.stat`.
    pub(crate) hierarchical: Option<Reading>,
}

impl Chain {
    /// Where the binding limit is.
    pub(crate) fn binding(&self) -> Binding {
        let lowest = self.lowest.and_then(|(level, r)| Some((level, r.bytes()?)));
        match (lowest, self.hierarchical.and_then(Reading::bytes)) {
            (Some((_, l)), Some(h)) if h < l => Binding::Above,
            (Some((level, _)), _) => Binding::Level(level),
            (None, Some(_)) => Binding::Above,
            (None, None) => Binding::None,
        }
    }

    /// The limit in bytes, if any directory (or `memory.stat`) gave one.
    pub(crate) fn bytes(&self) -> Option<u64> {
        let lowest = self.lowest.and_then(|(_, r)| r.bytes());
        match (lowest, self.hierarchical.and_then(Reading::bytes)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The directory whose usage is read: the binding one, the highest visible one if the
    /// binding cgroup is above it, the process's own without a limit.
    pub(crate) fn usage_level(&self) -> usize {
        match self.binding() {
            Binding::None => 0,
            Binding::Level(level) => level,
            Binding::Above => self.levels.saturating_sub(1),
        }
    }
}

/// The directory above `d` (`/` is the last).
fn parent(d: &[u8]) -> Option<&[u8]> {
    if d == b"/" || d.is_empty() {
        return None;
    }
    let i = d.iter().rposition(|&b| b == b'/')?;
    Some(if i == 0 { &d[..1] } else { &d[..i] })
}

/// The ancestors of `dir`, nearest first, as long as `keep` says yes (at most `MAX_LEVELS - 1`);
/// returns the highest kept (`dir` itself if none is).
pub(super) fn highest_ancestor(dir: &[u8], mut keep: impl FnMut(&[u8]) -> bool) -> &[u8] {
    let mut top = dir;
    for _ in 1..MAX_LEVELS {
        match parent(top) {
            Some(p) if keep(p) => top = p,
            _ => break,
        }
    }
    top
}

impl CgroupDir {
    /// The directory `level` steps above this one, if the chain reaches it.
    pub(crate) fn level_dir(&self, level: usize) -> Option<&[u8]> {
        if level >= MAX_LEVELS {
            return None;
        }
        let mut d = self.dir();
        for _ in 0..level {
            if d.len() <= self.top_len {
                return None;
            }
            d = parent(d)?;
        }
        Some(d)
    }

    /// How many directories the chain has (1: the cgroup's own only).
    pub(crate) fn levels(&self) -> usize {
        (0..MAX_LEVELS)
            .take_while(|&l| self.level_dir(l).is_some())
            .count()
    }

    fn reading_at(&self, level: usize, knob: Knob) -> Reading {
        let value = match self.level_dir(level) {
            Some(d) => read_in(d, knob),
            None => Err(Unknown::TooLong),
        };
        Reading { knob, value }
    }

    /// The limit files of the directory `level` steps up: v2 `memory.max` and `memory.high`, v1
    /// `memory.limit_in_bytes`.
    pub(crate) fn limit_at(&self, level: usize) -> Limit {
        let readings = match self.version_of() {
            Version::V2 => [
                Some(self.reading_at(level, Knob::Max)),
                Some(self.reading_at(level, Knob::High)),
            ],
            Version::V1 => [Some(self.reading_at(level, Knob::LimitInBytes)), None],
        };
        Limit { readings }
    }

    /// The usage of the directory `level` steps up: `memory.current` or `memory.usage_in_bytes`.
    pub(crate) fn usage_at(&self, level: usize) -> Reading {
        self.reading_at(
            level,
            match self.version_of() {
                Version::V2 => Knob::Current,
                Version::V1 => Knob::UsageInBytes,
            },
        )
    }

    /// Walks the chain now and reads every limit on it (see the module documentation).
    pub(crate) fn chain(&self) -> Chain {
        let levels = self.levels();
        let mut lowest: Option<(usize, Reading)> = None;
        for level in 0..levels {
            let Some(r) = self.limit_at(level).source() else {
                continue;
            };
            let n = r.bytes().unwrap_or(u64::MAX);
            // On a tie the higher directory binds: its usage includes the lower one's.
            if lowest.is_none_or(|(_, b)| b.bytes().is_some_and(|b| n <= b)) {
                lowest = Some((level, r));
            }
        }
        let hierarchical = (self.version_of() == Version::V1).then(|| Reading {
            knob: Knob::HierarchicalLimit,
            value: read_in(self.dir(), Knob::HierarchicalLimit),
        });
        Chain {
            levels,
            lowest,
            hierarchical,
        }
    }
}

/// The value of `key` in a `memory.stat`-style file (`key value` lines), read through a small
/// line buffer (v1's `memory.stat` runs to 1–2 KiB; no line of it is longer than 64 bytes).
pub(super) fn read_stat_key(path: &CStr, key: &[u8]) -> Result<Value, Unknown> {
    let mut file = RegularFile::open(path).map_err(Unknown::File)?;
    let mut buf = [0u8; 128];
    let mut found = Err(Unknown::Malformed);
    for_each_line(&mut file, &mut buf, |line| {
        let value = line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(b" "));
        if let Some(v) = value {
            found = parse_value(v, true);
        }
        value.is_some()
    })
    .map_err(Unknown::File)?;
    found
}

/// What `PAGEWISE_VERBOSE` prints about the chain: where the limit binds, where usage is read,
/// and every directory walked with its limit files. Reads the files now.
pub(crate) struct ChainReport<'a>(pub(crate) &'a CgroupDir);

impl fmt::Display for ChainReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let chain = c.chain();
        let usage = c.usage_at(chain.usage_level());
        let dir = |level| c.level_dir(level).unwrap_or(b"?");
        match (chain.binding(), chain.lowest) {
            (Binding::Level(level), Some((_, r))) => {
                f.write_str("limit binds at ")?;
                write_escaped(f, dir(level))?;
                write!(f, " ({r})")?;
            }
            (Binding::Above, _) => {
                f.write_str("limit binds above the highest cgroup visible here")?;
                if let Some(h) = chain.hierarchical {
                    write!(f, " ({h})")?;
                }
            }
            _ => f.write_str("no limit on the chain")?,
        }
        f.write_str("; usage read from ")?;
        write_escaped(f, dir(chain.usage_level()))?;
        write!(f, "/{}", usage.knob.file_name())?;
        if chain.binding() == Binding::Above {
            f.write_str(" (the highest visible: part of the binding cgroup's usage, an estimate)")?;
        }
        f.write_str("; chain walked up:")?;
        for level in 0..chain.levels {
            f.write_str(if level == 0 { " " } else { ", then " })?;
            write_escaped(f, dir(level))?;
            let limit = c.limit_at(level);
            let mut sep = " (";
            for r in limit.readings.iter().flatten() {
                write!(f, "{sep}{r}")?;
                sep = ", ";
            }
            f.write_str(")")?;
        }
        if let Some(h) = chain.hierarchical {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}
