use super::*;
use serde_json::json;

/// Deterministic pseudo-random unit vectors.
fn vecs(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            let mut v: Vec<f32> = (0..dim)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            crate::embed::normalize(&mut v);
            v
        })
        .collect()
}

fn chunk(id: &str, file: &str, text: &str, meta: serde_json::Value, v: Vec<f32>) -> ChunkRecord {
    ChunkRecord { id: id.into(), file_hash: file.into(), content: text.into(), metadata: meta.as_object().unwrap().clone(), vector: v }
}

#[test]
fn add_search_filter_delete_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vs = vecs(4, 8, 1);
    {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        let r = s
            .add(vec![
                chunk("a_0000", "a", "The cat sat on the mat", json!({"page": 1, "doc": "a.txt"}), vs[0].clone()),
                chunk("a_0001", "a", "Dogs chase cats in the garden", json!({"page": 2, "doc": "a.txt"}), vs[1].clone()),
                chunk("b_0000", "b", "Neural scaling laws for language models", json!({"page": 1, "doc": "b.pdf"}), vs[2].clone()),
            ])
            .unwrap();
        assert_eq!(r, AddReport { added: 3, skipped: 0, skipped_ids: vec![] });
        // Same ids again are skipped (dedup), new ones added.
        let r = s
            .add(vec![chunk("a_0000", "a", "dup", json!({}), vs[0].clone()), chunk("b_0001", "b", "power law of compute", json!({"page": 2}), vs[3].clone())])
            .unwrap();
        assert_eq!(r, AddReport { added: 1, skipped: 1, skipped_ids: vec!["a_0000".into()] });

        let hits = s.vector_search(&vs[2], 2, Metric::Cosine, None).unwrap();
        assert_eq!(hits[0].id, "b_0000");
        assert!((hits[0].score - 1.0).abs() < 1e-5, "cosine 1 -> score 1");
        assert!(hits[1].score < hits[0].score);

        let hits = s.keyword_search("cats", 10, None).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), 2, "stemming matches cat and cats: {ids:?}");
        assert!(s.keyword_search("the of and", 10, None).unwrap().is_empty(), "stop words only");
        assert!(s.keyword_search("", 10, None).unwrap().is_empty());
        assert!(s.keyword_search("AND OR ( \" : *", 10, None).unwrap().is_empty(), "query syntax is just text");

        let f = MetadataFilter::parse(&json!({"doc": "a.txt"})).unwrap();
        let hits = s.vector_search(&vs[2], 10, Metric::Cosine, Some(&f)).unwrap();
        assert!(hits.iter().all(|h| h.id.starts_with("a_")) && hits.len() == 2);
        let hits = s.keyword_search("cat", 10, Some(&MetadataFilter::parse(&json!({"page": 2})).unwrap())).unwrap();
        assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), vec!["a_0001"]);

        let got = s.get(&["b_0000".into(), "nope".into()]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].content, "Neural scaling laws for language models");
        assert_eq!(got[0].metadata["doc"], "b.pdf");

        // Wrong dimension: a clear error, nothing written.
        let e = s.add(vec![chunk("c_0000", "c", "x", json!({}), vec![0.5; 9])]).unwrap_err();
        assert!(e.to_string().contains("dimension mismatch"), "{e}");
        assert!(s.vector_search(&[0.1; 3], 1, Metric::Cosine, None).is_err());

        assert_eq!(s.delete_file("a").unwrap(), 2);
        assert_eq!(s.delete_file("a").unwrap(), 0);
        assert!(s.keyword_search("cats", 10, None).unwrap().is_empty());
        let st = s.stats().unwrap();
        assert_eq!((st.vector_count, st.document_count, st.embedding_dimension), (2, 1, Some(8)));
        assert!(st.storage_bytes > 0);
    }
    // Reopen: the committed state, vectors and text agreeing.
    let s = EmbeddedStore::open(dir.path(), Metric::L2).unwrap();
    assert_eq!(s.metric(), Metric::Cosine, "a store keeps the metric it was created with");
    assert_eq!(s.stats().unwrap().vector_count, 2);
    assert_eq!(s.vector_search(&vs[3], 1, Metric::Cosine, None).unwrap()[0].id, "b_0001");
    assert_eq!(s.list(10, 0).unwrap().len(), 2);
    assert_eq!(s.clear().unwrap(), 2);
    assert_eq!(s.stats().unwrap().vector_count, 0);
}

#[test]
fn metrics_convert_scores_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    s.add(vec![chunk("x", "f", "t", json!({}), vec![1.0, 0.0]), chunk("y", "f", "t", json!({}), vec![0.0, 1.0])]).unwrap();
    let q = [1.0, 0.0];
    let score = |m| s.vector_search(&q, 2, m, None).unwrap().iter().map(|h| (h.id.clone(), h.score)).collect::<Vec<_>>();
    assert_eq!(score(Metric::Cosine), vec![("x".to_string(), 1.0), ("y".to_string(), 0.5)]);
    let l2 = score(Metric::L2);
    assert_eq!(l2[0], ("x".to_string(), 1.0));
    assert!((l2[1].1 - 1.0 / 1.02).abs() < 1e-6);
    assert_eq!(score(Metric::Ip)[1], ("y".to_string(), 0.5));
}

#[test]
fn hnsw_agrees_with_exact_search_and_skips_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let n = HNSW_THRESHOLD + 500;
    let dim = 16;
    let vs = vecs(n, dim, 7);
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    let chunks: Vec<ChunkRecord> = vs.iter().enumerate().map(|(i, v)| chunk(&format!("c{i}"), &format!("f{}", i % 100), "text", json!({}), v.clone())).collect();
    s.add(chunks).unwrap();
    s.wait_for_index();
    assert!(s.stats().unwrap().ann_index);
    let mut agree = 0;
    for (qi, q) in vs.iter().enumerate().step_by(997).take(20) {
        let ann = s.vector_search(q, 10, Metric::Cosine, None).unwrap();
        assert_eq!(ann[0].id, format!("c{qi}"));
        let f = MetadataFilter::parse(&json!({"none": {"$ne": 1}})).unwrap(); // forces the exact path
        let exact = s.vector_search(q, 10, Metric::Cosine, Some(&f)).unwrap();
        agree += ann.iter().filter(|h| exact.iter().any(|e| e.id == h.id)).count();
    }
    assert!(agree >= 190, "recall@10 of HNSW vs exact: {agree}/200");
    s.delete_file("f0").unwrap();
    let hits = s.vector_search(&vs[0], 5, Metric::Cosine, None).unwrap();
    assert!(hits.iter().all(|h| h.id != "c0"), "deleted chunks never come back");
    // Rows written after the graph exists are inserted into it in the background.
    let more = vecs(300, dim, 8);
    for (b, part) in more.chunks(100).enumerate() {
        let chunks = part.iter().enumerate().map(|(i, v)| chunk(&format!("m{}", b * 100 + i), "fm", "text", json!({}), v.clone())).collect();
        s.add(chunks).unwrap();
    }
    s.wait_for_index();
    let st = s.stats().unwrap();
    assert_eq!(st.graph_rows, st.vector_count + st.tombstones, "every row is in the graph");
    let hit = &s.vector_search(&more[150], 1, Metric::Cosine, None).unwrap()[0];
    assert_eq!(hit.id, "m150");
}

/// A store past the HNSW threshold writes its graph's structure to a file; reopened, it
/// searches that graph at once (no rebuild), and a store that grows, loses chunks or
/// finds the file damaged builds a new graph instead.
#[test]
fn a_reopened_store_searches_its_saved_graph_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("graph.bin");
    let (n, dim) = (HNSW_THRESHOLD + 300, 16);
    let vs = vecs(n + 100, dim, 21);
    let wait_for_file = |rows_before: Option<std::time::SystemTime>| {
        for _ in 0..1500 {
            let m = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
            if m.is_some() && m != rows_before {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the graph file was not written");
    };
    let queries: Vec<usize> = (0..n).step_by(1009).collect();
    let search = |s: &EmbeddedStore| {
        queries.iter().map(|&q| s.vector_search(&vs[q], 5, Metric::Cosine, None).unwrap().into_iter().map(|h| h.id).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    let before = {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        // Three commits, so the reopened store may read its rows in another order.
        for part in (0..n).collect::<Vec<_>>().chunks(n / 3 + 1) {
            s.add(part.iter().map(|&i| chunk(&format!("c{i}"), &format!("f{}", i % 50), "text", json!({}), vs[i].clone())).collect()).unwrap();
        }
        s.wait_for_index();
        wait_for_file(None);
        search(&s)
    };
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    let st = s.stats().unwrap();
    assert!(st.ann_index && st.graph_rows == n, "the graph is there on open: {} rows", st.graph_rows);
    assert_eq!(search(&s), before);
    for (qi, q) in queries.iter().enumerate() {
        assert_eq!(before[qi][0], format!("c{q}"));
    }
    // New rows: a graph that can take them is built.
    let written = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    s.add((n..n + 100).map(|i| chunk(&format!("c{i}"), "fnew", "text", json!({}), vs[i].clone())).collect()).unwrap();
    s.wait_for_index();
    assert_eq!(s.stats().unwrap().graph_rows, n + 100);
    assert_eq!(s.vector_search(&vs[n + 50], 1, Metric::Cosine, None).unwrap()[0].id, format!("c{}", n + 50));
    wait_for_file(written);
    drop(s);
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    assert_eq!(s.stats().unwrap().graph_rows, n + 100);
    drop(s);
    // A damaged file is not used: the graph is built again.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    s.wait_for_index();
    assert_eq!(s.stats().unwrap().graph_rows, n + 100);
    assert_eq!(search(&s).len(), queries.len());
    // The new graph is written over the damaged file.
    for _ in 0..1500 {
        if std::fs::read(&file).is_ok_and(|b| b != bytes) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_ne!(std::fs::read(&file).unwrap(), bytes);
    // Deleting chunks removes the file (it no longer describes the store).
    s.delete_file("f3").unwrap();
    assert!(!file.exists());
}

/// A child process writes batches until it is SIGKILLed; the store must reopen with
/// every batch whole or absent, and text and vectors in agreement.
#[test]
fn survives_kill_9_during_writes() {
    if let Ok(dir) = std::env::var("LF_KILL9_CHILD_DIR") {
        let s = EmbeddedStore::open(std::path::Path::new(&dir), Metric::Cosine).unwrap();
        for b in 0.. {
            let vs = vecs(10, 8, b);
            let batch =
                vs.into_iter().enumerate().map(|(i, v)| chunk(&format!("b{b}_{i}"), &format!("batch{b}"), "some words here", json!({"batch": b}), v)).collect();
            s.add(batch).unwrap();
            if b % 3 == 0 {
                s.delete_file(&format!("batch{}", b / 2)).unwrap();
            }
            // Tell the parent how far we got (it kills us mid-way through a later batch).
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "LF_COMMITTED {b}");
            let _ = out.flush();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::survives_kill_9_during_writes", "--nocapture", "--test-threads=1"])
            .env("LF_KILL9_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let the child commit a few batches, then kill it at a varying point of the next.
        use std::io::BufRead;
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        for l in lines.map_while(Result::ok) {
            if l.contains("LF_COMMITTED") {
                seen += 1;
                if seen == 3 + round as usize {
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(300 + 1700 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        let st = s.stats().unwrap();
        let all = s.list(usize::MAX, 0).unwrap();
        assert_eq!(all.len(), st.vector_count);
        let mut per_batch = std::collections::HashMap::new();
        for c in &all {
            *per_batch.entry(c.file_hash.clone()).or_insert(0) += 1;
        }
        assert!(per_batch.values().all(|&n| n == 10), "a batch was half-written: {per_batch:?}");
        // Every stored chunk is findable by its own vector (vectors and text agree).
        for c in all.iter().take(50) {
            let b: u64 = c.file_hash.trim_start_matches("batch").parse().unwrap();
            let i: usize = c.id.rsplit('_').next().unwrap().parse().unwrap();
            let v = &vecs(10, 8, b)[i];
            let hit = &s.vector_search(v, 1, Metric::Cosine, None).unwrap()[0];
            assert!((hit.score - 1.0).abs() < 1e-5);
        }
        assert!(st.vector_count > 0, "round {round}: the child's commits were lost");
    }
}

#[test]
fn stores_written_before_the_seq_column_still_search_filter_and_grow() {
    // A store in the schema of earlier releases (no fast `seq` column), written directly.
    use tantivy::schema::{IndexRecordOption, Schema, TextFieldIndexing, TextOptions, STORED, STRING};
    let dir = tempfile::tempdir().unwrap();
    let vs = vecs(3, 8, 9);
    {
        let tdir = dir.path().join("tantivy");
        std::fs::create_dir_all(&tdir).unwrap();
        let mut b = Schema::builder();
        let text = TextOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer("lf_en").set_index_option(IndexRecordOption::WithFreqsAndPositions))
            .set_stored();
        let id = b.add_text_field("id", STRING | STORED);
        let file = b.add_text_field("file_hash", STRING | STORED);
        let content = b.add_text_field("content", text);
        let meta = b.add_text_field("metadata", STORED);
        let vector = b.add_bytes_field("vector", STORED);
        let index = tantivy::Index::create_in_dir(&tdir, b.build()).unwrap();
        index.tokenizers().register("lf_en", super::embedded::analyzer());
        let mut w: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for (i, (t, m)) in [("cats and dogs", r#"{"doc":"a"}"#), ("scaling laws of neural models", r#"{"doc":"b"}"#)].iter().enumerate() {
            let mut d = tantivy::TantivyDocument::default();
            d.add_text(id, format!("old_{i}"));
            d.add_text(file, "f_old");
            d.add_text(content, t);
            d.add_text(meta, m);
            d.add_bytes(vector, &vs[i].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
            w.add_document(d).unwrap();
        }
        w.commit().unwrap();
    }
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    assert_eq!(s.stats().unwrap().vector_count, 2);
    let hits = s.keyword_search("neural scaling", 5, None).unwrap();
    assert_eq!(hits.first().map(|h| h.id.as_str()), Some("old_1"));
    let f = MetadataFilter::parse(&json!({"doc": "a"})).unwrap();
    assert!(s.keyword_search("scaling cats", 5, Some(&f)).unwrap().iter().all(|h| h.id == "old_0"));
    assert_eq!(s.get(&["old_0".into()]).unwrap()[0].content, "cats and dogs");
    // It keeps accepting chunks in its own schema.
    s.add(vec![chunk("new_0", "f_new", "scaling of compute", json!({}), vs[2].clone())]).unwrap();
    let ids: Vec<String> = s.keyword_search("scaling", 5, None).unwrap().into_iter().map(|h| h.id).collect();
    assert!(ids.contains(&"new_0".to_string()) && ids.contains(&"old_1".to_string()), "{ids:?}");
    assert_eq!(s.vector_search(&vs[2], 1, Metric::Cosine, None).unwrap()[0].id, "new_0");
}

#[test]
fn optimize_merges_segments_and_keeps_every_chunk_findable() {
    let dir = tempfile::tempdir().unwrap();
    let vs = vecs(12, 8, 4);
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    for (i, v) in vs.iter().enumerate() {
        // One commit (segment) per add.
        s.add(vec![chunk(&format!("c{i}"), &format!("f{}", i % 3), &format!("word{i} common"), json!({"i": i}), v.clone())]).unwrap();
    }
    s.delete_file("f0").unwrap();
    s.optimize().unwrap();
    assert_eq!(s.optimize().unwrap(), 0, "a second optimize has nothing to merge");
    let hits = s.keyword_search("common", 20, None).unwrap();
    assert_eq!(hits.len(), 8);
    assert!(hits.iter().all(|h| !["c0", "c3", "c6", "c9"].contains(&h.id.as_str())));
    assert_eq!(s.keyword_search("word7", 3, None).unwrap()[0].id, "c7");
    drop(s);
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    assert_eq!(s.keyword_search("word11", 3, None).unwrap()[0].id, "c11");
    assert_eq!(s.stats().unwrap().vector_count, 8);
    // New chunks after a reopen get fresh sequence numbers.
    s.add(vec![chunk("z", "fz", "word99 common", json!({}), vs[0].clone())]).unwrap();
    assert_eq!(s.keyword_search("word99", 3, None).unwrap()[0].id, "z");
    assert_eq!(s.keyword_search("word5", 3, None).unwrap()[0].id, "c5");
}

#[test]
fn term_at_a_time_bm25_ranks_like_tantivys_boolean_query() {
    // Several segments, deleted documents and Zipf-ish term frequencies: every query's
    // top 30 must carry tantivy's own scores, in its order (ties by address).
    use tantivy::collector::TopDocs;
    use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
    use tantivy::schema::{IndexRecordOption, Schema, TextFieldIndexing, TextOptions, STRING};
    let mut b = Schema::builder();
    let text =
        TextOptions::default().set_indexing_options(TextFieldIndexing::default().set_tokenizer("lf_en").set_index_option(IndexRecordOption::WithFreqsAndPositions));
    let id = b.add_text_field("id", STRING);
    let content = b.add_text_field("content", text);
    let index = tantivy::Index::create_in_ram(b.build());
    index.tokenizers().register("lf_en", super::embedded::analyzer());
    let mut w: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    let mut s = 11u64;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    for i in 0..3000 {
        let len = 3 + next() % 40;
        let words: Vec<String> = (0..len).map(|_| format!("w{}", (next() % 60) * (next() % 60) / 7)).collect();
        let mut d = tantivy::TantivyDocument::default();
        d.add_text(id, format!("d{i}"));
        d.add_text(content, words.join(" "));
        w.add_document(d).unwrap();
        if i % 700 == 699 {
            w.commit().unwrap();
        }
    }
    for i in (0..3000).step_by(13) {
        w.delete_term(tantivy::Term::from_field_text(id, &format!("d{i}")));
    }
    w.commit().unwrap();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    assert!(searcher.segment_readers().len() > 2);
    for q in [vec!["w0"], vec!["w1", "w5", "w100"], vec!["w3", "w4", "w7", "w8", "w9", "nope"], vec!["w50", "w2"]] {
        let tokens: Vec<String> = q.iter().map(|t| t.to_string()).collect();
        let clauses: Vec<(Occur, Box<dyn Query>)> = tokens
            .iter()
            .map(|t| (Occur::Should, Box::new(TermQuery::new(tantivy::Term::from_field_text(content, t), IndexRecordOption::WithFreqs)) as Box<dyn Query>))
            .collect();
        let theirs = searcher.search(&BooleanQuery::new(clauses), &TopDocs::with_limit(30).order_by_score()).unwrap();
        let ours = super::embedded::Bm25Scores::compute(&searcher, content, &tokens).unwrap().unwrap().top(30);
        assert_eq!(ours.len(), theirs.len(), "{q:?}");
        for (i, ((so, ao), (st, at))) in ours.iter().zip(&theirs).enumerate() {
            assert!((so - st).abs() < 1e-4 * st.max(1.0), "{q:?} rank {i}: {so} vs {st}");
            let tied = ours.iter().filter(|(x, _)| (x - so).abs() < 1e-4).count() > 1;
            assert!(tied || ao == at, "{q:?} rank {i}: {ao:?} vs {at:?}");
        }
        let alive = |a: &tantivy::DocAddress| searcher.segment_reader(a.segment_ord).alive_bitset().is_none_or(|b| b.is_alive(a.doc_id));
        assert!(ours.iter().all(|(_, a)| alive(a)), "deleted documents are never returned");
    }
    let none = super::embedded::Bm25Scores::compute(&searcher, content, &["absent".to_string()]).unwrap().unwrap();
    assert!(none.top(5).is_empty());
}

#[test]
fn join_here_runs_each_half_once_on_either_side_and_passes_panics_on() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    let runs = AtomicUsize::new(0);
    for i in 0..100 {
        let v = [i; 10];
        let (a, b) = join_here(
            || v.iter().sum::<usize>(),
            || {
                runs.fetch_add(1, Ordering::SeqCst);
                v.len() * i
            },
        );
        assert_eq!((a, b), (10 * i, 10 * i));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 100);
    // A slow caller half: a worker takes `b`; the caller waits for it. (Other tests may
    // keep every worker busy for a while, then the caller runs `b` itself: try again.)
    let here = std::thread::current().id();
    let on_worker = (0..40).any(|_| join_here(|| std::thread::sleep(Duration::from_millis(50)), || std::thread::current().id()).1 != here);
    assert!(on_worker, "b ran on a worker while a slept");
    // Inside the pool it is rayon::join.
    assert_eq!(rayon::scope(|_| join_here(|| 1, || 2)), (1, 2));
    assert!(std::panic::catch_unwind(|| join_here(|| 1, || -> usize { panic!("b failed") })).is_err());
    let borrowed = [1u8; 4];
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| join_here(|| -> usize { panic!("a failed") }, || borrowed.len()))).is_err());
}

#[test]
fn vectors_are_read_through_a_mapped_file_and_come_back_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    // 12,000 x 384 f32 is 18 MB: more than one write of the heap tail to the file.
    let (n, dim) = (12_000, 384);
    let vs = vecs(n, dim, 5);
    let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let check = |s: &EmbeddedStore| {
        let st = s.stats().unwrap();
        assert_eq!(st.mapped_bytes, (n * dim * 4) as u64);
        assert!(st.memory_bytes < (n * dim * 4) as u64 / 4, "the vectors are not on the heap: {}", st.memory_bytes);
        let got = s.vectors(&ids).unwrap();
        for (i, v) in got.into_iter().enumerate() {
            assert_eq!(v.as_deref(), Some(&vs[i][..]), "row {i}");
        }
        for q in [0, 4_999, 11_999] {
            assert_eq!(s.vector_search(&vs[q], 1, Metric::Cosine, None).unwrap()[0].id, format!("c{q}"));
        }
        assert_eq!(std::fs::metadata(dir.path().join("vectors.f32")).unwrap().len(), (n * dim * 4) as u64);
    };
    {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        for part in (0..n).collect::<Vec<_>>().chunks(5_000) {
            s.add(part.iter().map(|&i| chunk(&ids[i], &format!("f{}", i % 7), "text", json!({}), vs[i].clone())).collect()).unwrap();
        }
        check(&s);
        assert_eq!(s.clear().unwrap(), n);
        assert_eq!(s.stats().unwrap().mapped_bytes, 0);
        s.add(vec![chunk("x", "fx", "text", json!({}), vs[3].clone())]).unwrap();
        assert_eq!(s.vectors(&["x".to_string()]).unwrap()[0].as_deref(), Some(&vs[3][..]));
        s.delete_file("fx").unwrap();
        s.add((0..n).map(|i| chunk(&ids[i], &format!("f{}", i % 7), "text", json!({}), vs[i].clone())).collect()).unwrap();
    }
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    check(&s);
}

/// A closed store leaves its rows in `rows.bin` (and its vectors in `vectors.f32`); the
/// next open reads them instead of the index, with the same answers as a store that reads
/// the index. A damaged, stale or mismatched file is not used.
#[test]
fn a_closed_store_reopens_from_its_rows_file() {
    let dir = tempfile::tempdir().unwrap();
    let (n, dim) = (3_000, 24);
    let vs = vecs(n + 10, dim, 31);
    let rows_file = dir.path().join("rows.bin");
    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let text = |i: usize| format!("{} {} chunk number{i}", words[i % 5], words[(i / 5) % 5]);
    {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        for part in (0..n).collect::<Vec<_>>().chunks(1_000) {
            s.add(
                part.iter()
                    .map(|&i| {
                        chunk(
                            &format!("c{i}"),
                            &format!("f{}", i % 20),
                            &text(i),
                            json!({"i": i, "doc": format!("d{}", i % 20), "tags": ["x", {"k": i % 3}]}),
                            vs[i].clone(),
                        )
                    })
                    .collect(),
            )
            .unwrap();
        }
        // Dead rows: the vector file is written again without them when the store closes.
        assert_eq!(s.delete_file("f7").unwrap(), n / 20);
        assert!(!rows_file.exists());
    }
    assert!(rows_file.exists(), "a closed store writes its rows file");
    let live = n - n / 20;
    assert_eq!(std::fs::metadata(dir.path().join("vectors.f32")).unwrap().len(), (live * dim * 4) as u64);

    let ids: Vec<String> = (0..n + 10).map(|i| format!("c{i}")).collect();
    let filter = MetadataFilter::parse(&json!({"doc": "d3"})).unwrap();
    let answers = |s: &EmbeddedStore| {
        let st = s.stats().unwrap();
        let mut all = s.ids().unwrap();
        all.sort();
        let vectors = s.vectors(&ids).unwrap();
        let kw: Vec<Vec<String>> = ["alpha beta", "gamma number17", "epsilon"]
            .iter()
            .map(|q| s.keyword_search(q, 7, None).unwrap().into_iter().map(|h| format!("{} {}", h.id, h.score)).collect())
            .collect();
        let kw_filtered: Vec<String> = s.keyword_search("delta", 5, Some(&filter)).unwrap().into_iter().map(|h| h.id).collect();
        let vec_hits: Vec<Vec<String>> = [0, 141, 2_999]
            .iter()
            .map(|&q| s.vector_search(&vs[q], 4, Metric::Cosine, None).unwrap().into_iter().map(|h| format!("{} {}", h.id, h.score)).collect())
            .collect();
        let vec_filtered: Vec<String> = s.vector_search(&vs[3], 3, Metric::Cosine, Some(&filter)).unwrap().into_iter().map(|h| h.id).collect();
        let got = s.get(&["c42".into(), "c7".into()]).unwrap();
        (
            st.vector_count,
            st.document_count,
            st.embedding_dimension,
            st.tombstones,
            all,
            vectors,
            kw,
            kw_filtered,
            vec_hits,
            vec_filtered,
            serde_json::to_string(&got).unwrap(),
        )
    };
    let from_rows = {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        assert!(s.opened_from_rows_file());
        let a = answers(&s);
        assert_eq!((a.0, a.1, a.3), (live, 19, 0));
        assert!(a.5[7].is_none() && a.5[8].as_deref() == Some(&vs[8][..]));
        assert_eq!(a.7.len(), 5);
        assert!(a.10.contains("\"content\":\"gamma delta chunk number42\""), "{}", a.10);
        a
    };
    // The same store read from the index.
    std::fs::remove_file(&rows_file).unwrap();
    {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        assert!(!s.opened_from_rows_file());
        assert_eq!(answers(&s), from_rows);
    }
    let good = std::fs::read(&rows_file).unwrap();
    // A damaged file.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    std::fs::write(&rows_file, &bad).unwrap();
    {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        assert!(!s.opened_from_rows_file());
        assert_eq!(answers(&s), from_rows);
    }
    // A cut vector file.
    std::fs::write(&rows_file, &good).unwrap();
    let vf = std::fs::OpenOptions::new().write(true).open(dir.path().join("vectors.f32")).unwrap();
    vf.set_len((dim * 4 * 10) as u64).unwrap();
    drop(vf);
    {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        assert!(!s.opened_from_rows_file());
        assert_eq!(answers(&s), from_rows);
    }
    // A stale file (an older commit): the chunks written since are there, with fresh
    // sequence numbers that keyword search resolves.
    let old = std::fs::read(&rows_file).unwrap();
    {
        let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
        assert!(s.opened_from_rows_file());
        s.add((n..n + 10).map(|i| chunk(&format!("c{i}"), "fnew", "zeta brandnew", json!({"i": i}), vs[i].clone())).collect()).unwrap();
        assert!(!rows_file.exists(), "the first write removes the rows file");
        assert_eq!(s.keyword_search("brandnew", 20, None).unwrap().len(), 10);
        assert_eq!(s.keyword_search("alpha beta", 7, None).unwrap().len(), 7);
    }
    std::fs::write(&rows_file, &old).unwrap();
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    assert!(!s.opened_from_rows_file());
    assert_eq!(s.stats().unwrap().vector_count, live + 10);
    assert_eq!(s.vector_search(&vs[n + 4], 1, Metric::Cosine, None).unwrap()[0].id, format!("c{}", n + 4));
    drop(s);
    // The file the last close wrote describes the new chunks too.
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    assert!(s.opened_from_rows_file());
    assert_eq!(s.keyword_search("brandnew", 20, None).unwrap().len(), 10);
    assert_eq!(s.vectors(&[format!("c{}", n + 9)]).unwrap()[0].as_deref(), Some(&vs[n + 9][..]));
    // Cleared: nothing comes back.
    assert_eq!(s.clear().unwrap(), live + 10);
    drop(s);
    let s = EmbeddedStore::open(dir.path(), Metric::Cosine).unwrap();
    assert!(s.opened_from_rows_file());
    assert_eq!(s.stats().unwrap().vector_count, 0);
    assert!(s.keyword_search("alpha", 5, None).unwrap().is_empty());
    drop(s);

    // A text-only store (the keyword side of a server-backed store) too.
    let tdir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open_text_only(tdir.path()).unwrap();
        s.add((0..50).map(|i| chunk(&format!("t{i}"), "ft", &text(i), json!({"i": i}), vec![])).collect()).unwrap();
    }
    let s = EmbeddedStore::open_text_only(tdir.path()).unwrap();
    assert!(s.opened_from_rows_file());
    assert_eq!(s.stats().unwrap().vector_count, 50);
    assert_eq!(s.keyword_search("number17", 3, None).unwrap()[0].id, "t17");
    assert!(!tdir.path().join("vectors.f32").exists());
}
