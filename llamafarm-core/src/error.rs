//! The one error type of the core.
//!
//! Every fallible call in `llamafarm-core` returns [`Error`]. Each variant has an
//! [`ErrorKind`], and the HTTP layer maps every kind to exactly one status code
//! (with no wildcard arm), so adding a kind is a compile error there until it is
//! mapped.

use std::path::PathBuf;

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
    /// A bug or an I/O failure on our side: HTTP 500.
    Internal,
}

/// The core's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name or other identifier supplied by the caller is not acceptable.
    #[error("{0}")]
    BadRequest(String),

    /// A resource that does not exist.
    #[error("{what} not found")]
    NotFound {
        /// Human description, e.g. `Project acme/demo`.
        what: String,
    },

    /// The resource already exists or the operation conflicts with state.
    #[error("{0}")]
    Conflict(String),

    /// A body or file over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),

    /// Configuration that fails validation. Each entry names a path and a rule.
    #[error("{}", format_validation(.0))]
    Validation(Vec<ValidationIssue>),

    /// Input that is well-formed but not acceptable for another reason.
    #[error("{0}")]
    Invalid(String),

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

    /// A dependency that is down or not configured.
    #[error("{0}")]
    Unavailable(String),

    /// YAML or JSON that could not be parsed.
    #[error("could not parse {what}: {message}")]
    Parse {
        /// What was being parsed.
        what: String,
        /// The parser's message (with line/column where known).
        message: String,
    },

    /// A filesystem error, with the path involved.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Anything else that indicates a bug.
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
            Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::PayloadTooLarge(_) => ErrorKind::PayloadTooLarge,
            Error::Validation(_) | Error::Invalid(_) | Error::Parse { .. } => ErrorKind::Invalid,
            Error::ModelMissing { .. } | Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Io { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A single validation issue.
    pub fn validation(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![ValidationIssue { path: path.into(), message: message.into() }])
    }
}

/// `Result` with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
