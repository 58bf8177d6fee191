//! Run with: cargo run --release --example batch_pipeline [-- --quick]
//!
//! A batch pipeline: each batch fills a large buffer of raw readings, transforms it into a buffer
//! of calibrated values and reduces those to a few statistics; both buffers are freed at the end
//! of the batch. Under pagewise's default policy, every batch after the first reuses the pages of
//! the one before instead of faulting in fresh ones. Try `PAGEWISE_RELEASE=unmap` to compare.

#[path = "common/measure.rs"]
mod measure;

use pagewise::PageAlloc;

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (batches, samples) = if quick { (8, 4 << 20) } else { (40, 16 << 20) };
    let measure = measure::Measure::start();

    let (mut sum, mut peak) = (0.0, f64::MIN);
    for batch in 0..batches {
        // Fill: a batch of raw 32-bit readings (a deterministic stand-in for I/O), 64 MiB.
        let raw: Vec<u32> = (0..samples)
            .map(|i: u32| i.wrapping_mul(2_654_435_761) ^ batch)
            .collect();
        // Transform: decode into calibrated values, 128 MiB.
        let values: Vec<f64> = raw
            .iter()
            .map(|&r| f64::from(r >> 8) * 1e-3 - 8000.0)
            .collect();
        // Reduce.
        sum += values.iter().sum::<f64>() / values.len() as f64;
        peak = values.iter().copied().fold(peak, f64::max);
    }
    println!(
        "{batches} batches of {samples} readings: mean {:.3}, max {peak:.3}",
        sum / f64::from(batches)
    );

    measure.finish(GLOBAL.config());
}
