//! The key that signs: a certificate on a token whose private key stays there.

/// Digests a signer is asked to sign. PAdES signatures made by kyso use SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    Sha256,
}

/// The kind of key behind the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, signing PKCS#1 v1.5.
    Rsa,
    /// ECDSA on the certificate's curve.
    Ec,
}

/// A certificate and its private key on a token.
pub trait Signer {
    /// The signing certificate, DER.
    fn certificate(&self) -> &[u8];
    /// Certificates of the chain to embed (issuers), DER; may be empty.
    fn chain(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn key_kind(&self) -> KeyKind;
    /// Signs `digest` (of `alg`). The answer is what CMS carries: for RSA the PKCS#1 v1.5
    /// signature, for ECDSA the DER `ECDSA-Sig-Value`.
    fn sign_digest(&mut self, alg: DigestAlg, digest: &[u8]) -> Result<Vec<u8>, String>;
}
