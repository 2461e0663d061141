//! Contrastive pair sampling as the `setfit` package does it with `num_iterations`
//! (`setfit.sampler.ContrastiveDataset`): every unordered combination of two examples
//! (with replacement, so an example is also paired with itself) is shuffled and split
//! into positive pairs (same label) and negative pairs (different labels); then
//! `num_iterations * n` pairs of each kind are taken, cycling through a list when it
//! is shorter (oversampling). Positive and negative pairs alternate and the whole list
//! is shuffled once more (the trainer's random sampler).

/// A small deterministic PRNG (SplitMix64): seeds must give identical runs.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// One training pair: indices into the examples and the target cosine (1 or 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pair {
    pub a: usize,
    pub b: usize,
    pub target: f32,
}

/// The pairs for `labels` (one class id per example).
///
/// With many examples the full combination list is large (n^2 / 2); past
/// `MAX_ENUMERATED` combinations pairs are drawn at random instead, with the same
/// expected balance.
pub(crate) fn sample_pairs(labels: &[usize], num_iterations: usize, rng: &mut Rng) -> Vec<Pair> {
    const MAX_ENUMERATED: usize = 4_000_000;
    let n = labels.len();
    if n == 0 || num_iterations == 0 {
        return Vec::new();
    }
    let want = num_iterations * n;
    let combos = n * (n + 1) / 2;
    let (pos, neg) = if combos <= MAX_ENUMERATED {
        let mut all: Vec<(usize, usize)> = Vec::with_capacity(combos);
        for i in 0..n {
            for j in i..n {
                all.push((i, j));
            }
        }
        rng.shuffle(&mut all);
        let mut pos = Vec::new();
        let mut neg = Vec::new();
        for (i, j) in all {
            if labels[i] == labels[j] {
                pos.push(Pair { a: i, b: j, target: 1.0 });
            } else {
                neg.push(Pair { a: i, b: j, target: 0.0 });
            }
        }
        (pos, neg)
    } else {
        // Random draws: a positive partner from the same class, a negative from another.
        let mut by_class: std::collections::HashMap<usize, Vec<usize>> = Default::default();
        for (i, &l) in labels.iter().enumerate() {
            by_class.entry(l).or_default().push(i);
        }
        let mut pos = Vec::with_capacity(want);
        let mut neg = Vec::with_capacity(want);
        while pos.len() < want {
            let i = rng.below(n);
            let same = &by_class[&labels[i]];
            pos.push(Pair { a: i, b: same[rng.below(same.len())], target: 1.0 });
        }
        let mut guard = 0usize;
        while neg.len() < want && guard < want * 100 {
            guard += 1;
            let (i, j) = (rng.below(n), rng.below(n));
            if labels[i] != labels[j] {
                neg.push(Pair { a: i, b: j, target: 0.0 });
            }
        }
        (pos, neg)
    };
    let mut out = Vec::with_capacity(2 * want);
    for k in 0..want {
        if !pos.is_empty() {
            out.push(pos[k % pos.len()]);
        }
        if !neg.is_empty() {
            out.push(neg[k % neg.len()]);
        }
    }
    rng.shuffle(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_counts_and_balance() {
        // 3 classes x 4 examples, num_iterations 5: 5*12 positives and 5*12 negatives.
        let labels: Vec<usize> = (0..12).map(|i| i / 4).collect();
        let pairs = sample_pairs(&labels, 5, &mut Rng::new(42));
        assert_eq!(pairs.len(), 2 * 5 * 12);
        let pos: Vec<&Pair> = pairs.iter().filter(|p| p.target == 1.0).collect();
        assert_eq!(pos.len(), 60);
        assert!(pos.iter().all(|p| labels[p.a] == labels[p.b]));
        assert!(pairs.iter().filter(|p| p.target == 0.0).all(|p| labels[p.a] != labels[p.b]));
        // Every example takes part.
        let mut seen = [false; 12];
        for p in &pairs {
            seen[p.a] = true;
            seen[p.b] = true;
        }
        assert!(seen.iter().all(|&s| s));
        // Every class gets positives (30 unique positive combinations are cycled).
        for c in 0..3 {
            assert!(pos.iter().filter(|p| labels[p.a] == c).count() >= 10, "class {c}");
        }
        // Deterministic for a seed, different for another.
        assert_eq!(pairs, sample_pairs(&labels, 5, &mut Rng::new(42)));
        assert_ne!(pairs, sample_pairs(&labels, 5, &mut Rng::new(7)));
        assert!(sample_pairs(&labels, 0, &mut Rng::new(1)).is_empty());
    }

    #[test]
    fn random_draws_for_large_sets_keep_balance() {
        let labels: Vec<usize> = (0..3000).map(|i| i % 7).collect();
        let pairs = sample_pairs(&labels, 2, &mut Rng::new(1));
        assert_eq!(pairs.len(), 2 * 2 * 3000);
        assert_eq!(pairs.iter().filter(|p| p.target == 1.0).count(), 6000);
        assert!(pairs.iter().all(|p| (labels[p.a] == labels[p.b]) == (p.target == 1.0)));
    }

    #[test]
    fn rng_below_is_in_range_and_spread() {
        let mut r = Rng::new(3);
        let mut counts = [0usize; 5];
        for _ in 0..5000 {
            counts[r.below(5)] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
