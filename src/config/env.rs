//! The `PAGEWISE_*` environment, read with `getenv(3)` through [`os::getenv`] (never `std::env`,
//! which allocates) and parsed once per process, from inside `alloc` if need be.
//!
//! Nothing here waits: a lock or a spin could deadlock a signal handler that allocates while its
//! thread is parsing. A thread that finds the work under way on another thread does it again for
//! itself (and prints nothing) instead.

use core::ffi::CStr;
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering};

use super::values::MAX_PATH_LEN;
use super::{Config, Setting, DEFAULT_PRESSURE_FILE};
use crate::os;
use crate::policy::{Cgroup, Limit, Prefetch, Release};

/// The variable of `setting`, if set ([`os::getenv`], which allocates nothing).
///
/// The string belongs to the environment block and stays valid until the environment is modified,
/// which Rust makes `unsafe` (`std::env::set_var`); what must outlive that is copied.
fn getenv(setting: Setting) -> Option<&'static CStr> {
    os::getenv(setting.var_c())
}

/// The variable of `setting`, if set and valid.
fn valid_value(setting: Setting) -> Option<&'static CStr> {
    let value = getenv(setting)?;
    let mut probe = Config::DEFAULT;
    probe.apply(setting, value.to_bytes()).ok().map(|_| value)
}

impl Config {
    /// Reads the environment over [`Config::DEFAULT`], refusing any malformed variable.
    ///
    /// Unlike the allocator's own lazy read, this prints nothing; it returns the first error in
    /// the order of the README's table.
    pub fn from_env() -> Result<Config, super::ConfigError> {
        let mut config = Config::DEFAULT;
        for &setting in Setting::ALL {
            if let Some(value) = getenv(setting) {
                config.apply(setting, value.to_bytes())?;
            }
        }
        Ok(config)
    }
}

/// The environment over [`Config::DEFAULT`], without its malformed variables, which are reported
/// on stderr if `report_errors`.
fn parse_env(report_errors: bool) -> Config {
    let mut config = Config::DEFAULT;
    for &setting in Setting::ALL {
        if let Some(value) = getenv(setting) {
            if let Err(e) = config.apply(setting, value.to_bytes()) {
                if report_errors {
                    super::print::config_error(&e);
                }
            }
        }
    }
    config
}

/// A setting's value as one word, so that the parsed environment can be published in atomics.
pub(super) trait Word: Copy {
    fn to_word(self) -> u64;
    fn from_word(word: u64) -> Self;
}

impl Word for bool {
    fn to_word(self) -> u64 {
        self.into()
    }
    fn from_word(word: u64) -> bool {
        word != 0
    }
}

impl Word for u32 {
    fn to_word(self) -> u64 {
        self.into()
    }
    fn from_word(word: u64) -> u32 {
        word as u32
    }
}

impl Word for u64 {
    fn to_word(self) -> u64 {
        self
    }
    fn from_word(word: u64) -> u64 {
        word
    }
}

impl Word for usize {
    fn to_word(self) -> u64 {
        self as u64
    }
    fn from_word(word: u64) -> usize {
        word as usize
    }
}

impl Word for Release {
    fn to_word(self) -> u64 {
        self.to_u8().into()
    }
    fn from_word(word: u64) -> Release {
        Release::from_u8(word as u8)
    }
}

impl Word for Limit {
    fn to_word(self) -> u64 {
        Limit::to_word(self)
    }
    fn from_word(word: u64) -> Limit {
        Limit::from_word(word)
    }
}

impl Word for Prefetch {
    fn to_word(self) -> u64 {
        self.to_u8().into()
    }
    fn from_word(word: u64) -> Prefetch {
        Prefetch::from_u8(word as u8)
    }
}

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READY: u8 = 2;

/// The parsed environment, for every resolution after the first: each setting as a [`Word`],
/// and which ones the environment set. Relaxed fields are enough because `state` publishes them
/// (written before `READY` with `Release`, read after it with `Acquire`); a torn read is only
/// possible after [`__reread_env_for_tests`], and then mixes two valid configurations.
struct Published {
    state: AtomicU8,
    words: [AtomicU64; Setting::ALL.len()],
    from_env: AtomicU16,
}

static PUBLISHED: Published = Published {
    state: AtomicU8::new(UNREAD),
    words: [const { AtomicU64::new(0) }; Setting::ALL.len()],
    from_env: AtomicU16::new(0),
};

impl Published {
    fn store(&self, config: &Config) {
        for &setting in Setting::ALL {
            let word = setting.word(config);
            self.words[setting as usize].store(word, Ordering::Relaxed);
        }
        self.from_env.store(config.from_env, Ordering::Relaxed);
    }

    fn load(&self) -> Config {
        let mut config = Config::DEFAULT;
        for &setting in Setting::ALL {
            let word = self.words[setting as usize].load(Ordering::Relaxed);
            setting.set_word(&mut config, word);
        }
        config.from_env = self.from_env.load(Ordering::Relaxed);
        config
    }
}

/// The environment over [`Config::DEFAULT`]: parsed by the first caller, which alone reports the
/// malformed variables, and published for the others.
pub(super) fn env_layer() -> Config {
    let state = &PUBLISHED.state;
    match state.compare_exchange(UNREAD, READING, Ordering::Acquire, Ordering::Acquire) {
        Ok(_) => {
            let config = parse_env(true);
            PUBLISHED.store(&config);
            state.store(READY, Ordering::Release);
            config
        }
        Err(READY) => PUBLISHED.load(),
        // Another thread is parsing: parse too rather than wait for it.
        Err(_) => parse_env(false),
    }
}

/// Forgets the parsed environment (tests only): the next resolution reads it again.
#[doc(hidden)]
pub fn __reread_env_for_tests() {
    PUBLISHED.state.store(UNREAD, Ordering::Release);
}

/// `PAGEWISE_PRESSURE_FILE`, if set and valid, as a `'static` string that `setenv` cannot free
/// (see [`EnvCopy`]); the engine asks this first for the path in force.
pub(crate) fn env_pressure_path() -> Option<&'static CStr> {
    static COPY: EnvCopy = EnvCopy::new();
    COPY.get(Setting::PressureFile)
}

/// `PAGEWISE_CGROUP`, if set and valid, with a path as a `'static` copy (see [`EnvCopy`]).
pub(crate) fn env_cgroup() -> Option<Cgroup> {
    static COPY: EnvCopy = EnvCopy::new();
    let value = valid_value(Setting::Cgroup)?.to_bytes();
    if value.eq_ignore_ascii_case(b"auto") {
        Some(Cgroup::Auto)
    } else if value.eq_ignore_ascii_case(b"none") {
        Some(Cgroup::None)
    } else {
        COPY.get(Setting::Cgroup).map(Cgroup::Path)
    }
}

/// A copy of a path-valued variable, made by the first caller and kept for the life of the
/// process: the environment layer only checks such variables, and their consumers need a string
/// that a later `setenv` cannot free. A caller that arrives while the copy is being written gets
/// the environment's own string instead of waiting.
struct EnvCopy {
    state: AtomicU8,
    bytes: [AtomicU8; MAX_PATH_LEN + 1],
}

impl EnvCopy {
    const fn new() -> EnvCopy {
        EnvCopy {
            state: AtomicU8::new(UNREAD),
            bytes: [const { AtomicU8::new(0) }; MAX_PATH_LEN + 1],
        }
    }

    fn get(&'static self, setting: Setting) -> Option<&'static CStr> {
        const WRITING: u8 = 1;
        const SET: u8 = 2;
        const UNSET: u8 = 3;
        match self
            .state
            .compare_exchange(UNREAD, WRITING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let Some(path) = valid_value(setting) else {
                    self.state.store(UNSET, Ordering::Release);
                    return None;
                };
                // The check functions bound the length, so the NUL after the path fits too.
                let with_nul = path.to_bytes_with_nul();
                for (slot, &byte) in self.bytes.iter().zip(with_nul) {
                    slot.store(byte, Ordering::Relaxed);
                }
                self.state.store(SET, Ordering::Release);
                Some(self.frozen())
            }
            Err(SET) => Some(self.frozen()),
            Err(UNSET) => None,
            Err(_) => valid_value(setting),
        }
    }

    /// The string in a buffer that is never written again.
    fn frozen(&'static self) -> &'static CStr {
        // SAFETY: AtomicU8 has the size, alignment and bit validity of u8. The caller saw the
        // state become SET (Acquire), after which nothing writes to the buffer, so plain reads
        // race with no write.
        let bytes: &'static [u8; MAX_PATH_LEN + 1] = unsafe { &*self.bytes.as_ptr().cast() };
        CStr::from_bytes_until_nul(bytes).unwrap_or(DEFAULT_PRESSURE_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_settings_load_back() {
        let published = Published {
            state: AtomicU8::new(UNREAD),
            words: [const { AtomicU64::new(0) }; Setting::ALL.len()],
            from_env: AtomicU16::new(0),
        };
        let mut config = Config::DEFAULT
            .release(Release::Adaptive)
            .prefetch(Prefetch::PopulateHugePage)
            .threshold(1 << 20)
            .cache(12345)
            .decay_ms(None)
            .background(false)
            .pressure_threshold_centi_percent(1)
            .verbose(true)
            .stats_at_exit(true);
        config.set = 0;
        config.from_env = 0b10_1010_1010;
        published.store(&config);
        assert_eq!(published.load(), config);
    }

    #[test]
    fn words_round_trip() {
        for word in [0, 1, 2, 3, 4] {
            assert_eq!(Release::from_word(word).to_word(), word);
        }
        for word in [0, 1, 2, 3] {
            assert_eq!(Prefetch::from_word(word).to_word(), word);
        }
        assert!(bool::from_word(true.to_word()));
        assert_eq!(u32::from_word(u32::MAX.to_word()), u32::MAX);
        assert_eq!(usize::from_word(usize::MAX.to_word()), usize::MAX);
        assert_eq!(u64::from_word(u64::MAX.to_word()), u64::MAX);
    }

    #[test]
    fn the_pressure_path_is_copied_once_and_outlives_the_variable() {
        // The only test in this binary that touches the environment (or this copy), so setting
        // the variable races with no reader; a run with the variable already set skips it.
        let var = Setting::PressureFile.var();
        if std::env::var_os(var).is_some() {
            return;
        }
        std::env::set_var(var, "/tmp/pagewise-unit-psi");
        assert_eq!(
            valid_value(Setting::PressureFile).map(CStr::to_bytes),
            Some(&b"/tmp/pagewise-unit-psi"[..])
        );
        let copy = env_pressure_path().expect("set and valid");
        assert_eq!(copy, c"/tmp/pagewise-unit-psi");
        std::env::remove_var(var);
        assert_eq!(getenv(Setting::PressureFile), None);
        assert_eq!(valid_value(Setting::PressureFile), None);
        let again = env_pressure_path().expect("the copy stays");
        assert_eq!(again.as_ptr(), copy.as_ptr());
        assert_eq!(again, c"/tmp/pagewise-unit-psi");
    }
}
