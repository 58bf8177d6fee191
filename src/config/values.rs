//! How each kind of setting value is read from a variable and written back (verbose line, error
//! line): the `parse`, `check` and `show` functions that the settings table names.
//!
//! Every `show` writes a form its `parse` accepts, so that a value printed by `PAGEWISE_VERBOSE`
//! can be pasted back into the environment (the module's tests check it for every setting).

use core::ffi::CStr;
use core::fmt::{self, Write};

use super::{Config, DEFAULT_PRESSURE_FILE, NEVER};
use crate::decimal::{parse_fixed, parse_u64, split_digits};
use crate::policy::{Cgroup, Limit, Prefetch, Release};
use crate::report;

/// The longest pressure file path accepted (the copy kept of it has a fixed size).
pub(crate) const MAX_PATH_LEN: usize = 255;

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
    let unit_tail = &suffix[1..];
    let tail_ok = unit_tail.is_empty()
        || unit_tail.eq_ignore_ascii_case(b"ib")
        || unit_tail.eq_ignore_ascii_case(b"b");
    if !tail_ok || (shift == 0 && !unit_tail.is_empty()) {
        return None;
    }
    n.checked_mul(1u64 << shift)
}

/// A threshold: a size from one page up to the largest allocation Rust allows (`isize::MAX`).
pub(crate) fn parse_threshold(s: &[u8]) -> Option<usize> {
    let bytes = parse_size(s)?;
    let allowed = Config::MIN_THRESHOLD as u64..=isize::MAX as u64;
    allowed.contains(&bytes).then_some(bytes as usize)
}

/// A cache budget: any size the address space can hold.
pub(crate) fn parse_cache(s: &[u8]) -> Option<usize> {
    usize::try_from(parse_size(s)?).ok()
}

/// Milliseconds up to 2^53 (so that they convert to seconds in an `f64` exactly), or `never`.
pub(crate) fn parse_decay(s: &[u8]) -> Option<u64> {
    if s.eq_ignore_ascii_case(b"never") {
        return Some(NEVER);
    }
    parse_u64(s).filter(|&ms| ms <= 1 << 53)
}

/// `1`, `true`, `yes`, `on` and `0`, `false`, `no`, `off`, in any ASCII case.
pub(crate) fn parse_bool(s: &[u8]) -> Option<bool> {
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

/// `10`, `2.5`, `2.50%` as hundredths of a percent, above 0 and at most 100%.
pub(crate) fn parse_percent(s: &[u8]) -> Option<u32> {
    let s = s.strip_suffix(b"%").unwrap_or(s);
    // Three integer digits at most, as always: `0010` has never been accepted.
    let int_digits = s.iter().position(|&b| b == b'.').unwrap_or(s.len());
    if int_digits > 3 {
        return None;
    }
    let centi = parse_fixed(s, 2)?;
    (1..=10_000).contains(&centi).then_some(centi as u32)
}

/// A pressure file: an absolute path that fits the copy kept of it (see `env_pressure_path`).
pub(crate) fn is_pressure_file(s: &[u8]) -> bool {
    s.first() == Some(&b'/') && s.len() <= MAX_PATH_LEN
}

/// `PAGEWISE_LIMIT`: `none`, a percentage of the cgroup's limit from 1% to 100% (`90%`), or a
/// size as [`parse_size`] reads it (`6G`).
pub(crate) fn parse_limit(s: &[u8]) -> Option<Limit> {
    if s.eq_ignore_ascii_case(b"none") {
        return Some(Limit::None);
    }
    if let Some(percent) = s.strip_suffix(b"%") {
        let p = parse_u64(percent)?;
        return (1..=100).contains(&p).then_some(Limit::Percent(p as u8));
    }
    parse_size(s).map(Limit::Bytes)
}

pub(crate) fn show_limit(f: &mut dyn Write, limit: Limit) -> fmt::Result {
    match limit {
        Limit::None => f.write_str("none"),
        Limit::Percent(p) => write!(f, "{p}%"),
        Limit::Bytes(b) => match usize::try_from(b) {
            Ok(b) => show_size(f, b),
            Err(_) => write!(f, "{b}"),
        },
    }
}

/// `PAGEWISE_CGROUP`: `auto`, `none`, or an absolute path that fits the copy kept of it (see
/// `env_cgroup`).
pub(crate) fn is_cgroup(s: &[u8]) -> bool {
    s.eq_ignore_ascii_case(b"auto") || s.eq_ignore_ascii_case(b"none") || is_pressure_file(s)
}

pub(crate) fn show_cgroup(f: &mut dyn Write, cgroup: Cgroup) -> fmt::Result {
    match cgroup {
        Cgroup::Auto => f.write_str("auto"),
        Cgroup::None => f.write_str("none"),
        Cgroup::Path(p) => report::write_escaped(f, p.to_bytes()),
    }
}

pub(crate) fn show_release(f: &mut dyn Write, release: Release) -> fmt::Result {
    f.write_str(release.name())
}

pub(crate) fn show_prefetch(f: &mut dyn Write, prefetch: Prefetch) -> fmt::Result {
    f.write_str(prefetch.name())
}

/// A byte count the way the variables accept it: `256K`, `1G`, or plain bytes.
pub(crate) fn show_size(f: &mut dyn Write, bytes: usize) -> fmt::Result {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    let n = bytes as u64;
    for (shift, unit) in UNITS {
        if n != 0 && n % (1u64 << shift) == 0 {
            return write!(f, "{}{unit}", n >> shift);
        }
    }
    write!(f, "{n}")
}

pub(crate) fn show_decay(f: &mut dyn Write, ms: u64) -> fmt::Result {
    match ms {
        NEVER => f.write_str("never"),
        ms => write!(f, "{ms}"),
    }
}

pub(crate) fn show_bool(f: &mut dyn Write, on: bool) -> fmt::Result {
    f.write_str(if on { "1" } else { "0" })
}

/// The path, or the default one when none is set.
pub(crate) fn show_path(f: &mut dyn Write, path: Option<&CStr>) -> fmt::Result {
    report::write_escaped(f, path.unwrap_or(DEFAULT_PRESSURE_FILE).to_bytes())
}

pub(crate) fn show_percent(f: &mut dyn Write, centi: u32) -> fmt::Result {
    write!(f, "{}.{:02}%", centi / 100, centi % 100)
}

/// For [`Config::decay_ms`]: `None` means never.
pub(crate) const fn never_if_none(ms: Option<u64>) -> u64 {
    match ms {
        Some(ms) => ms,
        None => NEVER,
    }
}

/// For [`Config::get_decay_ms`].
pub(crate) const fn none_if_never(ms: u64) -> Option<u64> {
    if ms == NEVER {
        None
    } else {
        Some(ms)
    }
}

/// For [`Config::threshold`]: below one page, a block would share its page with its neighbours.
pub(crate) const fn at_least_one_page(bytes: usize) -> usize {
    if bytes < Config::MIN_THRESHOLD {
        Config::MIN_THRESHOLD
    } else {
        bytes
    }
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
    fn thresholds_and_budgets() {
        assert_eq!(parse_threshold(b"4K"), Some(4096));
        assert_eq!(parse_threshold(b"4095"), None);
        assert_eq!(parse_threshold(b"0"), None);
        assert_eq!(parse_threshold(b"16777215T"), None, "past isize::MAX");
        assert_eq!(parse_cache(b"0"), Some(0));
        assert_eq!(parse_cache(b"64kib"), Some(64 << 10));
    }

    #[test]
    fn decay_bool_percent_path() {
        assert_eq!(parse_decay(b"0"), Some(0));
        assert_eq!(parse_decay(b"1500"), Some(1500));
        assert_eq!(parse_decay(b"NEVER"), Some(NEVER));
        assert_eq!(parse_decay(b"9007199254740992"), Some(1 << 53));
        for bad in [
            &b"-5"[..],
            b"1s",
            b"",
            b"9007199254740993",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_decay(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        assert_eq!(parse_bool(b"On"), Some(true));
        assert_eq!(parse_bool(b"0"), Some(false));
        assert_eq!(parse_bool(b"2"), None);
        assert_eq!(parse_percent(b"10"), Some(1000));
        assert_eq!(parse_percent(b"2.5%"), Some(250));
        assert_eq!(parse_percent(b"0.01"), Some(1));
        assert_eq!(parse_percent(b"100"), Some(10_000));
        assert_eq!(parse_percent(b"010"), Some(1000));
        assert_eq!(parse_percent(b"10."), Some(1000));
        for bad in [
            &b"0"[..],
            b"0010",
            b"100.01",
            b"101",
            b"-1",
            b"1.234",
            b"%",
            b"10%%",
            b"",
            b"a",
            b".5",
        ] {
            assert_eq!(parse_percent(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        assert!(is_pressure_file(b"/proc/pressure/memory"));
        assert!(!is_pressure_file(b"relative/psi"));
        assert!(!is_pressure_file(b""));
        assert!(is_pressure_file(&[b'/'; MAX_PATH_LEN]));
        assert!(!is_pressure_file(&[b'/'; MAX_PATH_LEN + 1]));
    }

    #[test]
    fn shown_values() {
        let shown = |show: &dyn Fn(&mut String) -> fmt::Result| {
            let mut s = String::new();
            show(&mut s).unwrap();
            s
        };
        assert_eq!(shown(&|f| show_size(f, 256 << 10)), "256K");
        assert_eq!(shown(&|f| show_size(f, 3 << 30)), "3G");
        assert_eq!(shown(&|f| show_size(f, 12345)), "12345");
        assert_eq!(shown(&|f| show_size(f, 0)), "0");
        assert_eq!(shown(&|f| show_decay(f, NEVER)), "never");
        assert_eq!(shown(&|f| show_percent(f, 250)), "2.50%");
        assert_eq!(shown(&|f| show_path(f, None)), "/proc/pressure/memory");
        assert_eq!(shown(&|f| show_path(f, Some(c"/a\"b"))), "/a\\x22b");
    }
}
