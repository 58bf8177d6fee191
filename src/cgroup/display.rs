//! What `PAGEWISE_VERBOSE` prints about the cgroup.

use super::*;

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
            Unknown::File(e) => fmt::Display::fmt(&e, f),
            Unknown::Malformed => f.write_str("holds no number of bytes"),
            Unknown::TooLong => write!(f, "a path is longer than {MAX_DIR_LEN} bytes"),
            Unknown::ProcCgroup(e) => write!(f, "/proc/self/cgroup {}", e),
            Unknown::Mountinfo(e) => write!(f, "/proc/self/mountinfo {}", e),
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
        write!(f, "{}: ", self.knob.label())?;
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
                "limit: {} from {}",
                Size(r.bytes().unwrap_or(0)),
                r.knob.label()
            )?,
            None if self.is_unset() => f.write_str("limit: none")?,
            None => f.write_str("limit: unknown")?,
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
