//! Real programs that no one here wrote (python3 with its own test_bytes and test_list, sort,
//! xz, zstd, sqlite3), run with the library preloaded under the default and every release
//! policy and at `PAGEWISE_THRESHOLD=4096`, their output compared byte for byte with a run
//! without it: `scripts/preload_programs.sh --quick` (small inputs; without `--quick` the same
//! script runs them on a 300 MiB file and 3 M rows). A program that is not installed is named
//! and skipped; every preloaded run must have had pagewise serve large blocks.

mod common;

use std::process::Command;

#[test]
fn real_programs_give_the_same_output_preloaded() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/preload_programs.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .arg("--quick")
        .env("LIB", common::library())
        .output()
        .expect("run scripts/preload_programs.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "a program's output differed, or it failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" identical "), "no program ran:\n{stdout}");
}
