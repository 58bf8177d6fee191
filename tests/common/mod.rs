//! Helpers shared by the integration tests (each test binary does `mod common;`).
//!
//! Everything here reads the kernel's view of the process directly (`/proc/self/smaps_rollup`,
//! `getrusage`, `/proc/self/maps`) so that the tests do not depend on the library's own
//! accounting when they check what the library did.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;
pub const GIB: usize = 1 << 30;
pub const PAGE: usize = 4096;

// madvise advice values from include/uapi/asm-generic/mman-common.h, spelled out here so the
// tests do not depend on which libc release declares them.
pub const MADV_DONTNEED: libc::c_int = 4;
pub const MADV_FREE: libc::c_int = 8;
pub const MADV_HUGEPAGE: libc::c_int = 14;
pub const MADV_NOHUGEPAGE: libc::c_int = 15;
pub const MADV_COLD: libc::c_int = 20;
pub const MADV_PAGEOUT: libc::c_int = 21;
pub const MADV_POPULATE_READ: libc::c_int = 22;
pub const MADV_POPULATE_WRITE: libc::c_int = 23;

/// Environment variable that tells a re-executed test binary which child mode to run.
pub const CHILD_VAR: &str = "PAGEWISE_TEST_CHILD";

/// Serialises the tests of one binary that look at process-wide counters (smaps_rollup, RSS).
static PROCESS_LOCK: Mutex<()> = Mutex::new(());

/// Takes the process-wide measurement lock (poison is ignored: one failed test must not make
/// every later one fail with a confusing message).
pub fn process_lock() -> MutexGuard<'static, ()> {
    PROCESS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fields of `/proc/self/smaps_rollup` the tests use, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rollup {
    pub rss: u64,
    pub anonymous: u64,
    pub lazy_free: u64,
    pub anon_huge: u64,
}

/// Reads `/proc/self/smaps_rollup` (panics with the reason if it cannot).
pub fn rollup() -> Rollup {
    let text =
        std::fs::read_to_string("/proc/self/smaps_rollup").expect("read /proc/self/smaps_rollup");
    let mut r = Rollup::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(kb) = val.parse::<u64>() else { continue };
        let bytes = kb * 1024;
        match key {
            "Rss:" => r.rss = bytes,
            "Anonymous:" => r.anonymous = bytes,
            "LazyFree:" => r.lazy_free = bytes,
            "AnonHugePages:" => r.anon_huge = bytes,
            _ => {}
        }
    }
    r
}

/// Minor faults of the calling thread so far (`getrusage(RUSAGE_THREAD)`).
pub fn thread_minflt() -> u64 {
    rusage(libc::RUSAGE_THREAD).ru_minflt as u64
}

/// Minor faults of the whole process so far (`getrusage(RUSAGE_SELF)`).
pub fn process_minflt() -> u64 {
    rusage(libc::RUSAGE_SELF).ru_minflt as u64
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: rusage is plain old data, all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; `who` is RUSAGE_SELF or RUSAGE_THREAD.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    ru
}

/// Pins the calling thread to one CPU (the one it runs on now), so that per-CPU kernel
/// batches (the lazy-free LRU batch) are drained by the same CPU that later calls PAGEOUT.
pub fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return;
    }
    // SAFETY: cpu_set_t is a plain bitmask, all-zero is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        // Best effort: failure only means the retry loop may need another round.
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Undoes [`pin_to_current_cpu`]: lets the thread run on every CPU again.
pub fn unpin() {
    // SAFETY: as in pin_to_current_cpu; setting all bits asks for every available CPU.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

// The raw mapping and its page-stepping helpers, shared with the seed experiment.
#[path = "../../examples/common/mapping.rs"]
mod mapping;
// Each test binary uses a subset, as with the rest of this module.
#[allow(unused_imports)]
pub use mapping::{advise, read_pages, touch_pages, Mapping};

/// Index of the first byte in `s` that differs from `v`, if any (memcmp speed).
pub fn first_not(s: &[u8], v: u8) -> Option<usize> {
    let model = [v; CHUNK];
    for (k, c) in s.chunks(CHUNK).enumerate() {
        if c != &model[..c.len()] {
            return c.iter().position(|&b| b != v).map(|i| k * CHUNK + i);
        }
    }
    None
}

/// Deterministic xorshift64* generator (no external crate).
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// The pattern word number `i` of the buffer identified by `id` (never zero). Used directly
/// for `Vec<u64>` contents.
#[inline]
pub fn pattern_word(id: u64, i: usize) -> u64 {
    (id.wrapping_add(1))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
        | 1
}

/// Byte buffers get a pattern made of 4 KiB chunks (counted from the buffer start): every chunk
/// is the template of `id` except its first word, which also encodes the chunk number. So a
/// zeroed, stale (other id) or misplaced (other chunk) page is always detected, while filling
/// and checking run at memcpy/memcmp speed even in debug builds.
const CHUNK: usize = 4096;

fn template(id: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(CHUNK);
    for i in 0..CHUNK / 8 {
        t.extend_from_slice(&pattern_word(id, i).to_ne_bytes());
    }
    t
}

/// First word of chunk `k` of the pattern of `id`.
fn chunk_head(id: u64, k: usize) -> [u8; 8] {
    (pattern_word(id, 0) ^ (k as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) | 1).to_ne_bytes()
}

/// Byte `pos` of the pattern of `id`.
pub fn pattern_byte(id: u64, pos: usize) -> u8 {
    let (k, off) = (pos / CHUNK, pos % CHUNK);
    if off < 8 {
        chunk_head(id, k)[off]
    } else {
        pattern_word(id, off / 8).to_ne_bytes()[off % 8]
    }
}

/// Fills `buf` with the pattern of `id` (see [`CHUNK`]); a prefix of a buffer keeps its
/// pattern through realloc.
pub fn fill_pattern(buf: &mut [u8], id: u64) {
    let t = template(id);
    for (k, c) in buf.chunks_mut(CHUNK).enumerate() {
        let n = c.len();
        c.copy_from_slice(&t[..n]);
        let h = chunk_head(id, k);
        let m = n.min(8);
        c[..m].copy_from_slice(&h[..m]);
    }
}

/// Checks `buf` against the pattern of `id`; returns the first wrong offset.
pub fn check_pattern(buf: &[u8], id: u64) -> Option<usize> {
    let t = template(id);
    for (k, c) in buf.chunks(CHUNK).enumerate() {
        let n = c.len();
        let h = chunk_head(id, k);
        let m = n.min(8);
        if c[..m] != h[..m] || c[m..] != t[m..n] {
            let base = k * CHUNK;
            return (0..n)
                .find(|&i| c[i] != pattern_byte(id, base + i))
                .map(|i| base + i);
        }
    }
    None
}

/// Output of a child run of this test binary.
pub struct ChildOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ChildOutput {
    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {:?}\n--- child stdout ---\n{}\n--- child stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Re-executes the current test binary running only `test` (exactly), with `CHILD_VAR=mode`
/// and the given extra environment (`None` values are removed). Every inherited `PAGEWISE_*`
/// variable is removed first so the child sees only what the test sets. Waits at most
/// `timeout`, then kills the child and panics.
pub fn run_child(
    test: &str,
    mode: &str,
    env: &[(&str, Option<&str>)],
    timeout: Duration,
) -> ChildOutput {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PAGEWISE_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env(CHILD_VAR, mode);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().expect("spawn child test process");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => break st,
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let so = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
                let se = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
                panic!(
                    "child {test} (mode {mode}) did not finish within {timeout:?}; killed\n\
                     --- child stdout ---\n{so}\n--- child stderr ---\n{se}"
                );
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    ChildOutput {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// The child mode this process was started in, if any.
pub fn child_mode() -> Option<String> {
    std::env::var(CHILD_VAR).ok()
}

/// Lines of the private anonymous read-write mappings of this process from /proc/self/maps
/// (start, end), skipping [stack], [vvar], [vdso], [vsyscall] and file-backed ones. Reads the
/// file with raw syscalls into a fixed buffer so it can be called from anywhere.
pub fn anon_rw_mappings(out: &mut Vec<(usize, usize)>) {
    out.clear();
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let name = f.next().unwrap_or("");
        if !perms.starts_with("rw") || !perms.ends_with('p') || inode != "0" {
            continue;
        }
        if name.starts_with('[') && name != "[heap]" {
            // [stack], [vvar], [vdso], [vsyscall], [anon:...] named regions of other kinds.
            if !name.starts_with("[anon:") {
                continue;
            }
        } else if !name.is_empty() && name != "[heap]" {
            continue; // file-backed
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        out.push((a, b));
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The THP mode in force: "always", "madvise" or "never" (None if unreadable).
pub fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_string())
}

pub fn mib(b: u64) -> f64 {
    b as f64 / MIB as f64
}

/// `alloc_zeroed` or `alloc`, as `zeroed` says.
///
/// # Safety
/// As for `GlobalAlloc::alloc`: `layout` has a non-zero size.
pub unsafe fn alloc_maybe_zeroed<A: std::alloc::GlobalAlloc>(
    a: &A,
    layout: std::alloc::Layout,
    zeroed: bool,
) -> *mut u8 {
    // SAFETY: the caller guarantees a non-zero size.
    unsafe {
        if zeroed {
            a.alloc_zeroed(layout)
        } else {
            a.alloc(layout)
        }
    }
}

/// Panics (naming `what`) unless every byte of a block handed out zeroed reads zero; then writes
/// a pattern over all of it and reads it back, so that every page of it is proven usable.
pub fn assert_zeroed_and_writable(block: &mut [u8], what: &str) {
    if let Some(i) = block.iter().position(|&b| b != 0) {
        panic!("{what}: byte {i} of a zeroed block is {:#x}", block[i]);
    }
    for (i, b) in block.iter_mut().enumerate() {
        *b = i as u8;
    }
    if let Some(i) = block.iter().enumerate().position(|(i, &b)| b != i as u8) {
        panic!("{what}: byte {i} did not keep what was written");
    }
}

/// An allocator that keeps every freed range resident (`retain`), with no decay and no background
/// thread, so that a test decides when the cache changes; the environment is ignored.
pub fn retain_no_decay(prefetch: pagewise::Prefetch) -> pagewise::PageAlloc {
    use pagewise::{Config, PageAlloc, Release};
    PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(Release::Retain)
            .prefetch(prefetch)
            .decay_ms(None)
            .background(false),
    )
}
