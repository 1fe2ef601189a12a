//! `AppError`: the one error type of the use-cases, and how each variant reaches a
//! GraphQL client. Client-safe variants carry their own message and an
//! `extensions.code`; internal ones (database, unexpected states) are logged in full
//! with the request id and shown to the client only as "internal error".
use async_graphql::ErrorExtensions;

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
    /// The database failed; the text stays in the logs.
    Database(sea_orm::DbErr),
    /// Anything else that should not happen.
    Internal(String),
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
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
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadInput { .. } => "BAD_USER_INPUT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Unavailable => "DATABASE_UNAVAILABLE",
            Self::Database(_) | Self::Internal(_) => "INTERNAL_SERVER_ERROR",
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
            e.set("code", self.code());
            if let Self::BadInput { field, .. } = self {
                e.set("field", *field);
            }
        })
    }
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
        assert_eq!(e.code(), "INTERNAL_SERVER_ERROR");
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
}
