//! A cgroup directory and the values read from its files.

use super::*;

/// A path in a fixed buffer, with one byte always left for the NUL.
#[derive(Clone, Copy)]
pub(crate) struct PathBuf {
    bytes: [u8; PATH_CAP],
    pub(super) len: usize,
}

impl PathBuf {
    pub(super) const fn new() -> PathBuf {
        PathBuf {
            bytes: [0; PATH_CAP],
            len: 0,
        }
    }

    pub(super) fn from(s: &[u8]) -> Result<PathBuf, Unknown> {
        let mut p = PathBuf::new();
        p.push(s)?;
        Ok(p)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends `s`; [`Unknown::TooLong`] if it does not fit (or holds a NUL, which no path can).
    pub(super) fn push(&mut self, s: &[u8]) -> Result<(), Unknown> {
        if s.len() >= PATH_CAP - self.len || s.contains(&0) {
            return Err(Unknown::TooLong);
        }
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        Ok(())
    }

    /// `dir/name`.
    pub(super) fn join(dir: &[u8], name: &str) -> Result<PathBuf, Unknown> {
        let mut p = PathBuf::from(dir)?;
        if !dir.ends_with(b"/") {
            p.push(b"/")?;
        }
        p.push(name.as_bytes())?;
        Ok(p)
    }

    pub(super) fn as_cstr(&mut self) -> &CStr {
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
pub(crate) struct CgroupDir {
    /// The directory, then `/memory.pressure` and a NUL, so that [`CgroupDir::pressure_file`] can
    /// lend a `&CStr` out of `self`: `path[..dir_len]` is the directory.
    path: [u8; PATH_CAP],
    dir_len: usize,
    /// The length of the highest directory of the chain walked up for limits (`chain.rs`): the
    /// mount point when discovered, the highest ancestor with the cgroup's files when given.
    /// `dir_len` itself when nothing above the directory is read.
    pub(super) top_len: usize,
    version: Version,
    origin: Origin,
}

impl CgroupDir {
    /// A cgroup at `dir` (absolute; trailing slashes are dropped).
    pub(super) fn new(dir: &[u8], version: Version, origin: Origin) -> Result<CgroupDir, Unknown> {
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
        Ok(CgroupDir {
            path,
            dir_len: dir.len(),
            top_len: dir.len(),
            version,
            origin,
        })
    }

    /// The same cgroup, with limits read up to its ancestor `top` (a prefix of the directory
    /// ending at a `/` boundary: the mount point, or the highest given ancestor). A `top` that is
    /// not such a prefix is ignored: nothing above the directory is read.
    pub(super) fn with_top(mut self, top: &[u8]) -> CgroupDir {
        let top = super::discover::trim_slashes(top);
        let top = if top.is_empty() { b"/" as &[u8] } else { top };
        let dir = self.dir();
        let boundary = top == b"/" || dir.len() == top.len() || dir.get(top.len()) == Some(&b'/');
        if dir.starts_with(top) && boundary {
            self.top_len = top.len();
        }
        self
    }

    pub(crate) fn version_of(&self) -> Version {
        self.version
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &[u8] {
        &self.path[..self.dir_len]
    }

    #[cfg(test)]
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    #[cfg(test)]
    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// Reads one file of the cgroup, now.
    pub(crate) fn read(&self, knob: Knob) -> Result<Value, Unknown> {
        read_in(self.dir(), knob)
    }

    pub(super) fn reading(&self, knob: Knob) -> Reading {
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
    /// ([`CgroupDir::limit_detail`] tells which).
    #[cfg(test)]
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit_detail().bytes()
    }

    /// The usage with the file it was read from: v2 `memory.current`, v1
    /// `memory.usage_in_bytes`.
    #[cfg(test)]
    pub(crate) fn usage_detail(&self) -> Reading {
        self.reading(match self.version {
            Version::V2 => Knob::Current,
            Version::V1 => Knob::UsageInBytes,
        })
    }

    /// The memory usage in bytes, or `None` if unknown.
    #[cfg(test)]
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

    /// [`CgroupDir::pressure_file_detail`] without the reason.
    pub(crate) fn pressure_file(&self) -> Option<&CStr> {
        self.pressure_file_detail().ok()
    }
}

impl fmt::Display for CgroupDir {
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

impl fmt::Debug for CgroupDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Reads one file of the cgroup directory `dir`, now.
pub(super) fn read_in(dir: &[u8], knob: Knob) -> Result<Value, Unknown> {
    let mut path = PathBuf::join(dir, knob.file_name())?;
    if knob == Knob::HierarchicalLimit {
        return super::chain::read_stat_key(path.as_cstr(), b"hierarchical_memory_limit");
    }
    // A number of bytes has 20 digits at most: a file that fills the buffer holds none.
    let mut buf = [0u8; 64];
    let (n, _) = os::read_regular_file(path.as_cstr(), &mut buf).map_err(Unknown::File)?;
    if n == buf.len() {
        return Err(Unknown::Malformed);
    }
    parse_value(&buf[..n], knob.is_limit())
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
