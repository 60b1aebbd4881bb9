//! XML-DSig verification (VerifyXML): every `<Signature>` in a document is checked — each
//! Reference's digest over what it points at (the whole document or an element by its `Id`,
//! after the enveloped-signature and c14n transforms), then the SignatureValue over the
//! canonical SignedInfo with the key of the certificate in KeyInfo. What the signature does not
//! say how to check (other transforms, external references, a key without a certificate) is
//! refused as not supported rather than guessed at. Whether the certificate is trusted (its
//! chain, revocation) is not judged here: the answer names it.

use base64::Engine;
use roxmltree::{Document, Node, NodeId};
use serde_json::{json, Value};

use crate::c14n::{self, Method};
use crate::request::{Digest, HashAlg};
use crate::status::{Failure, Status};

const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const MORE: &str = "http://www.w3.org/2001/04/xmldsig-more#";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";

/// One signature checked and found valid.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signer's certificate (DER), from KeyInfo.
    pub cert: Vec<u8>,
    pub signature_method: String,
    /// Each Reference's URI (`""` is the whole document).
    pub references: Vec<String>,
}

fn invalid(n: usize, detail: impl std::fmt::Display) -> Failure {
    Failure::with(
        Status::SignatureInvalid,
        format!("chữ ký / signature {n}: {detail}"),
    )
}

fn unsupported(n: usize, detail: impl std::fmt::Display) -> Failure {
    Failure::with(
        Status::NotSupported,
        format!("chữ ký / signature {n}: {detail}"),
    )
}

fn malformed(n: usize, detail: impl std::fmt::Display) -> Failure {
    Failure::with(
        Status::BadRequest,
        format!("chữ ký / signature {n}: {detail}"),
    )
}

fn dsig<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.has_tag_name((DSIG, name)))
}

fn dsig_all<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(move |c| c.is_element() && c.has_tag_name((DSIG, name)))
}

fn text_of(node: Node<'_, '_>) -> String {
    node.children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect()
}

fn base64_of(node: Node<'_, '_>) -> Option<Vec<u8>> {
    let cleaned: String = text_of(node)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .ok()
}

fn digest_alg(uri: &str) -> Option<HashAlg> {
    match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => Some(HashAlg::Sha1),
        "http://www.w3.org/2001/04/xmlenc#sha256" => Some(HashAlg::Sha256),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Some(HashAlg::Sha384),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The key algorithm's OID and the hash a SignatureMethod names.
fn signature_alg(uri: &str) -> Option<(&'static str, HashAlg)> {
    if uri == "http://www.w3.org/2000/09/xmldsig#rsa-sha1" {
        return Some((OID_RSA, HashAlg::Sha1));
    }
    let rest = uri.strip_prefix(MORE)?;
    let (kind, hash) = rest.split_once('-')?;
    let key = match kind {
        "rsa" => OID_RSA,
        "ecdsa" => OID_EC,
        _ => return None,
    };
    let hash = match hash {
        "sha1" => HashAlg::Sha1,
        "sha256" => HashAlg::Sha256,
        "sha384" => HashAlg::Sha384,
        "sha512" => HashAlg::Sha512,
        _ => return None,
    };
    Some((key, hash))
}

/// The c14n method an element with an `Algorithm` attribute names (with its
/// InclusiveNamespaces PrefixList), if it is one.
fn c14n_method(node: Node<'_, '_>) -> Option<Method> {
    let mut m = Method::from_uri(node.attribute("Algorithm")?)?;
    if m.exclusive {
        if let Some(list) = node
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == "InclusiveNamespaces")
            .and_then(|c| c.attribute("PrefixList"))
        {
            m.inclusive_prefixes = list
                .split_whitespace()
                .map(|p| if p == "#default" { "" } else { p }.to_string())
                .collect();
        }
    }
    Some(m)
}

/// The element whose `Id` (or `ID`, `id`, in any namespace) is `id`; more than one is an error,
/// as it would let a signature be moved to cover another element.
fn by_id<'a, 'i>(doc: &'a Document<'i>, id: &str) -> Result<Option<Node<'a, 'i>>, ()> {
    let mut found = None;
    for node in doc.descendants().filter(|n| n.is_element()) {
        let hit = node
            .attributes()
            .any(|a| matches!(a.name(), "Id" | "ID" | "id") && a.value() == id);
        if hit {
            if found.is_some() {
                return Err(());
            }
            found = Some(node);
        }
    }
    Ok(found)
}

/// The octets a Reference's digest is over.
fn referenced(
    doc: &Document<'_>,
    signature: Node<'_, '_>,
    reference: Node<'_, '_>,
    n: usize,
) -> Result<Vec<u8>, Failure> {
    let uri = reference
        .attribute("URI")
        .ok_or_else(|| unsupported(n, "Reference without URI / Reference không có URI"))?;
    let apex = if uri.is_empty() {
        doc.root()
    } else if let Some(id) = uri
        .strip_prefix("#xpointer(id('")
        .and_then(|r| r.strip_suffix("'))"))
        .or_else(|| {
            uri.strip_prefix('#')
                .filter(|i| !i.starts_with("xpointer("))
        })
    {
        match by_id(doc, id) {
            Ok(Some(node)) => node,
            Ok(None) => {
                return Err(invalid(
                    n,
                    format!("Reference URI=\"{uri}\": no such element / không có phần tử này"),
                ))
            }
            Err(()) => {
                return Err(invalid(
                    n,
                    format!("Reference URI=\"{uri}\": the Id is not unique / Id bị trùng"),
                ))
            }
        }
    } else {
        return Err(unsupported(
            n,
            format!("Reference URI=\"{uri}\" (only \"\" and \"#Id\" / chỉ hỗ trợ \"\" và \"#Id\")"),
        ));
    };
    let mut omit: Option<NodeId> = None;
    let mut method: Option<Method> = None;
    if let Some(transforms) = dsig(reference, "Transforms") {
        for t in dsig_all(transforms, "Transform") {
            let alg = t.attribute("Algorithm").unwrap_or("");
            if method.is_some() {
                return Err(unsupported(
                    n,
                    format!("Transform {alg} after canonicalization / sau chuẩn hóa"),
                ));
            }
            if alg == ENVELOPED {
                omit = Some(signature.id());
            } else if let Some(m) = c14n_method(t) {
                method = Some(m);
            } else {
                return Err(unsupported(
                    n,
                    format!("Transform {alg} / phép biến đổi không được hỗ trợ"),
                ));
            }
        }
    }
    // A same-document reference selects no comments; without a c14n transform the node set
    // is made octets by inclusive c14n.
    let mut method = method.unwrap_or_default();
    method.comments = false;
    Ok(c14n::canonicalize_subset(doc, apex, omit, &method).into_bytes())
}

/// Checks the `<Signature>` element `signature` (the `n`th of the document).
fn verify_one(doc: &Document<'_>, signature: Node<'_, '_>, n: usize) -> Result<Verified, Failure> {
    let info = dsig(signature, "SignedInfo")
        .ok_or_else(|| malformed(n, "no SignedInfo / thiếu SignedInfo"))?;
    let c14n_node = dsig(info, "CanonicalizationMethod")
        .ok_or_else(|| malformed(n, "no CanonicalizationMethod"))?;
    let method = c14n_method(c14n_node).ok_or_else(|| {
        unsupported(
            n,
            format!(
                "CanonicalizationMethod {}",
                c14n_node.attribute("Algorithm").unwrap_or("")
            ),
        )
    })?;
    let sig_method = dsig(info, "SignatureMethod")
        .and_then(|m| m.attribute("Algorithm"))
        .ok_or_else(|| malformed(n, "no SignatureMethod"))?;
    let (key_oid, hash) = signature_alg(sig_method)
        .ok_or_else(|| unsupported(n, format!("SignatureMethod {sig_method}")))?;

    let mut references = Vec::new();
    for reference in dsig_all(info, "Reference") {
        let uri = reference.attribute("URI").unwrap_or("").to_string();
        let alg_uri = dsig(reference, "DigestMethod")
            .and_then(|d| d.attribute("Algorithm"))
            .ok_or_else(|| malformed(n, "no DigestMethod"))?;
        let alg =
            digest_alg(alg_uri).ok_or_else(|| unsupported(n, format!("DigestMethod {alg_uri}")))?;
        let expected = dsig(reference, "DigestValue")
            .and_then(base64_of)
            .ok_or_else(|| malformed(n, "DigestValue: not base64 / không phải base64"))?;
        let octets = referenced(doc, signature, reference, n)?;
        if alg.digest(&octets) != expected {
            return Err(invalid(
                n,
                format!(
                    "Reference URI=\"{uri}\": nội dung đã bị thay đổi / the signed content was changed"
                ),
            ));
        }
        references.push(uri);
    }
    if references.is_empty() {
        return Err(malformed(n, "no Reference / thiếu Reference"));
    }

    let value = dsig(signature, "SignatureValue")
        .and_then(base64_of)
        .ok_or_else(|| malformed(n, "SignatureValue: not base64 / không phải base64"))?;
    let certs: Vec<Vec<u8>> = dsig(signature, "KeyInfo")
        .into_iter()
        .flat_map(|k| dsig_all(k, "X509Data"))
        .flat_map(|d| dsig_all(d, "X509Certificate"))
        .filter_map(base64_of)
        .collect();
    if certs.is_empty() {
        return Err(unsupported(
            n,
            "KeyInfo has no X509Certificate / KeyInfo không có chứng thư số",
        ));
    }
    let canonical = c14n::canonicalize_subset(doc, info, None, &method);
    let digest = Digest {
        alg: hash,
        value: hash.digest(canonical.as_bytes()),
    };
    // KeyInfo may carry the chain: the signer's certificate is the one whose key verifies.
    let mut key_matched = false;
    for cert in &certs {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
            continue;
        };
        if parsed.public_key().algorithm.algorithm.to_id_string() != key_oid {
            continue;
        }
        key_matched = true;
        if crate::verify::verify_digest(cert, &digest, &value).unwrap_or(false) {
            return Ok(Verified {
                cert: cert.clone(),
                signature_method: sig_method.to_string(),
                references,
            });
        }
    }
    Err(invalid(
        n,
        if key_matched {
            "SignatureValue không khớp / the SignatureValue does not match"
        } else {
            "no certificate in KeyInfo has the SignatureMethod's key type / không có chứng thư số đúng loại khóa"
        },
    ))
}

/// Verifies every `<Signature>` in `xml`; all must be valid.
pub fn verify(xml: &[u8]) -> Result<Vec<Verified>, Failure> {
    let doc = crate::xmldsig::parse(xml)?;
    let signatures: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.is_element() && n.has_tag_name((DSIG, "Signature")))
        .collect();
    if signatures.is_empty() {
        return Err(Failure::with(
            Status::SignatureInvalid,
            "tài liệu không có chữ ký XML-DSig / the document has no XML-DSig <Signature>",
        ));
    }
    signatures
        .iter()
        .enumerate()
        .map(|(i, s)| verify_one(&doc, *s, i + 1))
        .collect()
}

/// `xml` with the lone `<Signature>` element `signature` put before its root's end tag.
pub fn with_signature(xml: &[u8], signature: &[u8]) -> Result<Vec<u8>, Failure> {
    let lone = crate::xmldsig::parse(signature).map_err(|f| {
        Failure::with(
            Status::BadRequest,
            format!("Signature: {}", f.detail.unwrap_or_default()),
        )
    })?;
    if !lone.root_element().has_tag_name((DSIG, "Signature")) {
        return Err(Failure::with(
            Status::BadRequest,
            "Signature: not an XML-DSig <Signature> element / không phải phần tử <Signature>",
        ));
    }
    // The element as written, without an XML declaration or anything around it.
    let element = &lone.input_text()[lone.root_element().range()];
    let doc = crate::xmldsig::parse(xml)?;
    crate::xmldsig::splice(&doc, element).map(String::into_bytes)
}

/// The VerifyXML answer for `xml`, or for `xml` with a lone `<Signature>` put in (see
/// [`with_signature`]): `{"Status":0,"Valid":true,"SigningCertInfo":{…},"Message",
/// "Signatures":[{"SigningCertInfo","SignatureMethod","References"}]}`, the first signature's
/// certificate at the top.
pub fn answer(xml: &[u8], signature: Option<&[u8]>) -> Result<Value, Failure> {
    let joined;
    let xml = match signature {
        Some(s) => {
            joined = with_signature(xml, s)?;
            &joined[..]
        }
        None => xml,
    };
    let verified = verify(xml)?;
    let mut each = Vec::new();
    for v in &verified {
        each.push(json!({
            "SigningCertInfo": crate::verify::cert_info(&v.cert)?,
            "SignatureMethod": v.signature_method,
            "References": v.references,
        }));
    }
    Ok(json!({
        "Status": 0,
        "Valid": true,
        "SigningCertInfo": each[0]["SigningCertInfo"].clone(),
        "Message": "Chữ ký hợp lệ / The signature is valid",
        "Signatures": each,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n_of(xml: &str, apex_name: Option<&str>, method: &Method) -> String {
        let doc = Document::parse(xml).unwrap();
        let apex = match apex_name {
            Some(n) => doc
                .descendants()
                .find(|e| e.tag_name().name() == n)
                .unwrap(),
            None => doc.root(),
        };
        c14n::canonicalize_subset(&doc, apex, None, method)
    }

    #[test]
    fn inclusive_c14n_of_a_subtree_carries_the_scope() {
        let xml = "<r xmlns=\"urn:d\" xmlns:a=\"urn:a\" xml:lang=\"vi\"><!-- c --><s a:k=\"1\"><t/><!--x--></s></r>";
        let inclusive = Method::from_uri(Method::INCLUSIVE).unwrap();
        assert_eq!(
            c14n_of(xml, Some("s"), &inclusive),
            "<s xmlns=\"urn:d\" xmlns:a=\"urn:a\" xml:lang=\"vi\" a:k=\"1\"><t></t></s>"
        );
        let exclusive = Method::from_uri(Method::EXCLUSIVE).unwrap();
        assert_eq!(
            c14n_of(xml, Some("s"), &exclusive),
            "<s xmlns=\"urn:d\" xmlns:a=\"urn:a\" a:k=\"1\"><t></t></s>"
        );
        let with_comments = Method::from_uri(Method::INCLUSIVE_COMMENTS).unwrap();
        assert_eq!(
            c14n_of(xml, None, &with_comments),
            "<r xmlns=\"urn:d\" xmlns:a=\"urn:a\" xml:lang=\"vi\"><!-- c --><s a:k=\"1\"><t></t><!--x--></s></r>"
        );
        // The prefix list makes exclusive c14n render a prefix it does not see used.
        let mut listed = Method::from_uri(Method::EXCLUSIVE).unwrap();
        listed.inclusive_prefixes.insert("a".into());
        assert_eq!(
            c14n_of("<r xmlns:a=\"urn:a\"><t/></r>", Some("t"), &listed),
            "<t xmlns:a=\"urn:a\"></t>"
        );
    }

    #[test]
    fn documents_without_a_usable_signature_are_refused_clearly() {
        let f = verify(b"<a/>").unwrap_err();
        assert_eq!(f.status, Status::SignatureInvalid);
        assert_eq!(verify(b"<a>").unwrap_err().status, Status::BadRequest);
        let no_info = format!("<a><Signature xmlns=\"{DSIG}\"/></a>");
        assert_eq!(
            verify(no_info.as_bytes()).unwrap_err().status,
            Status::BadRequest
        );
        let external = format!(
            "<a><Signature xmlns=\"{DSIG}\"><SignedInfo><CanonicalizationMethod Algorithm=\"{}\"/><SignatureMethod Algorithm=\"{DSIG}rsa-sha1\"/><Reference URI=\"https://example.com/x\"><DigestMethod Algorithm=\"{DSIG}sha1\"/><DigestValue>AA==</DigestValue></Reference></SignedInfo></Signature></a>",
            Method::EXCLUSIVE
        );
        // Deep nesting is refused before anything recurses over it.
        let deep = "<a>".repeat(200_000) + &"</a>".repeat(200_000);
        let f = verify(deep.as_bytes()).unwrap_err();
        assert_eq!(f.status, Status::BadRequest);
        assert!(f.detail.unwrap().contains("deeper"));
        let f = verify(external.as_bytes()).unwrap_err();
        assert_eq!(f.status, Status::NotSupported);
        assert!(f.detail.unwrap().contains("https://example.com/x"));
    }
}
