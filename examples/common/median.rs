//! The median, written once for every example and the report: all of them quote medians of
//! repeated runs (this VM's timings swing by 20-40% between runs of the same binary).

/// The median of `v` (the mean of the middle two for an even count); NaN for none.
pub fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.into_iter().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
