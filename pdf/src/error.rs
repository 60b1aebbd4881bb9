//! What can go wrong with a document, in words a user can act on.

/// A document could not be signed or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a PDF file")]
    NotPdf,
    #[error("the PDF is encrypted; kyso signs only unencrypted documents")]
    Encrypted,
    #[error("the PDF is damaged: {0}")]
    Damaged(String),
    #[error("the file is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("the appearance cannot be drawn: {0}")]
    Appearance(String),
    #[error("the token did not sign: {0}")]
    Signer(String),
    #[error("the timestamping service failed: {0}")]
    Timestamp(String),
    #[error("{0}")]
    Other(String),
}
