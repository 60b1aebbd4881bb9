//! The CMS signature of a PAdES signature (`ETSI.CAdES.detached`, baseline B-B): a detached
//! SignedData over the document's byte range whose signed attributes are the content type,
//! the message digest and the ESS signing-certificate-v2, and whose signature comes from the
//! token. The unsigned attributes may carry an RFC 3161 signature timestamp (B-T).

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode, Sequence};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::Certificate;

use crate::signer::{DigestAlg, KeyKind, Signer};
use crate::Error;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const ID_AA_SIGNATURE_TIME_STAMP_TOKEN: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
pub(crate) const ID_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// ESS `SigningCertificateV2` (RFC 5035); policies are never written.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

/// ESS `ESSCertIDv2`. The hash algorithm is left out because SHA-256 is its default.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<IssuerSerial>,
}

/// ESS `IssuerSerial`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct IssuerSerial {
    issuer: Vec<GeneralName>,
    serial_number: SerialNumber,
}

fn der_err(what: &str) -> impl Fn(der::Error) -> Error + '_ {
    move |e| Error::Other(format!("{what}: {e}"))
}

fn sha256_alg() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    }
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, Error> {
    let values = SetOfVec::try_from(vec![value]).map_err(der_err("attribute"))?;
    Ok(Attribute { oid, values })
}

/// The parsed certificates a signature embeds: the signer's first.
pub(crate) struct Certificates {
    signer: Certificate,
    signer_der: Vec<u8>,
    chain: Vec<Certificate>,
}

impl Certificates {
    pub(crate) fn new(signer: &[u8], chain: &[Vec<u8>]) -> Result<Self, Error> {
        let parse = |der: &[u8]| {
            Certificate::from_der(der)
                .map_err(|e| Error::Signer(format!("the token's certificate cannot be read: {e}")))
        };
        // A SET OF certificates holds each once: a token may list the signer or an issuer
        // again in its chain.
        let mut seen: Vec<&[u8]> = vec![signer];
        let mut parsed = Vec::new();
        for der in chain {
            if !seen.contains(&der.as_slice()) {
                seen.push(der);
                parsed.push(parse(der)?);
            }
        }
        Ok(Self {
            signer: parse(signer)?,
            signer_der: signer.to_vec(),
            chain: parsed,
        })
    }

    /// An upper bound of the DER SignedData's size without a timestamp token.
    pub(crate) fn estimated_size(&self, chain_sizes: usize) -> usize {
        let key = self
            .signer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
            .len();
        // The signature is never longer than the public key plus DER framing; the rest is
        // the signed attributes, the issuer name twice and the algorithm identifiers.
        let issuer = self
            .signer
            .tbs_certificate
            .issuer
            .to_der()
            .map_or(1024, |d| d.len());
        self.signer_der.len() + chain_sizes + key + 2 * issuer + 1024
    }
}

/// A SignerInfo that is signed but not yet wrapped, so a timestamp can be added over its
/// signature value.
pub(crate) struct Signed {
    info: SignerInfo,
}

impl Signed {
    /// The signature value, which a signature timestamp covers.
    pub(crate) fn signature(&self) -> &[u8] {
        self.info.signature.as_bytes()
    }

    /// Adds the RFC 3161 token as the `signatureTimeStampToken` unsigned attribute.
    pub(crate) fn add_timestamp(&mut self, token: &ContentInfo) -> Result<(), Error> {
        let value = Any::encode_from(token).map_err(der_err("timestamp token"))?;
        let attr = attribute(ID_AA_SIGNATURE_TIME_STAMP_TOKEN, value)?;
        let attrs = SetOfVec::try_from(vec![attr]).map_err(der_err("unsigned attributes"))?;
        self.info.unsigned_attrs = Some(attrs);
        Ok(())
    }
}

/// Signs `digest` (the SHA-256 of the byte range) with `signer`: builds the signed attributes
/// and has the token sign their SHA-256.
pub(crate) fn sign(
    certs: &Certificates,
    signer: &mut dyn Signer,
    digest: &[u8],
) -> Result<Signed, Error> {
    let tbs = &certs.signer.tbs_certificate;
    let issuer_serial = IssuerSerial {
        issuer: vec![GeneralName::DirectoryName(tbs.issuer.clone())],
        serial_number: tbs.serial_number.clone(),
    };
    let signing_cert = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(Sha256::digest(&certs.signer_der).to_vec())
                .map_err(der_err("certificate hash"))?,
            issuer_serial: Some(issuer_serial),
        }],
    };
    let signed_attrs = SetOfVec::try_from(vec![
        attribute(
            ID_CONTENT_TYPE,
            Any::encode_from(&ID_DATA).map_err(der_err("content type"))?,
        )?,
        attribute(
            ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(digest).map_err(der_err("digest"))?)
                .map_err(der_err("digest"))?,
        )?,
        attribute(
            ID_AA_SIGNING_CERTIFICATE_V2,
            Any::encode_from(&signing_cert).map_err(der_err("signing certificate"))?,
        )?,
    ])
    .map_err(der_err("signed attributes"))?;

    let to_sign = Sha256::digest(
        signed_attrs
            .to_der()
            .map_err(der_err("signed attributes"))?,
    );
    let signature = signer
        .sign_digest(DigestAlg::Sha256, &to_sign)
        .map_err(Error::Signer)?;
    let signature_algorithm = match signer.key_kind() {
        KeyKind::Rsa => AlgorithmIdentifierOwned {
            oid: SHA256_WITH_RSA,
            parameters: Some(Any::from(der::asn1::Null)),
        },
        KeyKind::Ec => AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
    };
    let info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }),
        digest_alg: sha256_alg(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm,
        signature: OctetString::new(signature).map_err(der_err("signature"))?,
        unsigned_attrs: None,
    };
    Ok(Signed { info })
}

/// The DER `ContentInfo` holding the detached SignedData.
pub(crate) fn encode(certs: &Certificates, signed: Signed) -> Result<Vec<u8>, Error> {
    let mut set = vec![CertificateChoices::Certificate(certs.signer.clone())];
    set.extend(
        certs
            .chain
            .iter()
            .cloned()
            .map(CertificateChoices::Certificate),
    );
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256_alg()])
            .map_err(der_err("digest algorithms"))?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(set).map_err(der_err("certificates"))?,
        )),
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![signed.info]).map_err(der_err("signer infos"))?,
        ),
    };
    let info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(der_err("signed data"))?,
    };
    info.to_der().map_err(der_err("content info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    struct Fixed(Vec<u8>);

    impl Signer for Fixed {
        fn certificate(&self) -> &[u8] {
            &self.0
        }
        fn key_kind(&self) -> KeyKind {
            KeyKind::Ec
        }
        fn sign_digest(&mut self, _: DigestAlg, _: &[u8]) -> Result<Vec<u8>, String> {
            Ok(vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
        }
    }

    #[test]
    fn a_chain_repeating_certificates_embeds_each_once() {
        let (leaf, ca) = (cert("leaf"), cert("ca"));
        let certs = Certificates::new(&leaf, &[leaf.clone(), ca.clone(), ca.clone()]).unwrap();
        assert_eq!(certs.chain.len(), 1);
        let signed = sign(&certs, &mut Fixed(leaf), &[0; 32]).unwrap();
        let der = encode(&certs, signed).unwrap();
        let info = ContentInfo::from_der(&der).unwrap();
        let data: SignedData = info.content.decode_as().unwrap();
        assert_eq!(data.certificates.unwrap().0.len(), 2);
    }

    #[test]
    fn a_certificate_that_is_not_one_is_the_signers_fault() {
        let err = Certificates::new(b"not DER", &[]).err().unwrap();
        assert!(matches!(err, Error::Signer(_)), "{err}");
    }
}
