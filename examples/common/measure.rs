//! The last line of every example: time, minor faults, peak RSS, and RSS a moment after the work,
//! for the pagewise configuration in force.

use std::time::{Duration, Instant};

/// How long after the work "RSS after" is read: past pagewise's default 1 s decay.
const SETTLE: Duration = Duration::from_millis(1500);

/// Started before the work; [`Measure::finish`] prints the line.
pub struct Measure {
    start: Instant,
    minflt: u64,
}

impl Measure {
    pub fn start() -> Measure {
        let minflt = pagewise::ProcessMemory::read().map_or(0, |m| m.minor_faults);
        Measure {
            start: Instant::now(),
            minflt,
        }
    }

    /// Prints `time=…ms minflt=… peak_rss=…MiB rss_after=…MiB policy=<release>/<prefetch>`.
    pub fn finish(self, config: pagewise::Config) {
        let time = self.start.elapsed();
        let minflt = pagewise::ProcessMemory::read().map_or(0, |m| m.minor_faults) - self.minflt;
        std::thread::sleep(SETTLE);
        let after = pagewise::ProcessMemory::read().map_or(0, |m| m.rss_bytes);
        println!(
            "time={:.0}ms minflt={minflt} peak_rss={:.1}MiB rss_after={:.1}MiB policy={}/{}",
            time.as_secs_f64() * 1e3,
            peak_rss_kib() as f64 / 1024.0,
            after as f64 / (1 << 20) as f64,
            config.get_release().name(),
            config.get_prefetch().name(),
        );
    }
}

/// `ru_maxrss` of this process, in KiB: the peak, since the work is all it did.
fn peak_rss_kib() -> i64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_SELF is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss
}
