//! Shared by the preload crate's integration tests: the built library, and running a program
//! with it preloaded.
#![allow(dead_code)] // each test file uses part of this

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Every `PAGEWISE_RELEASE` (src/policy.rs in the root crate).
pub const RELEASES: [&str; 5] = ["unmap", "dontneed", "free", "retain", "adaptive"];

/// `libpagewise.so`, built in the profile the tests run in. A cdylib is not built for its own
/// integration tests (they cannot link it), so the test asks cargo for it, once per test binary.
pub fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let release = !cfg!(debug_assertions);
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "-p", "pagewise-preload", "--lib"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build for libpagewise.so");
        assert!(status.success(), "cargo build -p pagewise-preload failed");
        // CARGO_TARGET_TMPDIR is <target dir>/tmp.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
        let lib = target
            .join(if release { "release" } else { "debug" })
            .join("libpagewise.so");
        assert!(lib.exists(), "{} not built", lib.display());
        lib
    })
}

/// Runs `cmd` with the library preloaded and `env` set, every other `PAGEWISE_*` variable of
/// the test's own environment removed.
pub fn run_preloaded(mut cmd: Command, env: &[(&str, &str)]) -> Output {
    for (k, _) in std::env::vars() {
        if k.starts_with("PAGEWISE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LD_PRELOAD", library());
    cmd.envs(env.iter().copied());
    cmd.output().expect("run the preloaded program")
}
