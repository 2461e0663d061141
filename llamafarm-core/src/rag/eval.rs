//! Retrieval quality measures, for evaluating a database against judged queries (BEIR /
//! TREC style: graded relevance per document id). The benchmarks and tests use them.

use std::collections::HashMap;

/// nDCG@k of a ranking: `ranked` ids best first, `relevance` the graded judgements of the
/// query (ids not in it count 0). 0 when the query has no relevant document.
pub fn ndcg_at(ranked: &[impl AsRef<str>], relevance: &HashMap<String, u32>, k: usize) -> f64 {
    let gain = |i: usize, g: f64| g / ((i + 2) as f64).log2();
    let dcg: f64 = ranked.iter().take(k).enumerate().map(|(i, d)| gain(i, relevance.get(d.as_ref()).copied().unwrap_or(0) as f64)).sum();
    let mut ideal: Vec<u32> = relevance.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| gain(i, g as f64)).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Recall@k: the share of the relevant documents (grade > 0) found in the first `k`.
pub fn recall_at(ranked: &[impl AsRef<str>], relevance: &HashMap<String, u32>, k: usize) -> f64 {
    let relevant = relevance.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    ranked.iter().take(k).filter(|d| relevance.get(d.as_ref()).is_some_and(|&g| g > 0)).count() as f64 / relevant as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_and_recall_by_hand() {
        let rel: HashMap<String, u32> = [("a".to_string(), 2), ("b".to_string(), 1)].into();
        assert_eq!(ndcg_at(&["a", "b", "c"], &rel, 10), 1.0);
        // b first, a second: (1 + 2/log2 3) / (2 + 1/log2 3).
        let want = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&["b", "a"], &rel, 10) - want).abs() < 1e-12);
        assert_eq!(ndcg_at(&["c"], &rel, 10), 0.0);
        assert_eq!(ndcg_at(&["a"], &HashMap::new(), 10), 0.0);
        assert_eq!(recall_at(&["c", "a"], &rel, 1), 0.0);
        assert_eq!(recall_at(&["c", "a"], &rel, 2), 0.5);
    }
}
