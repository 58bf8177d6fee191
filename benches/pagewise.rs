//! Run with: cargo bench --bench pagewise [-- FILTER]
//!
//! The shared workloads (`benches/workloads/mod.rs`) under pagewise, in every release policy
//! (with the default prefetch) and every prefetch mode (with the default release policy), all in
//! this one binary: before each benchmark, `PageAlloc::reconfigure` switches the configuration at
//! run time. It purges the cache first, so no block cached under one policy is reused under the
//! next, and it is safe while blocks are live (they are freed under the new policy).
//! Filter by configuration with e.g. `cargo bench --bench pagewise -- 'free/'`.

mod workloads;

use pagewise::{Config, PageAlloc, Prefetch, Release};

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

/// `release/prefetch` labels: each policy with the default prefetch, then the default policy
/// with each other prefetch mode.
fn configs() -> Vec<String> {
    let default = Config::DEFAULT;
    let label = |r: Release, p: Prefetch| format!("{}/{}", r.name(), p.name());
    let policies = Release::ALL
        .into_iter()
        .map(|r| label(r, default.get_prefetch()));
    let prefetch = Prefetch::ALL
        .into_iter()
        .filter(|&p| p != default.get_prefetch())
        .map(|p| label(default.get_release(), p));
    policies.chain(prefetch).collect()
}

fn configure(label: &str) {
    let (release, prefetch) = label.split_once('/').expect("release/prefetch");
    let release = Release::parse(release.as_bytes()).expect("release policy");
    let prefetch = Prefetch::parse(prefetch.as_bytes()).expect("prefetch mode");
    GLOBAL.reconfigure(Config::DEFAULT.release(release).prefetch(prefetch));
}

fn main() {
    workloads::main();
}
