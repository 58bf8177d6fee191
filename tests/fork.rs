//! fork() from a process whose threads are allocating large blocks, under every release policy
//! (one child test process per policy, with `PAGEWISE_RELEASE` set, since the global allocator
//! reads the environment once). Each fork child allocates large and small memory, frees a block
//! inherited from the parent, and `_exit`s; the parent waits with a bound and kills a child that
//! hangs (a lock or busy flag inherited from a thread that does not exist in the child).
//!
//! `PAGEWISE_FORKS=<n>` sets the number of forks per policy (default 50).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use pagewise::{PageAlloc, Prefetch, Release};

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

const TEST: &str = "fork_while_threads_allocate";
const CHILD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a fork child does; returns an exit code (0 = all good). Never panics on purpose.
fn in_fork_child(inherited: &[u64]) -> i32 {
    // The parent's 8 MiB block, inherited: intact (it is freed with the child).
    for (i, w) in inherited.iter().enumerate() {
        if *w != pattern_word(0xF0, i) {
            return 2;
        }
    }
    // Large allocations: zeroed, filled, grown, shrunk.
    let z = vec![0u8; 4 * MIB];
    if first_not(&z, 0).is_some() {
        return 3;
    }
    // 512 KiB, then grown to 4.5 MiB (realloc of a large block in the child).
    let mut v: Vec<u64> = (0..(64 * KIB)).map(|i| pattern_word(0xC1, i)).collect();
    v.reserve_exact(512 * KIB);
    v.extend((64 * KIB..(64 * KIB + 512 * KIB)).map(|i| pattern_word(0xC1, i)));
    for (i, w) in v.iter().enumerate() {
        if *w != pattern_word(0xC1, i) {
            return 4;
        }
    }
    v.truncate(100);
    v.shrink_to_fit();
    if v.iter()
        .enumerate()
        .any(|(i, w)| *w != pattern_word(0xC1, i))
    {
        return 5;
    }
    // Small allocations.
    let s: Vec<String> = (0..1000).map(|i| format!("small {i}")).collect();
    if s[999] != "small 999" {
        return 6;
    }
    // Straight through GlobalAlloc too.
    let l = Layout::from_size_align(3 * MIB, 2 * MIB).unwrap();
    // SAFETY: non-zero size; freed below with the same layout.
    unsafe {
        let p = GLOBAL.alloc_zeroed(l);
        if p.is_null() || p as usize % (2 * MIB) != 0 {
            return 7;
        }
        if first_not(std::slice::from_raw_parts(p, 3 * MIB), 0).is_some() {
            return 8;
        }
        GLOBAL.dealloc(p, l);
    }
    drop((z, v, s));
    0
}

/// Allocating thread: keeps a few large blocks with patterns, checks them, frees, reallocs.
fn churn(t: u64, stop: &AtomicBool, ops: &AtomicU64) {
    let mut rng = XorShift::new(0xF00D + t);
    let mut keep: Vec<(u64, Vec<u64>)> = Vec::new();
    let mut id = t << 32;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let words = rng.range(32 * KIB as u64, 256 * KIB as u64) as usize;
        keep.push((id, (0..words).map(|i| pattern_word(id, i)).collect()));
        if keep.len() > 4 {
            let (kid, mut v) = keep.swap_remove(rng.range(0, 4) as usize);
            for (i, w) in v.iter().enumerate() {
                assert_eq!(*w, pattern_word(kid, i), "churn thread {t}: word {i} lost");
            }
            v.resize(rng.range(1, 256 * KIB as u64) as usize, 0);
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

fn child_main() {
    let forks: usize = std::env::var("PAGEWISE_FORKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let c = GLOBAL.config();
    let inherited: Vec<u64> = (0..MIB).map(|i| pattern_word(0xF0, i)).collect();
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let mut worst = Duration::ZERO;
    std::thread::scope(|sc| {
        for t in 0..3 {
            let (stop, ops) = (&stop, &ops);
            sc.spawn(move || churn(t, stop, ops));
        }
        let _stop_on_exit = StopOnDrop(&stop);
        for n in 0..forks {
            // Let the threads get going between forks.
            std::thread::sleep(Duration::from_millis(2));
            // SAFETY: fork in a multi-threaded process; the child only allocates through the
            // allocator under test (which registers an atfork handler) and glibc malloc (fork
            // safe), and leaves with _exit without running destructors or atexit handlers.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                let code = std::panic::catch_unwind(|| in_fork_child(&inherited)).unwrap_or(99);
                // SAFETY: leave the child at once.
                unsafe { libc::_exit(code) };
            }
            let t0 = Instant::now();
            let mut status = 0;
            loop {
                // SAFETY: pid is our child; status is a valid out pointer.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    break;
                }
                assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
                if t0.elapsed() > CHILD_TIMEOUT {
                    // SAFETY: pid is our child; reap it after the kill.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut status, 0);
                    }
                    panic!(
                        "release={}: fork child {n} hung for {CHILD_TIMEOUT:?} (killed): \
                         it inherited something held by a thread that is gone",
                        c.get_release().name()
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            worst = worst.max(t0.elapsed());
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "release={}: fork child {n} failed: {}",
                c.get_release().name(),
                if libc::WIFEXITED(status) {
                    format!(
                        "exit code {} (2 inherited block, 3 zeroed, 4 grow, 5 shrink, \
                         6 small, 7 aligned alloc, 8 zeroed aligned, 99 panic)",
                        libc::WEXITSTATUS(status)
                    )
                } else {
                    format!("killed by signal {}", libc::WTERMSIG(status))
                }
            );
        }
    });
    for (i, w) in inherited.iter().enumerate() {
        assert_eq!(
            *w,
            pattern_word(0xF0, i),
            "parent's block changed at word {i}"
        );
    }
    println!(
        "FORKS release={} prefetch={}: {forks} forks, all children exited 0, slowest {:?}, \
         {} allocation rounds by 3 threads meanwhile",
        c.get_release().name(),
        c.get_prefetch().name(),
        worst,
        ops.load(Ordering::Relaxed)
    );
}

struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn fork_while_threads_allocate() {
    if child_mode().as_deref() == Some("fork") {
        child_main();
        return;
    }
    for (i, r) in Release::ALL.into_iter().enumerate() {
        let p = Prefetch::ALL[i % Prefetch::ALL.len()];
        let out = run_child(
            TEST,
            "fork",
            &[
                ("PAGEWISE_RELEASE", Some(r.name())),
                ("PAGEWISE_PREFETCH", Some(p.name())),
                ("PAGEWISE_DECAY_MS", Some("20")),
                ("PAGEWISE_CACHE", Some("64M")),
            ],
            Duration::from_secs(180),
        );
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.find("FORKS ").map(|i| l[i..].to_string()));
        assert!(
            out.status.success() && line.is_some(),
            "release={}: fork child test failed\n{}",
            r.name(),
            out.describe()
        );
        println!("{}", line.unwrap());
    }
}
