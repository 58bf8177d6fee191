//! Every `PAGEWISE_*` variable against malformed values: the program (a child process, since the
//! environment is read once) prints exactly one line on stderr naming the variable, the value,
//! the default in force and the program, and runs on with the defaults; `Config::from_env()`
//! returns the matching error.

mod common;

use std::time::Duration;

use common::*;
use pagewise::{Config, PageAlloc};

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

const TEST: &str = "malformed_values_are_reported_once_and_ignored";
const VALUE_VAR: &str = "PAGEWISE_TEST_BAD_VAR";

const WORDS_COMMON: &[&str] = &["bogus", "", " ", "\t", "-1", "1", "18446744073709551616"];
const SIZES: &[&str] = &[
    "bogus",
    "",
    " ",
    "-1",
    "-4096",
    "18446744073709551616",
    "99999999999T",
    "16E",
    "1x",
    "64K ",
    " 64K",
    "64KiBx",
    "64KK",
    "1.5M",
    "0x1000",
    "1e6",
    "64 K",
    "+64K",
];
const BOOLS: &[&str] = &[
    "bogus",
    "",
    " ",
    "2",
    "-1",
    "yes please",
    "on ",
    " on",
    "tru",
    "18446744073709551616",
    "99999999999T",
];

/// (variable, malformed values, how the default is printed — any of these).
fn cases() -> Vec<(&'static str, Vec<String>, &'static [&'static str])> {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut release = own(WORDS_COMMON);
    release.extend(own(&[
        "retain ",
        " retain",
        "retainx",
        "free,retain",
        "re tain",
    ]));
    let mut prefetch = own(WORDS_COMMON);
    prefetch.extend(own(&[
        "hugepage ",
        "populate+",
        "populate+hugepage+",
        "populate hugepage",
        "huge",
    ]));
    let mut threshold = own(SIZES);
    threshold.extend(own(&["4095", "0", "1K"]));
    let decay = own(&[
        "bogus",
        "",
        " ",
        "-1",
        "18446744073709551616",
        "9007199254740993",
        "99999999999T",
        "1s",
        "100ms",
        " 100",
        "100 ",
        "1.5",
        "neverr",
    ]);
    let pressure_file = vec![
        String::new(),
        " ".into(),
        "relative/psi".into(),
        " /proc/pressure/memory".into(),
        format!("/{}", "a".repeat(300)),
    ];
    let cgroup = vec![
        String::new(),
        " ".into(),
        "relative/cgroup".into(),
        "autox".into(),
        "nonee".into(),
        " auto".into(),
        format!("/{}", "a".repeat(300)),
    ];
    let limit = own(&[
        "150%",
        "-1",
        "lots",
        "",
        " ",
        "0%",
        "101%",
        "90 %",
        "90%%",
        "1.5G",
        "9.5%",
        "nonee",
        "%",
        "18446744073709551616",
    ]);
    let pressure_threshold = own(&[
        "bogus",
        "",
        " ",
        "0",
        "0.00",
        "-5",
        "101",
        "100.01",
        "10%%",
        "2.555",
        "1e1",
        "18446744073709551616",
        "99999999999T",
        "10 ",
        " 10",
        "10 %",
    ]);
    vec![
        ("PAGEWISE_RELEASE", release, &["retain"]),
        ("PAGEWISE_PREFETCH", prefetch, &["hugepage"]),
        ("PAGEWISE_THRESHOLD", threshold, &["256K", "262144"]),
        ("PAGEWISE_CACHE", own(SIZES), &["1G", "1073741824"]),
        ("PAGEWISE_DECAY_MS", decay, &["1000"]),
        (
            "PAGEWISE_BACKGROUND",
            own(BOOLS),
            &["1", "on", "true", "yes"],
        ),
        (
            "PAGEWISE_PRESSURE_FILE",
            pressure_file,
            &["/proc/pressure/memory"],
        ),
        ("PAGEWISE_CGROUP", cgroup, &["auto"]),
        ("PAGEWISE_LIMIT", limit, &["90%"]),
        (
            "PAGEWISE_PRESSURE_THRESHOLD",
            pressure_threshold,
            &["10", "10%", "10.00%"],
        ),
        ("PAGEWISE_VERBOSE", own(BOOLS), &["0", "off", "false", "no"]),
        ("PAGEWISE_STATS", own(BOOLS), &["0", "off", "false", "no"]),
    ]
}

/// How a value appears in the error line: printable ASCII as is (except `"` and `\`),
/// anything else as `\xNN`; only the first 64 bytes.
fn escaped(v: &str) -> String {
    v.bytes()
        .take(64)
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// The program name as the kernel keeps it (/proc/self/comm: at most 15 bytes).
fn comm_of_this_binary() -> String {
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    name.chars().take(15).collect()
}

fn child_main() {
    let var = std::env::var(VALUE_VAR).expect("which variable is bad");
    let value = std::env::var_os(&var).expect("bad variable is set");
    let value = value.as_encoded_bytes();
    // Runs on with the defaults.
    let c = GLOBAL.config();
    let d = Config::DEFAULT;
    assert_eq!(c.get_release(), d.get_release(), "release");
    assert_eq!(c.get_prefetch(), d.get_prefetch(), "prefetch");
    assert_eq!(c.get_threshold(), d.get_threshold(), "threshold");
    assert_eq!(c.get_cache(), d.get_cache(), "cache");
    assert_eq!(c.get_decay_ms(), d.get_decay_ms(), "decay");
    assert_eq!(c.get_background(), d.get_background(), "background");
    // from_env reports the matching error.
    let e = Config::from_env().expect_err("from_env must return the error");
    assert_eq!(e.variable(), var, "ConfigError::variable()");
    assert_eq!(
        e.value(),
        &value[..value.len().min(64)],
        "ConfigError::value()"
    );
    assert!(!e.accepted().is_empty(), "ConfigError::accepted()");
    assert!(
        e.to_string().contains(&var),
        "Display names the variable: {e}"
    );
    // And the allocator works.
    let v = vec![7u8; 8 * MIB];
    assert_eq!(first_not(&v, 7), None);
    let s: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(s[99], "99");
    println!("CHILD-OK {var}");
}

#[test]
fn malformed_values_are_reported_once_and_ignored() {
    match child_mode().as_deref() {
        Some("bad") => return child_main(),
        Some(_) => return,
        None => {}
    }
    let program = comm_of_this_binary();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (var, values, defaults) in cases() {
        for value in values {
            runs += 1;
            let out = run_child(
                TEST,
                "bad",
                &[(var, Some(&value)), (VALUE_VAR, Some(var))],
                Duration::from_secs(30),
            );
            let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
            let mut problems = Vec::new();
            if !out.status.success() || !out.stdout.contains("CHILD-OK") {
                problems.push("child did not run on with defaults".to_string());
            }
            if lines.len() != 1 {
                problems.push(format!("{} stderr lines, expected exactly 1", lines.len()));
            }
            if let Some(line) = lines.first() {
                let esc = escaped(&value);
                if !line.contains(var) {
                    problems.push("line does not name the variable".into());
                }
                if !line.contains(&format!("\"{esc}")) {
                    problems.push(format!("line does not show the value \"{esc}\""));
                }
                // "... default <value> ...": the value in force follows the word.
                let shows_default = line
                    .find("default")
                    .is_some_and(|i| defaults.iter().any(|d| line[i..].contains(d)));
                if !shows_default {
                    problems.push(format!("line does not show the default ({defaults:?})"));
                }
                if !line.contains(&program) {
                    problems.push(format!("line does not name the program ({program})"));
                }
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{var}={value:?}: {}\n{}",
                    problems.join("; "),
                    out.describe()
                ));
            }
        }
    }
    println!("bad_env: {runs} child runs, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {runs} malformed values mishandled:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

const TWO_TEST: &str = "two_bad_variables_two_lines_good_ones_none";

#[test]
fn two_bad_variables_two_lines_good_ones_none() {
    match child_mode().as_deref() {
        Some("two") => {
            let c = GLOBAL.config();
            // The valid ones (odd case) apply, the bad ones fall back.
            assert_eq!(c.get_release().name(), "free");
            assert_eq!(c.get_cache(), 64 * KIB);
            assert_eq!(c.get_decay_ms(), None, "NEVER means no decay");
            assert_eq!(c.get_threshold(), Config::DEFAULT.get_threshold());
            assert_eq!(c.get_prefetch(), Config::DEFAULT.get_prefetch());
            drop(vec![1u8; 4 * MIB]);
            println!("CHILD-OK two");
            return;
        }
        Some(_) => return,
        None => {}
    }
    let out = run_child(
        TWO_TEST,
        "two",
        &[
            ("PAGEWISE_RELEASE", Some("FrEe")),
            ("PAGEWISE_CACHE", Some("64kib")),
            ("PAGEWISE_DECAY_MS", Some("NEVER")),
            ("PAGEWISE_BACKGROUND", Some("On")),
            ("PAGEWISE_THRESHOLD", Some("lots")),
            ("PAGEWISE_PREFETCH", Some("maybe")),
        ],
        Duration::from_secs(30),
    );
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        out.status.success() && out.stdout.contains("CHILD-OK"),
        "child failed\n{}",
        out.describe()
    );
    assert_eq!(
        lines.len(),
        2,
        "two bad variables, two lines\n{}",
        out.describe()
    );
    assert!(
        lines.iter().any(|l| l.contains("PAGEWISE_THRESHOLD")),
        "{}",
        out.describe()
    );
    assert!(
        lines.iter().any(|l| l.contains("PAGEWISE_PREFETCH")),
        "{}",
        out.describe()
    );
}
