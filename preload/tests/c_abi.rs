//! The C tests in `tests/c/`, compiled with `cc` and run with `libpagewise.so` preloaded, under
//! every release policy, with the default threshold and with `PAGEWISE_THRESHOLD=4096` (so that
//! nearly every block is pagewise's):
//!
//! - `api.c`: every exported function and its C contract, both kinds of block, alignments from
//!   8 B to 1 GiB, realloc chains through the threshold, and glibc's page-aligned blocks never
//!   taken for pagewise's (glibc mapping the very range pagewise just unmapped included);
//! - `threads.c`: four threads allocating, resizing and freeing each other's blocks, content
//!   checked at every step;
//! - `fork.c`: `fork` while other threads allocate; the child uses what it inherited and new
//!   blocks, from two threads;
//! - `startup.c`: blocks from a constructor before `main`, freed in `main`; `dlopen` (the
//!   loader's allocations); a block in a destructor after `main`.
//!
//! Each C program checks itself (a failed check aborts) and looks `pagewise_stats` up with
//! `dlsym`, so it fails when the library is not preloaded.

mod common;

use common::{library, run_preloaded, RELEASES};
use std::path::PathBuf;
use std::process::Command;

/// Compiles `tests/c/<name>.c` into the test's scratch directory.
fn compile(name: &str) -> PathBuf {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("c-{name}"));
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror"])
        // The tests call malloc with sizes meant to fail, and must keep every call: gcc may
        // otherwise drop a malloc/free pair it can see through.
        .args(["-Wno-alloc-size-larger-than", "-fno-builtin", "-pthread"])
        .arg(format!("-I{dir}/include"))
        .arg(format!("{dir}/tests/c/{name}.c"))
        .arg("-o")
        .arg(&out)
        .arg("-ldl")
        .status()
        .expect("run cc (the C tests need a C compiler)");
    assert!(status.success(), "cc failed on tests/c/{name}.c");
    out
}

/// Runs the C test `name` with the library preloaded under every release policy, at the
/// default threshold and at 4096.
fn run_everywhere(name: &str) {
    let exe = compile(name);
    library();
    for threshold in [None, Some("4096")] {
        for release in RELEASES {
            let mut env = vec![("PAGEWISE_RELEASE", release)];
            if let Some(t) = threshold {
                env.push(("PAGEWISE_THRESHOLD", t));
            }
            let out = run_preloaded(Command::new(&exe), &env);
            assert!(
                out.status.success(),
                "{name} failed with {env:?}: {}\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn every_function_and_contract() {
    run_everywhere("api");
}

#[test]
fn threads_alloc_free_realloc_with_content_checks() {
    run_everywhere("threads");
}

#[test]
fn fork_in_a_threaded_program() {
    run_everywhere("fork");
}

#[test]
fn allocation_before_and_after_main() {
    run_everywhere("startup");
}

/// The C tests fail without the library: they check what it does, not only that they run.
#[test]
fn the_c_tests_need_the_library() {
    let exe = compile("startup");
    let out = Command::new(&exe).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not preloaded"));
}

/// `PAGEWISE_VERBOSE=1` says that it runs preloaded; `PAGEWISE_STATS=1` prints the counters at
/// exit.
#[test]
fn verbose_and_stats_lines() {
    let exe = compile("startup");
    let out = run_preloaded(
        Command::new(&exe),
        &[("PAGEWISE_VERBOSE", "1"), ("PAGEWISE_STATS", "1")],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pagewise: preloaded (libpagewise.so"), "{err}");
    assert!(err.contains("PAGEWISE_VERBOSE=1 (env)"), "{err}");
    let stats = err
        .lines()
        .find(|l| l.contains("stats[") && l.contains("large_allocs="))
        .unwrap_or_else(|| panic!("no stats line in {err}"));
    assert!(!stats.contains("large_allocs=0 "), "{stats}");
}
