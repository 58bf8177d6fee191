//! Whose pointer is this? The table of pagewise's live blocks, which `free`, `realloc` and
//! `malloc_usable_size` consult before anything else.
//!
//! A C program hands `free` pointers from glibc and from pagewise alike, with no size, and
//! page-aligned ones from both: every pagewise block starts on a page, and so does glibc's
//! `memalign(4096, n)`. So alignment cannot tell them apart, and reading a header before the
//! block would touch memory that may not be ours (or not be mapped). Instead, like mimalloc's
//! segment map, a table over the address space says for each page whether a pagewise block
//! starts there, and its length and alignment:
//!
//! - the address space (48 bits, which covers x86-64's 47-bit user space and arm64's 48) is cut
//!   into 1 GiB regions; [`LEAVES`] pointers in this library's `.bss` (2 MiB of address space,
//!   resident only where written) each lead to a **leaf** for one region, mapped on first use
//!   (`mmap`, 2 MiB, `MAP_NORESERVE`: only the pages written become resident, one 4 KiB page of
//!   leaf per 2 MiB of address space where blocks start) and never unmapped;
//! - a leaf holds one word per page of its region: 0, or the [`Block`] that starts there;
//! - an address outside the 48 bits, or in a region whose leaf could not be mapped, goes to the
//!   [`SPILL`] slots, a short list looked at only while it holds something (one load otherwise).
//!
//! A lookup is two dependent loads, takes no lock, makes no system call and reads only this
//! table, never the block. Each word is written by exactly one party at a time: the thread that
//! got the block from the engine records it before handing it out, and the one freeing it
//! clears it before the engine may unmap, cache or reuse the pages.
//!
//! **Why a pointer pagewise did not hand out is never unmapped or cached.** The engine is only
//! ever given back a pointer whose word was non-zero and that the caller itself took out of
//! the table (`take` and `begin_move` clear the word). A word is non-zero only between `record`
//! (after the engine returned that address, still mapped by the engine) and that `take` or
//! `begin_move` (before the engine may release the address); a `realloc` that keeps the block
//! where it was writes the word again, one that moved it never writes `p`'s word again, since
//! another thread may have recorded a new block at `p` by then. While the word is
//! non-zero the pages at that address are a live pagewise mapping, so no other allocator can
//! have handed out the same address: a glibc pointer equal to it cannot exist then, and one
//! that appears later (glibc mapping the same address again after the engine released it) finds
//! the word already 0. A pointer that is not page-aligned is glibc's without a look at the table.

use core::alloc::Layout;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// The page size pagewise maps in (and the granularity of the table).
pub(crate) const PAGE: usize = 4096;
const PAGE_SHIFT: u32 = 12;
/// Addresses the leaves cover.
const ADDR_BITS: u32 = 48;
/// Each leaf covers 1 GiB.
const REGION_SHIFT: u32 = 30;
/// Leaf pointers: one per 1 GiB region of the 48-bit address space.
pub(crate) const LEAVES: usize = 1 << (ADDR_BITS - REGION_SHIFT);
/// Words per leaf: one per page of its region.
const LEAF_WORDS: usize = 1 << (REGION_SHIFT - PAGE_SHIFT);
const LEAF_BYTES: usize = LEAF_WORDS * core::mem::size_of::<u64>();
/// Spill slots: blocks that no leaf can hold.
pub(crate) const SPILL: usize = 64;

/// A word's low bits: the alignment's log2; the length, a multiple of the page, has them zero.
const ALIGN_BITS: u64 = 0x3f;

/// A pagewise block as its allocation saw it: the length (whole pages, what the engine was asked
/// for and what `malloc_usable_size` says) and the alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) len: usize,
    pub(crate) align: usize,
}

impl Block {
    /// The layout the block was allocated with (and must be freed and resized with).
    pub(crate) fn layout(self) -> Layout {
        // SAFETY: built from a Layout in `word`'s callers' `Block::from_layout` (non-zero
        // power-of-two alignment, size within isize::MAX when rounded).
        unsafe { Layout::from_size_align_unchecked(self.len, self.align) }
    }

    pub(crate) fn from_layout(l: Layout) -> Block {
        Block {
            len: l.size(),
            align: l.align(),
        }
    }

    fn word(self) -> u64 {
        debug_assert!(self.len % PAGE == 0 && self.len != 0);
        self.len as u64 | u64::from(self.align.trailing_zeros())
    }

    fn from_word(w: u64) -> Option<Block> {
        if w == 0 {
            return None;
        }
        Some(Block {
            len: (w & !(PAGE as u64 - 1)) as usize,
            align: 1 << (w & ALIGN_BITS),
        })
    }
}

/// A block taken out of the table while a `realloc` may move it ([`Owners::begin_move`]).
#[derive(Debug)]
pub(crate) struct Moving {
    pub(crate) block: Block,
    /// The spill slot it keeps reserved, if it was spilled.
    slot: Option<usize>,
}

/// The table (one per process: [`OWNERS`]).
pub(crate) struct Owners {
    leaves: [AtomicPtr<AtomicU64>; LEAVES],
    spill_addr: [AtomicUsize; SPILL],
    spill_word: [AtomicU64; SPILL],
    spilled: AtomicUsize,
}

pub(crate) static OWNERS: Owners = Owners::new();

/// A reserved spill slot's address until its word is written.
const RESERVED: usize = 1;

impl Owners {
    const fn new() -> Owners {
        Owners {
            leaves: [const { AtomicPtr::new(ptr::null_mut()) }; LEAVES],
            spill_addr: [const { AtomicUsize::new(0) }; SPILL],
            spill_word: [const { AtomicU64::new(0) }; SPILL],
            spilled: AtomicUsize::new(0),
        }
    }

    /// The word for `addr` (page-aligned) in an existing leaf.
    #[inline]
    fn word_of(&self, addr: usize) -> Option<&AtomicU64> {
        let leaf = self
            .leaves
            .get(addr >> REGION_SHIFT)?
            .load(Ordering::Acquire);
        if leaf.is_null() {
            return None;
        }
        let i = (addr >> PAGE_SHIFT) & (LEAF_WORDS - 1);
        // SAFETY: a non-null leaf is a live mapping of LEAF_WORDS words (never unmapped once
        // published), and i < LEAF_WORDS.
        Some(unsafe { &*leaf.add(i) })
    }

    /// The word for `addr`, mapping its leaf if need be; `None` outside the leaves' 48 bits or
    /// if the kernel refuses the leaf.
    fn word_or_new(&self, addr: usize) -> Option<&AtomicU64> {
        if let Some(w) = self.word_of(addr) {
            return Some(w);
        }
        let slot = self.leaves.get(addr >> REGION_SHIFT)?;
        let fresh = map_leaf()?;
        if let Err(theirs) =
            slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // Another thread mapped this region's leaf first: use theirs.
            // SAFETY: `fresh` was mapped above with LEAF_BYTES and never published.
            unsafe { libc::munmap(fresh.cast(), LEAF_BYTES) };
            debug_assert!(!theirs.is_null());
        }
        self.word_of(addr)
    }

    /// Records the block `b` just allocated at `p` by the engine, before it is handed out.
    /// False if neither a leaf nor a spill slot can hold it: the caller must not hand it out.
    pub(crate) fn record(&self, p: *mut u8, b: Block) -> bool {
        let addr = p as usize;
        if let Some(w) = self.word_or_new(addr) {
            w.store(b.word(), Ordering::Release);
            return true;
        }
        self.spill(addr, b.word())
    }

    fn spill(&self, addr: usize, word: u64) -> bool {
        for (a, w) in self.spill_addr.iter().zip(&self.spill_word) {
            if a.load(Ordering::Relaxed) == 0
                && a.compare_exchange(0, RESERVED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                w.store(word, Ordering::Relaxed);
                a.store(addr, Ordering::Release);
                self.spilled.fetch_add(1, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// The word that records the block at `addr`, if any, and its spill slot's address.
    #[inline]
    fn find(&self, addr: usize) -> Option<(&AtomicU64, Option<&AtomicUsize>)> {
        if addr & (PAGE - 1) != 0 {
            return None; // every block starts on a page
        }
        if let Some(w) = self.word_of(addr) {
            if w.load(Ordering::Acquire) != 0 {
                return Some((w, None));
            }
        }
        if self.spilled.load(Ordering::Acquire) == 0 {
            return None;
        }
        let i = self
            .spill_addr
            .iter()
            .position(|a| a.load(Ordering::Acquire) == addr)?;
        Some((&self.spill_word[i], Some(&self.spill_addr[i])))
    }

    /// The pagewise block at `p`, if `p` is one (live, not being moved). Reads only the table.
    #[inline]
    pub(crate) fn get(&self, p: *mut u8) -> Option<Block> {
        let (w, _) = self.find(p as usize)?;
        Block::from_word(w.load(Ordering::Acquire))
    }

    /// Takes the block at `p` out of the table (it is about to be freed): `None` if `p` is not a
    /// pagewise block.
    #[inline]
    pub(crate) fn take(&self, p: *mut u8) -> Option<Block> {
        let (w, spill) = self.find(p as usize)?;
        let b = Block::from_word(w.load(Ordering::Acquire))?;
        w.store(0, Ordering::Release);
        if let Some(a) = spill {
            self.unspill(a);
        }
        Some(b)
    }

    fn unspill(&self, a: &AtomicUsize) {
        a.store(0, Ordering::Release);
        self.spilled.fetch_sub(1, Ordering::Release);
    }

    /// Takes the block at `p` out of the table for a `realloc`, keeping its spill slot (if it
    /// has one) reserved: [`Owners::end_move`] puts it back, resized in place or not moved at
    /// all, or lets it go. While it moves, `p` reads as no block. `None` if `p` is not a
    /// pagewise block.
    ///
    /// The word is cleared *before* the engine may release `p`, and nothing writes to `p`'s word
    /// once the block has left `p`: another thread may get `p` from the engine at once and
    /// record a new block there, which a late clear would erase.
    pub(crate) fn begin_move(&self, p: *mut u8) -> Option<Moving> {
        let (w, spill) = self.find(p as usize)?;
        let block = Block::from_word(w.load(Ordering::Acquire))?;
        let slot = match spill {
            None => {
                w.store(0, Ordering::Release);
                None
            }
            Some(a) => {
                a.store(RESERVED, Ordering::Release);
                self.spill_addr.iter().position(|x| ptr::eq(x, a))
            }
        };
        Some(Moving { block, slot })
    }

    /// Ends a move begun at `p`: the block is at `p` again as `now` (resized in place, or not
    /// moved), or, with `None`, it left `p` (and `p`'s word is not touched).
    pub(crate) fn end_move(&self, p: *mut u8, m: Moving, now: Option<Block>) {
        match (m.slot, now) {
            (None, Some(b)) => {
                // p is still this block's: its leaf exists (the block was recorded in it).
                if let Some(w) = self.word_of(p as usize) {
                    w.store(b.word(), Ordering::Release);
                }
            }
            (None, None) => {}
            (Some(i), Some(b)) => {
                self.spill_word[i].store(b.word(), Ordering::Relaxed);
                self.spill_addr[i].store(p as usize, Ordering::Release);
            }
            (Some(i), None) => self.unspill(&self.spill_addr[i]),
        }
    }

    /// How many blocks sit in spill slots (for tests).
    #[cfg(test)]
    fn spilled(&self) -> usize {
        self.spilled.load(Ordering::Relaxed)
    }
}

/// A zeroed leaf, or `None` if the kernel refuses the mapping.
fn map_leaf() -> Option<*mut AtomicU64> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected. NORESERVE:
    // only the few pages written are charged.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            LEAF_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table never dereferences the addresses it records, so any page-aligned number works
    // as a block address here.
    const BASE: usize = 0x5a5a_0000_0000;

    fn block(pages: usize, align: usize) -> Block {
        Block::from_layout(Layout::from_size_align(pages * PAGE, align).unwrap())
    }

    #[test]
    fn a_recorded_block_is_found_and_taken_once() {
        let t = &OWNERS;
        let p = (BASE + 7 * PAGE) as *mut u8;
        let b = block(64, 1 << 30);
        assert!(t.record(p, b));
        assert_eq!(t.get(p), Some(b));
        // Neighbouring pages, inside the block or not, are no block.
        for q in [BASE + 6 * PAGE, BASE + 8 * PAGE, BASE + 7 * PAGE + 16] {
            assert_eq!(t.get(q as *mut u8), None, "{q:#x}");
        }
        assert_eq!(t.take(p), Some(b));
        assert_eq!(t.take(p), None, "taken twice");
        assert_eq!(t.get(p), None);
    }

    #[test]
    fn addresses_never_recorded_are_not_ours_and_map_no_leaf() {
        let t = &OWNERS;
        // A region no test records in: its leaf is never mapped by a lookup.
        let q = (0x3000_0000_0000usize + 5 * PAGE) as *mut u8;
        assert_eq!(t.get(q), None);
        assert_eq!(t.take(q), None);
        assert!(t.leaves[0x3000_0000_0000 >> REGION_SHIFT]
            .load(Ordering::Relaxed)
            .is_null());
        assert_eq!(t.take(ptr::null_mut()), None);
        assert_eq!(t.take(usize::MAX as *mut u8), None);
    }

    #[test]
    fn a_moving_block_reads_as_none_and_comes_back_or_goes() {
        let t = &OWNERS;
        let p = (BASE + (1 << 30) + 3 * PAGE) as *mut u8;
        let b = block(100, 16);
        assert!(t.record(p, b));
        let m = t.begin_move(p).unwrap();
        assert_eq!(m.block, b);
        assert_eq!(
            t.get(p),
            None,
            "moving: not a block for free or usable_size"
        );
        assert!(t.begin_move(p).is_none());
        let grown = block(200, 16);
        t.end_move(p, m, Some(grown));
        assert_eq!(t.get(p), Some(grown));
        let m = t.begin_move(p).unwrap();
        // The block moved away, and another thread got p from the engine and recorded it
        // before this one finished: the new record stands.
        let other = block(3, PAGE);
        assert!(t.record(p, other));
        t.end_move(p, m, None);
        assert_eq!(t.get(p), Some(other));
        assert_eq!(t.take(p), Some(other));
        assert_eq!(t.take(p), None);
    }

    #[test]
    fn addresses_beyond_48_bits_spill_and_leave_the_spill_when_freed() {
        let t = &OWNERS;
        let high = |i: usize| ((1usize << 52) + i * PAGE) as *mut u8;
        let b = block(1, PAGE);
        for i in 0..SPILL {
            assert!(t.record(high(i), b), "slot {i}");
        }
        assert_eq!(t.spilled(), SPILL);
        assert!(
            !t.record(high(SPILL), b),
            "full: the caller must not hand it out"
        );
        assert_eq!(t.get(high(SPILL)), None);
        let m = t.begin_move(high(3)).unwrap();
        assert_eq!(m.block, b);
        assert_eq!(t.get(high(3)), None);
        assert!(!t.record(high(SPILL), b), "the moving block keeps its slot");
        t.end_move(high(3), m, Some(b));
        for i in 0..SPILL {
            assert_eq!(t.take(high(i)), Some(b), "slot {i}");
        }
        assert_eq!(t.spilled(), 0);
        assert_eq!(t.take(high(0)), None);
    }

    #[test]
    fn threads_recording_and_taking_distinct_blocks_never_see_each_others() {
        let region = BASE + (2 << 30);
        std::thread::scope(|s| {
            for th in 0..4usize {
                s.spawn(move || {
                    for round in 0..2000usize {
                        let p = (region + (th * 4096 + round % 4096) * PAGE) as *mut u8;
                        let b = block(1 + round % 7, 1 << (round % 13));
                        assert!(OWNERS.record(p, b));
                        assert_eq!(OWNERS.get(p), Some(b));
                        assert_eq!(OWNERS.take(p), Some(b));
                        assert_eq!(OWNERS.get(p), None);
                    }
                });
            }
        });
    }
}
