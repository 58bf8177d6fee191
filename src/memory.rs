//! [`ProcessMemory`]: the process's memory as an operator sees it, read on demand.

use core::fmt;

use crate::decimal::{parse_u64, split_digits};
use crate::os;

/// Resident, lazily freed and huge-page memory of the whole process (from
/// `/proc/self/smaps_rollup`, Linux 4.14+) and its page faults so far (from `getrusage`).
///
/// `rss_bytes` includes pages marked `MADV_FREE` that the kernel has not reclaimed yet; they are
/// also counted in `lazy_free_bytes` (the kernel's figure "might be lower than the real value",
/// proc(5)). Reading walks the page tables (a few µs per GiB mapped); nothing is allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessMemory {
    /// `Rss`: resident bytes, lazily freed pages included.
    pub rss_bytes: u64,
    /// `Anonymous`: resident anonymous bytes.
    pub anonymous_bytes: u64,
    /// `LazyFree`: bytes marked `MADV_FREE` and not yet reclaimed.
    pub lazy_free_bytes: u64,
    /// `AnonHugePages`: anonymous bytes backed by transparent huge pages.
    pub anon_huge_bytes: u64,
    /// Minor page faults since the process started.
    pub minor_faults: u64,
    /// Major page faults since the process started.
    pub major_faults: u64,
}

impl ProcessMemory {
    /// Reads the current figures.
    pub fn read() -> std::io::Result<ProcessMemory> {
        let mut buf = [0u8; 4096];
        let n = os::read_file(c"/proc/self/smaps_rollup", &mut buf)
            .map_err(|e| std::io::Error::from_raw_os_error(e.0))?;
        let mut m = parse_rollup(&buf[..n]);
        if let Some((minor, major)) = os::rusage_faults() {
            m.minor_faults = minor;
            m.major_faults = major;
        }
        Ok(m)
    }

    /// `rss_bytes - lazy_free_bytes`: what the process would keep under memory pressure.
    pub fn effective_rss_bytes(&self) -> u64 {
        self.rss_bytes.saturating_sub(self.lazy_free_bytes)
    }
}

impl fmt::Display for ProcessMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        write!(
            f,
            "rss={:.1}MiB lazyfree={:.1}MiB anonhuge={:.1}MiB minflt={} majflt={}",
            self.rss_bytes as f64 / MIB as f64,
            self.lazy_free_bytes as f64 / MIB as f64,
            self.anon_huge_bytes as f64 / MIB as f64,
            self.minor_faults,
            self.major_faults
        )
    }
}

fn parse_rollup(text: &[u8]) -> ProcessMemory {
    let mut m = ProcessMemory::default();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let key = &line[..colon];
        // `Rss:   2048 kB`: the figure is the first word after the colon, always in kB.
        let (digits, _unit) = split_digits(line[colon + 1..].trim_ascii_start());
        let bytes = parse_u64(digits).unwrap_or(0).saturating_mul(1024);
        match key {
            b"Rss" => m.rss_bytes = bytes,
            b"Anonymous" => m.anonymous_bytes = bytes,
            b"LazyFree" => m.lazy_free_bytes = bytes,
            b"AnonHugePages" => m.anon_huge_bytes = bytes,
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rollup_and_reads_self() {
        let t = b"55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  2048 kB\nAnonymous: 1024 kB\nLazyFree: 512 kB\nAnonHugePages: 0 kB\n";
        let m = parse_rollup(t);
        assert_eq!(m.rss_bytes, 2048 * 1024);
        assert_eq!(m.lazy_free_bytes, 512 * 1024);
        assert_eq!(m.effective_rss_bytes(), 1536 * 1024);
        let me = ProcessMemory::read().unwrap();
        assert!(me.rss_bytes > 0 && me.minor_faults > 0, "{me}");
    }
}
