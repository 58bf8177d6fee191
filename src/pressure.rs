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
//! the latter reacts within one read interval, `avg10` only over seconds. The file is kept open
//! and read with `pread` at most every [`READ_INTERVAL_MS`], never on every allocation.
//!
//! Where the file cannot be opened (PSI disabled by `psi=0` or `CONFIG_PSI_DEFAULT_DISABLED`),
//! the fallback is `sysinfo(2)`: pressure is on while free RAM (`freeram + bufferram`) is below
//! [`FALLBACK_FREE_PERCENT`] of total RAM. `MemAvailable` would be wrong here: it counts lazily
//! freed pages as available, so it cannot see a `MADV_FREE` backlog (FACTS §5.3).

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};

use crate::os;

/// Minimum time between two reads of the pressure file.
pub(crate) const READ_INTERVAL_MS: u64 = 10;

/// The fallback's threshold: free RAM below this percentage of total means pressure.
pub(crate) const FALLBACK_FREE_PERCENT: u64 = 5;

const FD_UNOPENED: i32 = -1;
const FD_MISSING: i32 = -2;

/// One allocator's view of the pressure signal.
pub(crate) struct Pressure {
    fd: AtomicI32,
    last_ms: AtomicU64,
    last_total_us: AtomicU64,
    on: AtomicBool,
    reading: AtomicBool,
}

/// Where the signal comes from, for the verbose line.
pub(crate) enum Source {
    Psi,
    Fallback,
}

impl Pressure {
    pub(crate) const fn new() -> Pressure {
        Pressure {
            fd: AtomicI32::new(FD_UNOPENED),
            last_ms: AtomicU64::new(0),
            last_total_us: AtomicU64::new(u64::MAX),
            on: AtomicBool::new(false),
            reading: AtomicBool::new(false),
        }
    }

    /// Closes the file and forgets the state (when an allocator is reconfigured or dropped).
    /// If a read is under way on another thread, its descriptor is left open rather than closed
    /// under it (a `pread` on a closed and reused number would read someone else's file).
    pub(crate) fn reset(&self) {
        let idle = !self.reading.swap(true, Relaxed);
        let fd = self.fd.swap(FD_UNOPENED, Relaxed);
        if fd >= 0 && idle {
            // SAFETY: fd was opened by `open` below and is closed once (the swap took it); no
            // reader holds it (we hold the reading flag).
            unsafe { libc::close(fd) };
        }
        self.last_ms.store(0, Relaxed);
        self.last_total_us.store(u64::MAX, Relaxed);
        self.on.store(false, Relaxed);
        if idle {
            self.reading.store(false, Relaxed);
        }
    }

    /// In a `fork` child: a read interrupted by the fork belongs to a thread that is gone.
    pub(crate) fn after_fork(&self) {
        self.reading.store(false, Relaxed);
    }

    /// Opens the pressure file if not yet tried; reports which source is in use.
    pub(crate) fn open(&self, path: &CStr) -> Source {
        let mut fd = self.fd.load(Relaxed);
        if fd == FD_UNOPENED {
            // SAFETY: path is NUL-terminated; O_CLOEXEC keeps the fd out of exec'd children.
            let opened = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            let new = if opened >= 0 { opened } else { FD_MISSING };
            match self.fd.compare_exchange(FD_UNOPENED, new, Relaxed, Relaxed) {
                Ok(_) => fd = new,
                Err(other) => {
                    if opened >= 0 {
                        // SAFETY: our fd lost the race and is closed once.
                        unsafe { libc::close(opened) };
                    }
                    fd = other;
                }
            }
        }
        if fd >= 0 {
            Source::Psi
        } else {
            Source::Fallback
        }
    }

    /// Whether pressure is on, reading the source if the last read is older than
    /// [`READ_INTERVAL_MS`]. `threshold` is in hundredths of a percent.
    pub(crate) fn is_on(&self, path: &CStr, threshold: u32, now_ms: u64) -> bool {
        let last = self.last_ms.load(Relaxed);
        if now_ms.saturating_sub(last) < READ_INTERVAL_MS && last != 0 {
            return self.on.load(Relaxed);
        }
        // One reader at a time; the others use the previous answer rather than wait.
        if self.reading.swap(true, Relaxed) {
            return self.on.load(Relaxed);
        }
        let elapsed = now_ms.saturating_sub(last).max(1);
        let on = match self.open(path) {
            Source::Psi => self.read_psi(threshold, elapsed),
            Source::Fallback => fallback_low_memory(),
        };
        self.on.store(on, Relaxed);
        self.last_ms.store(now_ms.max(1), Relaxed);
        self.reading.store(false, Relaxed);
        on
    }

    fn read_psi(&self, threshold: u32, elapsed_ms: u64) -> bool {
        let mut buf = [0u8; 256];
        let fd = self.fd.load(Relaxed);
        let Ok(n) = os::pread_all(fd, &mut buf) else {
            return false;
        };
        let Some((avg10, total)) = parse_some(&buf[..n]) else {
            return false;
        };
        let prev = self.last_total_us.swap(total, Relaxed);
        // Stall time since the last read, as hundredths of a percent of the elapsed time.
        let recent = if prev == u64::MAX || total < prev {
            0
        } else {
            (total - prev).saturating_mul(10) / elapsed_ms
        };
        avg10 >= threshold as u64 || recent >= threshold as u64
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
            avg10 = parse_centi(v);
        } else if let Some(v) = field.strip_prefix(b"total=") {
            total = parse_u64(v);
        }
    }
    Some((avg10?, total.unwrap_or(0)))
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add((b - b'0') as u64))?
    })
}

/// `12.34` → 1234.
fn parse_centi(s: &[u8]) -> Option<u64> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    let mut v = parse_u64(int)?.checked_mul(100)?;
    let mut scale = 10;
    for &b in frac.iter().take(2) {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_add((b - b'0') as u64 * scale)?;
        scale /= 10;
    }
    Some(v)
}

fn fallback_low_memory() -> bool {
    // SAFETY: sysinfo only writes into the struct we pass.
    let mut si: libc::sysinfo = unsafe { core::mem::zeroed() };
    // SAFETY: si is a valid sysinfo to fill.
    if unsafe { libc::sysinfo(&mut si) } != 0 || si.totalram == 0 {
        return false;
    }
    let free = si.freeram as u64 + si.bufferram as u64;
    free * 100 < si.totalram as u64 * FALLBACK_FREE_PERCENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_psi() {
        let t = b"some avg10=12.34 avg60=1.00 avg300=0.00 total=987654\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_some(t), Some((1234, 987654)));
        assert_eq!(parse_some(b"full avg10=1.00 total=1\n"), None);
        assert_eq!(parse_centi(b"0.5"), Some(50));
        assert_eq!(parse_centi(b"100.00"), Some(10000));
        assert_eq!(parse_centi(b"x"), None);
    }

    #[test]
    fn reads_a_file_and_falls_back() {
        let dir = std::env::temp_dir().join(format!("pagewise-psi-{}", std::process::id()));
        std::fs::write(&dir, "some avg10=50.00 avg60=0 avg300=0 total=1\n").unwrap();
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let p = Pressure::new();
        assert!(matches!(p.open(&path), Source::Psi));
        assert!(p.is_on(&path, 1000, 1000));
        assert!(!p.is_on(&path, 6000, 2000));
        std::fs::remove_file(&dir).unwrap();
        let q = Pressure::new();
        assert!(matches!(q.open(c"/nonexistent/psi"), Source::Fallback));
        p.reset();
    }
}
