//! Retrieval strategies: choosing one, running it, shaping the response.

use super::rerank::{min_max, Reranker};
use super::{OpenDb, Rag, RagQuery, RagResponse, RagResult, MAX_TOP_K};
use crate::config::{ConfigMap, LlamaFarmConfig, RetrievalStrategyConfig};
use crate::error::{Error, ResourceKind, Result};
use crate::store::{Hit, MetadataFilter, Metric, StoredChunk};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Results returned when neither the request nor the strategy says how many.
pub const DEFAULT_TOP_K: usize = 5;
const RRF_K: f32 = 60.0;

/// What a strategy does, from its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// Vector similarity.
    Vector,
    /// BM25 keyword search.
    Bm25,
    /// BM25 fused with vectors.
    Hybrid,
    /// Vector search with metadata filters, pre or post.
    MetadataFiltered,
    /// Several query variants, merged.
    MultiQuery,
    /// Candidates rescored by similarity, recency, length and metadata.
    Reranked,
    /// Candidates rescored by a cross-encoder.
    CrossEncoder,
    /// Complex queries split into sub-queries.
    MultiTurn,
}

impl StrategyKind {
    /// From a config `type` or a shorthand (`vector`, `bm25`, `keyword`, `hybrid`).
    pub fn from_type(t: &str) -> Option<Self> {
        Some(match t {
            "BasicSimilarityStrategy" | "VectorRetriever" | "vector" | "similarity" | "basic" => Self::Vector,
            "BM25Retriever" | "ElasticRetriever" | "bm25" | "keyword" => Self::Bm25,
            "HybridUniversalStrategy" | "HybridRetriever" | "hybrid" => Self::Hybrid,
            "MetadataFilteredStrategy" | "filtered" => Self::MetadataFiltered,
            "MultiQueryStrategy" | "multi_query" => Self::MultiQuery,
            "RerankedStrategy" | "RerankedRetriever" | "reranked" => Self::Reranked,
            "CrossEncoderRerankedStrategy" | "cross_encoder" => Self::CrossEncoder,
            "MultiTurnRAGStrategy" | "GraphRetriever" | "multi_turn" => Self::MultiTurn,
            _ => return None,
        })
    }
}

fn get_f(cfg: &ConfigMap, key: &str) -> Option<f64> {
    cfg.get(key).and_then(|v| v.as_f64())
}
fn get_u(cfg: &ConfigMap, key: &str) -> Option<usize> {
    cfg.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
}
fn get_s<'a>(cfg: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cfg.get(key).and_then(|v| v.as_str())
}

struct Chosen {
    name: String,
    kind: StrategyKind,
    config: ConfigMap,
}

fn choose(cfg: &LlamaFarmConfig, db: &OpenDb, wanted: Option<&str>) -> Result<Chosen> {
    let list = cfg.retrieval_strategies_of(&db.config);
    let make = |s: &RetrievalStrategyConfig| -> Result<Chosen> {
        let kind = StrategyKind::from_type(&s.kind)
            .ok_or_else(|| Error::invalid("retrieval strategy type", format!("'{}' of strategy '{}' is unknown", s.kind, s.name)))?;
        Ok(Chosen { name: s.name.clone(), kind, config: s.config.clone().unwrap_or_default() })
    };
    if let Some(w) = wanted {
        if let Some(s) = list.iter().find(|s| s.name == w).or_else(|| list.iter().find(|s| s.kind == w)) {
            return make(s);
        }
        if let Some(kind) = StrategyKind::from_type(w) {
            return Ok(Chosen { name: w.to_string(), kind, config: Map::new() });
        }
        let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
        return Err(Error::missing_in(
            ResourceKind::RetrievalStrategy,
            w,
            format!(
                "in database '{}' (configured: {}; or one of vector, bm25, hybrid)",
                db.config.name,
                if names.is_empty() { "none".into() } else { names.join(", ") }
            ),
        ));
    }
    if let Some(d) = &db.config.default_retrieval_strategy {
        if let Some(s) = list.iter().find(|s| &s.name == d) {
            return make(s);
        }
    }
    if let Some(s) = list.iter().find(|s| s.default == Some(true)).or(list.first()) {
        return make(s);
    }
    // No strategy configured: our best one.
    Ok(Chosen { name: "hybrid".into(), kind: StrategyKind::Hybrid, config: Map::new() })
}

/// Request-level settings after validation.
struct Ctx<'a> {
    rag: &'a Rag,
    db: &'a OpenDb,
    query: String,
    metric: Metric,
    filter: Option<MetadataFilter>,
    alpha: Option<f32>,
    notes: Vec<String>,
}

impl Ctx<'_> {
    fn embed(&self, text: &str) -> Result<Vec<f32>> {
        self.db.embedder.embed_query(text)
    }

    fn vector(&self, q: &[f32], k: usize, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        self.db.store.vector_search(q, k, self.metric, filter)
    }

    fn bm25(&self, text: &str, k: usize, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        let hits = self.db.store.keyword_search(text, k, filter)?;
        // Report BM25 as 0..1 (s / (s + 1) is monotonic; raw BM25 is unbounded).
        Ok(hits.into_iter().map(|h| Hit { score: h.score / (h.score + 1.0), ..h }).collect())
    }

    fn hybrid(&self, text: &str, qv: &[f32], k: usize, method: &str, alpha: f32, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        let n = (k * 4).max(50);
        let (vec_hits, kw_hits) = self.db.store.hybrid_candidates((alpha > 0.0).then_some(qv), (alpha < 1.0).then_some(text), n, self.metric, filter)?;
        let mut fused: HashMap<String, f32> = HashMap::new();
        match method {
            "weighted_average" | "score_fusion" => {
                for (hits, w) in [(&vec_hits, alpha), (&kw_hits, 1.0 - alpha)] {
                    let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
                    for (h, s) in hits.iter().zip(min_max(&scores)) {
                        *fused.entry(h.id.clone()).or_default() += w * s;
                    }
                }
            }
            _ => {
                // Reciprocal rank fusion, normalised so a chunk ranked first by both scores 1.
                let (wv, wk) = (alpha * 2.0, (1.0 - alpha) * 2.0);
                let max = (wv + wk) / (RRF_K + 1.0);
                for (hits, w) in [(&vec_hits, wv), (&kw_hits, wk)] {
                    for (rank, h) in hits.iter().enumerate() {
                        *fused.entry(h.id.clone()).or_default() += w / (RRF_K + rank as f32 + 1.0) / max;
                    }
                }
            }
        }
        let mut out: Vec<Hit> = fused.into_iter().map(|(id, score)| Hit { id, score }).collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        out.truncate(k);
        Ok(out)
    }
}

fn validate(q: &RagQuery) -> Result<(Option<usize>, Option<f32>, Option<Metric>, Option<MetadataFilter>, Option<f32>)> {
    if q.query.trim().is_empty() {
        return Err(Error::invalid("query", "must not be empty"));
    }
    let top_k = match q.top_k {
        None => None,
        Some(k) if (1..=MAX_TOP_K as i64).contains(&k) => Some(k as usize),
        Some(k) => return Err(Error::invalid("top_k", format!("must be between 1 and {MAX_TOP_K}, got {k}"))),
    };
    let threshold = match q.score_threshold {
        None => None,
        Some(t) if (0.0..=1.0).contains(&t) => Some(t as f32),
        Some(t) => return Err(Error::invalid("score_threshold", format!("must be between 0 and 1, got {t}"))),
    };
    let metric = match &q.distance_metric {
        None => None,
        Some(m) => {
            Some(Metric::parse(m).ok_or_else(|| Error::invalid("distance_metric", format!("must be one of cosine, euclidean, l2, dot, ip, manhattan; got '{m}'")))?)
        }
    };
    let filter = match &q.metadata_filters {
        None | Some(Value::Null) => None,
        Some(v) => Some(MetadataFilter::parse(v)?),
    };
    let alpha = match q.hybrid_alpha {
        None => None,
        Some(a) if (0.0..=1.0).contains(&a) => Some(a as f32),
        Some(a) => return Err(Error::invalid("hybrid_alpha", format!("must be between 0 and 1, got {a}"))),
    };
    if let Some(m) = q.max_tokens {
        if m < 1 {
            return Err(Error::invalid("max_tokens", format!("must be at least 1, got {m}")));
        }
    }
    Ok((top_k, threshold, metric, filter, alpha))
}

/// Merge filters: request conditions and strategy conditions must all hold.
fn merge_filters(a: Option<MetadataFilter>, cfg: Option<&Value>) -> Result<Option<MetadataFilter>> {
    let Some(Value::Object(extra)) = cfg else { return Ok(a) };
    if extra.is_empty() {
        return Ok(a);
    }
    let c = MetadataFilter::from_map(extra)?;
    Ok(Some(match a {
        None => c,
        Some(f) => f.and(c),
    }))
}

pub(super) fn run(rag: &Rag, cfg: &LlamaFarmConfig, q: &RagQuery) -> Result<RagResponse> {
    let (top_k, threshold, metric, filter, alpha) = validate(q)?;
    let db = rag.open(cfg, q.database.as_deref())?;
    let chosen = choose(cfg, &db, q.retrieval_strategy.as_deref())?;
    let c = &chosen.config;
    let k = top_k.or_else(|| get_u(c, "final_k")).or_else(|| get_u(c, "top_k")).unwrap_or(DEFAULT_TOP_K).clamp(1, MAX_TOP_K);
    let threshold = threshold.or_else(|| get_f(c, "score_threshold").map(|x| x as f32)).or_else(|| get_f(c, "relevance_threshold").map(|x| x as f32));
    let metric = metric.or_else(|| get_s(c, "distance_metric").and_then(Metric::parse)).unwrap_or_else(|| db.store.metric());
    let mut ctx = Ctx { rag, db: &db, query: q.query.clone(), metric, filter, alpha, notes: Vec::new() };

    let hits = execute(&mut ctx, chosen.kind, c, k, q)?;
    let mut hits = hits;
    // A request-level reranker applies on top of any strategy.
    if let Some(model) = &q.rerank_model {
        hits = cross_encode(&mut ctx, cfg, model, hits, k, 0.0)?;
    }
    let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
    let chunks: HashMap<String, StoredChunk> = db.store.get(&ids)?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let dedup = chosen.kind == StrategyKind::MultiQuery || chosen.kind == StrategyKind::MultiTurn || q.query_expansion == Some(true);
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for h in hits {
        if threshold.is_some_and(|t| h.score < t) {
            continue;
        }
        let Some(ch) = chunks.get(&h.id) else { continue };
        if dedup && !seen.insert(content_key(&ch.content)) {
            continue;
        }
        let mut content = ch.content.clone();
        if let Some(m) = q.max_tokens {
            let max_chars = (m as usize).saturating_mul(4);
            if content.chars().count() > max_chars {
                content = content.chars().take(max_chars).collect();
            }
        }
        let document_id = ch.metadata.get("document_id").and_then(|v| v.as_str()).map(String::from).unwrap_or_else(|| ch.file_hash.clone());
        results.push(RagResult { content, score: h.score, metadata: ch.metadata.clone(), chunk_id: ch.id.clone(), document_id });
        if results.len() == k {
            break;
        }
    }
    Ok(RagResponse {
        query: q.query.clone(),
        total_results: results.len(),
        results,
        processing_time_ms: 0.0,
        retrieval_strategy_used: chosen.name,
        database_used: db.config.name.clone(),
        notes: ctx.notes,
    })
}

fn content_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().chars().take(200).collect()
}

fn execute(ctx: &mut Ctx, kind: StrategyKind, c: &ConfigMap, k: usize, q: &RagQuery) -> Result<Vec<Hit>> {
    let text = ctx.query.clone();
    let expansion = q.query_expansion == Some(true);
    match kind {
        StrategyKind::Vector if !expansion => {
            let qv = ctx.embed(&text)?;
            ctx.vector(&qv, k, ctx.filter.as_ref())
        }
        StrategyKind::Bm25 => ctx.bm25(&text, k, ctx.filter.as_ref()),
        StrategyKind::Hybrid if !expansion => {
            let qv = ctx.embed(&text)?;
            let alpha = ctx.alpha.or_else(|| get_f(c, "hybrid_alpha").or_else(|| get_f(c, "alpha")).map(|a| a as f32)).unwrap_or(0.5).clamp(0.0, 1.0);
            let method = get_s(c, "combination_method").unwrap_or("weighted_average").to_string();
            ctx.hybrid(&text, &qv, k, &method, alpha, ctx.filter.as_ref())
        }
        StrategyKind::MetadataFiltered => {
            let filter = merge_filters(ctx.filter.take(), c.get("filters"))?;
            let qv = ctx.embed(&text)?;
            match (get_s(c, "filter_mode").unwrap_or("pre"), filter) {
                (_, None) => ctx.vector(&qv, k, None),
                ("post", Some(f)) => {
                    let mult = get_u(c, "fallback_multiplier").unwrap_or(3).max(1);
                    let wide = ctx.vector(&qv, k * mult, None)?;
                    let ids: Vec<String> = wide.iter().map(|h| h.id.clone()).collect();
                    let keep: HashSet<String> = ctx.db.store.get(&ids)?.into_iter().filter(|s| f.matches(&s.metadata)).map(|s| s.id).collect();
                    let mut out: Vec<Hit> = wide.into_iter().filter(|h| keep.contains(&h.id)).collect();
                    if out.len() < k {
                        // Not enough survived the post-filter: fall back to a pre-filtered search.
                        out = ctx.vector(&qv, k, Some(&f))?;
                    }
                    out.truncate(k);
                    Ok(out)
                }
                (_, Some(f)) => ctx.vector(&qv, k, Some(&f)),
            }
        }
        StrategyKind::MultiQuery | StrategyKind::Vector | StrategyKind::Hybrid => {
            let n = get_u(c, "num_queries").unwrap_or(3).clamp(1, 10);
            let mut variants = query_variants(&text, n);
            if let Some(Value::Array(extra)) = c.get("queries") {
                variants.extend(extra.iter().filter_map(|v| v.as_str()).map(String::from));
                variants.truncate(n.max(variants.len().min(10)));
            }
            multi_query(ctx, &variants, k, get_s(c, "aggregation_method").or(get_s(c, "aggregation")).unwrap_or("weighted"), c)
        }
        StrategyKind::Reranked => {
            let initial = get_u(c, "initial_k").unwrap_or(30).max(k);
            let qv = ctx.embed(&text)?;
            let cands = ctx.vector(&qv, initial, ctx.filter.as_ref())?;
            rerank_by_factors(ctx, cands, c.get("rerank_factors"), k)
        }
        StrategyKind::CrossEncoder => {
            let initial = get_u(c, "initial_k").unwrap_or(30).max(k);
            let base = get_s(c, "base_strategy").and_then(StrategyKind::from_type).unwrap_or(StrategyKind::Vector);
            let base = if matches!(base, StrategyKind::CrossEncoder) { StrategyKind::Vector } else { base };
            let base_cfg = c.get("base_strategy_config").and_then(|v| v.as_object()).cloned().unwrap_or_default();
            let cands = execute(ctx, base, &base_cfg, initial, &RagQuery { query_expansion: None, ..q.clone() })?;
            let model = get_s(c, "model_name").or(get_s(c, "model")).unwrap_or("").to_string();
            let final_k = get_u(c, "final_k").unwrap_or(k).min(k);
            let threshold = get_f(c, "relevance_threshold").unwrap_or(0.0) as f32;
            let cfg = ctx.rag.config()?;
            cross_encode(ctx, &cfg, &model, cands, final_k, threshold)
        }
        StrategyKind::MultiTurn => {
            let max_sub = get_u(c, "max_sub_queries").unwrap_or(3).clamp(1, 10);
            let threshold = get_u(c, "complexity_threshold").unwrap_or(50);
            let mut subs = vec![text.clone()];
            if text.chars().count() >= threshold {
                subs.extend(decompose(&text).into_iter().take(max_sub));
            }
            multi_query(ctx, &subs, k, "max", c)
        }
    }
}

/// The query plus simple rewrites: keywords only, and each sentence or clause.
fn query_variants(q: &str, n: usize) -> Vec<String> {
    let mut out = vec![q.to_string()];
    let stop = [
        "what", "which", "who", "how", "why", "when", "where", "is", "are", "the", "a", "an", "of", "in", "on", "to", "do", "does", "for", "and", "or", "with",
        "about",
    ];
    let kw: Vec<&str> = q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty() && !stop.contains(&w.to_lowercase().as_str())).collect();
    let kw = kw.join(" ");
    if !kw.is_empty() && kw != q {
        out.push(kw);
    }
    out.extend(decompose(q));
    let mut seen = HashSet::new();
    out.retain(|v| seen.insert(v.to_lowercase()));
    out.truncate(n);
    out
}

/// Split a complex question into parts: sentences, then " and " / ";" clauses.
fn decompose(q: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for s in q.split(['?', ';', '.']).map(str::trim).filter(|s| s.len() > 3) {
        for p in s.split(" and ").map(str::trim).filter(|p| p.split_whitespace().count() >= 2) {
            parts.push(p.to_string());
        }
    }
    if parts.len() <= 1 {
        return Vec::new();
    }
    parts
}

fn multi_query(ctx: &mut Ctx, variants: &[String], k: usize, aggregation: &str, c: &ConfigMap) -> Result<Vec<Hit>> {
    let texts: Vec<&str> = variants.iter().map(String::as_str).collect();
    let qvs = ctx.db.embedder.embed_queries(&texts)?;
    let weights: Vec<f32> = match c.get("query_weights").and_then(|v| v.as_array()) {
        Some(w) => w.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect(),
        None => (0..variants.len()).map(|i| 1.0 / (1.0 + 0.25 * i as f32)).collect(),
    };
    let per = (k * 2).max(10);
    let filter = ctx.filter.clone();
    // The searches run concurrently.
    use rayon::prelude::*;
    let lists: Vec<Result<Vec<Hit>>> = qvs.par_iter().map(|qv| ctx.vector(qv, per, filter.as_ref())).collect();
    let mut agg: HashMap<String, (f32, f32, usize)> = HashMap::new(); // (max, sum or weighted sum, count)
    for (i, list) in lists.into_iter().enumerate() {
        let w = weights.get(i).copied().unwrap_or(1.0);
        for (rank, h) in list?.into_iter().enumerate() {
            let e = agg.entry(h.id).or_insert((0.0, 0.0, 0));
            e.0 = e.0.max(h.score);
            e.1 += match aggregation {
                "reciprocal_rank" => 1.0 / (RRF_K + rank as f32 + 1.0),
                "weighted" => w * h.score,
                _ => h.score,
            };
            e.2 += 1;
        }
    }
    let n = variants.len() as f32;
    let wsum: f32 = weights.iter().take(variants.len()).sum::<f32>().max(1e-6);
    let mut out: Vec<Hit> = agg
        .into_iter()
        .map(|(id, (max, sum, _count))| {
            let score = match aggregation {
                "max" => max,
                "mean" => sum / n,
                "reciprocal_rank" => sum / (n / (RRF_K + 1.0)),
                _ => sum / wsum,
            };
            Hit { id, score }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    // Keep extra for content dedup downstream.
    out.truncate(k * 2);
    Ok(out)
}

fn rerank_by_factors(ctx: &Ctx, cands: Vec<Hit>, factors: Option<&Value>, k: usize) -> Result<Vec<Hit>> {
    let f = factors.and_then(|v| v.as_object()).cloned().unwrap_or_default();
    let w = |key: &str, d: f32| f.get(key).and_then(|v| v.as_f64()).map(|x| x as f32).unwrap_or(d);
    let (ws, wr, wl, wm) = (w("similarity_weight", 0.7), w("recency_weight", 0.1), w("length_weight", 0.1), w("metadata_weight", 0.1));
    let ids: Vec<String> = cands.iter().map(|h| h.id.clone()).collect();
    let chunks: HashMap<String, StoredChunk> = ctx.db.store.get(&ids)?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let times: Vec<f64> = cands
        .iter()
        .filter_map(|h| chunks.get(&h.id))
        .filter_map(|c| {
            c.metadata
                .get("processed_at")
                .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|d| d.timestamp() as f64)))
        })
        .collect();
    let (tmin, tmax) = times.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| (a.min(t), b.max(t)));
    let qterms: HashSet<String> = ctx.query.split_whitespace().map(|t| t.to_lowercase()).collect();
    let mut out: Vec<Hit> = cands
        .into_iter()
        .filter_map(|h| {
            let c = chunks.get(&h.id)?;
            let recency = c
                .metadata
                .get("processed_at")
                .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|d| d.timestamp() as f64)))
                .map(|t| if tmax > tmin { ((t - tmin) / (tmax - tmin)) as f32 } else { 0.5 })
                .unwrap_or(0.5);
            // Prefer chunks near 1000 characters: neither fragments nor walls of text.
            let len = c.content.chars().count() as f32;
            let length = (1.0 - ((len - 1000.0).abs() / 1000.0)).clamp(0.0, 1.0);
            let meta_text: String = c.metadata.values().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ").to_lowercase();
            let meta = if qterms.is_empty() { 0.0 } else { qterms.iter().filter(|t| meta_text.contains(t.as_str())).count() as f32 / qterms.len() as f32 };
            let total = ws + wr + wl + wm;
            let score = (ws * h.score + wr * recency + wl * length + wm * meta) / total.max(1e-6);
            Some(Hit { id: h.id, score })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out.truncate(k);
    Ok(out)
}

/// Rescore candidates with a cross-encoder; without one, with embedding similarity (and a note).
fn cross_encode(ctx: &mut Ctx, cfg: &LlamaFarmConfig, model: &str, cands: Vec<Hit>, k: usize, threshold: f32) -> Result<Vec<Hit>> {
    if cands.is_empty() {
        return Ok(cands);
    }
    // `model` may name a runtime model (whose `model` is the id) or be an id itself.
    let id = cfg.models().into_iter().find(|m| m.name == model).map(|m| m.model).unwrap_or_else(|| model.to_string());
    let ids: Vec<String> = cands.iter().map(|h| h.id.clone()).collect();
    let chunks: HashMap<String, StoredChunk> = ctx.db.store.get(&ids)?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let kept: Vec<&Hit> = cands.iter().filter(|h| chunks.contains_key(&h.id)).collect();
    let docs: Vec<&str> = kept.iter().map(|h| chunks[&h.id].content.as_str()).collect();
    let models = ctx.rag.project.llamafarm().models();
    let raw = match if id.is_empty() {
        Err(Error::invalid("reranker model", "is not configured (no cross-encoder model)"))
    } else {
        ctx.rag.engine().cross_encoder(&id, models)
    } {
        Ok(ce) => ce.score(&ctx.query, &docs)?,
        Err(e) => {
            ctx.notes.push(format!("cross-encoder '{model}' unavailable ({e}); reranked by embedding similarity instead"));
            // The chunks' vectors are already in the store: no need to embed them again.
            let qv = ctx.embed(&ctx.query.clone())?;
            let ids: Vec<String> = kept.iter().map(|h| h.id.clone()).collect();
            ctx.db.store.similarities(&qv, &ids, Metric::Cosine)?.into_iter().map(|s| s.unwrap_or(0.0)).collect()
        }
    };
    let norm = min_max(&raw);
    let mut out: Vec<Hit> = kept.into_iter().zip(norm).filter(|(_, s)| *s >= threshold).map(|(h, s)| Hit { id: h.id.clone(), score: s }).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out.truncate(k);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_variants() {
        assert_eq!(StrategyKind::from_type("HybridUniversalStrategy"), Some(StrategyKind::Hybrid));
        assert_eq!(StrategyKind::from_type("bm25"), Some(StrategyKind::Bm25));
        assert_eq!(StrategyKind::from_type("nope"), None);
        let v = query_variants("What are neural scaling laws?", 3);
        assert_eq!(v[0], "What are neural scaling laws?");
        assert_eq!(v[1], "neural scaling laws");
        let d = decompose("How does compute affect loss and what is the optimal model size?");
        assert_eq!(d.len(), 2, "{d:?}");
    }
}
