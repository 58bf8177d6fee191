//! The memory-pressure signal: is the kernel reclaiming right now?
//!
//! The source is a file in PSI format (`/proc/pressure/memory` by default, Linux 4.20+, see
//! <https://docs.kernel.org/accounting/psi.html>):
//!
//! ```text
//! some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! ```
//!
//! Pressure is on when the `some` line says tasks stalled on memory for at least the threshold
//! share of time, either as `avg10` or as the growth of `total` (µs) since the previous read —
//! the latter reacts within one read interval, `avg10` only over seconds. The file is read at
//! most every [`READ_INTERVAL_MS`], never on every allocation.
//!
//! # A source that cannot hang or go stale (issue #10)
//!
//! Every read opens the file afresh (`O_NONBLOCK`), checks with `fstat` that it is a regular
//! file, reads it with `pread` and closes it again ([`os::read_regular_file`]): four syscalls
//! at most every 10 ms. Keeping the descriptor open would save three of them, and cost this:
//! - a FIFO (or a device) named by `PAGEWISE_PRESSURE_FILE` would block the open or every read
//!   forever, inside `alloc` or in the background thread;
//! - a descriptor kept by number gets closed by programs that close what they did not open
//!   (`close_range(3, ~0)`); the number is then reused for the program's own file, which a later
//!   close of ours would close under it, and which we would read as PSI;
//! - a file replaced by a rename or deleted would keep its old content in force for the life of
//!   the process, and one failed open would pin the fallback just as long.
//!
//! When the file cannot be opened, is not a regular file, cannot be read (a cgroup's
//! `memory.pressure` with PSI disabled fails reads with `EOPNOTSUPP`), or is not in PSI format,
//! that read uses the fallback, `sysinfo(2)`: pressure is on while free RAM
//! (`freeram + bufferram`) is below [`FALLBACK_FREE_PERCENT`] of total RAM. `MemAvailable` would be
//! wrong here: it counts lazily freed pages as available, so it cannot see a `MADV_FREE` backlog.
//! The next read tries the file again, so a file that appears or heals is picked up within one
//! interval. [`Pressure::status`] says which source the last read used, and why (for
//! `PAGEWISE_VERBOSE`).

use core::ffi::CStr;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::decimal::{parse_fixed, parse_u64};
use crate::os::{self, Errno, FileError, FileId};

/// Minimum time between two reads of the pressure file.
pub(crate) const READ_INTERVAL_MS: u64 = 10;

/// The fallback's threshold: free RAM below this percentage of total means pressure.
pub(crate) const FALLBACK_FREE_PERCENT: u64 = 5;

/// No `total` remembered (none read yet, or the last read was not PSI).
const NO_TOTAL: u64 = u64::MAX;

/// One allocator's view of the pressure signal.
pub(crate) struct Pressure {
    last_ms: AtomicU64,
    /// `total` of the previous PSI read, and the file it came from: a growth is only measured
    /// within one file (a file renamed over the path starts again).
    last_total_us: AtomicU64,
    last_dev: AtomicU64,
    last_ino: AtomicU64,
    on: AtomicBool,
    /// Held by the one thread reading the source; the others use the previous answer.
    reading: AtomicBool,
    /// The [`Status`] of the last read, encoded by [`Status::encode`].
    status: AtomicU64,
}

/// Which source the last read used, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not read yet.
    Unread,
    /// The file, in PSI format.
    Psi,
    /// The fallback, because the file could not be read.
    Unreadable(FileError),
    /// The fallback, because the file has no `some` line with `avg10=`.
    NotPsi,
}

impl Status {
    fn encode(self) -> u64 {
        let (kind, detail) = match self {
            Status::Unread => (0, 0),
            Status::Psi => (1, 0),
            Status::Unreadable(FileError::Open(Errno(e))) => (2, e as u32),
            Status::Unreadable(FileError::NotRegular(mode)) => (3, mode),
            Status::Unreadable(FileError::Read(Errno(e))) => (4, e as u32),
            Status::NotPsi => (5, 0),
        };
        (kind as u64) << 32 | detail as u64
    }

    fn decode(v: u64) -> Status {
        let detail = v as u32;
        match v >> 32 {
            1 => Status::Psi,
            2 => Status::Unreadable(FileError::Open(Errno(detail as i32))),
            3 => Status::Unreadable(FileError::NotRegular(detail)),
            4 => Status::Unreadable(FileError::Read(Errno(detail as i32))),
            5 => Status::NotPsi,
            _ => Status::Unread,
        }
    }

    /// Whether the fallback is in force.
    pub(crate) fn is_fallback(self) -> bool {
        matches!(self, Status::Unreadable(_) | Status::NotPsi)
    }
}

impl Pressure {
    pub(crate) const fn new() -> Pressure {
        Pressure {
            last_ms: AtomicU64::new(0),
            last_total_us: AtomicU64::new(NO_TOTAL),
            last_dev: AtomicU64::new(0),
            last_ino: AtomicU64::new(0),
            on: AtomicBool::new(false),
            reading: AtomicBool::new(false),
            status: AtomicU64::new(0),
        }
    }

    /// Forgets the state (when an allocator is reconfigured or dropped): the next check reads
    /// the source again. There is no descriptor to close: none is kept between reads.
    pub(crate) fn reset(&self) {
        self.last_ms.store(0, Relaxed);
        self.last_total_us.store(NO_TOTAL, Relaxed);
        self.on.store(false, Relaxed);
        self.status.store(Status::Unread.encode(), Relaxed);
    }

    /// In a `fork` child: a read interrupted by the fork belongs to a thread that is gone.
    pub(crate) fn after_fork(&self) {
        self.reading.store(false, Relaxed);
    }

    /// Which source the last read used.
    pub(crate) fn status(&self) -> Status {
        Status::decode(self.status.load(Relaxed))
    }

    /// Whether pressure is on, reading the source if the last read is older than
    /// [`READ_INTERVAL_MS`]. `threshold` is in hundredths of a percent.
    pub(crate) fn is_on(&self, path: &CStr, threshold: u32, now_ms: u64) -> bool {
        let last = self.last_ms.load(Relaxed);
        if now_ms.saturating_sub(last) < READ_INTERVAL_MS && last != 0 {
            return self.on.load(Relaxed);
        }
        self.read_now(path, threshold, now_ms)
            .unwrap_or_else(|| self.on.load(Relaxed))
    }

    /// Reads the source now, whatever the interval; `None` if another thread is reading it.
    pub(crate) fn read_now(&self, path: &CStr, threshold: u32, now_ms: u64) -> Option<bool> {
        if self.reading.swap(true, Relaxed) {
            return None;
        }
        let last = self.last_ms.load(Relaxed);
        let elapsed = now_ms.saturating_sub(last).max(1);
        let mut buf = [0u8; 256];
        let (on, status) = match os::read_regular_file(path, &mut buf) {
            Ok((n, id)) => match parse_some(&buf[..n]) {
                Some((avg10, total)) => (
                    self.psi_on(avg10, total, id, threshold, elapsed),
                    Status::Psi,
                ),
                None => (self.fallback_on(), Status::NotPsi),
            },
            Err(e) => (self.fallback_on(), Status::Unreadable(e)),
        };
        self.on.store(on, Relaxed);
        self.status.store(status.encode(), Relaxed);
        self.last_ms.store(now_ms.max(1), Relaxed);
        self.reading.store(false, Relaxed);
        Some(on)
    }

    fn psi_on(&self, avg10: u64, total: u64, id: FileId, threshold: u32, elapsed_ms: u64) -> bool {
        let dev = self.last_dev.swap(id.dev, Relaxed);
        let ino = self.last_ino.swap(id.ino, Relaxed);
        let same_file = (dev, ino) == (id.dev, id.ino);
        let prev = self.last_total_us.swap(total, Relaxed);
        // Stall time since the last read, as hundredths of a percent of the elapsed time; only
        // within one file (a rename starts a new series) and only while `total` grows.
        let recent = if !same_file || prev == NO_TOTAL || total < prev {
            0
        } else {
            (total - prev).saturating_mul(10) / elapsed_ms
        };
        avg10 >= threshold as u64 || recent >= threshold as u64
    }

    fn fallback_on(&self) -> bool {
        self.last_total_us.store(NO_TOTAL, Relaxed);
        fallback_low_memory()
    }
}

/// Parses the `some` line: (`avg10` in hundredths of a percent, `total` in µs).
pub(crate) fn parse_some(text: &[u8]) -> Option<(u64, u64)> {
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"some "))?;
    let mut avg10 = None;
    let mut total = None;
    for field in line.split(|&b| b == b' ') {
        if let Some(v) = field.strip_prefix(b"avg10=") {
            avg10 = parse_fixed(v, 2);
        } else if let Some(v) = field.strip_prefix(b"total=") {
            total = parse_u64(v);
        }
    }
    Some((avg10?, total.unwrap_or(0)))
}

fn fallback_low_memory() -> bool {
    match os::free_and_total_ram() {
        Some((free, total)) if total > 0 => {
            free.saturating_mul(100) < total.saturating_mul(FALLBACK_FREE_PERCENT)
        }
        _ => false,
    }
}

/// The `PAGEWISE_VERBOSE` line about the pressure source: which one is in force, and why.
pub(crate) struct Describe<'a> {
    pub(crate) path: &'a CStr,
    pub(crate) status: Status,
}

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pressure from ")?;
        if !self.status.is_fallback() {
            f.write_str("PSI file ")?;
            crate::report::write_escaped(f, self.path.to_bytes())?;
            return write!(f, " (read at most every {READ_INTERVAL_MS} ms)");
        }
        write!(
            f,
            "free RAM below {FALLBACK_FREE_PERCENT}% of total (sysinfo), because the pressure file "
        )?;
        crate::report::write_escaped(f, self.path.to_bytes())?;
        match self.status {
            Status::Unreadable(e) => write!(f, " {e}")?,
            _ => f.write_str(" is not in PSI format (no \"some avg10=\" line)")?,
        }
        write!(f, "; the file is tried again every {READ_INTERVAL_MS} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn temp(name: &str) -> (std::path::PathBuf, CString) {
        let p = std::env::temp_dir().join(format!("pagewise-psi-{}-{name}", std::process::id()));
        let c = CString::new(p.to_str().unwrap()).unwrap();
        (p, c)
    }

    #[test]
    fn parses_psi() {
        let t = b"some avg10=12.34 avg60=1.00 avg300=0.00 total=987654\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_some(t), Some((1234, 987654)));
        assert_eq!(parse_some(b"full avg10=1.00 total=1\n"), None);
        assert_eq!(parse_some(b"some avg10=0.5 total=1\n"), Some((50, 1)));
        assert_eq!(parse_some(b"some avg10=100.00 total=2\n"), Some((10000, 2)));
        assert_eq!(parse_some(b"some avg10=x total=2\n"), None);
    }

    #[test]
    fn status_round_trips() {
        for s in [
            Status::Unread,
            Status::Psi,
            Status::NotPsi,
            Status::Unreadable(FileError::Open(Errno(libc::ENOENT))),
            Status::Unreadable(FileError::NotRegular(libc::S_IFIFO)),
            Status::Unreadable(FileError::Read(Errno(libc::EOPNOTSUPP))),
        ] {
            assert_eq!(Status::decode(s.encode()), s);
        }
    }

    #[test]
    fn reads_a_file_and_falls_back_per_read() {
        let (path, c) = temp("file");
        std::fs::write(&path, "some avg10=50.00 avg60=0 avg300=0 total=1\n").unwrap();
        let p = Pressure::new();
        assert_eq!(p.status(), Status::Unread);
        assert!(p.is_on(&c, 1000, 1000));
        assert_eq!(p.status(), Status::Psi);
        assert!(!p.is_on(&c, 6000, 2000));
        // Gone: the fallback (this machine is not short of RAM).
        std::fs::remove_file(&path).unwrap();
        assert!(!p.is_on(&c, 1000, 3000));
        assert_eq!(
            p.status(),
            Status::Unreadable(FileError::Open(Errno(libc::ENOENT)))
        );
        // Back: read again at the next interval.
        std::fs::write(&path, "some avg10=50.00 avg60=0 avg300=0 total=1\n").unwrap();
        assert!(p.is_on(&c, 1000, 4000));
        assert_eq!(p.status(), Status::Psi);
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(!p.is_on(&c, 1000, 5000));
        assert_eq!(p.status(), Status::NotPsi);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_directory_and_an_unreadable_regular_file_use_the_fallback() {
        let p = Pressure::new();
        let dir = CString::new(std::env::temp_dir().to_str().unwrap()).unwrap();
        assert!(!p.is_on(&dir, 1000, 1000));
        assert_eq!(
            p.status(),
            Status::Unreadable(FileError::NotRegular(libc::S_IFDIR))
        );
        // /proc/self/mem is a regular file whose read at offset 0 fails (nothing mapped there),
        // like a cgroup's memory.pressure with PSI disabled (EOPNOTSUPP).
        assert!(!p.is_on(c"/proc/self/mem", 1000, 2000));
        assert!(
            matches!(p.status(), Status::Unreadable(FileError::Read(_))),
            "{:?}",
            p.status()
        );
    }

    #[test]
    fn growth_is_measured_within_one_file_only() {
        let (path, c) = temp("growth");
        let (other, _) = temp("growth-new");
        std::fs::write(&path, "some avg10=0.00 avg60=0 avg300=0 total=1000\n").unwrap();
        let p = Pressure::new();
        assert!(!p.is_on(&c, 1000, 1000));
        // 50 ms of stall in 100 ms: 50%, on.
        std::fs::write(&path, "some avg10=0.00 avg60=0 avg300=0 total=51000\n").unwrap();
        assert!(p.is_on(&c, 1000, 1100));
        // A different file renamed over the path, with a far larger total: not a growth.
        std::fs::write(&other, "some avg10=0.00 avg60=0 avg300=0 total=900000000\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(!p.is_on(&c, 1000, 1200));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn describes_the_source_and_the_reason() {
        let (path, c) = temp("describe");
        std::fs::write(&path, "some avg10=0.00 avg60=0 avg300=0 total=0\n").unwrap();
        let d = |status| Describe { path: &c, status }.to_string();
        assert!(d(Status::Psi).starts_with("pressure from PSI file /"));
        let fifo = d(Status::Unreadable(FileError::NotRegular(libc::S_IFIFO)));
        assert!(
            fifo.contains("free RAM") && fifo.contains("is a FIFO"),
            "{fifo}"
        );
        let gone = d(Status::Unreadable(FileError::Open(Errno(libc::ENOENT))));
        assert!(gone.contains("ENOENT"), "{gone}");
        std::fs::remove_file(&path).unwrap();
    }
}
