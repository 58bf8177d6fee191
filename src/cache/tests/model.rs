//! Random operation sequences (a deterministic xorshift) against a model: which pages of a small
//! arena are cached, and in which state. After every operation the cache must hold exactly the
//! model's pages, pass [`Cache::check`], and count what it holds; every take must return what
//! the rules promise (best fit, shortest run, oldest, smallest...), computed here from the
//! ranges the slots held before it.

use super::*;
use crate::os::PAGE;

/// Where the arena starts (page-aligned, far from real mappings: nothing is ever touched).
const BASE: usize = 0x4000_0000;
/// Pages in the arena: enough to fill every slot and more, so that inserts also hit full slots.
const ARENA_PAGES: usize = 512;

pub(super) struct Xorshift(pub(super) u64);

impl Xorshift {
    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn pages(&mut self) -> Pages {
        Pages::from_index(self.below(3))
    }
}

/// The ranges the slots hold now, by address.
pub(super) fn full_ranges(c: &Cache) -> Vec<Range> {
    let mut v: Vec<Range> = c.slots.iter().filter_map(|s| s.peek()).collect();
    v.sort_by_key(|r| r.addr);
    v
}

/// Every run of `held` (sorted by address): (start, total length, pages).
fn runs(held: &[Range]) -> Vec<(usize, usize, Pages)> {
    let mut out = Vec::new();
    for (i, first) in held.iter().enumerate() {
        let mut total = 0;
        for (j, r) in held.iter().enumerate().skip(i) {
            if j > i && (r.addr != held[j - 1].end() || r.pages != first.pages) {
                break;
            }
            total += r.len;
            out.push((first.addr, total, first.pages));
        }
    }
    out
}

struct Model {
    /// Per page of the arena: its state if cached.
    cached: Vec<Option<Pages>>,
    /// Ranges the test holds (taken out of the cache, or never put in).
    loose: Vec<Range>,
    clock: u64,
}

impl Model {
    fn new(rng: &mut Xorshift) -> Model {
        let mut loose = Vec::new();
        let mut page = 0;
        while page < ARENA_PAGES {
            let n = (1 + rng.below(8)).min(ARENA_PAGES - page);
            loose.push(Range {
                addr: BASE + page * PAGE,
                len: n * PAGE,
                pages: Pages::Resident,
                since_ms: 0,
            });
            page += n;
        }
        Model {
            cached: vec![None; ARENA_PAGES],
            loose,
            clock: 0,
        }
    }

    fn pages_of(r: &Range) -> core::ops::Range<usize> {
        (r.addr - BASE) / PAGE..(r.end() - BASE) / PAGE
    }

    fn cache(&mut self, r: &Range) {
        for p in Model::pages_of(r) {
            assert_eq!(self.cached[p], None, "page {p} cached twice");
            self.cached[p] = Some(r.pages);
        }
    }

    /// Marks `r` taken out of the cache: every page of it was cached, in `r`'s state.
    fn uncache(&mut self, r: &Range) {
        for p in Model::pages_of(r) {
            assert_eq!(self.cached[p], Some(r.pages), "page {p} of {r:x?}");
            self.cached[p] = None;
        }
    }

    /// The cache holds exactly the model's pages, passes `check`, and counts what it holds.
    fn agrees(&self, c: &Cache) {
        let bytes = ok(c);
        let mut in_cache = vec![None; ARENA_PAGES];
        for r in full_ranges(c) {
            for p in Model::pages_of(&r) {
                in_cache[p] = Some(r.pages);
            }
        }
        assert_eq!(in_cache, self.cached);
        let sum = |pages: Pages| {
            let n = self.cached.iter().filter(|&&p| p == Some(pages)).count();
            (n * PAGE) as u64
        };
        let expected = CachedBytes {
            total: sum(Pages::Resident) + sum(Pages::Lazy) + sum(Pages::Zero),
            resident: sum(Pages::Resident),
            lazy: sum(Pages::Lazy),
        };
        assert_eq!(bytes, expected);
    }

    /// Inserts a random piece of a random loose range, in a random state.
    fn insert(&mut self, c: &Cache, rng: &mut Xorshift) {
        if self.loose.is_empty() {
            return;
        }
        let l = self.loose.swap_remove(rng.below(self.loose.len()));
        let n = l.len / PAGE;
        let skip = rng.below(n);
        let take = 1 + rng.below(n - skip);
        let piece = Range {
            addr: l.addr + skip * PAGE,
            len: take * PAGE,
            pages: rng.pages(),
            since_ms: self.clock,
        };
        for (addr, end) in [(l.addr, piece.addr), (piece.end(), l.end())] {
            if end > addr {
                self.loose.push(Range {
                    addr,
                    len: end - addr,
                    ..l
                });
            }
        }
        match c.insert(piece) {
            Ok(()) => self.cache(&piece),
            Err(merged) => {
                // Only when no slot was free even after coalescing; the neighbours came along.
                assert!(c.slots.iter().all(|s| s.is_full()));
                assert!(merged.addr <= piece.addr && merged.end() >= piece.end());
                for side in [
                    Range {
                        len: piece.addr - merged.addr,
                        ..merged
                    },
                    Range {
                        addr: piece.end(),
                        len: merged.end() - piece.end(),
                        ..merged
                    },
                ] {
                    if side.len > 0 {
                        self.uncache(&side);
                    }
                }
                self.loose.push(merged);
            }
        }
    }

    /// `take`: an exact fit if there is one, else the shortest run that fits.
    fn take(&mut self, c: &Cache, rng: &mut Xorshift) {
        let need = (1 + rng.below(12)) * PAGE;
        let align = PAGE << rng.below(4);
        let before = full_ranges(c);
        let fits = |addr, len| fit(addr, len, need, align).is_some();
        let exact = before.iter().any(|r| r.len == need && fits(r.addr, r.len));
        let shortest = runs(&before)
            .into_iter()
            .filter(|&(a, t, _)| fits(a, t))
            .map(|(_, t, _)| t)
            .min();
        let Some((block, head, tail)) = c.take(need, align) else {
            assert_eq!(
                shortest, None,
                "take({need:#x}, {align:#x}) missed in {before:x?}"
            );
            return;
        };
        assert_eq!((block.len, block.addr % align), (need, 0));
        let lo = head.map_or(block.addr, |h| h.addr);
        let hi = tail.map_or(block.end(), |t| t.end());
        assert!(head.is_none_or(|h| h.end() == block.addr && h.pages == block.pages));
        assert!(tail.is_none_or(|t| t.addr == block.end() && t.pages == block.pages));
        assert!(runs(&before).contains(&(lo, hi - lo, block.pages)));
        assert_eq!(hi - lo, if exact { need } else { shortest.unwrap() });
        let latest = before.iter().filter(|r| r.addr >= lo && r.end() <= hi);
        assert_eq!(Some(block.since_ms), latest.map(|r| r.since_ms).max());
        let whole = Range {
            addr: lo,
            len: hi - lo,
            ..block
        };
        self.uncache(&whole);
        self.loose
            .extend([Some(block), head, tail].into_iter().flatten());
    }

    /// `take_at` right after a loose range: a single range's head, or the shortest run.
    fn take_at(&mut self, c: &Cache, rng: &mut Xorshift) {
        let Some(l) = self.loose.get(rng.below(self.loose.len().max(1))) else {
            return;
        };
        let (addr, len) = (l.end(), (1 + rng.below(8)) * PAGE);
        let before = full_ranges(c);
        let single = before.iter().find(|r| r.addr == addr).copied();
        let got = c.take_at(addr, len);
        if let Some(s) = single.filter(|s| s.len >= len) {
            assert_eq!(got, Some((s.pages, None)));
            self.uncache(&Range { len, ..s });
            self.loose.push(Range { len, ..s });
            return;
        }
        let shortest = runs(&before)
            .into_iter()
            .filter(|&(a, t, _)| a == addr && t >= len)
            .min_by_key(|&(_, t, _)| t);
        let Some((_, total, pages)) = shortest else {
            assert_eq!(got, None);
            return;
        };
        let (got_pages, rest) = got.expect("a run covers it");
        assert_eq!(got_pages, pages);
        let expected_rest = (total > len).then_some((addr + len, total - len));
        assert_eq!(rest.map(|r| (r.addr, r.len)), expected_rest);
        let taken = Range {
            addr,
            len,
            pages,
            since_ms: self.clock,
        };
        self.uncache(&Range {
            len: total,
            ..taken
        });
        self.loose.extend([Some(taken), rest].into_iter().flatten());
    }

    /// `drain` of a random share of the ranges.
    fn drain(&mut self, c: &Cache, rng: &mut Xorshift) {
        let salt = rng.below(3);
        let pick = |r: &Range| (r.addr / PAGE + salt) % 3 == 0;
        let before = full_ranges(c);
        let mut taken = Vec::new();
        let n = c.drain(pick, |r| taken.push(r));
        assert_eq!(n, before.iter().filter(|r| pick(r)).count());
        for r in taken {
            assert!(pick(&r) && before.contains(&r));
            self.uncache(&r);
            self.loose.push(r);
        }
    }

    /// One of the `take_min` family, checked against the ranks of what the slots held.
    fn take_ranked(&mut self, c: &Cache, rng: &mut Xorshift) {
        let before = full_ranges(c);
        let (len, min) = ((1 + rng.below(8)) * PAGE, rng.below(4) * PAGE);
        let freed_by = rng.below(self.clock as usize + 1) as u64;
        type Rank = Box<dyn Fn(&Range) -> Option<u64>>;
        let (got, rank): (_, Rank) = match rng.below(4) {
            0 => (c.take_oldest(), Box::new(|r| Some(r.since_ms))),
            1 => (c.take_smallest(), Box::new(|r| Some(r.len as u64))),
            2 => (
                c.take_largest_below(len, min),
                Box::new(move |r| (r.len < len && r.len >= min).then(|| u64::MAX - r.len as u64)),
            ),
            _ => (
                c.take_oldest_resident(freed_by),
                Box::new(move |r| {
                    (r.pages != Pages::Zero && r.since_ms <= freed_by).then_some(r.since_ms)
                }),
            ),
        };
        let best = before.iter().filter_map(&rank).min();
        assert_eq!(got.and_then(|r| rank(&r)), best);
        if let Some(r) = got {
            assert!(before.contains(&r));
            self.uncache(&r);
            self.loose.push(r);
        }
    }

    /// `coalesce`: says whether two neighbours in the same state were cached, and leaves none.
    fn coalesce(&mut self, c: &Cache) {
        let neighbours = |held: &[Range]| {
            held.windows(2)
                .any(|w| w[0].end() == w[1].addr && w[0].pages == w[1].pages)
        };
        let before = neighbours(&full_ranges(c));
        assert_eq!(c.coalesce(), before);
        assert!(!neighbours(&full_ranges(c)));
    }
}

#[test]
fn random_sequences_match_the_model() {
    for seed in 1..=200u64 {
        let mut rng = Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let c = Cache::new();
        let mut m = Model::new(&mut rng);
        for _ in 0..300 {
            m.clock += 1;
            match rng.below(20) {
                0..=7 => m.insert(&c, &mut rng),
                8..=11 => m.take(&c, &mut rng),
                12..=13 => m.take_at(&c, &mut rng),
                14 => m.drain(&c, &mut rng),
                15..=18 => m.take_ranked(&c, &mut rng),
                _ => m.coalesce(&c),
            }
            m.agrees(&c);
        }
        // Everything the test holds and everything cached is the arena, once.
        c.drain(|_| true, |r| m.loose.push(r));
        assert_eq!(ok(&c), CachedBytes::default());
        m.loose.sort_by_key(|r| r.addr);
        assert!(m.loose.windows(2).all(|w| w[0].end() <= w[1].addr));
        let total: usize = m.loose.iter().map(|r| r.len).sum();
        assert_eq!(total, ARENA_PAGES * PAGE, "seed {seed}");
    }
}
