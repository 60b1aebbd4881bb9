//! A certificate on a token, through kysod, as the document library's
//! [`kyso_pdf::signer::Signer`]: what the bridge's document operations (and `kyso sign`) sign
//! PDFs with. Every signature goes through kysod's client with the site and the document named
//! in its prompts and journal; RSA keys sign PKCS#1 v1.5 over the DigestInfo (`CKM_RSA_PKCS`),
//! EC keys sign with `CKM_ECDSA` and give the DER `ECDSA-Sig-Value`.

use kyso_pdf::signer::{DigestAlg, KeyKind};

use crate::kysod::{Signer, TokenCert};
use crate::request::{Digest, HashAlg};
use crate::status::{Failure, Status};

/// `rsaEncryption` and `id-ecPublicKey`.
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";

/// One certificate of one kysod client, for one document.
pub struct TokenPdfSigner<'a> {
    client: &'a mut Signer,
    cert: TokenCert,
    kind: KeyKind,
    document: String,
    failure: Option<Failure>,
}

/// The kind of key a certificate's public key is.
pub fn key_kind(cert_der: &[u8]) -> Result<KeyKind, Failure> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|_| Failure::with(Status::TokenError, "certificate / chứng thư"))?;
    match cert
        .public_key()
        .algorithm
        .algorithm
        .to_id_string()
        .as_str()
    {
        OID_RSA => Ok(KeyKind::Rsa),
        OID_EC => Ok(KeyKind::Ec),
        other => Err(Failure::with(
            Status::TokenError,
            format!("key algorithm / thuật toán khóa {other}"),
        )),
    }
}

impl<'a> TokenPdfSigner<'a> {
    /// `document` names what is signed in kysod's prompts and journal.
    pub fn new(
        client: &'a mut Signer,
        cert: TokenCert,
        document: String,
    ) -> Result<TokenPdfSigner<'a>, Failure> {
        Ok(TokenPdfSigner {
            kind: key_kind(&cert.der)?,
            client,
            cert,
            document,
            failure: None,
        })
    }

    /// Why the last signature failed (the PIN prompt cancelled, a wrong PIN, the token's
    /// error), which the library only sees as text.
    pub fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }
}

impl kyso_pdf::signer::Signer for TokenPdfSigner<'_> {
    fn certificate(&self) -> &[u8] {
        &self.cert.der
    }

    fn key_kind(&self) -> KeyKind {
        self.kind
    }

    fn sign_digest(&mut self, alg: DigestAlg, digest: &[u8]) -> Result<Vec<u8>, String> {
        let alg = match alg {
            DigestAlg::Sha256 => HashAlg::Sha256,
        };
        if digest.len() != alg.digest_len() {
            return Err(format!("a {} digest of {} bytes", alg.name(), digest.len()));
        }
        let digest = Digest {
            alg,
            value: digest.to_vec(),
        };
        self.client
            .sign_digest(&self.cert, &digest, &self.document)
            .map_err(|f| {
                let message = f.message();
                self.failure = Some(f);
                message
            })
    }
}
