//! What the crate's deterministic fuzz tests share: a small seeded random generator, so a
//! failing round can be replayed exactly.

/// Marsaglia's xorshift64: fast, seeded, good enough to pick test cases.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Some of `items`, shuffled.
    pub fn subset(&mut self, items: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = items
            .iter()
            .filter(|_| self.chance(50))
            .map(|x| x.to_string())
            .collect();
        for i in (1..out.len()).rev() {
            let j = self.below(i + 1);
            out.swap(i, j);
        }
        out
    }
}
