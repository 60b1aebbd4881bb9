//! RFC 3161 timestamps: a request for a message imprint, sent through the caller's fetcher,
//! and the checks of the answer (status, nonce, imprint) before its token is used.

use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::asn1::{Int, OctetString};
use der::{Any, Decode, Encode};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifier, ObjectIdentifier};
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::net::Fetch;
use crate::Error;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

fn fail(reason: impl std::fmt::Display) -> Error {
    Error::Timestamp(reason.to_string())
}

/// A positive 64-bit nonce in minimal DER form.
fn nonce() -> Result<Vec<u8>, Error> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| fail(format!("no random nonce: {e}")))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(bytes.to_vec())
}

/// A request as sent, with what its answer must match.
struct Request {
    der: Vec<u8>,
    digest: Vec<u8>,
    nonce: Vec<u8>,
}

/// The request for the SHA-256 of `data`, with a fresh nonce.
fn request(data: &[u8]) -> Result<Request, Error> {
    let digest = Sha256::digest(data).to_vec();
    let nonce = nonce()?;
    let req = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: crate::cades::ID_SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest.clone()).map_err(fail)?,
        },
        req_policy: None,
        nonce: Some(Int::new(&nonce).map_err(fail)?),
        cert_req: true,
        extensions: None,
    };
    Ok(Request {
        der: req.to_der().map_err(fail)?,
        digest,
        nonce,
    })
}

/// Asks `url` to timestamp `data` (a signature value) and returns the checked token.
pub(crate) fn stamp(fetch: &dyn Fetch, url: &str, data: &[u8]) -> Result<ContentInfo, Error> {
    let req = request(data)?;
    let answer = fetch
        .post(url, "application/timestamp-query", &req.der)
        .map_err(|e| fail(format!("{url}: {e}")))?;
    check(&answer, &req.digest, &req.nonce)
}

/// Checks an RFC 3161 answer against the request's imprint and nonce.
fn check(answer: &[u8], digest: &[u8], nonce: &[u8]) -> Result<ContentInfo, Error> {
    let resp = TimeStampResp::from_der(answer)
        .map_err(|e| fail(format!("the answer is not an RFC 3161 response: {e}")))?;
    let status = resp.status.status as u8;
    // PKIStatus granted (0) and grantedWithMods (1) carry a token.
    if status > 1 {
        let text = resp
            .status
            .status_string
            .as_ref()
            .map(|texts| {
                texts
                    .iter()
                    .map(|t| t.as_str().to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        return Err(fail(format!(
            "the service refused (status {status}{}{text})",
            if text.is_empty() { "" } else { ": " }
        )));
    }
    let token = resp
        .time_stamp_token
        .ok_or_else(|| fail("the answer holds no token"))?;
    if token.content_type != ID_SIGNED_DATA {
        return Err(fail("the token is not a SignedData"));
    }
    let signed: SignedData = token
        .content
        .decode_as()
        .map_err(|e| fail(format!("the token cannot be read: {e}")))?;
    let encap = &signed.encap_content_info;
    if encap.econtent_type != ID_CT_TST_INFO {
        return Err(fail("the token does not hold a TSTInfo"));
    }
    let econtent: &Any = encap
        .econtent
        .as_ref()
        .ok_or_else(|| fail("the token's TSTInfo is missing"))?;
    let octets: OctetString = econtent
        .decode_as()
        .map_err(|e| fail(format!("the token's TSTInfo cannot be read: {e}")))?;
    let info = TstInfo::from_der(octets.as_bytes())
        .map_err(|e| fail(format!("the token's TSTInfo cannot be read: {e}")))?;
    if info.message_imprint.hash_algorithm.oid != crate::cades::ID_SHA256
        || info.message_imprint.hashed_message.as_bytes() != digest
    {
        return Err(fail("the token stamps another message than the one sent"));
    }
    match &info.nonce {
        Some(n) if n.as_bytes() == nonce => {}
        Some(_) => return Err(fail("the token's nonce differs from the request's")),
        None => return Err(fail("the token has no nonce")),
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_timestamp_error() {
        let req = request(b"sig").unwrap();
        for answer in [&b""[..], b"\x30\x03\x02\x01\x00", b"<html>oops</html>"] {
            let err = check(answer, &req.digest, &req.nonce).unwrap_err();
            assert!(matches!(err, Error::Timestamp(_)), "{err}");
        }
    }

    #[test]
    fn a_refusal_reports_its_status() {
        // TimeStampResp { status: PKIStatusInfo { status: rejection(2) } }
        let answer = [0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02];
        let err = check(&answer, &[0; 32], &[1]).unwrap_err();
        assert!(err.to_string().contains("status 2"), "{err}");
    }

    #[test]
    fn the_request_carries_the_imprint_and_a_positive_nonce() {
        let Request { der, digest, nonce } = request(b"signature value").unwrap();
        let req = TimeStampReq::from_der(&der).unwrap();
        assert_eq!(req.message_imprint.hashed_message.as_bytes(), &digest[..]);
        assert_eq!(digest, Sha256::digest(b"signature value").to_vec());
        assert_eq!(req.nonce.unwrap().as_bytes(), &nonce[..]);
        assert!(nonce[0] > 0 && nonce[0] < 0x80);
        assert!(req.cert_req);
    }
}
