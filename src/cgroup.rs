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
//! files in it (`from_given`). With `none`, nothing is.
//!
//! # What is read
//!
//! The files are described in the kernel's cgroup-v2.rst
//! (<https://docs.kernel.org/admin-guide/cgroup-v2.html>, "Memory Interface Files") and
//! cgroup-v1/memory.rst (<https://docs.kernel.org/admin-guide/cgroup-v1/memory.html>):
//!
//! | | v2 | v1 |
//! |---|---|---|
//! | limit | the lower of `memory.high` (throttling starts) and `memory.max` (OOM kill); `max` = none | `memory.limit_in_bytes`; unset reads as `PAGE_COUNTER_MAX` pages, 2^63 − 4096 with 4 KiB pages |
//! | usage | `memory.current` | `memory.usage_in_bytes` |
//! | pressure | `memory.pressure`, PSI format | none |
//!
//! Each value is read the way the pressure source reads its file (issue #10): a fresh
//! `O_NONBLOCK` open, an `fstat` check that it is a regular file, a read, a close
//! ([`os::read_regular_file`]). A file that is missing, replaced, deleted, a FIFO, a directory,
//! or holds no number gives "unknown" for that read, with the reason ([`Unknown`]) for
//! `PAGEWISE_VERBOSE`, never a hang or a crash; the next read tries again.
//!
//! Only the cgroup's own files are read: a limit set only on an ancestor (a systemd slice above
//! the process's scope, say) is not seen.
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
//! 64 KiB thread stack until it overflowed; it also ran on a 16 KiB thread). A line longer than
//! the buffer is skipped, which matters only if it was the line needed (then unknown, and the
//! reason says that long lines were skipped). Docker's overlay root mount is such a line; cgroup
//! lines are short.

// Wired in by the engine in the next commit.
#![allow(dead_code)]

use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::config::decimal::parse_u64;
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

/// `PAGEWISE_CGROUP`: which cgroup to watch (parsed by the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CgroupSetting {
    /// The process's own cgroup, found from `/proc/self/cgroup` and `/proc/self/mountinfo`.
    Auto,
    /// No cgroup.
    None,
    /// This cgroup directory (an absolute path).
    Path(&'static CStr),
}

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
        }
    }

    /// Whether the file is a limit (`max` and huge values mean none).
    const fn is_limit(self) -> bool {
        matches!(self, Knob::Max | Knob::High | Knob::LimitInBytes)
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

/// A path in a fixed buffer, with one byte always left for the NUL.
#[derive(Clone, Copy)]
pub(crate) struct PathBuf {
    bytes: [u8; PATH_CAP],
    len: usize,
}

impl PathBuf {
    const fn new() -> PathBuf {
        PathBuf {
            bytes: [0; PATH_CAP],
            len: 0,
        }
    }

    fn from(s: &[u8]) -> Result<PathBuf, Unknown> {
        let mut p = PathBuf::new();
        p.push(s)?;
        Ok(p)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends `s`; [`Unknown::TooLong`] if it does not fit (or holds a NUL, which no path can).
    fn push(&mut self, s: &[u8]) -> Result<(), Unknown> {
        if s.len() >= PATH_CAP - self.len || s.contains(&0) {
            return Err(Unknown::TooLong);
        }
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        Ok(())
    }

    /// `dir/name`.
    fn join(dir: &[u8], name: &str) -> Result<PathBuf, Unknown> {
        let mut p = PathBuf::from(dir)?;
        if !dir.ends_with(b"/") {
            p.push(b"/")?;
        }
        p.push(name.as_bytes())?;
        Ok(p)
    }

    fn as_cstr(&mut self) -> &CStr {
        self.bytes[self.len] = 0;
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }
}

impl fmt::Debug for PathBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        write_escaped(f, self.as_bytes())?;
        f.write_str("\"")
    }
}

/// A cgroup directory and its version. `Copy`, no allocation: the path lives in a fixed buffer.
#[derive(Clone, Copy)]
pub(crate) struct Cgroup {
    /// The directory, then `/memory.pressure` and a NUL, so that [`Cgroup::pressure_file`] can
    /// lend a `&CStr` out of `self`: `path[..dir_len]` is the directory.
    path: [u8; PATH_CAP],
    dir_len: usize,
    version: Version,
    origin: Origin,
}

impl Cgroup {
    /// A cgroup at `dir` (absolute; trailing slashes are dropped).
    fn new(dir: &[u8], version: Version, origin: Origin) -> Result<Cgroup, Unknown> {
        let mut dir = dir;
        while dir.len() > 1 && dir.ends_with(b"/") {
            dir = &dir[..dir.len() - 1];
        }
        if dir.len() > MAX_DIR_LEN {
            return Err(Unknown::TooLong);
        }
        let with_pressure = PathBuf::join(dir, "memory.pressure")?;
        let mut path = [0; PATH_CAP];
        path[..with_pressure.len].copy_from_slice(with_pressure.as_bytes());
        Ok(Cgroup {
            path,
            dir_len: dir.len(),
            version,
            origin,
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &[u8] {
        &self.path[..self.dir_len]
    }

    pub(crate) fn version(&self) -> Version {
        self.version
    }

    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// Reads one file of the cgroup, now.
    pub(crate) fn read(&self, knob: Knob) -> Result<Value, Unknown> {
        let mut path = PathBuf::join(self.dir(), knob.file_name())?;
        // A number of bytes has 20 digits at most: a file that fills the buffer holds none.
        let mut buf = [0u8; 64];
        let (n, _) = os::read_regular_file(path.as_cstr(), &mut buf).map_err(Unknown::File)?;
        if n == buf.len() {
            return Err(Unknown::Malformed);
        }
        parse_value(&buf[..n], knob.is_limit())
    }

    fn reading(&self, knob: Knob) -> Reading {
        Reading {
            knob,
            value: self.read(knob),
        }
    }

    /// The limit with the files it was read from: v2 `memory.max` and `memory.high`, v1
    /// `memory.limit_in_bytes`.
    pub(crate) fn limit_detail(&self) -> Limit {
        let readings = match self.version {
            Version::V2 => [
                Some(self.reading(Knob::Max)),
                Some(self.reading(Knob::High)),
            ],
            Version::V1 => [Some(self.reading(Knob::LimitInBytes)), None],
        };
        Limit { readings }
    }

    /// The memory limit in bytes: v2 the lower of `memory.high` and `memory.max` (`max`: none),
    /// v1 `memory.limit_in_bytes` (from [`NO_LIMIT_FROM`] on: none). `None`: no limit, or unknown
    /// ([`Cgroup::limit_detail`] tells which).
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit_detail().bytes()
    }

    /// The usage with the file it was read from: v2 `memory.current`, v1
    /// `memory.usage_in_bytes`.
    pub(crate) fn usage_detail(&self) -> Reading {
        self.reading(match self.version {
            Version::V2 => Knob::Current,
            Version::V1 => Knob::UsageInBytes,
        })
    }

    /// The memory usage in bytes, or `None` if unknown.
    pub(crate) fn usage(&self) -> Option<u64> {
        self.usage_detail().bytes()
    }

    /// v2's `memory.pressure`, if it is a regular file that can be read now. A cgroup with PSI
    /// turned off (`cgroup.pressure` set to 0, or `psi=0` at boot) has the file but fails reads
    /// with `EOPNOTSUPP`: then the system-wide file serves better than the free-RAM fallback.
    pub(crate) fn pressure_file_detail(&self) -> Result<&CStr, Unknown> {
        if self.version != Version::V2 {
            return Err(Unknown::NotV2);
        }
        let path = CStr::from_bytes_until_nul(&self.path).map_err(|_| Unknown::TooLong)?;
        let mut buf = [0u8; 256];
        os::read_regular_file(path, &mut buf).map_err(Unknown::File)?;
        Ok(path)
    }

    /// [`Cgroup::pressure_file_detail`] without the reason.
    pub(crate) fn pressure_file(&self) -> Option<&CStr> {
        self.pressure_file_detail().ok()
    }
}

impl fmt::Display for Cgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = match self.version {
            Version::V1 => "v1 (memory controller)",
            Version::V2 => "v2",
        };
        write!(f, "cgroup {v} ")?;
        write_escaped(f, self.dir())?;
        match self.origin {
            Origin::Discovered => f.write_str(" (from /proc/self/cgroup and /proc/self/mountinfo)"),
            Origin::DiscoveredWithoutMemoryController => f.write_str(
                " (from /proc/self/cgroup and /proc/self/mountinfo; no memory controller, \
                 pressure only)",
            ),
            Origin::Given(marker) => write!(f, " (given; it has {marker})"),
        }
    }
}

impl fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A cgroup file's content: a decimal number of bytes and a newline; for a limit also `max`.
pub(crate) fn parse_value(text: &[u8], is_limit: bool) -> Result<Value, Unknown> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if is_limit && text == b"max" {
        return Ok(Value::NoLimit);
    }
    match parse_u64(text) {
        Some(n) if is_limit && n >= NO_LIMIT_FROM => Ok(Value::NoLimit),
        Some(n) => Ok(Value::Bytes(n)),
        None => Err(Unknown::Malformed),
    }
}

// ---- Parsers of /proc/self/cgroup and /proc/self/mountinfo (pure, one line at a time) ----

/// One line of `/proc/self/cgroup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CgroupLine<'a> {
    /// The unified hierarchy: `0::path`.
    pub(crate) v2: bool,
    /// A v1 hierarchy with the `memory` controller.
    pub(crate) memory: bool,
    /// The cgroup's path in its hierarchy (absolute, not escaped).
    pub(crate) path: &'a [u8],
}

/// Parses `hierarchy-ID:controller-list:cgroup-path` (cgroups(7)). A path may itself hold
/// colons, so the line is split at its first two only. `None` for anything else.
pub(crate) fn parse_cgroup_line(line: &[u8]) -> Option<CgroupLine<'_>> {
    let mut fields = line.splitn(3, |&b| b == b':');
    let id = parse_u64(fields.next()?)?;
    let controllers = fields.next()?;
    let path = fields.next()?;
    if !path.starts_with(b"/") {
        return None;
    }
    Some(CgroupLine {
        v2: id == 0 && controllers.is_empty(),
        memory: id != 0 && controllers.split(|&b| b == b',').any(|c| c == b"memory"),
        path,
    })
}

/// Which hierarchy a mount is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MountKind {
    /// A `cgroup2` file system.
    V2,
    /// A `cgroup` (v1) file system with the memory controller.
    V1Memory,
}

/// A cgroup mount from `/proc/self/mountinfo`; `root` and `point` are still escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MountLine<'a> {
    pub(crate) kind: MountKind,
    pub(crate) root: &'a [u8],
    pub(crate) point: &'a [u8],
}

/// Parses a mountinfo line (proc_pid_mountinfo(5)): `id parent major:minor root mount-point
/// options [optional fields...] - fstype source super-options`. `None` unless it is a `cgroup2`
/// mount, or a `cgroup` mount whose super options include `memory`.
pub(crate) fn parse_mount_line(line: &[u8]) -> Option<MountLine<'_>> {
    let mut fields = line.split(|&b| b == b' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let _dev = fields.next()?;
    let root = fields.next()?;
    let point = fields.next()?;
    let _options = fields.next()?;
    // Optional fields (`shared:N`, `master:N`, ...), as many as there are, end with `-`.
    while fields.next()? != b"-" {}
    let fstype = fields.next()?;
    let _source = fields.next()?;
    let super_options = fields.next()?;
    let kind = match fstype {
        b"cgroup2" => MountKind::V2,
        b"cgroup" if super_options.split(|&b| b == b',').any(|o| o == b"memory") => {
            MountKind::V1Memory
        }
        _ => return None,
    };
    if !root.starts_with(b"/") || !point.starts_with(b"/") {
        return None;
    }
    Some(MountLine { kind, root, point })
}

/// Undoes mountinfo's escapes: the kernel writes space, tab, newline and backslash in paths as
/// `\040`, `\011`, `\012`, `\134` (three octal digits).
pub(crate) fn unescape(s: &[u8]) -> Result<PathBuf, Unknown> {
    let mut out = PathBuf::new();
    let mut i = 0;
    while i < s.len() {
        let octal = s.get(i + 1..i + 4).filter(|d| {
            s[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push(&[(d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0')])?;
                i += 4;
            }
            None => {
                out.push(&s[i..i + 1])?;
                i += 1;
            }
        }
    }
    Ok(out)
}

fn trim_slashes(s: &[u8]) -> &[u8] {
    let n = s.len() - s.iter().rev().take_while(|&&b| b == b'/').count();
    &s[..n]
}

/// The cgroup's directory: `point` (the mount point) joined with `path` (the cgroup path from
/// `/proc/self/cgroup`) taken relative to `root` (the mount's root field), all unescaped.
/// [`Unknown::OutsideMount`] if `path` is neither `root` nor below it (component-wise: a root of
/// `/docker/ab` does not hold `/docker/abc`), or leaves the cgroup namespace (`/..`).
pub(crate) fn join_mount(point: &[u8], root: &[u8], path: &[u8]) -> Result<PathBuf, Unknown> {
    if !path.starts_with(b"/") || path.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(Unknown::OutsideMount);
    }
    let rel = match path.strip_prefix(trim_slashes(root)) {
        Some(rel) if rel.is_empty() || rel.starts_with(b"/") => trim_slashes(rel),
        _ => return Err(Unknown::OutsideMount),
    };
    let mut dir = PathBuf::from(trim_slashes(point))?;
    dir.push(rel)?;
    if dir.len == 0 {
        dir.push(b"/")?;
    }
    Ok(dir)
}

/// Whether a `cgroup.controllers` file lists `memory` (space-separated words).
pub(crate) fn lists_memory(controllers: &[u8]) -> bool {
    controllers
        .split(|b| b.is_ascii_whitespace())
        .any(|w| w == b"memory")
}

// ---- Reading files line by line, through a bounded buffer ----

/// A file read front to back in chunks.
trait Chunks {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError>;
}

impl Chunks for RegularFile {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
        RegularFile::read(self, buf)
    }
}

/// Where discovery opens files: the real ones ([`Os`]), or fixed texts in the tests.
trait Files {
    type File: Chunks;
    fn open(&self, path: &CStr) -> Result<Self::File, FileError>;
}

/// The real file system, through [`RegularFile`] (non-blocking open, regular files only).
struct Os;

impl Files for Os {
    type File = RegularFile;
    fn open(&self, path: &CStr) -> Result<RegularFile, FileError> {
        RegularFile::open(path)
    }
}

/// Calls `line` with each line of `file` (without its newline) until it returns `true`. `buf`
/// bounds a line: a longer one is skipped, and the result says whether any was (`true`).
fn for_each_line(
    file: &mut impl Chunks,
    buf: &mut [u8],
    mut line: impl FnMut(&[u8]) -> bool,
) -> Result<bool, FileError> {
    let mut filled = 0;
    let mut skipping = false;
    let mut skipped_any = false;
    loop {
        if filled == buf.len() {
            // A full buffer and no newline: drop this line up to its end.
            skipping = true;
            skipped_any = true;
            filled = 0;
        }
        let n = file.read(&mut buf[filled..])?;
        if n == 0 {
            // The last line may lack its newline.
            if filled > 0 && !skipping {
                line(&buf[..filled]);
            }
            return Ok(skipped_any);
        }
        let end = filled + n;
        let mut start = 0;
        let mut scan = filled;
        while let Some(i) = buf[scan..end].iter().position(|&b| b == b'\n') {
            let newline = scan + i;
            if skipping {
                skipping = false;
            } else if line(&buf[start..newline]) {
                return Ok(skipped_any);
            }
            start = newline + 1;
            scan = start;
        }
        buf.copy_within(start..end, 0);
        filled = end - start;
    }
}

// ---- Discovery ----

/// Finds the process's memory cgroup (see the module documentation).
fn discover(files: &impl Files) -> Result<Cgroup, Unknown> {
    let mut buf = [0u8; LINE_CAP];

    // The process's paths in the unified hierarchy and in the v1 memory hierarchy.
    let mut v2_path: Option<Result<PathBuf, Unknown>> = None;
    let mut v1_path: Option<Result<PathBuf, Unknown>> = None;
    let mut file = files
        .open(c"/proc/self/cgroup")
        .map_err(Unknown::ProcCgroup)?;
    for_each_line(&mut file, &mut buf, |line| {
        if let Some(c) = parse_cgroup_line(line) {
            if c.v2 && v2_path.is_none() {
                v2_path = Some(PathBuf::from(c.path));
            }
            if c.memory && v1_path.is_none() {
                v1_path = Some(PathBuf::from(c.path));
            }
        }
        false
    })
    .map_err(Unknown::ProcCgroup)?;
    drop(file);
    // A path too long to keep is worth reporting only if it leaves nothing to watch.
    let too_long = matches!(v2_path, Some(Err(_))) || matches!(v1_path, Some(Err(_)));
    let v2_path = v2_path.and_then(Result::ok);
    let v1_path = v1_path.and_then(Result::ok);
    if v2_path.is_none() && v1_path.is_none() {
        return Err(if too_long {
            Unknown::TooLong
        } else {
            Unknown::NotInCgroup
        });
    }

    // Their directories: the first mount of each hierarchy whose root holds the path.
    let mut v2_dir: Option<Result<PathBuf, Unknown>> = None;
    let mut v1_dir: Option<Result<PathBuf, Unknown>> = None;
    let mut file = files
        .open(c"/proc/self/mountinfo")
        .map_err(Unknown::Mountinfo)?;
    let long_lines = for_each_line(&mut file, &mut buf, |line| {
        let Some(m) = parse_mount_line(line) else {
            return false;
        };
        let (path, dir) = match m.kind {
            MountKind::V2 => (&v2_path, &mut v2_dir),
            MountKind::V1Memory => (&v1_path, &mut v1_dir),
        };
        if let (Some(path), None | Some(Err(_))) = (path, &dir) {
            let found = unescape(m.root).and_then(|root| {
                let point = unescape(m.point)?;
                join_mount(point.as_bytes(), root.as_bytes(), path.as_bytes())
            });
            // Keep the first error for the report, and go on looking for a mount that fits.
            if found.is_ok() || dir.is_none() {
                *dir = Some(found);
            }
        }
        let v2_done = v2_path.is_none() || matches!(v2_dir, Some(Ok(_)));
        let v1_done = v1_path.is_none() || matches!(v1_dir, Some(Ok(_)));
        v2_done && v1_done
    })
    .map_err(Unknown::Mountinfo)?;
    drop(file);

    if let Some(Ok(dir)) = &v2_dir {
        if has_memory_controller(files, dir.as_bytes()) {
            return Cgroup::new(dir.as_bytes(), Version::V2, Origin::Discovered);
        }
    }
    if let Some(Ok(dir)) = &v1_dir {
        return Cgroup::new(dir.as_bytes(), Version::V1, Origin::Discovered);
    }
    if let Some(Ok(dir)) = &v2_dir {
        return Cgroup::new(
            dir.as_bytes(),
            Version::V2,
            Origin::DiscoveredWithoutMemoryController,
        );
    }
    match (v1_dir, v2_dir) {
        (Some(Err(e)), _) | (None, Some(Err(e))) => Err(e),
        _ => Err(Unknown::NoMount { long_lines }),
    }
}

/// Whether `dir/cgroup.controllers` lists `memory`.
fn has_memory_controller(files: &impl Files, dir: &[u8]) -> bool {
    let Ok(mut path) = PathBuf::join(dir, "cgroup.controllers") else {
        return false;
    };
    let Ok(mut file) = files.open(path.as_cstr()) else {
        return false;
    };
    // The list is a few dozen bytes ("cpuset cpu io memory hugetlb pids rdma misc").
    let mut buf = [0u8; 512];
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    lists_memory(&buf[..n])
}

/// The files that tell a given directory's version, in the order they are looked for: every v2
/// cgroup has `cgroup.controllers` (the root too); `memory.max` is v2's, `memory.limit_in_bytes`
/// v1's; `memory.current` and `memory.usage_in_bytes` are the last resort.
const VERSION_MARKERS: [(&str, Version); 5] = [
    ("cgroup.controllers", Version::V2),
    ("memory.max", Version::V2),
    ("memory.limit_in_bytes", Version::V1),
    ("memory.current", Version::V2),
    ("memory.usage_in_bytes", Version::V1),
];

/// The cgroup at a directory given in `PAGEWISE_CGROUP`. Its version is that of the first
/// [`VERSION_MARKERS`] file present: one that exists, even if it cannot be read (a FIFO in
/// place of `memory.max` still says v2). None present: [`Unknown::NoMemoryFiles`], and the
/// directory is not watched (it is looked at once, when the cgroup is resolved).
fn from_given(files: &impl Files, dir: &[u8]) -> Result<Cgroup, Unknown> {
    for (name, version) in VERSION_MARKERS {
        let mut path = PathBuf::join(dir, name)?;
        let present = match files.open(path.as_cstr()) {
            Ok(_) | Err(FileError::NotRegular(_) | FileError::Read(_)) => true,
            Err(FileError::Open(Errno(e))) => e == libc::EACCES || e == libc::EPERM,
        };
        if present {
            return Cgroup::new(dir, version, Origin::Given(name));
        }
    }
    Err(Unknown::NoMemoryFiles)
}

// ---- The process-wide answer ----

/// What [`resolution`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resolution {
    /// This cgroup.
    Found(&'static Cgroup),
    /// `PAGEWISE_CGROUP=none`.
    Off,
    /// No cgroup could be found, for this reason (final).
    Unknown(Unknown),
    /// Another thread is resolving it right now: unknown for now, ask again later.
    Pending,
}

impl Resolution {
    /// The cgroup, if one was found.
    pub(crate) fn cgroup(self) -> Option<&'static Cgroup> {
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
    result: Result<Cgroup, Unknown>,
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
        find: impl FnOnce() -> Result<Cgroup, Unknown>,
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

/// [`resolution`]'s cgroup, if one was found: `None` for none, unknown, and not yet known
/// ([`Resolution::Pending`]; a caller must not keep that `None` for good).
pub(crate) fn resolve(setting: CgroupSetting) -> Option<&'static Cgroup> {
    resolution(setting).cgroup()
}

/// In a fork child: a resolution interrupted by the fork belonged to a thread that is gone, so
/// the next call resolves again.
pub(crate) fn after_fork_in_child() {
    AUTO.after_fork();
    GIVEN.after_fork();
}

// ---- Display, for PAGEWISE_VERBOSE ----

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Found(c) => fmt::Display::fmt(c, f),
            Resolution::Off => f.write_str("no cgroup watched (none)"),
            Resolution::Unknown(e) => write!(f, "cgroup unknown: {e}"),
            Resolution::Pending => {
                f.write_str("cgroup not resolved yet (another thread is resolving it)")
            }
        }
    }
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unknown::File(e) => fmt::Display::fmt(&FileErrorText(e), f),
            Unknown::Malformed => f.write_str("holds no number of bytes"),
            Unknown::TooLong => write!(f, "a path is longer than {MAX_DIR_LEN} bytes"),
            Unknown::ProcCgroup(e) => write!(f, "/proc/self/cgroup {}", FileErrorText(e)),
            Unknown::Mountinfo(e) => write!(f, "/proc/self/mountinfo {}", FileErrorText(e)),
            Unknown::NotInCgroup => {
                f.write_str("/proc/self/cgroup has no cgroup v2 line and no v1 memory line")
            }
            Unknown::NoMount { long_lines } => {
                f.write_str(
                    "/proc/self/mountinfo mounts neither the process's cgroup v2 hierarchy nor \
                     its v1 memory hierarchy",
                )?;
                if long_lines {
                    write!(f, " (lines longer than {LINE_CAP} bytes were skipped)")?;
                }
                Ok(())
            }
            Unknown::OutsideMount => f.write_str(
                "the process's cgroup is outside every mount of its hierarchy (another cgroup \
                 namespace)",
            ),
            Unknown::NoMemoryFiles => f.write_str(
                "the directory has none of cgroup.controllers, memory.max, memory.limit_in_bytes, \
                 memory.current, memory.usage_in_bytes",
            ),
            Unknown::NotV2 => f.write_str("cgroup v1 has no memory.pressure"),
            Unknown::OtherPath => {
                f.write_str("another PAGEWISE_CGROUP directory is already watched by this process")
            }
        }
    }
}

/// `memory.max: 512 MiB`, `memory.high: no limit`, `memory.max: cannot be opened (ENOENT, ...)`.
impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.knob.file_name())?;
        match self.value {
            Ok(Value::Bytes(n)) => fmt::Display::fmt(&Size(n), f),
            Ok(Value::NoLimit) => f.write_str("no limit"),
            Err(e) => fmt::Display::fmt(&e, f),
        }
    }
}

/// `limit 512 MiB from memory.max (memory.max: 512 MiB, memory.high: no limit)`, `no limit
/// (...)`, or `limit unknown (memory.limit_in_bytes: cannot be opened (ENOENT, no such file))`.
impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source() {
            Some(r) => write!(
                f,
                "limit {} from {}",
                Size(r.bytes().unwrap_or(0)),
                r.knob.file_name()
            )?,
            None if self.is_unset() => f.write_str("no limit")?,
            None => f.write_str("limit unknown")?,
        }
        let mut sep = " (";
        for r in self.readings.iter().flatten() {
            write!(f, "{sep}{r}")?;
            sep = ", ";
        }
        f.write_str(")")
    }
}

/// A byte count for people: exact in the largest binary unit that divides it, else one decimal
/// and the exact count.
pub(crate) struct Size(pub(crate) u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let n = self.0;
        let Some(i) = (0..UNITS.len()).rev().find(|&i| n >> (10 * (i + 1)) > 0) else {
            return write!(f, "{n} bytes");
        };
        let unit = 1u64 << (10 * (i + 1));
        if n % unit == 0 {
            write!(f, "{} {}", n / unit, UNITS[i])
        } else {
            write!(f, "{:.1} {} ({n} bytes)", n as f64 / unit as f64, UNITS[i])
        }
    }
}

/// Why a file could not be read, in words.
struct FileErrorText(FileError);

impl fmt::Display for FileErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            FileError::Open(e) => write!(f, "cannot be opened ({})", ErrnoText(e)),
            FileError::NotRegular(mode) => {
                let kind = match mode {
                    libc::S_IFIFO => "a FIFO",
                    libc::S_IFDIR => "a directory",
                    libc::S_IFCHR => "a character device",
                    libc::S_IFBLK => "a block device",
                    libc::S_IFSOCK => "a socket",
                    _ => "of another kind",
                };
                write!(f, "is {kind}, not a regular file")
            }
            FileError::Read(e) => write!(f, "cannot be read ({})", ErrnoText(e)),
        }
    }
}

/// The errors met here, by name (`strerror` may allocate).
struct ErrnoText(Errno);

impl fmt::Display for ErrnoText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 .0 {
            libc::ENOENT => "ENOENT, no such file",
            libc::EACCES => "EACCES, permission denied",
            libc::EPERM => "EPERM, not permitted",
            libc::ENOTDIR => "ENOTDIR, a path component is not a directory",
            libc::EMFILE => "EMFILE, too many open files",
            libc::ENFILE => "ENFILE, too many open files in the system",
            libc::EOPNOTSUPP => "EOPNOTSUPP, PSI disabled here",
            libc::ENODEV => "ENODEV",
            libc::EIO => "EIO",
            libc::EINVAL => "EINVAL",
            e => return write!(f, "errno {e}"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    // ---- Fixed texts through the same line reader ----

    /// A file system of fixed texts, read `chunk` bytes at a time.
    struct Fake {
        files: Vec<(&'static str, Vec<u8>)>,
        chunk: usize,
    }

    struct FakeFile {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
    }

    impl Chunks for FakeFile {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
            let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Files for Fake {
        type File = FakeFile;
        fn open(&self, path: &CStr) -> Result<FakeFile, FileError> {
            let path = path.to_str().unwrap();
            match self.files.iter().find(|(p, _)| *p == path) {
                Some((_, data)) => Ok(FakeFile {
                    data: data.clone(),
                    pos: 0,
                    chunk: self.chunk,
                }),
                None => Err(FileError::Open(Errno(libc::ENOENT))),
            }
        }
    }

    type Found = Result<(String, Version, Origin), Unknown>;

    /// Discovery over fixed files, the same whatever the read size (1 byte to whole files).
    fn discover_in(files: &[(&'static str, &str)]) -> Found {
        let answers = [1, 3, 61, LINE_CAP - 1, LINE_CAP, 1 << 20].map(|chunk| {
            let fake = Fake {
                files: files
                    .iter()
                    .map(|(p, t)| (*p, t.as_bytes().to_vec()))
                    .collect(),
                chunk,
            };
            discover(&fake).map(|c| {
                let dir = String::from_utf8(c.dir().to_vec()).unwrap();
                (dir, c.version(), c.origin())
            })
        });
        for other in &answers[1..] {
            assert_eq!(other, &answers[0]);
        }
        answers[0].clone()
    }

    fn found(dir: &str, version: Version) -> Found {
        Ok((dir.to_string(), version, Origin::Discovered))
    }

    const CGROUP: &str = "/proc/self/cgroup";
    const MOUNTINFO: &str = "/proc/self/mountinfo";

    const HOST_MOUNTS: &str = "\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
";

    #[test]
    fn systemd_v2() {
        let mountinfo = format!(
            "{HOST_MOUNTS}25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - \
             cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
        );
        let scope = "/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope";
        let dir = format!("/sys/fs/cgroup{scope}");
        let controllers: &'static str =
            Box::leak(format!("{dir}/cgroup.controllers").into_boxed_str());
        let cgroup = format!("0::{scope}\n");
        assert_eq!(
            discover_in(&[
                (CGROUP, &cgroup),
                (MOUNTINFO, &mountinfo),
                (controllers, "cpu memory pids\n"),
            ]),
            found(&dir, Version::V2)
        );
        // The same cgroup without the memory controller and no v1 hierarchy: v2, pressure only.
        assert_eq!(
            discover_in(&[
                (CGROUP, &cgroup),
                (MOUNTINFO, &mountinfo),
                (controllers, "cpu pids\n"),
            ]),
            Ok((dir, Version::V2, Origin::DiscoveredWithoutMemoryController))
        );
    }

    #[test]
    fn docker_v1_with_the_container_cgroup_bind_mounted() {
        let cgroup = "\
12:pids:/docker/0123abcd
10:memory:/docker/0123abcd
9:cpu,cpuacct:/docker/0123abcd
1:name=systemd:/docker/0123abcd
";
        // The overlay root line runs to several KiB in real containers: skipped, harmless.
        let overlay = format!(
            "600 500 0:60 / / rw,relatime - overlay overlay rw,lowerdir={}\n",
            "/var/lib/docker/overlay2/l/ABCDEFGHIJ:".repeat(100)
        );
        assert!(overlay.len() > LINE_CAP);
        let mountinfo = format!(
            "{overlay}\
650 600 0:61 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
655 650 0:30 /docker/0123abcd /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,memory
656 650 0:31 /docker/0123abcd /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:16 - cgroup cgroup rw,cpu,cpuacct
"
        );
        assert_eq!(
            discover_in(&[(CGROUP, cgroup), (MOUNTINFO, &mountinfo)]),
            found("/sys/fs/cgroup/memory", Version::V1)
        );
        // A private cgroup namespace: the path is `/`, and so is the mount's root.
        let private = "10:memory:/\n";
        let mountinfo = "655 650 0:30 / /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory";
        assert_eq!(
            discover_in(&[(CGROUP, private), (MOUNTINFO, mountinfo)]),
            found("/sys/fs/cgroup/memory", Version::V1)
        );
    }

    #[test]
    fn k8s_v2_nested() {
        let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice";
        let cgroup = format!("0::{pod}/cri-containerd-9f8e.scope\n");
        // Mounted whole (no cgroup namespace)...
        let dir = format!("/sys/fs/cgroup{pod}/cri-containerd-9f8e.scope");
        let controllers: &'static str =
            Box::leak(format!("{dir}/cgroup.controllers").into_boxed_str());
        let all = "cpuset cpu io memory hugetlb pids rdma misc\n";
        let whole = "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            discover_in(&[(CGROUP, &cgroup), (MOUNTINFO, whole), (controllers, all)]),
            found(&dir, Version::V2)
        );
        // ...or from the pod's cgroup down, at a mount point with an escaped space.
        let nested = format!(
            "{HOST_MOUNTS}31 22 0:26 {pod} /sys/fs/cgroup\\040pod rw master:9 - cgroup2 none rw\n"
        );
        let controllers = "/sys/fs/cgroup pod/cri-containerd-9f8e.scope/cgroup.controllers";
        assert_eq!(
            discover_in(&[(CGROUP, &cgroup), (MOUNTINFO, &nested), (controllers, all)]),
            found("/sys/fs/cgroup pod/cri-containerd-9f8e.scope", Version::V2)
        );
    }

    /// As on the development machine: systemd's `unified` v2 mount holds no memory controller.
    #[test]
    fn hybrid_uses_v1_memory() {
        let cgroup = "\
9:name=systemd:/
4:memory:/process_api/ffc74ee6
1:cpu:/
0::/
";
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let v1 = found("/sys/fs/cgroup/memory/process_api/ffc74ee6", Version::V1);
        let controllers = "/sys/fs/cgroup/unified/cgroup.controllers";
        assert_eq!(
            discover_in(&[
                (CGROUP, cgroup),
                (MOUNTINFO, mountinfo),
                (controllers, "hugetlb\n")
            ]),
            v1
        );
        // No cgroup.controllers to read: v1 all the same.
        assert_eq!(discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]), v1);
        // Had the unified hierarchy the memory controller, v2 would be preferred.
        assert_eq!(
            discover_in(&[
                (CGROUP, cgroup),
                (MOUNTINFO, mountinfo),
                (controllers, "memory hugetlb\n")
            ]),
            found("/sys/fs/cgroup/unified", Version::V2)
        );
    }

    #[test]
    fn garbage_empty_and_missing_files_give_unknown() {
        let v1_mount = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let garbage = "garbage\n\n::::\n4:memory:relative\nx:memory:/a\n:memory:/a\n\u{0}\u{7f}\n";
        assert_eq!(
            discover_in(&[(CGROUP, garbage), (MOUNTINFO, v1_mount)]),
            Err(Unknown::NotInCgroup)
        );
        assert_eq!(
            discover_in(&[(CGROUP, ""), (MOUNTINFO, v1_mount)]),
            Err(Unknown::NotInCgroup)
        );
        let cgroup = "4:memory:/a\n";
        for mountinfo in [
            "",
            "\n\n",
            "1 2 3\n - cgroup2\n35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup\n",
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,cpu\n",
            "35 31 0:32 relative /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            "\u{ff}\u{0}garbage - cgroup2 cgroup2 rw\n",
        ] {
            assert_eq!(
                discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]),
                Err(Unknown::NoMount { long_lines: false }),
                "{mountinfo:?}"
            );
        }
        // The mount line itself too long to read: unknown, and the reason says so.
        let long = format!(
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory,{}\n",
            "x".repeat(LINE_CAP)
        );
        assert_eq!(
            discover_in(&[(CGROUP, cgroup), (MOUNTINFO, &long)]),
            Err(Unknown::NoMount { long_lines: true })
        );
        assert_eq!(
            discover_in(&[(MOUNTINFO, v1_mount)]),
            Err(Unknown::ProcCgroup(FileError::Open(Errno(libc::ENOENT))))
        );
        assert_eq!(
            discover_in(&[(CGROUP, cgroup)]),
            Err(Unknown::Mountinfo(FileError::Open(Errno(libc::ENOENT))))
        );
        // A cgroup path longer than a path buffer.
        let deep = format!("4:memory:/{}\n", "d".repeat(PATH_CAP));
        assert_eq!(
            discover_in(&[(CGROUP, &deep), (MOUNTINFO, v1_mount)]),
            Err(Unknown::TooLong)
        );
        // A directory longer than MAX_DIR_LEN once joined to its mount point.
        let deep = format!("4:memory:/{}\n", "d".repeat(MAX_DIR_LEN - 10));
        assert_eq!(
            discover_in(&[(CGROUP, &deep), (MOUNTINFO, v1_mount)]),
            Err(Unknown::TooLong)
        );
    }

    #[test]
    fn a_cgroup_outside_the_mount_root_is_unknown() {
        let cgroup = "10:memory:/other\n";
        let mountinfo =
            "655 650 0:30 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        assert_eq!(
            discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]),
            Err(Unknown::OutsideMount)
        );
        // `/docker/abc` does not hold `/docker/abcdef`; a later mount of the whole hierarchy does.
        let cgroup = "10:memory:/docker/abcdef\n";
        assert_eq!(
            discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]),
            Err(Unknown::OutsideMount)
        );
        let both = format!("{mountinfo}700 1 0:30 / /mnt/mem rw - cgroup cg rw,memory\n");
        assert_eq!(
            discover_in(&[(CGROUP, cgroup), (MOUNTINFO, &both)]),
            found("/mnt/mem/docker/abcdef", Version::V1)
        );
        // Outside the cgroup namespace.
        let mountinfo = "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            discover_in(&[(CGROUP, "0::/../sibling\n"), (MOUNTINFO, mountinfo)]),
            Err(Unknown::OutsideMount)
        );
    }

    #[test]
    fn parses_cgroup_lines() {
        let line = |s: &'static str| parse_cgroup_line(s.as_bytes());
        let v2 = |path: &'static str| {
            Some(CgroupLine {
                v2: true,
                memory: false,
                path: path.as_bytes(),
            })
        };
        assert_eq!(line("0::/"), v2("/"));
        assert_eq!(line("0::/a b/c:d"), v2("/a b/c:d"));
        let memory = line("3:cpu,memory,blkio:/a:b").unwrap();
        assert!(memory.memory && !memory.v2 && memory.path == b"/a:b");
        assert!(line("4:memory:/process_api/x").unwrap().memory);
        let systemd = line("1:name=systemd:/").unwrap();
        assert!(!systemd.memory && !systemd.v2);
        assert!(!line("5:memory_x,nomemory:/").unwrap().memory);
        // A v1 hierarchy without controllers is not v2: only ID 0 is.
        assert!(!line("7::/").unwrap().v2);
        for bad in [
            "",
            "0::",
            "0::relative",
            "x::/",
            "-1::/",
            "4:memory",
            ":memory:/",
            "0:/",
        ] {
            assert_eq!(line(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_mount_lines() {
        let line = |s: &'static str| parse_mount_line(s.as_bytes());
        assert_eq!(
            line("25 24 0:23 / /sys/fs/cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw"),
            Some(MountLine {
                kind: MountKind::V2,
                root: b"/",
                point: b"/sys/fs/cgroup",
            })
        );
        assert_eq!(
            line("35 31 0:32 /a\\040b /m rw - cgroup cgroup rw,cpu,memory"),
            Some(MountLine {
                kind: MountKind::V1Memory,
                root: b"/a\\040b",
                point: b"/m",
            })
        );
        for other in [
            "35 31 0:32 / /m rw - cgroup cgroup rw,cpu",
            "35 31 0:32 / /m rw - cgroup cgroup rw,memory_recursiveprot",
            "35 31 0:32 / /m rw - tmpfs tmpfs rw,memory",
            "35 31 0:32 / /m rw - cgroup cgroup",
            "35 31 0:32 / /m rw shared:1",
            "35 31 0:32 / /m rw",
            "35 31 0:32 / relative rw - cgroup2 cgroup2 rw",
            "",
        ] {
            assert_eq!(line(other), None, "{other}");
        }
    }

    #[test]
    fn joins_mount_point_root_and_path() {
        let join = |point: &str, root: &str, path: &str| {
            join_mount(point.as_bytes(), root.as_bytes(), path.as_bytes())
                .map(|p| String::from_utf8(p.as_bytes().to_vec()).unwrap())
        };
        let ok = |s: &str| Ok(s.to_string());
        assert_eq!(
            join("/sys/fs/cgroup", "/", "/a/b"),
            ok("/sys/fs/cgroup/a/b")
        );
        assert_eq!(join("/sys/fs/cgroup", "/", "/"), ok("/sys/fs/cgroup"));
        assert_eq!(join("/sys/fs/cgroup/", "/", "/a/"), ok("/sys/fs/cgroup/a"));
        assert_eq!(join("/cg", "/docker/abc", "/docker/abc"), ok("/cg"));
        assert_eq!(join("/cg", "/docker/abc/", "/docker/abc/x"), ok("/cg/x"));
        assert_eq!(join("/", "/", "/a"), ok("/a"));
        assert_eq!(join("/", "/", "/"), ok("/"));
        for (root, path) in [
            ("/docker/abc", "/docker/abcdef"),
            ("/docker/abc", "/docker"),
            ("/docker/abc", "/"),
            ("/", "/../x"),
            ("/", "/a/../../x"),
            ("/", "relative"),
        ] {
            assert_eq!(
                join("/cg", root, path),
                Err(Unknown::OutsideMount),
                "{root} {path}"
            );
        }
        let long = format!("/{}", "x".repeat(PATH_CAP));
        assert_eq!(join("/cg", "/", &long), Err(Unknown::TooLong));
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        let un = |s: &str| String::from_utf8(unescape(s.as_bytes()).unwrap().as_bytes().to_vec());
        assert_eq!(un("/a\\040b\\011c\\012d\\134e").unwrap(), "/a b\tc\nd\\e");
        assert_eq!(un("/no\\9escape\\").unwrap(), "/no\\9escape\\");
        assert_eq!(un("/short\\04").unwrap(), "/short\\04");
        assert_eq!(un("/high\\400").unwrap(), "/high\\400");
        // `\000` would put a NUL in a path: refused.
        assert_eq!(unescape(b"/nul\\000").err(), Some(Unknown::TooLong));
    }

    #[test]
    fn reads_lines_through_a_bounded_buffer() {
        let lines = |text: &str, cap: usize, chunk: usize| {
            let mut file = FakeFile {
                data: text.as_bytes().to_vec(),
                pos: 0,
                chunk,
            };
            let mut buf = vec![0u8; cap];
            let mut seen = Vec::new();
            let long = for_each_line(&mut file, &mut buf, |l| {
                seen.push(String::from_utf8(l.to_vec()).unwrap());
                false
            })
            .unwrap();
            (seen, long)
        };
        for chunk in [1, 2, 5, 100] {
            assert_eq!(
                lines("a\nbb\n\nccc", 8, chunk),
                (
                    vec!["a".into(), "bb".into(), "".into(), "ccc".into()],
                    false
                )
            );
            assert_eq!(lines("", 8, chunk), (vec![], false));
            // A line of 8 bytes or more does not fit with its newline: skipped, flagged.
            assert_eq!(
                lines("a\n0123456789abcdef\nb\n01234567\nc", 8, chunk),
                (vec!["a".into(), "b".into(), "c".into()], true)
            );
            assert_eq!(
                lines("0123456\n", 8, chunk),
                (vec!["0123456".into()], false)
            );
            // Too long and unterminated at the end.
            assert_eq!(lines("a\n0123456789", 8, chunk), (vec!["a".into()], true));
        }
        // Stops when told to.
        let mut file = FakeFile {
            data: b"a\nb\nc\n".to_vec(),
            pos: 0,
            chunk: 1,
        };
        let mut n = 0;
        for_each_line(&mut file, &mut [0u8; 8], |_| {
            n += 1;
            n == 2
        })
        .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn parses_values() {
        let limit = |s: &str| parse_value(s.as_bytes(), true);
        let usage = |s: &str| parse_value(s.as_bytes(), false);
        assert_eq!(limit("max\n"), Ok(Value::NoLimit));
        assert_eq!(limit("max"), Ok(Value::NoLimit));
        assert_eq!(limit("536870912\n"), Ok(Value::Bytes(512 << 20)));
        assert_eq!(limit("0\n"), Ok(Value::Bytes(0)));
        // v1's unset limit with 4 KiB and 64 KiB pages.
        assert_eq!(limit("9223372036854771712\n"), Ok(Value::NoLimit));
        assert_eq!(limit("9223372036854710272\n"), Ok(Value::NoLimit));
        assert_eq!(limit("4611686018427387904\n"), Ok(Value::NoLimit));
        assert_eq!(
            limit("4611686018427387903\n"),
            Ok(Value::Bytes((1 << 62) - 1))
        );
        assert_eq!(
            usage("9223372036854771712\n"),
            Ok(Value::Bytes(9223372036854771712))
        );
        assert_eq!(usage("12345\n"), Ok(Value::Bytes(12345)));
        assert_eq!(usage("max\n"), Err(Unknown::Malformed));
        for bad in [
            "",
            "\n",
            " 1\n",
            "1 \n",
            "-1\n",
            "1\n\n",
            "12abc\n",
            "MAX\n",
            "1.5\n",
            "99999999999999999999999\n",
            "garbage",
        ] {
            assert_eq!(limit(bad), Err(Unknown::Malformed), "{bad:?}");
            assert_eq!(usage(bad), Err(Unknown::Malformed), "{bad:?}");
        }
        assert!(lists_memory(b"cpuset cpu io memory pids\n"));
        assert!(lists_memory(b"memory"));
        assert!(!lists_memory(b"cpu memoryx hugetlb\n"));
        assert!(!lists_memory(b""));
    }

    // ---- Fake cgroup directories on disk, rewritten between reads ----

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("pagewise-cg-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn bytes(&self) -> &[u8] {
            self.0.as_os_str().as_bytes()
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.0.join(name)
        }

        fn write(&self, name: &str, text: &str) {
            let _ = std::fs::remove_dir(self.path(name));
            let _ = std::fs::remove_file(self.path(name));
            std::fs::write(self.path(name), text).unwrap();
        }

        /// Replaces `name` by a new file renamed over it (a new inode, as an atomic update does).
        fn replace(&self, name: &str, text: &str) {
            let tmp = self.path(&format!("{name}.new"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.path(name)).unwrap();
        }

        fn remove(&self, name: &str) {
            std::fs::remove_file(self.path(name)).unwrap();
        }

        fn fifo(&self, name: &str) {
            let _ = std::fs::remove_file(self.path(name));
            let c = std::ffi::CString::new(self.path(name).as_os_str().as_bytes()).unwrap();
            // SAFETY: c is a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }

        fn dir(&self, name: &str) {
            let _ = std::fs::remove_file(self.path(name));
            std::fs::create_dir(self.path(name)).unwrap();
        }

        fn given(&self) -> Cgroup {
            from_given(&Os, self.bytes()).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `f` on another thread and fails if it does not finish within 10 s (a FIFO read that
    /// blocked would otherwise hang the whole test run).
    fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()).unwrap());
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a cgroup read hung")
    }

    const PSI: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                       full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";

    #[test]
    fn fake_v2_directory_rewritten_between_reads() {
        let d = TempDir::new("v2");
        d.write("cgroup.controllers", "cpu memory pids\n");
        d.write("memory.max", "max\n");
        d.write("memory.high", "max\n");
        d.write("memory.current", "1234\n");
        d.write("memory.pressure", PSI);
        let cg = d.given();
        assert_eq!(cg.version(), Version::V2);
        assert_eq!(cg.origin(), Origin::Given("cgroup.controllers"));
        assert_eq!(cg.dir(), d.bytes());
        assert_eq!(cg.limit(), None);
        assert!(cg.limit_detail().is_unset());
        assert_eq!(
            cg.limit_detail().to_string(),
            "no limit (memory.max: no limit, memory.high: no limit)"
        );
        assert_eq!(cg.usage(), Some(1234));

        d.write("memory.high", "1073741824\n");
        assert_eq!(cg.limit(), Some(1 << 30));
        assert_eq!(cg.limit_detail().source().unwrap().knob, Knob::High);
        d.write("memory.max", "536870912\n");
        assert_eq!(cg.limit(), Some(512 << 20));
        assert_eq!(
            cg.limit_detail().to_string(),
            "limit 512 MiB from memory.max (memory.max: 512 MiB, memory.high: 1 GiB)"
        );
        // Equal: the hard limit is named.
        d.write("memory.high", "536870912\n");
        assert_eq!(cg.limit_detail().source().unwrap().knob, Knob::Max);
        d.write("memory.high", "1073741824\n");
        // Garbage in one file: the other still gives a limit.
        d.write("memory.max", "garbage\n");
        assert_eq!(cg.limit(), Some(1 << 30));
        assert_eq!(cg.read(Knob::Max), Err(Unknown::Malformed));
        d.write("memory.max", &"9".repeat(100));
        assert_eq!(cg.read(Knob::Max), Err(Unknown::Malformed));
        d.remove("memory.high");
        assert_eq!(cg.limit(), None);
        assert!(!cg.limit_detail().is_unset());
        assert_eq!(
            cg.limit_detail().to_string(),
            "limit unknown (memory.max: holds no number of bytes, memory.high: cannot be opened \
             (ENOENT, no such file))"
        );
        // Replaced by a rename: the new file is read.
        d.replace("memory.max", "2097152\n");
        assert_eq!(cg.limit(), Some(2 << 20));
        d.replace("memory.max", "3145728\n");
        assert_eq!(cg.limit(), Some(3 << 20));
        // A FIFO without a writer in place of memory.max: no hang, unknown.
        d.fifo("memory.max");
        let (max, limit) = within_deadline(move || (cg.read(Knob::Max), cg.limit()));
        assert_eq!(
            max,
            Err(Unknown::File(FileError::NotRegular(libc::S_IFIFO)))
        );
        assert_eq!(limit, None);
        d.dir("memory.max");
        assert_eq!(
            cg.read(Knob::Max),
            Err(Unknown::File(FileError::NotRegular(libc::S_IFDIR)))
        );
        d.write("memory.max", "4194304");
        assert_eq!(cg.limit(), Some(4 << 20));

        // Usage.
        d.write("memory.current", "-5\n");
        assert_eq!(cg.usage(), None);
        assert_eq!(cg.usage_detail().value, Err(Unknown::Malformed));
        d.remove("memory.current");
        assert_eq!(cg.usage(), None);
        d.write("memory.current", "99\n");
        assert_eq!(cg.usage(), Some(99));

        // The pressure file: lent from the cgroup, checked at each call.
        let p = cg.pressure_file().unwrap();
        assert_eq!(
            p.to_bytes(),
            d.path("memory.pressure").as_os_str().as_bytes()
        );
        d.remove("memory.pressure");
        assert_eq!(
            cg.pressure_file_detail(),
            Err(Unknown::File(FileError::Open(Errno(libc::ENOENT))))
        );
        d.fifo("memory.pressure");
        let p = within_deadline(move || cg.pressure_file_detail().map(|_| ()));
        assert_eq!(p, Err(Unknown::File(FileError::NotRegular(libc::S_IFIFO))));
        d.write("memory.pressure", PSI);
        assert!(cg.pressure_file().is_some());
    }

    #[test]
    fn fake_v1_directory_rewritten_between_reads() {
        let d = TempDir::new("v1");
        d.write("memory.limit_in_bytes", "9223372036854771712\n");
        d.write("memory.usage_in_bytes", "4096\n");
        let cg = d.given();
        assert_eq!(cg.version(), Version::V1);
        assert_eq!(cg.origin(), Origin::Given("memory.limit_in_bytes"));
        assert_eq!(cg.limit(), None);
        assert!(cg.limit_detail().is_unset());
        assert_eq!(cg.usage(), Some(4096));
        assert_eq!(cg.pressure_file_detail(), Err(Unknown::NotV2));
        d.write("memory.limit_in_bytes", "268435456\n");
        assert_eq!(cg.limit(), Some(256 << 20));
        assert_eq!(
            cg.limit_detail().to_string(),
            "limit 256 MiB from memory.limit_in_bytes (memory.limit_in_bytes: 256 MiB)"
        );
        d.write("memory.limit_in_bytes", "9223372036854710272\n");
        assert_eq!(cg.limit(), None);
        d.write("memory.limit_in_bytes", "garbage");
        assert_eq!(cg.limit(), None);
        assert_eq!(
            cg.limit_detail().readings[0].unwrap().value,
            Err(Unknown::Malformed)
        );
        d.remove("memory.limit_in_bytes");
        assert_eq!(cg.limit(), None);
        d.fifo("memory.limit_in_bytes");
        let limit = within_deadline(move || cg.limit_detail());
        assert_eq!(
            limit.readings[0].unwrap().value,
            Err(Unknown::File(FileError::NotRegular(libc::S_IFIFO)))
        );
        d.replace("memory.limit_in_bytes", "1048576\n");
        assert_eq!(cg.limit(), Some(1 << 20));
        d.write("memory.usage_in_bytes", "\n");
        assert_eq!(cg.usage(), None);
    }

    #[test]
    fn the_version_of_a_given_directory_comes_from_its_files() {
        let d = TempDir::new("infer");
        assert_eq!(
            from_given(&Os, d.bytes()).err(),
            Some(Unknown::NoMemoryFiles)
        );
        let missing = d.path("no-such-dir");
        assert_eq!(
            from_given(&Os, missing.as_os_str().as_bytes()).err(),
            Some(Unknown::NoMemoryFiles)
        );
        d.write("memory.usage_in_bytes", "1\n");
        assert_eq!(d.given().version(), Version::V1);
        d.write("memory.current", "1\n");
        assert_eq!(d.given().origin(), Origin::Given("memory.current"));
        assert_eq!(d.given().version(), Version::V2);
        d.write("memory.limit_in_bytes", "1\n");
        assert_eq!(d.given().version(), Version::V1);
        // A FIFO is there, even if it cannot be read: v2.
        d.fifo("memory.max");
        assert_eq!(d.given().origin(), Origin::Given("memory.max"));
        // A trailing slash is dropped.
        let mut slash = d.bytes().to_vec();
        slash.extend_from_slice(b"//");
        assert_eq!(from_given(&Os, &slash).unwrap().dir(), d.bytes());
        let long = vec![b'/'; PATH_CAP];
        assert_eq!(from_given(&Os, &long).err(), Some(Unknown::TooLong));
    }

    // ---- Resolution once per process ----

    fn leaked_slot() -> &'static Slot {
        Box::leak(Box::new(Slot::new()))
    }

    fn a_cgroup(dir: &str) -> Result<Cgroup, Unknown> {
        Cgroup::new(dir.as_bytes(), Version::V2, Origin::Given("memory.max"))
    }

    #[test]
    fn a_slot_resolves_once_and_answers_for_its_key_only() {
        let slot = leaked_slot();
        let first = slot.resolve(b"/a", || a_cgroup("/a")).cgroup().unwrap();
        let again = slot.resolve(b"/a", || panic!("resolved twice"));
        assert!(core::ptr::eq(again.cgroup().unwrap(), first));
        assert!(matches!(
            slot.resolve(b"/b", || panic!("resolved twice")),
            Resolution::Unknown(Unknown::OtherPath)
        ));
        // Unknown is final too.
        let slot = leaked_slot();
        let r = slot.resolve(b"", || Err(Unknown::NotInCgroup));
        assert!(matches!(r, Resolution::Unknown(Unknown::NotInCgroup)) && r.is_final());
        assert!(matches!(
            slot.resolve(b"", || panic!("resolved twice")),
            Resolution::Unknown(Unknown::NotInCgroup)
        ));
    }

    #[test]
    fn a_thread_that_finds_the_resolution_under_way_does_not_wait() {
        let slot = leaked_slot();
        slot.state.store(RESOLVING, Ordering::Relaxed);
        let r = slot.resolve(b"", || panic!("must not resolve"));
        assert!(matches!(r, Resolution::Pending) && !r.is_final() && r.cgroup().is_none());
        // A fork child: the resolving thread is gone, the next call resolves.
        slot.after_fork();
        assert!(slot.resolve(b"", || a_cgroup("/x")).cgroup().is_some());
        slot.after_fork();
        assert!(slot
            .resolve(b"", || panic!("resolved twice"))
            .cgroup()
            .is_some());

        // Racing threads: one resolves, the others get the answer or Pending, never a wait.
        let slot = leaked_slot();
        let calls: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let r = slot.resolve(b"/r", || {
                        calls.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                        a_cgroup("/r")
                    });
                    r.cgroup().map(|c| c as *const Cgroup as usize)
                })
            })
            .collect();
        let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let found = slot
            .resolve(b"/r", || panic!("resolved twice"))
            .cgroup()
            .unwrap();
        for a in answers.into_iter().flatten() {
            assert_eq!(a, found as *const Cgroup as usize);
        }
    }

    #[test]
    fn resolves_settings() {
        assert!(matches!(resolution(CgroupSetting::None), Resolution::Off));
        let long: &'static CStr = Box::leak(
            std::ffi::CString::new(vec![b'/'; MAX_DIR_LEN + 1])
                .unwrap()
                .into_boxed_c_str(),
        );
        assert!(matches!(
            resolution(CgroupSetting::Path(long)),
            Resolution::Unknown(Unknown::TooLong)
        ));
        // The only test that resolves a given directory in this binary (GIVEN is process-wide).
        let d = TempDir::new("given");
        d.write("memory.max", "max\n");
        d.write("memory.high", "max\n");
        d.write("memory.current", "1\n");
        let path: &'static CStr = Box::leak(
            std::ffi::CString::new(d.bytes())
                .unwrap()
                .into_boxed_c_str(),
        );
        let cg = resolve(CgroupSetting::Path(path)).unwrap();
        assert_eq!(cg.version(), Version::V2);
        assert!(core::ptr::eq(
            resolve(CgroupSetting::Path(path)).unwrap(),
            cg
        ));
        // Rewritten while "the program runs": the static cgroup reads the files afresh.
        d.write("memory.high", "8388608\n");
        assert_eq!(cg.limit(), Some(8 << 20));
        let other: &'static CStr = c"/sys/fs/cgroup";
        assert!(matches!(
            resolution(CgroupSetting::Path(other)),
            Resolution::Unknown(Unknown::OtherPath)
        ));
        let shown = resolution(CgroupSetting::Path(path)).to_string();
        assert!(
            shown.starts_with("cgroup v2 /") && shown.ends_with("(given; it has memory.max)"),
            "{shown}"
        );
    }

    /// The machine's real cgroup, checked against `/proc/self/cgroup` as read by std. Reads
    /// only: never creates, moves or writes a cgroup.
    #[test]
    fn finds_this_process_cgroup() {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let memory_path = text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
            (id != "0" && controllers.split(',').any(|c| c == "memory")).then(|| path.to_string())
        });
        let v2_path = text
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(String::from));
        let r = resolution(CgroupSetting::Auto);
        let Some(cg) = r.cgroup() else {
            assert!(
                memory_path.is_none() && v2_path.is_none(),
                "{r}, but /proc/self/cgroup is:\n{text}"
            );
            return;
        };
        eprintln!("this process: {cg}");
        let dir = std::str::from_utf8(cg.dir()).unwrap().to_string();
        let expected = match cg.version() {
            Version::V1 => memory_path.clone().expect("v1, so a memory line"),
            Version::V2 => v2_path.clone().expect("v2, so a 0:: line"),
        };
        assert!(
            dir.ends_with(expected.trim_end_matches('/')),
            "{dir} does not end with {expected}"
        );
        assert!(std::path::Path::new(&dir).is_dir(), "{dir}");
        let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).ok();
        let number = |name: &str| -> Option<u64> {
            let t = read(name)?;
            let n = t.trim().parse().ok()?;
            (n < NO_LIMIT_FROM).then_some(n)
        };
        let expected_limit = match cg.version() {
            Version::V1 => number("memory.limit_in_bytes"),
            Version::V2 => match (number("memory.max"), number("memory.high")) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        };
        if cg.version() == Version::V1 {
            assert!(read("memory.limit_in_bytes").is_some());
            assert_eq!(cg.pressure_file_detail(), Err(Unknown::NotV2));
        }
        let limit = cg.limit_detail();
        let usage = cg.usage_detail();
        eprintln!(
            "this process: {limit}; usage {usage}; pressure {:?}",
            cg.pressure_file_detail()
        );
        assert_eq!(limit.bytes(), expected_limit);
        if cg.origin() != Origin::DiscoveredWithoutMemoryController {
            let usage = usage.bytes().expect("usage readable");
            assert!(usage > 0 && usage < 1 << 50, "{usage}");
        }
        assert!(core::ptr::eq(resolve(CgroupSetting::Auto).unwrap(), cg));
        let start = std::time::Instant::now();
        let again = discover(&Os).unwrap();
        eprintln!("this process: discovery again took {:?}", start.elapsed());
        assert_eq!(again.dir(), cg.dir());
    }

    #[test]
    fn shows_sizes_and_reasons() {
        assert_eq!(Size(100).to_string(), "100 bytes");
        assert_eq!(Size(1024).to_string(), "1 KiB");
        assert_eq!(Size(1536).to_string(), "1.5 KiB (1536 bytes)");
        assert_eq!(Size(512 << 20).to_string(), "512 MiB");
        assert_eq!(
            Size(u64::MAX).to_string(),
            "16.0 EiB (18446744073709551615 bytes)"
        );
        assert_eq!(
            Resolution::Unknown(Unknown::NoMount { long_lines: true }).to_string(),
            "cgroup unknown: /proc/self/mountinfo mounts neither the process's cgroup v2 \
             hierarchy nor its v1 memory hierarchy (lines longer than 2048 bytes were skipped)"
        );
        assert_eq!(
            Unknown::ProcCgroup(FileError::NotRegular(libc::S_IFIFO)).to_string(),
            "/proc/self/cgroup is a FIFO, not a regular file"
        );
        assert_eq!(
            Reading {
                knob: Knob::High,
                value: Err(Unknown::File(FileError::Read(Errno(libc::EOPNOTSUPP))))
            }
            .to_string(),
            "memory.high: cannot be read (EOPNOTSUPP, PSI disabled here)"
        );
        let cg = Cgroup::new(b"/sys/fs/cgroup/a b", Version::V1, Origin::Discovered).unwrap();
        assert_eq!(
            cg.to_string(),
            "cgroup v1 (memory controller) /sys/fs/cgroup/a b (from /proc/self/cgroup and \
             /proc/self/mountinfo)"
        );
    }
}
