//! Why a query string was refused. Mapped to 400 in `error.rs`; the `Display` text is
//! the public problem `detail`.

/// A refused query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("query parameter names must be UTF-8")]
    NameNotUtf8,
    /// The name as shown to the client (at most 40 characters of it).
    #[error("unknown parameter `{0}`")]
    Unknown(String),
    #[error("invalid parameter `{param}`: {detail}")]
    Invalid { param: String, detail: String },
}

impl ParamsError {
    /// An invalid value for `param`.
    pub fn invalid(param: &str, detail: impl Into<String>) -> Self {
        ParamsError::Invalid {
            param: param.to_string(),
            detail: detail.into(),
        }
    }

    /// An unknown parameter name, shortened for display.
    pub fn unknown(name: &str) -> Self {
        ParamsError::Unknown(name.chars().take(40).collect())
    }
}
