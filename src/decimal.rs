//! The crate's one decimal parser, for the `PAGEWISE_*` values and for the numbers the kernel
//! writes in `/proc` files and PSI files, so that every reader refuses signs, blanks and overflow
//! the same way. Nothing here allocates or panics: it runs inside `alloc`.

/// Splits `s` after its leading ASCII digits: `(digits, rest)`; `digits` may be empty.
pub(crate) fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

/// An unsigned decimal integer: one or more ASCII digits and nothing else (no sign, no blank,
/// no `_`). `None` if `s` is empty, holds anything else, or exceeds `u64::MAX`.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A fixed-point decimal in units of 10^-`frac_digits`: integer digits, then optionally `.` and
/// at most `frac_digits` digits. With 2 fraction digits, `12.34` is 1234, `12.3` 1230, `12` and
/// `12.` 1200; `.5`, `1.234`, `1,5`, `-1` and overflow past `u64::MAX` are `None`.
pub(crate) fn parse_fixed(s: &[u8], frac_digits: u32) -> Option<u64> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    let missing = frac_digits.checked_sub(u32::try_from(frac.len()).ok()?)?;
    let frac_value = if frac.is_empty() { 0 } else { parse_u64(frac)? };
    // frac_value < 10^frac.len(), so the scaled fraction stays below `unit` and cannot overflow.
    let unit = 10u64.checked_pow(frac_digits)?;
    let fraction = frac_value * 10u64.pow(missing);
    parse_u64(int)?.checked_mul(unit)?.checked_add(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"0042"), Some(42));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"99999999999999999999999",
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"1_000",
            b"1.0",
            b"x",
        ] {
            assert_eq!(parse_u64(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn splits_after_the_digits() {
        assert_eq!(split_digits(b"64KiB"), (&b"64"[..], &b"KiB"[..]));
        assert_eq!(split_digits(b"K"), (&b""[..], &b"K"[..]));
        assert_eq!(split_digits(b"2048"), (&b"2048"[..], &b""[..]));
    }

    #[test]
    fn fixed_point() {
        assert_eq!(parse_fixed(b"12.34", 2), Some(1234));
        assert_eq!(parse_fixed(b"12.3", 2), Some(1230));
        assert_eq!(parse_fixed(b"12", 2), Some(1200));
        assert_eq!(parse_fixed(b"12.", 2), Some(1200));
        assert_eq!(parse_fixed(b"0.05", 2), Some(5));
        assert_eq!(parse_fixed(b"100.00", 2), Some(10_000));
        assert_eq!(parse_fixed(b"7", 0), Some(7));
        assert_eq!(parse_fixed(b"1.5", 3), Some(1500));
        assert_eq!(parse_fixed(b"184467440737095516.15", 2), Some(u64::MAX));
        for bad in [
            &b""[..],
            b".5",
            b"1.234",
            b"1.2.3",
            b"1,5",
            b"-1",
            b"1.-5",
            b"1.+5",
            b"1e2",
            b" 1",
            b"184467440737095516.16",
            b"%",
        ] {
            assert_eq!(parse_fixed(bad, 2), None, "{:?}", core::str::from_utf8(bad));
        }
        assert_eq!(parse_fixed(b"1.5", 0), None);
        assert_eq!(parse_fixed(b"1", 20), None, "10^20 does not fit");
    }
}
