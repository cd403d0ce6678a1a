//! The one error type that crosses the wire between browser and server.
//! Internal causes never travel: the server logs them and sends a reference.

use crate::domain::FieldError;
use leptos::prelude::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::codec::JsonEncoding;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please sign in again: your session has ended.")]
    Unauthenticated,
    /// The action needs a recent sign-in; the page offers one (`/auth/reauth`).
    #[error("For this action Portcullis needs you to confirm who you are: sign in again, then repeat it.")]
    ReauthRequired,
    #[error("Not allowed: {0}.")]
    Forbidden(String),
    #[error("{0} was not found.")]
    NotFound(String),
    #[error("Please correct the fields marked below.")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts in a short time; the message says when to try again.
    #[error("{0}")]
    RateLimited(String),
    /// The request itself was malformed (missing or unreadable arguments).
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "Something went wrong on our side. If it persists, give the admins this reference: {0}."
    )]
    Internal(String),
    #[error("{0}")]
    Transport(String),
}

impl AppError {
    /// The message for one form field, if this error is about it.
    pub fn field(&self, name: &str) -> Option<String> {
        match self {
            AppError::Invalid(fields) => fields
                .iter()
                .find(|f| f.field == name)
                .map(|f| f.message.clone()),
            _ => None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid(vec![FieldError::new(field, message)])
    }

    /// The HTTP status a server function answers with for this error: a refusal is never
    /// a 500.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated | AppError::ReauthRequired => 401,
            AppError::Forbidden(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Invalid(_) | AppError::BadRequest(_) => 400,
            AppError::Conflict(_) => 409,
            AppError::RateLimited(_) => 429,
            AppError::Internal(_) | AppError::Transport(_) => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // These describe transport or argument problems, never server internals.
        match value {
            ServerFnErrorErr::Args(_)
            | ServerFnErrorErr::MissingArg(_)
            | ServerFnErrorErr::Deserialization(_)
            | ServerFnErrorErr::UnsupportedRequestMethod(_) => AppError::BadRequest(
                "The form was incomplete or malformed; please reload the page and try again."
                    .to_owned(),
            ),
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => AppError::Transport(
                "Could not reach Portcullis. Check your connection and try again.".to_owned(),
            ),
            _ => AppError::Transport(
                "The server could not handle that request; please reload the page.".to_owned(),
            ),
        }
    }
}
