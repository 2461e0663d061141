//! The tantivy side of a store: its schema, the fields it reads back, and the
//! English analyzer (simple tokens, lower case, stop words, stemming) that BM25 uses.

use crate::error::{Error, Result};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};

/// The name the analyzer is registered under in every index.
pub(super) const TOKENIZER: &str = "lf_en";
/// The fast field that maps a hit to its in-memory row.
pub(super) const SEQ_FIELD: &str = "seq";

/// A tantivy error as ours: a full disk is [`Error::StorageFull`], the rest internal.
pub(super) fn te(e: tantivy::TantivyError) -> Error {
    // tantivy wraps the `io::Error` in its own variants, not always as a `source`.
    let text = e.to_string();
    if crate::error::chain_is_storage_full(&e) || text.contains("os error 28") || text.contains("os error 122") {
        return Error::StorageFull { what: "the search index".into() };
    }
    Error::internal(format!("index: {text}"))
}

#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub(super) id: Field,
    pub(super) file_hash: Field,
    pub(super) content: Field,
    pub(super) metadata: Field,
    pub(super) vector: Field,
    /// A per-store sequence number in a fast (columnar) u64 field, so a search hit
    /// maps to its in-memory row without reading the stored document. Stores created
    /// before it was added keep their schema and take the stored-document path.
    pub(super) seq: Option<Field>,
}

pub(super) fn schema() -> Schema {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqsAndPositions))
        .set_stored();
    b.add_text_field("id", STRING | STORED);
    b.add_text_field("file_hash", STRING | STORED);
    b.add_text_field("content", text);
    b.add_text_field("metadata", STORED);
    b.add_bytes_field("vector", STORED);
    b.add_u64_field(SEQ_FIELD, FAST | STORED);
    b.build()
}

/// The fields of an index's own schema (current or legacy).
pub(super) fn fields_of(schema: &Schema) -> Result<Fields> {
    let f = |name: &str| schema.get_field(name).map_err(|_| Error::internal(format!("index schema lacks the '{name}' field")));
    Ok(Fields {
        id: f("id")?,
        file_hash: f("file_hash")?,
        content: f("content")?,
        metadata: f("metadata")?,
        vector: f("vector")?,
        seq: schema.get_field(SEQ_FIELD).ok().filter(|&f| schema.get_field_entry(f).is_fast()),
    })
}

pub(in crate::store) fn analyzer() -> TextAnalyzer {
    let mut b = TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser).dynamic();
    if let Some(sw) = StopWordFilter::new(Language::English) {
        b = b.filter_dynamic(sw);
    }
    b.filter_dynamic(Stemmer::new(Language::English)).build()
}
