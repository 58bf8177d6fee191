//! Finding the process's own cgroup from `/proc/self/cgroup` and `/proc/self/mountinfo`.

use super::*;

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

pub(super) fn trim_slashes(s: &[u8]) -> &[u8] {
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
pub(super) trait Chunks {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError>;
}

impl Chunks for RegularFile {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
        RegularFile::read(self, buf)
    }
}

/// Where discovery opens files: the real ones ([`Os`]), or fixed texts in the tests.
pub(super) trait Files {
    type File: Chunks;
    fn open(&self, path: &CStr) -> Result<Self::File, FileError>;
}

/// The real file system, through [`RegularFile`] (non-blocking open, regular files only).
pub(super) struct Os;

impl Files for Os {
    type File = RegularFile;
    fn open(&self, path: &CStr) -> Result<RegularFile, FileError> {
        RegularFile::open(path)
    }
}

/// Calls `line` with each line of `file` (without its newline) until it returns `true`. `buf`
/// bounds a line: a longer one is skipped, and the result says whether any was (`true`).
pub(super) fn for_each_line(
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

/// The process's paths in the unified hierarchy and in the v1 memory hierarchy.
struct Paths {
    v2: Option<PathBuf>,
    v1: Option<PathBuf>,
}

/// A hierarchy's directory for the process: the cgroup's own, and its mount point (the top of
/// the chain walked up for limits, `chain.rs`). `None` until a mount is seen; the first error
/// is kept for the report while a mount that fits is looked for.
type Found = Option<Result<(PathBuf, PathBuf), Unknown>>;

/// Finds the process's memory cgroup (see the module documentation): its paths from
/// `/proc/self/cgroup`, their directories from `/proc/self/mountinfo`, then the version.
pub(super) fn discover(files: &impl Files) -> Result<CgroupDir, Unknown> {
    let mut buf = [0u8; LINE_CAP];
    let paths = read_paths(files, &mut buf)?;
    let (v2_dir, v1_dir, long_lines) = find_dirs(files, &paths, &mut buf)?;
    let cgroup = |found: &(PathBuf, PathBuf), version, origin| {
        CgroupDir::new(found.0.as_bytes(), version, origin).map(|c| c.with_top(found.1.as_bytes()))
    };
    if let Some(Ok(found)) = &v2_dir {
        if has_memory_controller(files, found.0.as_bytes()) {
            return cgroup(found, Version::V2, Origin::Discovered);
        }
    }
    if let Some(Ok(found)) = &v1_dir {
        return cgroup(found, Version::V1, Origin::Discovered);
    }
    if let Some(Ok(found)) = &v2_dir {
        return cgroup(
            found,
            Version::V2,
            Origin::DiscoveredWithoutMemoryController,
        );
    }
    match (v1_dir, v2_dir) {
        (Some(Err(e)), _) | (None, Some(Err(e))) => Err(e),
        _ => Err(Unknown::NoMount { long_lines }),
    }
}

/// The process's paths from `/proc/self/cgroup`: the first v2 line and the first v1 line with
/// the memory controller.
fn read_paths(files: &impl Files, buf: &mut [u8]) -> Result<Paths, Unknown> {
    let mut v2: Option<Result<PathBuf, Unknown>> = None;
    let mut v1: Option<Result<PathBuf, Unknown>> = None;
    let mut file = files
        .open(c"/proc/self/cgroup")
        .map_err(Unknown::ProcCgroup)?;
    for_each_line(&mut file, buf, |line| {
        if let Some(c) = parse_cgroup_line(line) {
            if c.v2 && v2.is_none() {
                v2 = Some(PathBuf::from(c.path));
            }
            if c.memory && v1.is_none() {
                v1 = Some(PathBuf::from(c.path));
            }
        }
        false
    })
    .map_err(Unknown::ProcCgroup)?;
    // A path too long to keep is worth reporting only if it leaves nothing to watch.
    let too_long = matches!(v2, Some(Err(_))) || matches!(v1, Some(Err(_)));
    let paths = Paths {
        v2: v2.and_then(Result::ok),
        v1: v1.and_then(Result::ok),
    };
    if paths.v2.is_none() && paths.v1.is_none() {
        return Err(if too_long {
            Unknown::TooLong
        } else {
            Unknown::NotInCgroup
        });
    }
    Ok(paths)
}

/// The directories of the process's paths: for each hierarchy the first mount whose root holds
/// the path. Also whether lines too long for the buffer were skipped.
fn find_dirs(
    files: &impl Files,
    paths: &Paths,
    buf: &mut [u8],
) -> Result<(Found, Found, bool), Unknown> {
    let mut v2_dir: Found = None;
    let mut v1_dir: Found = None;
    let mut file = files
        .open(c"/proc/self/mountinfo")
        .map_err(Unknown::Mountinfo)?;
    let long_lines = for_each_line(&mut file, buf, |line| {
        let Some(m) = parse_mount_line(line) else {
            return false;
        };
        let (path, dir) = match m.kind {
            MountKind::V2 => (&paths.v2, &mut v2_dir),
            MountKind::V1Memory => (&paths.v1, &mut v1_dir),
        };
        if let (Some(path), None | Some(Err(_))) = (path, &dir) {
            let found = unescape(m.root).and_then(|root| {
                let point = unescape(m.point)?;
                let dir = join_mount(point.as_bytes(), root.as_bytes(), path.as_bytes())?;
                Ok((dir, point))
            });
            // Keep the first error for the report, and go on looking for a mount that fits.
            if found.is_ok() || dir.is_none() {
                *dir = Some(found);
            }
        }
        let v2_done = paths.v2.is_none() || matches!(v2_dir, Some(Ok(_)));
        let v1_done = paths.v1.is_none() || matches!(v1_dir, Some(Ok(_)));
        v2_done && v1_done
    })
    .map_err(Unknown::Mountinfo)?;
    Ok((v2_dir, v1_dir, long_lines))
}

/// Whether `dir/cgroup.controllers` lists `memory`.
pub(super) fn has_memory_controller(files: &impl Files, dir: &[u8]) -> bool {
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
pub(super) const VERSION_MARKERS: [(&str, Version); 5] = [
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
pub(super) fn from_given(files: &impl Files, dir: &[u8]) -> Result<CgroupDir, Unknown> {
    for (name, version) in VERSION_MARKERS {
        if present(files, dir, name)? {
            let cgroup = CgroupDir::new(dir, version, Origin::Given(name))?;
            // Limits are read up the chain while the parents are cgroups of the same version
            // (they have one of its files): the mount point of a real hierarchy, the top of a
            // fake one.
            let top = super::chain::highest_ancestor(cgroup.dir(), |parent| {
                VERSION_MARKERS
                    .iter()
                    .any(|&(n, v)| v == version && present(files, parent, n) == Ok(true))
            });
            let top = PathBuf::from(top)?;
            return Ok(cgroup.with_top(top.as_bytes()));
        }
    }
    Err(Unknown::NoMemoryFiles)
}

/// Whether `dir/name` exists, even if it cannot be read (a FIFO in place of `memory.max`).
fn present(files: &impl Files, dir: &[u8], name: &str) -> Result<bool, Unknown> {
    let mut path = PathBuf::join(dir, name)?;
    Ok(match files.open(path.as_cstr()) {
        Ok(_) | Err(FileError::NotRegular(_) | FileError::Read(_)) => true,
        Err(FileError::Open(Errno(e))) => e == libc::EACCES || e == libc::EPERM,
    })
}
