//! [`ConfigError`]: a malformed `PAGEWISE_*` variable, as returned by
//! [`Config::from_env`](super::Config::from_env) and printed by the allocator's own read.

use core::fmt;

use super::Setting;
use crate::report;

/// The most bytes of a rejected value kept: enough to recognise it in a log line.
const KEPT: usize = 64;

/// A malformed `PAGEWISE_*` variable: which one, its value, and what it accepts.
///
/// Holds the value inline (truncated to 64 bytes) so that it can be built without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConfigError {
    setting: Setting,
    value: [u8; KEPT],
    len: u8,
    truncated: bool,
}

impl ConfigError {
    pub(crate) fn new(setting: Setting, value: &[u8]) -> ConfigError {
        let mut kept = [0u8; KEPT];
        let n = value.len().min(KEPT);
        kept[..n].copy_from_slice(&value[..n]);
        ConfigError {
            setting,
            value: kept,
            len: n as u8,
            truncated: value.len() > KEPT,
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
