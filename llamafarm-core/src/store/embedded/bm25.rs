//! Exhaustive BM25 scoring straight from tantivy's postings (see [`Bm25Scores`]).

use super::schema::te;
use crate::error::{Error, Result};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, Searcher, Term};

/// BM25 scores of every document matching a free-text query, computed term at a time:
/// each query term's postings are decoded block by block (tantivy's bitpacked blocks of
/// 128) straight into one dense score array, with tantivy's own `Bm25Weight` (same idf,
/// k1, b and field norms), so the ranking is the one its `BooleanQuery` gives.
///
/// Why not tantivy's collector: a free-text query ORs every term, and on a large store
/// with common terms its document-at-a-time union (block-max WAND) visits most postings
/// anyway, paying a heap and skip-list step per document. A flat pass costs a few
/// nanoseconds per posting. Past [`Bm25Scores::MAX_POSTINGS`] postings (or a huge index)
/// the caller goes back to tantivy, whose pruning then pays off.
pub(in crate::store) struct Bm25Scores {
    /// Score per document, segments laid end to end (`base[seg] + doc`).
    acc: Vec<f32>,
    base: Vec<u32>,
    alive: Vec<Option<tantivy::fastfield::AliveBitSet>>,
}

impl Bm25Scores {
    const MAX_POSTINGS: u64 = 4_000_000;

    pub(in crate::store) fn compute(searcher: &Searcher, field: Field, tokens: &[String]) -> Result<Option<Self>> {
        use tantivy::query::Bm25Weight;
        let segs = searcher.segment_readers();
        let total_docs: u64 = segs.iter().map(|s| u64::from(s.max_doc())).sum();
        if total_docs == 0 || total_docs > u32::MAX as u64 / 2 {
            return Ok(None);
        }
        let mut tokens_total = 0u64;
        let mut invs = Vec::with_capacity(segs.len());
        for seg in segs {
            let inv = seg.inverted_index(field).map_err(te)?;
            tokens_total += inv.total_num_tokens();
            invs.push(inv);
        }
        let terms: Vec<Term> = tokens.iter().map(|t| Term::from_field_text(field, t)).collect();
        // Term infos per (term, segment): one dictionary lookup each.
        let io = |e: std::io::Error| Error::internal(format!("index: {e}"));
        let mut infos = Vec::with_capacity(terms.len());
        let mut postings = 0u64;
        for t in &terms {
            let per_seg: Vec<Option<tantivy::postings::TermInfo>> = invs.iter().map(|inv| inv.get_term_info(t)).collect::<std::io::Result<_>>().map_err(io)?;
            let df: u64 = per_seg.iter().flatten().map(|i| u64::from(i.doc_freq)).sum();
            postings += df;
            infos.push((df, per_seg));
        }
        if postings > Self::MAX_POSTINGS {
            return Ok(None);
        }
        let avg = tokens_total as f32 / total_docs as f32;
        let mut base = Vec::with_capacity(segs.len());
        let mut n = 0u32;
        for seg in segs {
            base.push(n);
            n += seg.max_doc();
        }
        let mut acc = vec![0f32; n as usize];
        for (df, per_seg) in &infos {
            if *df == 0 {
                continue;
            }
            let w = Bm25Weight::for_one_term_without_explain(*df, total_docs, avg);
            for (s, info) in per_seg.iter().enumerate() {
                let Some(info) = info else { continue };
                let norms = segs[s].get_fieldnorms_reader(field).map_err(te)?;
                let mut block = invs[s].read_block_postings_from_terminfo(info, IndexRecordOption::WithFreqs).map_err(io)?;
                let out = &mut acc[base[s] as usize..];
                loop {
                    let docs = block.docs();
                    if docs.is_empty() {
                        break;
                    }
                    for (&d, &tf) in docs.iter().zip(block.freqs()) {
                        if let Some(a) = out.get_mut(d as usize) {
                            *a += w.score(norms.fieldnorm_id(d), tf);
                        }
                    }
                    block.advance();
                }
            }
        }
        let alive = segs.iter().map(|s| s.alive_bitset().cloned()).collect();
        Ok(Some(Self { acc, base, alive }))
    }

    /// The `k` best live documents, best first; ties go to the lower address, as in
    /// tantivy's `TopDocs`.
    pub(in crate::store) fn top(&self, k: usize) -> Vec<(f32, DocAddress)> {
        if k == 0 {
            return Vec::new();
        }
        // A min-heap of the best k (score bits order like the scores: all are > 0).
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(u32, std::cmp::Reverse<u32>)>> = std::collections::BinaryHeap::with_capacity(k + 1);
        let mut floor = 0f32;
        for (i, &s) in self.acc.iter().enumerate() {
            if s <= floor && (heap.len() == k || s <= 0.0) {
                continue;
            }
            let i = i as u32;
            if !self.is_alive(i) {
                continue;
            }
            heap.push(std::cmp::Reverse((s.to_bits(), std::cmp::Reverse(i))));
            if heap.len() > k {
                heap.pop();
            }
            if heap.len() == k {
                floor = heap.peek().map(|x| f32::from_bits((x.0).0)).unwrap_or(0.0);
            }
        }
        let mut out: Vec<(f32, u32)> = heap.into_iter().map(|std::cmp::Reverse((s, std::cmp::Reverse(i)))| (f32::from_bits(s), i)).collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        out.into_iter().map(|(s, i)| (s, self.addr(i))).collect()
    }

    fn addr(&self, i: u32) -> DocAddress {
        let seg = self.base.partition_point(|&b| b <= i) - 1;
        DocAddress::new(seg as u32, i - self.base[seg])
    }

    fn is_alive(&self, i: u32) -> bool {
        let a = self.addr(i);
        self.alive[a.segment_ord as usize].as_ref().is_none_or(|b| b.is_alive(a.doc_id))
    }
}
