//! [`Config`]: every setting, its default, and how the environment is layered over it.
//!
//! # Precedence
//!
//! For each setting, the first of these that says something wins:
//!
//! 1. the environment variable (`PAGEWISE_*`), if set and valid — so an operator can always
//!    switch a policy without rebuilding;
//! 2. the value given in code with a [`Config`] setter and [`PageAlloc::with_config`];
//! 3. [`Config::DEFAULT`].
//!
//! A program that must not be reconfigured from outside calls [`Config::ignore_env`], and then
//! only 2 and 3 apply. An invalid variable is reported on stderr in one line (variable, value,
//! accepted values, the value used instead, and the program) and ignored; programs that would
//! rather refuse to start call [`Config::from_env`], which returns the error.
//!
//! The environment is read with `libc::getenv` (never `std::env`, which allocates), once, the
//! first time any allocator needs it.
//!
//! [`PageAlloc::with_config`]: crate::PageAlloc::with_config

use core::ffi::CStr;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::policy::{Prefetch, Release};
use crate::report;

pub(crate) mod decimal;
use decimal::{parse_fixed, parse_u64, split_digits};

/// One KiB, GiB in bytes; used by the defaults below.
const KIB: usize = 1 << 10;
const GIB: usize = 1 << 30;

/// The settings, in a fixed order; `Config::set` and the sources in [`Setting`] index into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Setting {
    Release = 0,
    Prefetch,
    Threshold,
    Cache,
    Decay,
    Background,
    PressureFile,
    PressureThreshold,
    Verbose,
    Stats,
}

impl Setting {
    pub(crate) const ALL: [Setting; 10] = [
        Setting::Release,
        Setting::Prefetch,
        Setting::Threshold,
        Setting::Cache,
        Setting::Decay,
        Setting::Background,
        Setting::PressureFile,
        Setting::PressureThreshold,
        Setting::Verbose,
        Setting::Stats,
    ];

    /// The environment variable that sets it.
    pub(crate) const fn var(self) -> &'static str {
        match self {
            Setting::Release => "PAGEWISE_RELEASE",
            Setting::Prefetch => "PAGEWISE_PREFETCH",
            Setting::Threshold => "PAGEWISE_THRESHOLD",
            Setting::Cache => "PAGEWISE_CACHE",
            Setting::Decay => "PAGEWISE_DECAY_MS",
            Setting::Background => "PAGEWISE_BACKGROUND",
            Setting::PressureFile => "PAGEWISE_PRESSURE_FILE",
            Setting::PressureThreshold => "PAGEWISE_PRESSURE_THRESHOLD",
            Setting::Verbose => "PAGEWISE_VERBOSE",
            Setting::Stats => "PAGEWISE_STATS",
        }
    }

    const fn var_c(self) -> &'static CStr {
        match self {
            Setting::Release => c"PAGEWISE_RELEASE",
            Setting::Prefetch => c"PAGEWISE_PREFETCH",
            Setting::Threshold => c"PAGEWISE_THRESHOLD",
            Setting::Cache => c"PAGEWISE_CACHE",
            Setting::Decay => c"PAGEWISE_DECAY_MS",
            Setting::Background => c"PAGEWISE_BACKGROUND",
            Setting::PressureFile => c"PAGEWISE_PRESSURE_FILE",
            Setting::PressureThreshold => c"PAGEWISE_PRESSURE_THRESHOLD",
            Setting::Verbose => c"PAGEWISE_VERBOSE",
            Setting::Stats => c"PAGEWISE_STATS",
        }
    }

    /// What the variable accepts, for error messages.
    pub(crate) const fn accepted(self) -> &'static str {
        match self {
            Setting::Release => "unmap, dontneed, free, retain, adaptive",
            Setting::Prefetch => "none, populate, hugepage, populate+hugepage",
            Setting::Threshold => {
                "a size in bytes from 4096, optionally with K/M/G/T or KiB/MiB/GiB/TiB"
            }
            Setting::Cache => "a size in bytes, optionally with K/M/G/T or KiB/MiB/GiB/TiB",
            Setting::Decay => "milliseconds (0 to 2^53) or never",
            Setting::Background | Setting::Verbose | Setting::Stats => {
                "1, 0, true, false, yes, no, on, off"
            }
            Setting::PressureFile => "an absolute path of at most 255 bytes",
            Setting::PressureThreshold => "a percentage above 0 and at most 100, like 10 or 2.5%",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// Where an effective setting came from (printed by `PAGEWISE_VERBOSE=1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Default,
    Code,
    Env,
}

impl Source {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Code => "code",
            Source::Env => "env",
        }
    }
}

/// The configuration of a [`PageAlloc`](crate::PageAlloc).
///
/// Build it in a `static` with the `const fn` setters, starting from [`Config::DEFAULT`]:
///
/// ```
/// use pagewise::{Config, PageAlloc, Prefetch, Release};
/// static GLOBAL: PageAlloc = PageAlloc::new().with_config(
///     Config::DEFAULT.release(Release::Free).prefetch(Prefetch::None).threshold(1 << 20),
/// );
/// ```
///
/// See the [module documentation](self) for how the environment overrides it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub(crate) release: Release,
    pub(crate) prefetch: Prefetch,
    pub(crate) threshold: usize,
    pub(crate) cache: usize,
    /// `u64::MAX` means never.
    pub(crate) decay_ms: u64,
    pub(crate) background: bool,
    pub(crate) pressure_file: Option<&'static CStr>,
    /// Hundredths of a percent of time stalled on memory (PSI `some`).
    pub(crate) pressure_threshold: u32,
    pub(crate) verbose: bool,
    pub(crate) stats_at_exit: bool,
    pub(crate) use_env: bool,
    /// Settings given in code (bits of [`Setting`]).
    pub(crate) set: u16,
    /// Settings taken from the environment (bits of [`Setting`]); filled by resolution.
    pub(crate) from_env: u16,
}

/// The pressure file read when none is configured.
pub(crate) const DEFAULT_PRESSURE_FILE: &CStr = c"/proc/pressure/memory";

/// `decay_ms` value meaning "never".
pub const NEVER: u64 = u64::MAX;

impl Config {
    /// The defaults, chosen by measurement on the development machine (see the README's policy
    /// guide and `examples/report.rs`):
    ///
    /// - release [`Release::Retain`]: a reused block costs no syscall and no fault; the decay
    ///   below and the pressure signal give the memory back;
    /// - prefetch [`Prefetch::HugePage`]: one fault per 2 MiB for blocks of 2 MiB and more;
    /// - threshold 256 KiB: below it the inner allocator's heap is as fast and denser;
    /// - cache 1 GiB of freed ranges at most;
    /// - decay 1000 ms, on a background thread; pressure threshold 10% (PSI `some`).
    pub const DEFAULT: Config = Config {
        release: Release::Retain,
        prefetch: Prefetch::HugePage,
        threshold: 256 * KIB,
        cache: GIB,
        decay_ms: 1000,
        background: true,
        pressure_file: None,
        pressure_threshold: 1000,
        verbose: false,
        stats_at_exit: false,
        use_env: true,
        set: 0,
        from_env: 0,
    };

    /// Smallest accepted threshold: one page.
    pub const MIN_THRESHOLD: usize = 4096;

    /// The release policy ([`Release`]); `PAGEWISE_RELEASE`.
    pub const fn release(mut self, release: Release) -> Config {
        self.release = release;
        self.set |= Setting::Release.bit();
        self
    }

    /// The prefetch mode ([`Prefetch`]); `PAGEWISE_PREFETCH`.
    pub const fn prefetch(mut self, prefetch: Prefetch) -> Config {
        self.prefetch = prefetch;
        self.set |= Setting::Prefetch.bit();
        self
    }

    /// Smallest allocation, in bytes, served by its own mapping; `PAGEWISE_THRESHOLD`. Values
    /// below [`Config::MIN_THRESHOLD`] are raised to it. The threshold of an allocator never
    /// changes after its first allocation (blocks are routed by size at free).
    pub const fn threshold(mut self, bytes: usize) -> Config {
        self.threshold = if bytes < Self::MIN_THRESHOLD {
            Self::MIN_THRESHOLD
        } else {
            bytes
        };
        self.set |= Setting::Threshold.bit();
        self
    }

    /// The most bytes of freed ranges the cache may hold; `PAGEWISE_CACHE`. 0 disables it.
    pub const fn cache(mut self, bytes: usize) -> Config {
        self.cache = bytes;
        self.set |= Setting::Cache.bit();
        self
    }

    /// Cached ranges idle for longer than this are unmapped; `PAGEWISE_DECAY_MS`. `None` means
    /// never.
    pub const fn decay_ms(mut self, ms: Option<u64>) -> Config {
        self.decay_ms = match ms {
            Some(ms) => ms,
            None => NEVER,
        };
        self.set |= Setting::Decay.bit();
        self
    }

    /// Whether a background thread applies decay and pressure even when the program makes no
    /// allocation; `PAGEWISE_BACKGROUND`. Without it, decay and pressure are checked on large
    /// allocations and frees only.
    pub const fn background(mut self, on: bool) -> Config {
        self.background = on;
        self.set |= Setting::Background.bit();
        self
    }

    /// The pressure signal, a file in PSI format; `PAGEWISE_PRESSURE_FILE`
    /// (default `/proc/pressure/memory`).
    pub const fn pressure_file(mut self, path: &'static CStr) -> Config {
        self.pressure_file = Some(path);
        self.set |= Setting::PressureFile.bit();
        self
    }

    /// Pressure is "on" while memory stalls (PSI `some`, over the last interval or `avg10`) reach
    /// this share of time, in hundredths of a percent (1000 = 10%);
    /// `PAGEWISE_PRESSURE_THRESHOLD` (in percent).
    pub const fn pressure_threshold_centi_percent(mut self, v: u32) -> Config {
        self.pressure_threshold = v;
        self.set |= Setting::PressureThreshold.bit();
        self
    }

    /// Print the effective configuration on stderr at first use; `PAGEWISE_VERBOSE`.
    pub const fn verbose(mut self, on: bool) -> Config {
        self.verbose = on;
        self.set |= Setting::Verbose.bit();
        self
    }

    /// Print the statistics on stderr at exit; `PAGEWISE_STATS`.
    pub const fn stats_at_exit(mut self, on: bool) -> Config {
        self.stats_at_exit = on;
        self.set |= Setting::Stats.bit();
        self
    }

    /// Ignore the `PAGEWISE_*` environment: the configuration is exactly what the code says.
    pub const fn ignore_env(mut self) -> Config {
        self.use_env = false;
        self
    }

    /// Reads the environment over [`Config::DEFAULT`], refusing any malformed variable.
    ///
    /// Unlike the allocator's own lazy read, this prints nothing; it returns the first error in
    /// the order of the README's table.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut config = Config::DEFAULT;
        for setting in Setting::ALL {
            if let Some(value) = getenv(setting) {
                config.apply(setting, value)?;
            }
        }
        Ok(config)
    }

    /// The release policy in force.
    pub const fn get_release(&self) -> Release {
        self.release
    }
    /// The prefetch mode in force.
    pub const fn get_prefetch(&self) -> Prefetch {
        self.prefetch
    }
    /// The threshold in bytes.
    pub const fn get_threshold(&self) -> usize {
        self.threshold
    }
    /// The cache budget in bytes.
    pub const fn get_cache(&self) -> usize {
        self.cache
    }
    /// The decay time in milliseconds, `None` for never.
    pub const fn get_decay_ms(&self) -> Option<u64> {
        if self.decay_ms == NEVER {
            None
        } else {
            Some(self.decay_ms)
        }
    }
    /// Whether the background release thread is on.
    pub const fn get_background(&self) -> bool {
        self.background
    }

    pub(crate) fn source(&self, s: Setting) -> Source {
        if self.from_env & s.bit() != 0 {
            Source::Env
        } else if self.set & s.bit() != 0 {
            Source::Code
        } else {
            Source::Default
        }
    }

    /// Parses `value` for `setting` into `self` (marking it as from the environment).
    fn apply(&mut self, setting: Setting, value: &[u8]) -> Result<(), ConfigError> {
        let err = || ConfigError::new(setting, value);
        match setting {
            Setting::Release => self.release = Release::parse(value).ok_or_else(err)?,
            Setting::Prefetch => self.prefetch = Prefetch::parse(value).ok_or_else(err)?,
            Setting::Threshold => {
                let v = parse_size(value).ok_or_else(err)?;
                if v < Self::MIN_THRESHOLD as u64 || v > isize::MAX as u64 {
                    return Err(err());
                }
                self.threshold = v as usize;
            }
            Setting::Cache => {
                let v = parse_size(value).ok_or_else(err)?;
                self.cache = usize::try_from(v).map_err(|_| err())?;
            }
            Setting::Decay => self.decay_ms = parse_decay(value).ok_or_else(err)?,
            Setting::Background => self.background = parse_bool(value).ok_or_else(err)?,
            Setting::Verbose => self.verbose = parse_bool(value).ok_or_else(err)?,
            Setting::Stats => self.stats_at_exit = parse_bool(value).ok_or_else(err)?,
            Setting::PressureFile => {
                // Kept by the pressure module itself (see `pressure::open`); here only checked.
                if value.is_empty() || value[0] != b'/' || value.len() > 255 {
                    return Err(err());
                }
            }
            Setting::PressureThreshold => {
                self.pressure_threshold = parse_percent(value).ok_or_else(err)?
            }
        }
        self.from_env |= setting.bit();
        Ok(())
    }

    /// The effective configuration: `self` with the environment layered over it, reporting
    /// each malformed variable once on stderr (only the first caller in the process reports).
    pub(crate) fn resolve(self) -> Config {
        if !self.use_env {
            return self;
        }
        let env = env_layer();
        let mut out = self;
        for s in Setting::ALL {
            if env.from_env & s.bit() != 0 {
                out.copy_setting(&env, s);
            }
        }
        out.from_env = env.from_env;
        out
    }

    fn copy_setting(&mut self, from: &Config, s: Setting) {
        match s {
            Setting::Release => self.release = from.release,
            Setting::Prefetch => self.prefetch = from.prefetch,
            Setting::Threshold => self.threshold = from.threshold,
            Setting::Cache => self.cache = from.cache,
            Setting::Decay => self.decay_ms = from.decay_ms,
            Setting::Background => self.background = from.background,
            Setting::PressureFile => {}
            Setting::PressureThreshold => self.pressure_threshold = from.pressure_threshold,
            Setting::Verbose => self.verbose = from.verbose,
            Setting::Stats => self.stats_at_exit = from.stats_at_exit,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("release", &self.release)
            .field("prefetch", &self.prefetch)
            .field("threshold", &self.threshold)
            .field("cache", &self.cache)
            .field("decay_ms", &self.get_decay_ms())
            .field("background", &self.background)
            .field("pressure_file", &self.pressure_file)
            .field("pressure_threshold_centi_percent", &self.pressure_threshold)
            .field("verbose", &self.verbose)
            .field("stats_at_exit", &self.stats_at_exit)
            .field("use_env", &self.use_env)
            .finish()
    }
}

/// A malformed `PAGEWISE_*` variable: which one, its value, and what it accepts.
///
/// Holds the value inline (truncated to 64 bytes) so that it can be built without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConfigError {
    setting: Setting,
    value: [u8; 64],
    len: u8,
    truncated: bool,
}

impl ConfigError {
    fn new(setting: Setting, value: &[u8]) -> ConfigError {
        let mut v = [0u8; 64];
        let n = value.len().min(64);
        v[..n].copy_from_slice(&value[..n]);
        ConfigError {
            setting,
            value: v,
            len: n as u8,
            truncated: value.len() > 64,
        }
    }

    /// The variable's name, e.g. `PAGEWISE_RELEASE`.
    pub fn variable(&self) -> &'static str {
        self.setting.var()
    }

    /// The rejected value (at most its first 64 bytes).
    pub fn value(&self) -> &[u8] {
        &self.value[..self.len as usize]
    }

    /// What the variable accepts.
    pub fn accepted(&self) -> &'static str {
        self.setting.accepted()
    }

    pub(crate) fn setting(&self) -> Setting {
        self.setting
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=\"", self.variable())?;
        report::write_escaped(f, self.value())?;
        if self.truncated {
            f.write_str("...")?;
        }
        write!(f, "\" is not valid (accepted: {})", self.accepted())
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// `getenv` without allocating: the bytes of the variable, if set.
fn getenv(setting: Setting) -> Option<&'static [u8]> {
    // SAFETY: the name is a valid NUL-terminated string. getenv returns a pointer into the
    // environment block or null; the bytes stay valid until the environment is modified, and we
    // copy what we keep before returning to the caller's caller (env_layer parses at once).
    let p = unsafe { libc::getenv(setting.var_c().as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null pointers from getenv point to NUL-terminated strings.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// The raw value of `PAGEWISE_PRESSURE_FILE`, if set and valid.
pub(crate) fn env_pressure_file() -> Option<&'static [u8]> {
    let v = getenv(Setting::PressureFile)?;
    let mut probe = Config::DEFAULT;
    probe.apply(Setting::PressureFile, v).ok().map(|_| v)
}

// The process-wide environment layer, parsed once. The first thread to get here parses and
// publishes it; a thread that arrives while that is under way parses for itself rather than
// wait (a wait could deadlock a signal handler that allocates), and prints nothing.
const ENV_UNREAD: u8 = 0;
const ENV_READING: u8 = 1;
const ENV_READY: u8 = 2;
static ENV_STATE: AtomicU8 = AtomicU8::new(ENV_UNREAD);
static ENV_WORDS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn env_layer() -> Config {
    match ENV_STATE.load(Ordering::Acquire) {
        ENV_READY => return decode(&ENV_WORDS),
        ENV_READING => return parse_env(false),
        _ => {}
    }
    if ENV_STATE
        .compare_exchange(
            ENV_UNREAD,
            ENV_READING,
            Ordering::Acquire,
            Ordering::Acquire,
        )
        .is_err()
    {
        return env_layer();
    }
    let c = parse_env(true);
    encode(&c, &ENV_WORDS);
    ENV_STATE.store(ENV_READY, Ordering::Release);
    c
}

/// Forgets the parsed environment (tests only): the next resolution reads it again.
#[doc(hidden)]
pub fn __reread_env_for_tests() {
    ENV_STATE.store(ENV_UNREAD, Ordering::Release);
}

fn parse_env(report_errors: bool) -> Config {
    let mut c = Config::DEFAULT;
    for s in Setting::ALL {
        if let Some(value) = getenv(s) {
            if let Err(e) = c.apply(s, value) {
                if report_errors {
                    report::config_error(&e);
                }
            }
        }
    }
    c
}

fn encode(c: &Config, w: &[AtomicU64; 8]) {
    let flags = c.release.to_u8() as u64
        | (c.prefetch.to_u8() as u64) << 8
        | (c.background as u64) << 16
        | (c.verbose as u64) << 17
        | (c.stats_at_exit as u64) << 18
        | (c.from_env as u64) << 32;
    w[0].store(flags, Ordering::Relaxed);
    w[1].store(c.threshold as u64, Ordering::Relaxed);
    w[2].store(c.cache as u64, Ordering::Relaxed);
    w[3].store(c.decay_ms, Ordering::Relaxed);
    w[4].store(c.pressure_threshold as u64, Ordering::Relaxed);
}

fn decode(w: &[AtomicU64; 8]) -> Config {
    let flags = w[0].load(Ordering::Relaxed);
    Config {
        release: Release::from_u8(flags as u8),
        prefetch: Prefetch::from_u8((flags >> 8) as u8),
        background: flags & 1 << 16 != 0,
        verbose: flags & 1 << 17 != 0,
        stats_at_exit: flags & 1 << 18 != 0,
        from_env: (flags >> 32) as u16,
        threshold: w[1].load(Ordering::Relaxed) as usize,
        cache: w[2].load(Ordering::Relaxed) as usize,
        decay_ms: w[3].load(Ordering::Relaxed),
        pressure_threshold: w[4].load(Ordering::Relaxed) as u32,
        ..Config::DEFAULT
    }
}

/// Parses a size: decimal digits, then nothing (bytes) or one of `K`, `M`, `G`, `T`, `KiB`,
/// `MiB`, `GiB`, `TiB`, `KB`, `MB`, `GB`, `TB`, `B` (ASCII case-insensitive; all binary
/// multiples). No blanks, signs or fractions; `None` on overflow past `u64`.
pub fn parse_size(s: &[u8]) -> Option<u64> {
    let (digits, suffix) = split_digits(s);
    let n = parse_u64(digits)?;
    let shift = match suffix.first().map(u8::to_ascii_lowercase) {
        None => return Some(n),
        Some(b'b') if suffix.len() == 1 => 0,
        Some(b'k') => 10,
        Some(b'm') => 20,
        Some(b'g') => 30,
        Some(b't') => 40,
        _ => return None,
    };
    let rest = &suffix[1..];
    if !(rest.is_empty() || rest.eq_ignore_ascii_case(b"ib") || rest.eq_ignore_ascii_case(b"b"))
        || (shift == 0 && !rest.is_empty())
    {
        return None;
    }
    n.checked_mul(1u64 << shift)
}

fn parse_decay(s: &[u8]) -> Option<u64> {
    if s.eq_ignore_ascii_case(b"never") {
        return Some(NEVER);
    }
    parse_u64(s).filter(|&ms| ms <= 1 << 53)
}

fn parse_bool(s: &[u8]) -> Option<bool> {
    const YES: [&[u8]; 4] = [b"1", b"true", b"yes", b"on"];
    const NO: [&[u8]; 4] = [b"0", b"false", b"no", b"off"];
    if YES.iter().any(|y| s.eq_ignore_ascii_case(y)) {
        Some(true)
    } else if NO.iter().any(|n| s.eq_ignore_ascii_case(n)) {
        Some(false)
    } else {
        None
    }
}

/// Parses `10`, `2.5`, `2.50%` into hundredths of a percent, in (0, 100%].
fn parse_percent(s: &[u8]) -> Option<u32> {
    let s = s.strip_suffix(b"%").unwrap_or(s);
    // Three integer digits at most, as always: `0010` has never been accepted.
    let int_digits = s.iter().position(|&b| b == b'.').unwrap_or(s.len());
    if int_digits > 3 {
        return None;
    }
    let centi = parse_fixed(s, 2)?;
    (1..=10_000).contains(&centi).then_some(centi as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"4096"), Some(4096));
        assert_eq!(parse_size(b"64K"), Some(64 << 10));
        assert_eq!(parse_size(b"64k"), Some(64 << 10));
        assert_eq!(parse_size(b"64KiB"), Some(64 << 10));
        assert_eq!(parse_size(b"64kib"), Some(64 << 10));
        assert_eq!(parse_size(b"3M"), Some(3 << 20));
        assert_eq!(parse_size(b"3MB"), Some(3 << 20));
        assert_eq!(parse_size(b"2GiB"), Some(2 << 30));
        assert_eq!(parse_size(b"1T"), Some(1 << 40));
        assert_eq!(parse_size(b"12B"), Some(12));
        assert_eq!(parse_size(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"K",
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"1.5M",
            b"1Q",
            b"1MiBs",
            b"1Bi",
            b"1ib",
            b"18446744073709551616",
            b"99999999999999999999999",
            b"17179869184G",
            b"16777216T",
        ] {
            assert_eq!(parse_size(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        // The largest exact multiple still fits.
        assert_eq!(parse_size(b"16777215T"), Some(16777215u64 << 40));
    }

    #[test]
    fn decay_bool_percent() {
        assert_eq!(parse_decay(b"0"), Some(0));
        assert_eq!(parse_decay(b"1500"), Some(1500));
        assert_eq!(parse_decay(b"NEVER"), Some(NEVER));
        assert_eq!(parse_decay(b"-5"), None);
        assert_eq!(parse_decay(b"1s"), None);
        assert_eq!(parse_decay(b"99999999999999999999999"), None);
        assert_eq!(parse_bool(b"On"), Some(true));
        assert_eq!(parse_bool(b"0"), Some(false));
        assert_eq!(parse_bool(b"2"), None);
        assert_eq!(parse_percent(b"10"), Some(1000));
        assert_eq!(parse_percent(b"2.5%"), Some(250));
        assert_eq!(parse_percent(b"0.01"), Some(1));
        assert_eq!(parse_percent(b"100"), Some(10_000));
        for bad in [
            &b"0"[..],
            b"100.01",
            b"101",
            b"-1",
            b"1.234",
            b"%",
            b"",
            b"a",
        ] {
            assert_eq!(parse_percent(bad), None);
        }
    }

    #[test]
    fn setters_record_code_source_and_clamp() {
        let c = Config::DEFAULT.release(Release::Free).threshold(10);
        assert_eq!(c.get_threshold(), Config::MIN_THRESHOLD);
        assert_eq!(c.source(Setting::Release), Source::Code);
        assert_eq!(c.source(Setting::Prefetch), Source::Default);
        assert_eq!(c.decay_ms(None).get_decay_ms(), None);
    }

    #[test]
    fn apply_rejects_and_names_the_variable() {
        let mut c = Config::DEFAULT;
        let e = c.apply(Setting::Release, b"bogus").unwrap_err();
        assert_eq!(e.variable(), "PAGEWISE_RELEASE");
        assert_eq!(e.value(), b"bogus");
        let msg = e.to_string();
        assert!(msg.contains("PAGEWISE_RELEASE=\"bogus\""), "{msg}");
        assert!(msg.contains("adaptive"), "{msg}");
        assert!(c.apply(Setting::Threshold, b"4095").is_err());
        assert!(c.apply(Setting::Threshold, b"4K").is_ok());
        assert_eq!(c.source(Setting::Threshold), Source::Env);
        assert!(c.apply(Setting::PressureFile, b"relative").is_err());
    }

    #[test]
    fn encode_round_trips() {
        let c = Config::DEFAULT
            .release(Release::Adaptive)
            .prefetch(Prefetch::PopulateHugePage)
            .threshold(1 << 20)
            .cache(12345)
            .decay_ms(Some(7))
            .background(false)
            .verbose(true);
        let w: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
        encode(&c, &w);
        let d = decode(&w);
        assert_eq!(d.release, c.release);
        assert_eq!(d.prefetch, c.prefetch);
        assert_eq!(d.threshold, c.threshold);
        assert_eq!(d.cache, c.cache);
        assert_eq!(d.decay_ms, 7);
        assert!(!d.background && d.verbose && !d.stats_at_exit);
    }
}
