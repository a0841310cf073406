//! One error vocabulary for the whole server. The HTTP status is decided here and only
//! here; the public message (shown to clients) is kept apart from the cause (logged).

use std::fmt;

/// What went wrong, in terms a client can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    Internal,
    NotImplemented,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unprocessable => 422,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::BadGateway => 502,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }
}

/// A request failure. `detail` goes to the client; `cause` only to the log.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub detail: String,
    pub cause: Option<String>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u32>,
}

impl Error {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error {
            kind,
            detail: detail.into(),
            cause: None,
            retry_after: None,
        }
    }

    pub fn with_cause(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, detail)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorKind::NotFound, "no such image")
    }

    pub fn internal(cause: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "internal error").with_cause(cause)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.detail)?;
        if let Some(cause) = &self.cause {
            write!(f, " ({cause})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<crate::storage::StorageError> for Error {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError as S;
        match e {
            S::NotFound => Error::not_found(),
            S::InvalidKey(why) => Error::bad_request(format!("invalid image key: {why}")),
            S::TooLarge { size, limit } => Error::new(
                ErrorKind::PayloadTooLarge,
                format!("original is larger than the limit of {limit} bytes"),
            )
            .with_cause(format!("size {size}")),
            S::Timeout(cause) => {
                Error::new(ErrorKind::GatewayTimeout, "storage timed out").with_cause(cause)
            }
            S::Unavailable(cause) => {
                Error::new(ErrorKind::BadGateway, "storage failed").with_cause(cause)
            }
        }
    }
}

impl From<crate::pipeline::PipelineError> for Error {
    fn from(e: crate::pipeline::PipelineError) -> Self {
        use crate::pipeline::PipelineError as P;
        match e {
            P::Unsupported(m) => Error::new(ErrorKind::UnsupportedMediaType, m),
            P::Corrupt(m) => Error::new(ErrorKind::Unprocessable, m),
            P::TooManyPixels {
                width,
                height,
                limit,
            } => Error::new(
                ErrorKind::Unprocessable,
                format!("image is {width}x{height} pixels, more than the limit of {limit}"),
            ),
            P::AnimationTooLarge(m) => Error::new(ErrorKind::Unprocessable, m),
            P::InvalidParam { param, detail } => crate::params::ParamsError::Invalid {
                param: param.into(),
                detail,
            }
            .into(),
            P::Encode(m) => Error::internal(m),
        }
    }
}

impl From<crate::originals::StripError> for Error {
    fn from(e: crate::originals::StripError) -> Self {
        Error::new(ErrorKind::Unprocessable, e.to_string())
    }
}

impl From<crate::params::ParamsError> for Error {
    fn from(e: crate::params::ParamsError) -> Self {
        Error::bad_request(e.to_string())
    }
}

impl From<crate::storage::key::KeyError> for Error {
    fn from(e: crate::storage::key::KeyError) -> Self {
        Error::bad_request(e.to_string())
    }
}

impl From<crate::metadata::MetaError> for Error {
    fn from(e: crate::metadata::MetaError) -> Self {
        use crate::metadata::MetaError as M;
        match e {
            M::Conflict(c) => {
                Error::new(ErrorKind::Conflict, "a record for this key exists already")
                    .with_cause(c)
            }
            M::Db(c) => {
                Error::new(ErrorKind::ServiceUnavailable, "metadata database failed").with_cause(c)
            }
        }
    }
}
