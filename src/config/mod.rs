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
//! The environment is read with `getenv(3)` (through `os::getenv`; never `std::env`, which
//! allocates), once, the
//! first time any allocator needs it.
//!
//! [`PageAlloc::with_config`]: crate::PageAlloc::with_config

// Adding a setting: one row in the `settings!` table below (with its parse and show functions
// in `values.rs` if no existing one fits, and a `Word` impl in `env.rs` for a new value type),
// a line in the README's table, and its use in the engine.

use core::ffi::CStr;
use core::fmt;

use crate::policy::{Cgroup, Limit, Prefetch, Release};

#[macro_use]
mod table;
mod env;
mod error;
mod print;
mod values;

pub use env::__reread_env_for_tests;
pub(crate) use env::{env_cgroup, env_pressure_path};
pub use error::ConfigError;
pub(crate) use print::verbose;
pub use values::parse_size;
pub(crate) use values::show_limit;
use values::{
    at_least_one_page, is_cgroup, is_pressure_file, never_if_none, none_if_never, parse_bool,
    parse_cache, parse_decay, parse_limit, parse_percent, parse_threshold, show_bool, show_cgroup,
    show_decay, show_path, show_percent, show_prefetch, show_release, show_size,
};

/// One KiB, GiB in bytes; used by the defaults below.
const KIB: usize = 1 << 10;
const GIB: usize = 1 << 30;

/// The pressure file read when none is configured.
pub(crate) const DEFAULT_PRESSURE_FILE: &CStr = c"/proc/pressure/memory";

/// `decay_ms` value meaning "never".
pub const NEVER: u64 = u64::MAX;

// Each row: the variable and what it accepts (for error lines), the `Config` field with its
// default, how the variable is read and how the value is written back (verbose and error lines),
// the const setter (with the conversion from its argument, if any) and the getter, if public.
// Rows are in the README's order, which is also the order of the verbose line and of
// `Config::from_env`'s errors.
settings! {
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
    pub struct Config;

    /// The defaults, chosen by measurement on the development machine (see the README's policy
    /// guide and `examples/report/main.rs`):
    ///
    /// - release [`Release::Retain`]: a reused block costs no syscall and no fault; the decay
    ///   below and the pressure signal give the memory back;
    /// - prefetch [`Prefetch::HugePage`]: one fault per 2 MiB for blocks of 2 MiB and more;
    /// - threshold 256 KiB: below it the inner allocator's heap is as fast and denser;
    /// - cache 1 GiB of freed ranges at most;
    /// - decay 1000 ms, on a background thread; pressure threshold 10% (PSI `some`).
    pub const DEFAULT;

    /// The release policy ([`Release`]).
    Release {
        var: "PAGEWISE_RELEASE",
        accepted: "unmap, dontneed, free, retain, adaptive",
        field: release: Release = Release::Retain,
        parse: Release::parse,
        show: show_release,
        set: release(release: Release),
        /// The release policy in force.
        get: get_release -> Release,
    }

    /// The prefetch mode ([`Prefetch`]).
    Prefetch {
        var: "PAGEWISE_PREFETCH",
        accepted: "none, populate, hugepage, populate+hugepage",
        field: prefetch: Prefetch = Prefetch::HugePage,
        parse: Prefetch::parse,
        show: show_prefetch,
        set: prefetch(prefetch: Prefetch),
        /// The prefetch mode in force.
        get: get_prefetch -> Prefetch,
    }

    /// Smallest allocation, in bytes, served by its own mapping. Values below
    /// [`Config::MIN_THRESHOLD`] are raised to it. The threshold of an allocator never changes
    /// after its first allocation (blocks are routed by size at free).
    Threshold {
        var: "PAGEWISE_THRESHOLD",
        accepted: "a size in bytes from 4096, optionally with K/M/G/T or KiB/MiB/GiB/TiB",
        field: threshold: usize = 256 * KIB,
        parse: parse_threshold,
        show: show_size,
        set: threshold(bytes: usize) => at_least_one_page,
        /// The threshold in bytes.
        get: get_threshold -> usize,
    }

    /// The most bytes of freed ranges the cache may hold. 0 disables it.
    Cache {
        var: "PAGEWISE_CACHE",
        accepted: "a size in bytes, optionally with K/M/G/T or KiB/MiB/GiB/TiB",
        field: cache: usize = GIB,
        parse: parse_cache,
        show: show_size,
        set: cache(bytes: usize),
        /// The cache budget in bytes.
        get: get_cache -> usize,
    }

    /// Cached ranges idle for longer than this are unmapped. `None` means never.
    Decay {
        var: "PAGEWISE_DECAY_MS",
        accepted: "milliseconds (0 to 2^53) or never",
        field: decay_ms: u64 = 1000,
        parse: parse_decay,
        show: show_decay,
        set: decay_ms(ms: Option<u64>) => never_if_none,
        /// The decay time in milliseconds, `None` for never.
        get: get_decay_ms -> Option<u64> => none_if_never,
    }

    /// Whether a background thread applies decay and pressure even when the program makes no
    /// allocation. Without it, decay and pressure are checked on large allocations and frees
    /// only.
    Background {
        var: "PAGEWISE_BACKGROUND",
        accepted: "1, 0, true, false, yes, no, on, off",
        field: background: bool = true,
        parse: parse_bool,
        show: show_bool,
        set: background(on: bool),
        /// Whether the background release thread is on.
        get: get_background -> bool,
    }

    /// The pressure signal, a file in PSI format (default `/proc/pressure/memory`).
    PressureFile {
        var: "PAGEWISE_PRESSURE_FILE",
        accepted: "an absolute path of at most 255 bytes",
        field: pressure_file: Option<&'static CStr> = None,
        check: is_pressure_file,
        show: show_path,
        set: pressure_file(path: &'static CStr) => Some,
    }

    /// Which cgroup to watch for the limit, usage and pressure ([`Cgroup`]).
    Cgroup {
        var: "PAGEWISE_CGROUP",
        accepted: "auto, none, or an absolute path of a cgroup directory of at most 255 bytes",
        field: cgroup: Cgroup = Cgroup::Auto,
        check: is_cgroup,
        show: show_cgroup,
        set: cgroup(cgroup: Cgroup),
        /// The cgroup setting given in code (the environment's is applied by the allocator).
        get: get_cgroup -> Cgroup,
    }

    /// The soft limit ([`Limit`]): cached memory is given back, and freed memory not cached,
    /// while usage is at or over it.
    Limit {
        var: "PAGEWISE_LIMIT",
        accepted: "a size like 6G, a percentage of the cgroup's limit from 1% to 100% like 90%, or none",
        field: limit: Limit = Limit::Percent(90),
        parse: parse_limit,
        show: show_limit,
        set: limit(limit: Limit),
        /// The soft limit setting.
        get: get_limit -> Limit,
    }

    /// Pressure is "on" while memory stalls (PSI `some`, over the last interval or `avg10`) reach
    /// this share of time, in hundredths of a percent (1000 = 10%); the variable takes percent.
    PressureThreshold {
        var: "PAGEWISE_PRESSURE_THRESHOLD",
        accepted: "a percentage above 0 and at most 100, like 10 or 2.5%",
        field: pressure_threshold: u32 = 1000,
        parse: parse_percent,
        show: show_percent,
        set: pressure_threshold_centi_percent(v: u32),
    }

    /// Print the effective configuration on stderr at first use.
    Verbose {
        var: "PAGEWISE_VERBOSE",
        accepted: "1, 0, true, false, yes, no, on, off",
        field: verbose: bool = false,
        parse: parse_bool,
        show: show_bool,
        set: verbose(on: bool),
        /// Whether the configuration is printed at first use (`libpagewise.so` adds a line).
        get: get_verbose -> bool,
    }

    /// Print the statistics on stderr at exit.
    Stats {
        var: "PAGEWISE_STATS",
        accepted: "1, 0, true, false, yes, no, on, off",
        field: stats_at_exit: bool = false,
        parse: parse_bool,
        show: show_bool,
        set: stats_at_exit(on: bool),
    }
}

// `Config::set` and `from_env` hold one bit per setting.
const _: () = assert!(Setting::ALL.len() <= u16::BITS as usize);

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

impl Config {
    /// Smallest accepted threshold: one page.
    pub const MIN_THRESHOLD: usize = 4096;

    /// Ignore the `PAGEWISE_*` environment: the configuration is exactly what the code says.
    pub const fn ignore_env(mut self) -> Config {
        self.use_env = false;
        self
    }

    pub(crate) fn source(&self, setting: Setting) -> Source {
        if self.from_env & setting.bit() != 0 {
            Source::Env
        } else if self.set & setting.bit() != 0 {
            Source::Code
        } else {
            Source::Default
        }
    }

    /// The effective configuration: `self` with the environment layered over it, reporting
    /// each malformed variable once on stderr (only the first caller in the process reports).
    pub(crate) fn resolve(self) -> Config {
        if !self.use_env {
            return self;
        }
        let env = env::env_layer();
        let mut out = self;
        for &setting in Setting::ALL {
            if env.from_env & setting.bit() != 0 {
                setting.set_word(&mut out, setting.word(&env));
            }
        }
        out.from_env = env.from_env;
        out
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config`'s value for `setting` as the verbose line writes it.
    fn shown(setting: Setting, config: &Config) -> String {
        let mut s = String::new();
        setting.show(&mut s, config).unwrap();
        s
    }

    /// A configuration with every setting away from its default.
    fn unusual() -> Config {
        Config::DEFAULT
            .release(Release::Adaptive)
            .prefetch(Prefetch::PopulateHugePage)
            .threshold(3 << 20)
            .cache(12345)
            .decay_ms(None)
            .background(false)
            .pressure_file(c"/tmp/psi")
            .cgroup(Cgroup::Path(c"/sys/fs/cgroup/app"))
            .limit(Limit::Bytes(6 << 30))
            .pressure_threshold_centi_percent(250)
            .verbose(true)
            .stats_at_exit(true)
    }

    #[test]
    fn names_are_unique_variables_of_ours() {
        for (i, &setting) in Setting::ALL.iter().enumerate() {
            let var = setting.var();
            assert!(var.starts_with("PAGEWISE_"), "{var}");
            assert!(
                var.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{var}"
            );
            assert_eq!(setting.var_c().to_bytes(), var.as_bytes());
            assert!(!setting.accepted().is_empty(), "{var}");
            assert_eq!(setting as usize, i, "ALL is in declaration order");
            for other in &Setting::ALL[i + 1..] {
                assert_ne!(var, other.var());
            }
        }
    }

    #[test]
    fn shown_values_read_back_the_same() {
        for config in [Config::DEFAULT, unusual()] {
            for &setting in Setting::ALL {
                let text = shown(setting, &config);
                let mut read = Config::DEFAULT;
                read.apply(setting, text.as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(read.source(setting), Source::Env);
                assert_eq!(
                    setting.word(&read),
                    setting.word(&config),
                    "{}={text}",
                    setting.var()
                );
            }
        }
    }

    #[test]
    fn shown_defaults_are_the_documented_ones() {
        let line: Vec<String> = Setting::ALL
            .iter()
            .map(|&s| format!("{}={}", s.var(), shown(s, &Config::DEFAULT)))
            .collect();
        assert_eq!(
            line.join(" "),
            "PAGEWISE_RELEASE=retain PAGEWISE_PREFETCH=hugepage PAGEWISE_THRESHOLD=256K \
             PAGEWISE_CACHE=1G PAGEWISE_DECAY_MS=1000 PAGEWISE_BACKGROUND=1 \
             PAGEWISE_PRESSURE_FILE=/proc/pressure/memory PAGEWISE_CGROUP=auto PAGEWISE_LIMIT=90% \
             PAGEWISE_PRESSURE_THRESHOLD=10.00% \
             PAGEWISE_VERBOSE=0 PAGEWISE_STATS=0"
        );
    }

    #[test]
    fn setters_record_code_source_and_clamp() {
        let c = Config::DEFAULT.release(Release::Free).threshold(10);
        assert_eq!(c.get_threshold(), Config::MIN_THRESHOLD);
        assert_eq!(c.source(Setting::Release), Source::Code);
        assert_eq!(c.source(Setting::Prefetch), Source::Default);
        assert_eq!(c.decay_ms(None).get_decay_ms(), None);
        assert_eq!(c.decay_ms(Some(5)).get_decay_ms(), Some(5));
        let all = unusual();
        for &setting in Setting::ALL {
            assert_eq!(all.source(setting), Source::Code, "{}", setting.var());
        }
        assert_eq!(all.pressure_file, Some(c"/tmp/psi"));
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
        assert_eq!(c.source(Setting::Release), Source::Default);
        assert!(c.apply(Setting::Threshold, b"4095").is_err());
        assert!(c.apply(Setting::Threshold, b"4K").is_ok());
        assert_eq!(c.source(Setting::Threshold), Source::Env);
        assert!(c.apply(Setting::PressureFile, b"relative").is_err());
        let long = [b'x'; 100];
        let e = c.apply(Setting::Cache, &long).unwrap_err();
        assert_eq!(e.value(), &long[..64]);
        assert!(e.to_string().contains("x...\""), "{e}");
    }

    #[test]
    fn a_checked_setting_keeps_the_code_value() {
        // The environment's pressure file is read by the engine itself (env_pressure_path).
        let mut c = Config::DEFAULT.pressure_file(c"/code/psi");
        c.apply(Setting::PressureFile, b"/env/psi").unwrap();
        assert_eq!(c.pressure_file, Some(c"/code/psi"));
        assert_eq!(c.source(Setting::PressureFile), Source::Env);
        let mut out = Config::DEFAULT.pressure_file(c"/code/psi");
        Setting::PressureFile.set_word(&mut out, Setting::PressureFile.word(&c));
        assert_eq!(out.pressure_file, Some(c"/code/psi"));
    }

    #[test]
    fn ignoring_the_environment_resolves_to_the_code() {
        let c = unusual().ignore_env();
        assert_eq!(c.resolve(), c);
        assert_eq!(Config::default(), Config::DEFAULT);
    }

    #[test]
    fn debug_names_the_setters() {
        let text = format!("{:?}", Config::DEFAULT.decay_ms(None));
        assert!(
            text.starts_with("Config { release: Retain, prefetch: HugePage"),
            "{text}"
        );
        assert!(text.contains("decay_ms: None"), "{text}");
        assert!(
            text.contains("pressure_threshold_centi_percent: 1000"),
            "{text}"
        );
        assert!(
            text.ends_with("stats_at_exit: false, use_env: true }"),
            "{text}"
        );
    }
}
