//! The error registry. `ErrorCode` is every `extensions.code` larder sends, with the
//! HTTP status of the ones that end a request before execution; nothing else in the
//! crate writes a code as a string. `AppError` is the one error type of the use-cases:
//! client-safe variants carry their own message and code; internal ones (database,
//! unexpected states) are logged in full with the request id and shown to the client
//! only as "internal error". `classify` gives async-graphql's own errors (which carry no
//! code) theirs, from the message prefixes pinned by the tests below.
use async_graphql::ErrorExtensions;
use axum::http::StatusCode;

/// Every value of `extensions.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Input that fails validation or coercion (with `extensions.field` when ours).
    BadUserInput,
    /// An id that names nothing.
    NotFound,
    /// A mutation without a valid admin token.
    Unauthenticated,
    /// The database cannot be reached now.
    DatabaseUnavailable,
    /// A cache operation that needs the cache (`clearCache`) while it is unreachable.
    CacheUnavailable,
    /// Anything unexpected; the message is masked and `extensions.requestId` added.
    InternalServerError,
    /// A document that does not parse or validate, or breaks a limit.
    GraphqlValidationFailed,
    /// The request ran longer than `REQUEST_TIMEOUT_MS` and was cancelled.
    Timeout,
    /// A mutation sent with GET.
    MethodNotAllowed,
    /// A POST body that is not `application/json`.
    UnsupportedMediaType,
    /// An `Accept` that allows neither response type.
    NotAcceptable,
    /// A body over `BODY_LIMIT_BYTES`.
    PayloadTooLarge,
    /// A malformed GraphQL-over-HTTP request (bad JSON, missing query, batches).
    BadRequest,
    /// The server is past a load bound: more requests in flight than `MAX_IN_FLIGHT`
    /// (503 with `Retry-After`), or more database reads waiting than `DB_READ_QUEUE`.
    Overloaded,
    /// A persisted query hash this server does not know (yet): Apollo's clients then
    /// send the document with it.
    PersistedQueryNotFound,
    /// A persisted query sent while `PERSISTED_QUERIES=false`: clients stop hashing.
    PersistedQueryNotSupported,
    /// A document sent with a `sha256Hash` that is not its SHA-256.
    PersistedQueryHashMismatch,
    /// A browser origin that may not open a WebSocket here (CORS decides it for HTTP).
    Forbidden,
    /// A subscription cannot start, or ends, because changes cannot be delivered (the
    /// change feed is not connected, or lost its connection: changes may be missed).
    LiveUpdatesUnavailable,
    /// The request would run more SQL statements than one request may
    /// (`QUERY_MAX_SQL_STATEMENTS`): ask for fewer lists or ids at once.
    QueryTooExpensive,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        Self::BadUserInput,
        Self::NotFound,
        Self::Unauthenticated,
        Self::DatabaseUnavailable,
        Self::CacheUnavailable,
        Self::InternalServerError,
        Self::GraphqlValidationFailed,
        Self::Timeout,
        Self::MethodNotAllowed,
        Self::UnsupportedMediaType,
        Self::NotAcceptable,
        Self::PayloadTooLarge,
        Self::BadRequest,
        Self::Overloaded,
        Self::PersistedQueryNotFound,
        Self::PersistedQueryNotSupported,
        Self::PersistedQueryHashMismatch,
        Self::LiveUpdatesUnavailable,
        Self::Forbidden,
        Self::QueryTooExpensive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::NotFound => "NOT_FOUND",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Self::CacheUnavailable => "CACHE_UNAVAILABLE",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::Timeout => "TIMEOUT",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::NotAcceptable => "NOT_ACCEPTABLE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::BadRequest => "BAD_REQUEST",
            Self::Overloaded => "OVERLOADED",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
            Self::PersistedQueryHashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Self::LiveUpdatesUnavailable => "LIVE_UPDATES_UNAVAILABLE",
            Self::Forbidden => "FORBIDDEN",
            Self::QueryTooExpensive => "QUERY_TOO_EXPENSIVE",
        }
    }

    /// The status of a response that this error ends before execution. Errors raised
    /// while executing travel in a 200 response next to `data`; a document error is 400
    /// only for `application/graphql-response+json` (see `transport`).
    pub fn status(self) -> StatusCode {
        match self {
            Self::Timeout
            | Self::DatabaseUnavailable
            | Self::CacheUnavailable
            | Self::Overloaded
            | Self::LiveUpdatesUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound | Self::PersistedQueryNotFound => StatusCode::NOT_FOUND,
            Self::BadUserInput
            | Self::GraphqlValidationFailed
            | Self::BadRequest
            | Self::QueryTooExpensive
            | Self::PersistedQueryNotSupported
            | Self::PersistedQueryHashMismatch => StatusCode::BAD_REQUEST,
        }
    }

    /// The code of a code-less error that async-graphql raised itself: parse and
    /// validation errors have no path; argument and variable coercion errors have one
    /// and start with one of `INPUT_ERROR_PREFIXES`; anything else is unexpected.
    pub fn classify(message: &str, has_path: bool) -> Self {
        if !has_path {
            Self::GraphqlValidationFailed
        } else if INPUT_ERROR_PREFIXES.iter().any(|p| message.starts_with(p)) {
            Self::BadUserInput
        } else {
            Self::InternalServerError
        }
    }

    /// The code an error already carries in its extensions, if it is one of ours.
    pub fn from_extension(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// How async-graphql 7 begins the messages of input coercion errors that carry a
/// path (pinned by `tests::async_graphql_input_error_messages_keep_their_prefixes`).
pub const INPUT_ERROR_PREFIXES: [&str; 4] = [
    "Failed to parse",
    "Invalid value",
    "Variable ",
    "Expected input type",
];

/// Deliberately not `Display`: async-graphql converts any `Display` error into a
/// client-visible message, so `?` on an `AppError` must go through the masking
/// conversion below instead.
#[derive(Debug)]
pub enum AppError {
    /// Input that fails validation; `field` names the input field at fault.
    BadInput {
        field: &'static str,
        message: String,
    },
    /// The id names nothing.
    NotFound { entity: &'static str, id: String },
    /// A mutation without a valid admin token.
    Unauthenticated,
    /// The database cannot be reached (down, or no connection free in time).
    Unavailable,
    /// The cache is needed (`clearCache`) and cannot be reached.
    CacheUnavailable,
    /// Too many database reads already waiting (`DB_READ_QUEUE`), or none could start
    /// within `DB_TIMEOUT_MS`: the server is overloaded, the database is not down.
    Overloaded,
    /// The request asked for more database work than one request may cause
    /// (`QUERY_MAX_SQL_STATEMENTS`).
    TooExpensive { limit: usize },
    /// The database failed; the text stays in the logs.
    Database(sea_orm::DbErr),
    /// Anything else that should not happen.
    Internal(String),
}

/// The marker of a database read refused by the read bound (`Catalog::read_sql`).
pub const READ_QUEUE_FULL: &str = "larder: database read bound reached";

/// Whether a database error is the read bound's refusal, not the database's.
pub fn db_overloaded(e: &sea_orm::DbErr) -> bool {
    matches!(e, sea_orm::DbErr::Custom(m) if m == READ_QUEUE_FULL)
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        if db_overloaded(&e) {
            return Self::Overloaded;
        }
        if db_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable
        } else {
            Self::Database(e)
        }
    }
}

/// Whether a database error means "cannot reach it now" rather than "this failed":
/// no connection in time, a broken connection, or Postgres refusing connections
/// (SQLSTATE class 08, connection exception; 57P, operator intervention).
pub fn db_unavailable(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            match &**s {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            }
        }
        _ => false,
    }
}

impl AppError {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadInput {
            field,
            message: message.into(),
        }
    }

    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// The value of `extensions.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadInput { .. } => ErrorCode::BadUserInput,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::Unavailable => ErrorCode::DatabaseUnavailable,
            Self::CacheUnavailable => ErrorCode::CacheUnavailable,
            Self::Overloaded => ErrorCode::Overloaded,
            Self::TooExpensive { .. } => ErrorCode::QueryTooExpensive,
            Self::Database(_) | Self::Internal(_) => ErrorCode::InternalServerError,
        }
    }

    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Internal(_))
    }

    /// What the client may read: never driver or SQL text.
    pub fn client_message(&self) -> String {
        match self {
            Self::BadInput { message, .. } => message.clone(),
            Self::NotFound { entity, id } => format!("{entity} {id} not found"),
            Self::Unauthenticated => {
                "a valid admin token is required: send `Authorization: Bearer <token>`".into()
            }
            Self::Unavailable => "the database is unavailable; try again shortly".into(),
            Self::CacheUnavailable => "the cache is unreachable; try again when it is back".into(),
            Self::Overloaded => "the server is overloaded; try again shortly".into(),
            Self::TooExpensive { limit } => format!(
                "this request needs more than {limit} database statements (the most one request may run); ask for fewer lists or ids at once"
            ),
            Self::Database(_) | Self::Internal(_) => {
                "internal error; the server log has the details under this request's id".into()
            }
        }
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if self.is_internal() {
            tracing::error!(error = ?self, "internal error");
        }
        async_graphql::Error::new(self.client_message()).extend_with(|_, e| {
            e.set("code", self.code().as_str());
            if let Self::BadInput { field, .. } = self {
                e.set("field", *field);
            }
        })
    }
}

/// A GraphQL error with our `code` and a client-safe `message`.
pub fn coded(code: ErrorCode, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code.as_str()))
}

impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> Self {
        e.extend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_reach_the_client_without_their_text() {
        let e = AppError::Database(sea_orm::DbErr::Custom(
            "relation \"products\" does not exist".into(),
        ));
        let gql = e.extend();
        assert!(!gql.message.contains("relation"), "{}", gql.message);
        assert_eq!(e.code(), ErrorCode::InternalServerError);
    }

    #[test]
    fn bad_input_names_its_field() {
        let gql = AppError::bad_input("price", "price must be >= 0").extend();
        let ext = gql.extensions.expect("extensions");
        assert_eq!(
            ext.get("field").map(|v| v.to_string()),
            Some("\"price\"".into())
        );
        assert_eq!(
            ext.get("code").map(|v| v.to_string()),
            Some("\"BAD_USER_INPUT\"".into())
        );
    }

    #[test]
    fn every_code_is_registered_once_and_maps_to_a_status() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} twice");
            assert_eq!(ErrorCode::from_extension(code.as_str()), Some(code));
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
        assert_eq!(ErrorCode::from_extension("SOMETHING_ELSE"), None);
        assert_eq!(ErrorCode::Timeout.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
