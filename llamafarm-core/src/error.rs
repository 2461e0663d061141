//! The one error type of the core.
//!
//! Every fallible call in `llamafarm-core` returns [`Error`]. The variants are
//! domain facts (a named resource not found, a field with a broken rule, a
//! dependency not available, ...), so front-ends can tell them apart without
//! reading text: the HTTP layer maps each variant to a status and a stable code
//! in one table. Each variant also has a coarse [`ErrorKind`].
//!
//! The `Display` text is written for a person and names no server path, except
//! [`Error::Io`] and [`Error::Internal`], whose text is meant for the log only.

use std::path::{Path, PathBuf};

/// What went wrong, coarsely: this is what front-ends switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller sent something malformed (bad name, bad path segment): HTTP 400.
    BadRequest,
    /// The thing asked for does not exist: HTTP 404.
    NotFound,
    /// The request clashes with existing state: HTTP 409.
    Conflict,
    /// The payload is larger than allowed: HTTP 413.
    PayloadTooLarge,
    /// Well-formed but semantically invalid input (config validation): HTTP 422.
    Invalid,
    /// A needed resource is not available right now (e.g. model weights missing): HTTP 503.
    Unavailable,
    /// Too much work is queued already; try again later: HTTP 429.
    Busy,
    /// The disk that holds the data directory is full (or over quota): HTTP 507.
    StorageFull,
    /// A bug or an I/O failure on our side: HTTP 500.
    Internal,
}

/// The kinds of named things the core manages, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A project namespace.
    Namespace,
    /// A project (`namespace/name`).
    Project,
    /// A dataset of a project.
    Dataset,
    /// A RAG database of a project.
    Database,
    /// An uploaded file (by hash).
    File,
    /// A chat model of a project.
    Model,
    /// A background task.
    Task,
    /// A chat session.
    Session,
    /// A recorded event.
    Event,
    /// A data processing strategy.
    Strategy,
    /// A retrieval strategy of a database.
    RetrievalStrategy,
    /// A parser named by a strategy.
    Parser,
    /// A trained classifier.
    Classifier,
    /// A fitted anomaly model.
    AnomalyModel,
    /// An example project.
    Example,
    /// Anything else; the name is a whole description.
    #[doc(hidden)]
    Other,
}

impl ResourceKind {
    /// A stable snake_case name (`project`, `retrieval_strategy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "namespace",
            ResourceKind::Project => "project",
            ResourceKind::Dataset => "dataset",
            ResourceKind::Database => "database",
            ResourceKind::File => "file",
            ResourceKind::Model => "model",
            ResourceKind::Task => "task",
            ResourceKind::Session => "session",
            ResourceKind::Event => "event",
            ResourceKind::Strategy => "strategy",
            ResourceKind::RetrievalStrategy => "retrieval_strategy",
            ResourceKind::Parser => "parser",
            ResourceKind::Classifier => "classifier",
            ResourceKind::AnomalyModel => "anomaly_model",
            ResourceKind::Example => "example",
            ResourceKind::Other => "resource",
        }
    }

    /// How a message names it, capitalised.
    fn label(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "Namespace",
            ResourceKind::Project => "Project",
            ResourceKind::Dataset => "Dataset",
            ResourceKind::Database => "Database",
            ResourceKind::File => "File",
            ResourceKind::Model => "Model",
            ResourceKind::Task => "Task",
            ResourceKind::Session => "Session",
            ResourceKind::Event => "Event",
            ResourceKind::Strategy => "Data processing strategy",
            ResourceKind::RetrievalStrategy => "Retrieval strategy",
            ResourceKind::Parser => "Parser",
            ResourceKind::Classifier => "Classifier",
            ResourceKind::AnomalyModel => "Anomaly model",
            ResourceKind::Example => "Example",
            ResourceKind::Other => "",
        }
    }

    /// `Project acme/demo`, `File 3f2a...`, `Dataset 'docs'`.
    fn named(self, name: &str) -> String {
        match self {
            ResourceKind::Other => name.to_string(),
            ResourceKind::Project | ResourceKind::File => format!("{} {name}", self.label()),
            _ => format!("{} '{name}'", self.label()),
        }
    }

    /// Whether a name of this kind is called an id (sessions, tasks, events).
    fn is_id(self) -> bool {
        matches!(self, ResourceKind::Task | ResourceKind::Session | ResourceKind::Event)
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The core's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name or id supplied by the caller that cannot name a resource.
    #[error("Invalid {} {} '{}': {reason}", kind.label().to_lowercase(), if kind.is_id() { "id" } else { "name" }, name.escape_default())]
    InvalidName {
        /// What the name is for.
        kind: ResourceKind,
        /// The name as given.
        name: String,
        /// The rule it breaks.
        reason: String,
    },

    /// A resource that does not exist.
    #[error("{} not found{}", kind.named(name), if hint.is_empty() { String::new() } else { format!(" {hint}") })]
    NotFound {
        /// What kind of resource.
        kind: ResourceKind,
        /// Its name (`namespace/name` for a project, the hash for a file).
        name: String,
        /// Where it was looked for or what exists instead (may be empty).
        hint: String,
    },

    /// A resource of that name exists already.
    #[error("{} already exists", kind.named(name))]
    AlreadyExists {
        /// What kind of resource.
        kind: ResourceKind,
        /// Its name.
        name: String,
    },

    /// A resource that cannot be deleted while others depend on it.
    #[error(
        "Cannot delete {} '{name}': {} {}(s) depend on it. Delete or reassign these {}s first: [{}]",
        kind.as_str(), dependents.len(), dependent_kind.as_str(), dependent_kind.as_str(),
        dependents.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(", ")
    )]
    InUse {
        /// What kind of resource.
        kind: ResourceKind,
        /// Its name.
        name: String,
        /// The kind of the dependents.
        dependent_kind: ResourceKind,
        /// The names of the resources that use it.
        dependents: Vec<String>,
    },

    /// The operation was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,

    /// An upload over the configured limit.
    #[error("{what} is larger than the upload limit of {limit} bytes")]
    TooLarge {
        /// What is too large, e.g. `file 'a.pdf'`.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },

    /// Configuration that fails validation. Each entry names a path and a rule.
    #[error("{}", format_validation(.0))]
    Validation(Vec<ValidationIssue>),

    /// A request or config field whose value breaks a rule.
    ///
    /// The text is `{field} {reason}`: the reason continues the sentence,
    /// e.g. `top_k` + `must be between 1 and 100, got 0`.
    #[error("{field} {reason}")]
    InvalidField {
        /// The field, as the request or config names it (`top_k`, `metadata_filters.year`).
        field: String,
        /// The rule it breaks.
        reason: String,
    },

    /// A model that is configured but whose weights are not on this machine.
    #[error("model '{model}' is not available locally ({reason}); fetch it with: {fetch_hint}")]
    ModelMissing {
        /// The model id as configured.
        model: String,
        /// Why it could not be resolved.
        reason: String,
        /// The command that fetches it.
        fetch_hint: String,
    },

    /// A dependency that is down, unreachable or not built in.
    #[error("{what}: {reason}")]
    NotAvailable {
        /// The dependency, e.g. `chat endpoint http://host/v1`.
        what: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// Too many requests wait for the same thing already; retry after `retry_after_s`.
    #[error("{what} is busy ({reason}); retry in {retry_after_s} s")]
    Busy {
        /// What is busy, e.g. `model 'org/name:Q4_K_M'`.
        what: String,
        /// How busy, e.g. `16 generations running, 64 queued`.
        reason: String,
        /// Seconds after which a retry may succeed (at least 1).
        retry_after_s: u64,
    },

    /// The disk that holds the data directory is full (or its quota is spent): nothing
    /// was written, and the same call succeeds once space is freed.
    #[error("not enough disk space to write {what}; free some space on the data directory's disk and retry")]
    StorageFull {
        /// What could not be written, named without a path (`an upload`, `index of database 'main'`).
        what: String,
    },

    /// YAML or JSON that could not be parsed.
    #[error("could not parse {what}: {message}")]
    Parse {
        /// What was being parsed.
        what: String,
        /// The parser's message (with line/column where known).
        message: String,
    },

    /// A filesystem error, with the path involved. The text names the path: log it, do not show it.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A bug or a failure of a dependency that the caller cannot act on. The text is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One validation failure: `path` is a dotted path such as `rag.databases[0].name`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidationIssue {
    /// Where in the document.
    pub path: String,
    /// What rule was broken.
    pub message: String,
}

impl std::fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn format_validation(issues: &[ValidationIssue]) -> String {
    let mut s = String::from("invalid configuration: ");
    s.push_str(&issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "));
    s
}

impl Error {
    /// The coarse kind, used by front-ends to pick a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName { .. } => ErrorKind::BadRequest,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } | Error::InUse { .. } | Error::Cancelled => ErrorKind::Conflict,
            Error::TooLarge { .. } => ErrorKind::PayloadTooLarge,
            Error::Validation(_) | Error::InvalidField { .. } | Error::Parse { .. } => ErrorKind::Invalid,
            Error::ModelMissing { .. } | Error::NotAvailable { .. } => ErrorKind::Unavailable,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::StorageFull { .. } => ErrorKind::StorageFull,
            Error::Io { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// [`Error::NotFound`] without a hint.
    pub fn missing(kind: ResourceKind, name: impl Into<String>) -> Self {
        Error::NotFound { kind, name: name.into(), hint: String::new() }
    }

    /// [`Error::NotFound`] with a hint (`in dataset 'docs'`, `(available: a, b)`).
    pub fn missing_in(kind: ResourceKind, name: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::NotFound { kind, name: name.into(), hint: hint.into() }
    }

    /// [`Error::AlreadyExists`].
    pub fn exists(kind: ResourceKind, name: impl Into<String>) -> Self {
        Error::AlreadyExists { kind, name: name.into() }
    }

    /// [`Error::InvalidField`]: `reason` continues a sentence that starts with `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidField { field: field.into(), reason: reason.into() }
    }

    /// [`Error::NotAvailable`].
    pub fn unavailable(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::NotAvailable { what: what.into(), reason: reason.into() }
    }

    /// [`Error::Parse`]: `what` names the content for a person (a file name, a model id), never a server path.
    pub fn parse(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Parse { what: what.into(), message: message.into() }
    }

    /// [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// Shorthand for [`Error::Io`]; a full disk becomes [`Error::StorageFull`] naming the
    /// file (not its path).
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if is_storage_full(&source) {
            return Error::StorageFull { what: format!("'{}'", file_name(&path)) };
        }
        Error::Io { path, source }
    }

    /// A single validation issue.
    pub fn validation(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![ValidationIssue { path: path.into(), message: message.into() }])
    }
}

/// Whether an I/O error says the disk is full or the quota spent (`ENOSPC`, `EDQUOT`).
pub(crate) fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Whether any error in `e`'s source chain is a full disk (see [`is_storage_full`]).
pub(crate) fn chain_is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(is_storage_full) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The last component of `path`, for messages that must not name a server path.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Error {
    /// The text to keep where a client reads it back in a successful answer (a task's or a
    /// file's failure reason, an event): the error's own text with every absolute path cut
    /// to its file name, so no server path leaves the process. The log keeps the full text.
    pub fn public_message(&self) -> String {
        redact_paths(&self.to_string())
    }
}

/// `text` with each absolute path (a word that starts with `/` and holds another `/`, after
/// a space, a quote, `(` or `=`) cut to its last segment. URLs keep their paths.
pub(crate) fn redact_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut prev: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        let starts_word = prev.is_none_or(|p| p.is_whitespace() || matches!(p, '"' | '\'' | '(' | '=' | '`'));
        if c == '/' && starts_word {
            let end = text[i..].find(|ch: char| ch.is_whitespace() || matches!(ch, '"' | '\'' | ')' | ',' | '`')).map_or(text.len(), |n| i + n);
            let word = &text[i..end];
            let last = word.trim_end_matches(['.', ':', ';']);
            if last.matches('/').count() >= 2 {
                let tail = &word[last.len()..];
                out.push_str(last.rsplit('/').next().unwrap_or(""));
                out.push_str(tail);
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
                prev = word.chars().last();
                continue;
            }
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// `Result` with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_resource() {
        assert_eq!(Error::missing(ResourceKind::Project, "acme/demo").to_string(), "Project acme/demo not found");
        assert_eq!(Error::missing(ResourceKind::Dataset, "docs").to_string(), "Dataset 'docs' not found");
        assert_eq!(Error::missing_in(ResourceKind::File, "ab12", "in dataset 'docs'").to_string(), "File ab12 not found in dataset 'docs'");
        assert_eq!(Error::exists(ResourceKind::Database, "main").to_string(), "Database 'main' already exists");
        assert_eq!(Error::invalid("top_k", "must be at least 1, got 0").to_string(), "top_k must be at least 1, got 0");
        let e = Error::InvalidName { kind: ResourceKind::Namespace, name: "a/b".into(), reason: "must not contain path separators".into() };
        assert_eq!(e.to_string(), "Invalid namespace name 'a/b': must not contain path separators");
        let e = Error::InvalidName { kind: ResourceKind::Session, name: "x y".into(), reason: "bad".into() };
        assert_eq!(e.to_string(), "Invalid session id 'x y': bad");
        let e = Error::InUse { kind: ResourceKind::Database, name: "main".into(), dependent_kind: ResourceKind::Dataset, dependents: vec!["a".into(), "b".into()] };
        assert_eq!(e.to_string(), "Cannot delete database 'main': 2 dataset(s) depend on it. Delete or reassign these datasets first: ['a', 'b']");
        assert_eq!(e.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn public_messages_name_files_not_server_paths() {
        let e = Error::io("/srv/lf/data/projects/acme/kb/datasets/docs/raw/ab12.pdf", std::io::Error::other("permission denied"));
        assert_eq!(e.public_message(), "I/O error on ab12.pdf: permission denied");
        let e = Error::internal("index: cannot open '/root/.local/share/lf/x/meta.json' (os error 13), then (/tmp/a/b) and path=/var/lib/q.bin.");
        assert_eq!(e.public_message(), "internal error: index: cannot open 'meta.json' (os error 13), then (b) and path=q.bin.");
        // URLs, ratios and a lone root are kept.
        let e = Error::unavailable("model hub http://127.0.0.1:9/api/models", "I/O 3/4 of / done");
        assert_eq!(e.public_message(), e.to_string());
    }
}
