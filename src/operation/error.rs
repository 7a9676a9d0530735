use crate::domain::FieldError;
use crate::store::page::PageError;

/// How an operation ends when it does not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist for this tenant (or at all: the two are indistinguishable).
    #[error("no such {0}")]
    NotFound(&'static str),
    /// A listing's cursor names no object of this tenant.
    #[error("no such object: {0}")]
    UnknownCursor(String),
    /// The object's state does not allow this (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request does not fit the objects it refers to (422).
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The system's random number source failed (keys and secrets cannot be made).
    #[error("no randomness: {0}")]
    NoRandomness(String),
    /// The operator has not set webhooks.encryption_key: signing secrets cannot be stored.
    #[error("webhooks are not configured")]
    WebhooksNotConfigured,
}

impl Error {
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldError::new(field, code, message)])
    }

    /// A refusal happens before the operation's first write: its answer may be stored and
    /// replayed. Anything else is a failure, after which the transaction is rolled back.
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::NotFound(_) | Error::UnknownCursor(_) | Error::Conflict { .. } | Error::Invalid(_) => true,
            // Not stored: the same request may succeed once the operator configures webhooks.
            Error::Db(_) | Error::NoRandomness(_) | Error::WebhooksNotConfigured => false,
        }
    }
}

impl From<crate::domain::invoice::Refusal> for Error {
    fn from(r: crate::domain::invoice::Refusal) -> Self {
        Error::Conflict {
            code: r.code,
            message: r.message,
        }
    }
}

impl From<PageError> for Error {
    fn from(e: PageError) -> Self {
        match e {
            PageError::UnknownCursor(id) => Error::UnknownCursor(id),
            PageError::Db(e) => Error::Db(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
