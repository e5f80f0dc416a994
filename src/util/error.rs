//! Error helpers shared by every layer: one-line messages and the out-of-range value error.

/// A value that is out of range or inconsistent: names the dotted field and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for {field}: {message}")]
pub struct FieldError {
    /// The dotted field name (`model.latent.bits`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// A [`FieldError`] for `field`, converted into whichever error type the caller returns.
pub fn value_err<E: From<FieldError>>(field: &'static str, message: impl Into<String>) -> E {
    E::from(FieldError { field, message: message.into() })
}

/// Folds a multi-line message (parser or libtorch errors) into one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
