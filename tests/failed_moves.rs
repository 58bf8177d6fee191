//! A page move the kernel refuses (issue #20). A block bigger than any cached range gets the
//! pages of smaller resident ranges moved into it with `mremap(MREMAP_FIXED)`; near
//! `vm.max_map_count` the kernel refuses such a move with `ENOMEM`, either before it touches the
//! destination (the usual case) or after unmapping it. Each case is made to happen with a seccomp
//! filter in a child process (filters cannot be removed), on every move:
//!
//! - `fail`: the filter answers `ENOMEM`; nothing is unmapped.
//! - `unmap`: the filter traps, and the `SIGSYS` handler unmaps the destination, then answers
//!   `ENOMEM`, as a kernel that fails after its `do_munmap` does.
//! - `race`: as `unmap`, and the handler also maps a page of its own at the destination, as
//!   another thread may between the failed move and pagewise's repair: that page is not
//!   pagewise's and must survive untouched, and must not end up inside a block.
//!
//! In every case each block is served, zeroed and wholly writable, no mapping is left in any
//! range pagewise handed out once the cache is purged, and nothing panics. CI also runs this file
//! in a debug build, where `os`'s `debug_assert`s would catch an empty `munmap`.

#![cfg(target_arch = "x86_64")]

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::*;
use pagewise::Prefetch;

/// `mremap`'s flag that names a destination (include/uapi/linux/mman.h).
const MREMAP_FIXED: u32 = 2;

/// Pages the `race` handler mapped at a destination, each holding [`RACER_MARK`].
static RACERS: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static RACER_COUNT: AtomicUsize = AtomicUsize::new(0);
const RACER_MARK: u64 = 0x5241_4345_5221_2121;
/// What the `SIGSYS` handler does: 1 `unmap`, 2 `race`.
static HANDLER_MODE: AtomicUsize = AtomicUsize::new(0);

/// Installs a seccomp filter on this thread (and threads it starts later) for `mremap` calls
/// with `MREMAP_FIXED`: `ret` (`SECCOMP_RET_ERRNO | ENOMEM` or `SECCOMP_RET_TRAP`).
fn filter_fixed_mremap(ret: u32) {
    // Classic BPF over struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }.
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
    const JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let prog = [
        f(LD_W_ABS, 0, 0, 4),
        f(JEQ_K, 0, 5, AUDIT_ARCH_X86_64),
        f(LD_W_ABS, 0, 0, 0),
        f(JEQ_K, 0, 3, libc::SYS_mremap as u32),
        f(LD_W_ABS, 0, 0, 16 + 3 * 8), // args[3], flags (low half, little-endian)
        f(JSET_K, 0, 1, MREMAP_FIXED),
        f(RET_K, 0, 0, ret),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut _,
    };
    // SAFETY: prctl with valid arguments; fprog points to a live program for the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

/// The trapped `mremap`: unmaps its destination (`new_addr`, `new_len`), in `race` mode maps a
/// marked page there, and makes the call return `-ENOMEM`. Only syscalls and atomics: it runs in a
/// signal handler.
extern "C" fn on_sigsys(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler; the registers hold
    // the trapped syscall's arguments (x86-64: rdi, rsi, rdx, r10, r8).
    unsafe {
        let uc = &mut *(ctx as *mut libc::ucontext_t);
        let g = &mut uc.uc_mcontext.gregs;
        let (new_len, new_addr) = (g[libc::REG_RDX as usize] as usize, g[libc::REG_R8 as usize]);
        libc::munmap(new_addr as *mut libc::c_void, new_len);
        if HANDLER_MODE.load(SeqCst) == 2 {
            let q = libc::mmap(
                new_addr as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            );
            if q as i64 == new_addr {
                (q as *mut u64).write(RACER_MARK);
                let i = RACER_COUNT.fetch_add(1, SeqCst);
                if i < RACERS.len() {
                    RACERS[i].store(q as usize, SeqCst);
                }
            }
        }
        g[libc::REG_RAX as usize] = -(libc::ENOMEM as i64);
    }
}

fn install_trap(mode: usize) {
    HANDLER_MODE.store(mode, SeqCst);
    // SAFETY: a plain sigaction with an SA_SIGINFO handler of the right signature.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()), 0);
    }
    filter_fixed_mremap(libc::SECCOMP_RET_TRAP);
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// The child: ten rounds of "free two smaller blocks, then ask for a bigger zeroed one" (and purge), every
/// move failing as `mode` says; then checks that every block was whole and that nothing is left
/// mapped where pagewise's blocks were.
fn churn_with_failing_moves(mode: &str, prefetch: Prefetch) {
    let a = retain_no_decay(prefetch);
    match mode {
        "fail" => filter_fixed_mremap(libc::SECCOMP_RET_ERRNO | libc::ENOMEM as u32),
        "unmap" => install_trap(1),
        "race" => install_trap(2),
        _ => unreachable!("{mode}"),
    }
    let (x, y, big) = (layout(3 * MIB), layout(5 * MIB / 2), layout(16 * MIB));
    let mut handed_out: Vec<(usize, usize)> = Vec::new();
    for round in 0..10 {
        // SAFETY: blocks are used within their sizes and freed with their layouts.
        unsafe {
            let (p, q) = (a.alloc(x), a.alloc(y));
            assert!(!p.is_null() && !q.is_null());
            handed_out.extend([(p as usize, x.size()), (q as usize, y.size())]);
            p.write_bytes(0xAB, x.size());
            q.write_bytes(0xCD, y.size());
            a.dealloc(p, x);
            a.dealloc(q, y);
            let r = a.alloc_zeroed(big);
            assert!(!r.is_null(), "{mode} round {round}: {}", a.stats());
            handed_out.push((r as usize, big.size()));
            let block = std::slice::from_raw_parts_mut(r, big.size());
            assert_zeroed_and_writable(block, &format!("{mode} round {round}"));
            a.dealloc(r, big);
        }
        a.purge(); // so that the next round misses again
    }
    let s = a.stats();
    assert!(
        s.failed_moves >= 10,
        "{mode}: every round tries a move: {s}"
    );
    assert_eq!(s.moved_ranges, 0, "{mode}: no move can succeed: {s}");
    a.purge();
    let s = a.stats();
    assert_eq!((s.live_bytes, s.cached_bytes), (0, 0), "{mode}: {s}");

    let racers: Vec<usize> = (0..RACER_COUNT.load(SeqCst).min(RACERS.len()))
        .map(|i| RACERS[i].load(SeqCst))
        .collect();
    if mode == "race" {
        assert!(
            !racers.is_empty(),
            "the handler never mapped a page of its own"
        );
    }
    for &page in &racers {
        // SAFETY: the handler mapped this page and pagewise must have left it alone.
        assert_eq!(
            unsafe { (page as *const u64).read() },
            RACER_MARK,
            "{page:#x}"
        );
    }
    let mut maps = Vec::new();
    anon_rw_mappings(&mut maps);
    for &(start, end) in &maps {
        for &(b, len) in &handed_out {
            let overlaps = start < b + len && b < end;
            let only_a_racer = racers.iter().any(|&r| start == r && end == r + PAGE);
            assert!(
                !overlaps || only_a_racer,
                "{mode}: mapping {start:#x}-{end:#x} left over a block at {b:#x}+{len:#x} \
                 after purge: {s}"
            );
        }
    }
    println!("{mode} {prefetch:?}: {s}");
}

#[test]
fn a_refused_move_leaves_no_mapping_and_the_block_is_served() {
    if let Some(m) = child_mode() {
        let (mode, prefetch) = m.split_once(':').unwrap();
        let prefetch = if prefetch == "huge" {
            Prefetch::HugePage
        } else {
            Prefetch::None
        };
        churn_with_failing_moves(mode, prefetch);
        return;
    }
    for mode in ["fail", "unmap", "race"] {
        for prefetch in ["none", "huge"] {
            let out = run_child(
                "a_refused_move_leaves_no_mapping_and_the_block_is_served",
                &format!("{mode}:{prefetch}"),
                &[],
                Duration::from_secs(60),
            );
            assert!(
                out.status.success(),
                "{mode} {prefetch}: {}",
                out.describe()
            );
            assert!(
                out.stdout.contains(&format!("{mode} ")),
                "{}",
                out.describe()
            );
        }
    }
}
