//! The pressure source can neither hang nor go stale (issue #10): a FIFO without a writer named
//! by `PAGEWISE_PRESSURE_FILE` hangs nothing (verbose start-up, adaptive frees, allocations with
//! the background thread off, decay by the background thread); a file renamed over, deleted, or
//! created late is read as it is now; a directory or unreadable file falls back to free RAM and
//! verbose says why; and a program that closes descriptors it did not open never has pagewise
//! close (or read) its own files afterwards.
//!
//! Each case that could hang runs in a child process with a deadline.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::Duration;

use common::*;
use pagewise::{Config, PageAlloc, Prefetch, Release};

const CALM: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
const BUSY: &str = "some avg10=90.00 avg60=90.00 avg300=90.00 total=900000000\n\
                    full avg10=80.00 avg60=80.00 avg300=80.00 total=800000000\n";

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pagewise-src-{}-{name}", std::process::id()))
}

fn leak_cstr(p: &std::path::Path) -> &'static CStr {
    let c = CString::new(p.to_str().unwrap()).unwrap();
    Box::leak(c.into_boxed_c_str())
}

/// A large alloc and free, which reads the pressure source under `adaptive`.
fn churn(a: &PageAlloc, size: usize) {
    let l = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: non-zero size; freed at once with the same layout.
    unsafe {
        let p = a.alloc(l);
        assert!(!p.is_null());
        p.write(1);
        a.dealloc(p, l);
    }
}

/// Frees with the pressure source read at each one (`adaptive`, no background thread).
fn adaptive(file: &'static CStr) -> PageAlloc {
    PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(Release::Adaptive)
            .prefetch(Prefetch::None)
            .background(false)
            .decay_ms(None)
            .pressure_file(file),
    )
}

/// `pressure_on` after a free made more than one read interval after the previous one.
fn pressure_after_free(a: &PageAlloc) -> u64 {
    std::thread::sleep(Duration::from_millis(25));
    churn(a, MIB);
    a.stats().pressure_on
}

/// Environment of a child: variables set (`Some`) or removed (`None`).
type Env<'a> = Vec<(&'a str, Option<&'a str>)>;

const FIFO_TEST: &str = "a_fifo_without_a_writer_hangs_nothing";

fn fifo_child(mode: &str) {
    let a = PageAlloc::new();
    match mode {
        "fifo-verbose" | "fifo-adaptive" | "fifo-nobg" => {
            for _ in 0..5 {
                churn(&a, 4 * MIB);
                std::thread::sleep(Duration::from_millis(15));
            }
        }
        "fifo-decay" => {
            churn(&a, MIB);
            let drained = wait_until(Duration::from_millis(2500), || a.stats().cached_bytes == 0);
            assert!(
                drained,
                "the background thread must decay the cache: {}",
                a.stats()
            );
        }
        _ => unreachable!("{mode}"),
    }
    println!("{mode}: done; {}", a.stats());
}

#[test]
fn a_fifo_without_a_writer_hangs_nothing() {
    if let Some(mode) = child_mode() {
        if mode.starts_with("fifo-") {
            fifo_child(&mode);
        }
        return;
    }
    let fifo = temp_path("fifo");
    let _ = std::fs::remove_file(&fifo);
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let path = fifo.to_str().unwrap();
    let cases: [(&str, Env); 4] = [
        ("fifo-verbose", vec![("PAGEWISE_VERBOSE", Some("1"))]),
        (
            "fifo-adaptive",
            vec![("PAGEWISE_RELEASE", Some("adaptive"))],
        ),
        (
            "fifo-nobg",
            vec![
                ("PAGEWISE_BACKGROUND", Some("0")),
                ("PAGEWISE_RELEASE", Some("adaptive")),
            ],
        ),
        ("fifo-decay", vec![("PAGEWISE_DECAY_MS", Some("200"))]),
    ];
    for (mode, mut env) in cases {
        env.push(("PAGEWISE_PRESSURE_FILE", Some(path)));
        let out = run_child(FIFO_TEST, mode, &env, Duration::from_secs(20));
        assert!(out.status.success(), "{mode}:\n{}", out.describe());
        if mode == "fifo-verbose" {
            assert!(
                out.stderr.contains("is a FIFO, not a regular file")
                    && out.stderr.contains("free RAM"),
                "verbose must say the FIFO is not used and what is:\n{}",
                out.describe()
            );
        }
    }
    std::fs::remove_file(&fifo).unwrap();
}

#[test]
fn a_directory_is_not_taken_for_psi() {
    if child_mode().as_deref() == Some("dir-verbose") {
        churn(&PageAlloc::new(), 4 * MIB);
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let dir = std::env::temp_dir();
    let env = [
        ("PAGEWISE_VERBOSE", Some("1")),
        ("PAGEWISE_PRESSURE_FILE", Some(dir.to_str().unwrap())),
    ];
    let out = run_child(
        "a_directory_is_not_taken_for_psi",
        "dir-verbose",
        &env,
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("is a directory") && out.stderr.contains("free RAM"),
        "verbose must say the directory is not used and what is:\n{}",
        out.describe()
    );
}

#[test]
fn a_replaced_deleted_or_late_file_is_read_as_it_is_now() {
    let path = temp_path("replaced");
    let next = temp_path("replaced-next");
    std::fs::write(&path, CALM).unwrap();
    let a = adaptive(leak_cstr(&path));
    assert_eq!(pressure_after_free(&a), 0, "calm");
    // Renamed over (how PSI-writing tools update a file atomically).
    std::fs::write(&next, BUSY).unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert_eq!(
        pressure_after_free(&a),
        1,
        "busy file renamed over the calm one"
    );
    std::fs::write(&next, CALM).unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert_eq!(pressure_after_free(&a), 0, "calm again");
    // Deleted while busy: the fallback (free RAM, plentiful here), not the old content.
    std::fs::write(&next, BUSY).unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert_eq!(pressure_after_free(&a), 1);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(pressure_after_free(&a), 0, "deleted: free RAM decides");
    // Appears later: read from the next interval on.
    std::fs::write(&path, BUSY).unwrap();
    assert_eq!(pressure_after_free(&a), 1, "a file that appears is read");
    std::fs::remove_file(&path).unwrap();

    let late = temp_path("late");
    let b = adaptive(leak_cstr(&late));
    assert_eq!(pressure_after_free(&b), 0, "missing at first");
    std::fs::write(&late, BUSY).unwrap();
    assert_eq!(
        pressure_after_free(&b),
        1,
        "one failed open must not pin the fallback"
    );
    std::fs::remove_file(&late).unwrap();
}

const FD_TEST: &str = "descriptors_the_program_closed_are_never_closed_again";

fn fd_child() {
    let file = leak_cstr(&temp_path("fd-psi"));
    std::fs::write(file.to_str().unwrap(), CALM).unwrap();
    let a = adaptive(file);
    churn(&a, MIB); // reads the pressure file
                    // A daemon's start-up: close every descriptor it did not open itself.
                    // SAFETY: close_range only closes descriptors; 3.. are none the test needs any more.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    assert_eq!(rc, 0, "close_range: {}", std::io::Error::last_os_error());
    let mine_path = temp_path("fd-mine");
    let mine = std::fs::File::create(&mine_path).unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(mine);
    churn(&a, MIB);
    a.reconfigure(
        Config::DEFAULT
            .release(Release::Adaptive)
            .background(false)
            .pressure_file(file),
    );
    churn(&a, MIB);
    drop(a);
    // SAFETY: fd is the descriptor just opened by this program, owned here.
    let mut mine = unsafe { std::fs::File::from_raw_fd(fd) };
    mine.write_all(b"still mine\n")
        .expect("the program's own descriptor must still be open and its own");
    drop(mine);
    assert_eq!(std::fs::read(&mine_path).unwrap(), b"still mine\n");
    std::fs::remove_file(&mine_path).unwrap();
    std::fs::remove_file(file.to_str().unwrap()).unwrap();
    println!("fd {fd}: still the program's own");
}

#[test]
fn descriptors_the_program_closed_are_never_closed_again() {
    if child_mode().as_deref() == Some("fd") {
        fd_child();
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let out = run_child(FD_TEST, "fd", &[], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.describe());
}
