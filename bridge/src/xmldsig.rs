//! XML-DSig (SignXML): an enveloped signature over the whole document (`Reference URI=""`,
//! enveloped-signature and exclusive c14n transforms), with the signer's certificate in
//! `KeyInfo`. The answer is the document with the `<Signature>` as the root element's last
//! child, or, when asked, that `<Signature>` element alone (to be put there by the caller).

use base64::Engine;
use roxmltree::Document;
use x509_parser::prelude::*;

use crate::request::{Digest, HashAlg};
use crate::status::{Failure, Status};

const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

fn bad(detail: &str) -> Failure {
    Failure::with(Status::BadRequest, detail.to_string())
}

/// Elements nested deeper than this are refused: the parser and canonicalization recurse once
/// per level, on threads with small stacks.
pub const MAX_DEPTH: usize = 128;

/// The deepest nesting of elements in `text`, counted from its tags before any parsing (and
/// an upper bound for text that is not well-formed); stops counting past `limit`.
fn nesting(text: &str, limit: usize) -> usize {
    let b = text.as_bytes();
    let (mut i, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    let skip_to = |from: usize, end: &str| {
        text[from..]
            .find(end)
            .map_or(b.len(), |k| from + k + end.len())
    };
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        if rest.starts_with("<!--") {
            i = skip_to(i + 4, "-->");
        } else if rest.starts_with("<![CDATA[") {
            i = skip_to(i + 9, "]]>");
        } else if rest.starts_with("<?") {
            i = skip_to(i + 2, "?>");
        } else if rest.starts_with("</") {
            depth = depth.saturating_sub(1);
            i = skip_to(i + 2, ">");
        } else if rest.starts_with("<!") {
            i = skip_to(i + 2, ">");
        } else {
            // A start tag: to its '>' outside quoted attribute values.
            let mut j = i + 1;
            let mut quote = None;
            while j < b.len() {
                match (quote, b[j]) {
                    (None, b'"' | b'\'') => quote = Some(b[j]),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            if !(j < b.len() && b[j - 1] == b'/') {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
            i = j + 1;
        }
    }
    deepest
}

/// Parses UTF-8 XML without a DTD (so without entities of its own), no deeper than
/// [`MAX_DEPTH`].
pub(crate) fn parse(xml: &[u8]) -> Result<Document<'_>, Failure> {
    let text = std::str::from_utf8(xml).map_err(|_| bad("XML: not UTF-8 / không phải UTF-8"))?;
    if nesting(text, MAX_DEPTH) > MAX_DEPTH {
        return Err(bad(&format!(
            "XML: nested deeper than {MAX_DEPTH} / lồng quá {MAX_DEPTH} cấp"
        )));
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    Document::parse_with_options(text, options)
        .map_err(|e| Failure::with(Status::BadRequest, format!("XML: {e}")))
}

/// What an XML document is, in a few words for prompts and the journal: its root element,
/// size and the start of its SHA-256.
pub fn describe(xml: &[u8]) -> String {
    let root = parse(xml)
        .ok()
        .map(|d| d.root_element().tag_name().name().to_string())
        .unwrap_or_else(|| "?".into());
    let hash: String = HashAlg::Sha256
        .digest(xml)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("<{root}> {} bytes, SHA-256 {hash}…", xml.len())
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn digest_uri(alg: HashAlg) -> &'static str {
    match alg {
        HashAlg::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
        HashAlg::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
        HashAlg::Sha384 => "http://www.w3.org/2001/04/xmldsig-more#sha384",
        HashAlg::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
    }
}

/// The signature method for the certificate's key; for EC also the size of `r` and `s`.
fn signature_method(cert: &[u8], alg: HashAlg) -> Result<(String, Option<usize>), Failure> {
    let (_, cert) =
        X509Certificate::from_der(cert).map_err(|_| Failure::new(Status::TokenError))?;
    let spki = cert.public_key();
    let hash = match alg {
        HashAlg::Sha1 => "sha1",
        HashAlg::Sha256 => "sha256",
        HashAlg::Sha384 => "sha384",
        HashAlg::Sha512 => "sha512",
    };
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" if alg == HashAlg::Sha1 => Ok((format!("{DSIG}rsa-sha1"), None)),
        "1.2.840.113549.1.1.1" => Ok((
            format!("http://www.w3.org/2001/04/xmldsig-more#rsa-{hash}"),
            None,
        )),
        "1.2.840.10045.2.1" => {
            // The public point is 04 || x || y.
            let half = spki.subject_public_key.data.len().saturating_sub(1) / 2;
            Ok((
                format!("http://www.w3.org/2001/04/xmldsig-more#ecdsa-{hash}"),
                Some(half),
            ))
        }
        _ => Err(Failure::with(
            Status::NotSupported,
            "key algorithm / thuật toán khóa",
        )),
    }
}

/// Signs `xml` (UTF-8); `sign` makes the token's signature over a digest (DER for ECDSA,
/// which XML-DSig wants as `r || s`).
pub fn sign(
    xml: &[u8],
    alg: HashAlg,
    signature_only: bool,
    cert: &[u8],
    mut sign: impl FnMut(&Digest) -> Result<Vec<u8>, Failure>,
) -> Result<Vec<u8>, Failure> {
    let doc = parse(xml)?;
    let canonical = crate::c14n::canonicalize(&doc);
    let (method, ec_half) = signature_method(cert, alg)?;
    let signed_info = |xmlns: &str| {
        format!(
            "<SignedInfo{xmlns}><CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></CanonicalizationMethod><SignatureMethod Algorithm=\"{method}\"></SignatureMethod><Reference URI=\"\"><Transforms><Transform Algorithm=\"{ENVELOPED}\"></Transform><Transform Algorithm=\"{EXC_C14N}\"></Transform></Transforms><DigestMethod Algorithm=\"{}\"></DigestMethod><DigestValue>{}</DigestValue></Reference></SignedInfo>",
            digest_uri(alg),
            b64(&alg.digest(canonical.as_bytes())),
        )
    };
    // SignedInfo canonicalised where it will stand: inside <Signature xmlns="…dsig#">, so
    // exclusive c14n gives it that default namespace and nothing else.
    let canonical_info = signed_info(&format!(" xmlns=\"{DSIG}\""));
    let digest = Digest {
        alg,
        value: alg.digest(canonical_info.as_bytes()),
    };
    let mut value = sign(&digest)?;
    if let Some(half) = ec_half {
        value = crate::der::ecdsa_raw(&value, half).ok_or(Failure::new(Status::TokenError))?;
    }
    let signature = format!(
        "<Signature xmlns=\"{DSIG}\">{}<SignatureValue>{}</SignatureValue><KeyInfo><X509Data><X509Certificate>{}</X509Certificate></X509Data></KeyInfo></Signature>",
        signed_info(""),
        b64(&value),
        b64(cert)
    );
    if signature_only {
        return Ok(signature.into_bytes());
    }
    splice(&doc, &signature).map(String::into_bytes)
}

/// The document as it came, with `signature` spliced in before the root's end tag (where
/// SignXML puts it, and where a caller puts the lone `<Signature>` it asked for).
pub(crate) fn splice(doc: &Document<'_>, signature: &str) -> Result<String, Failure> {
    let source = doc.input_text();
    let root = doc.root_element().range();
    let head = &source[..root.end];
    let mut out = String::with_capacity(source.len() + signature.len() + 16);
    if let Some(open) = head.strip_suffix("/>") {
        let qname_end = source[root.start + 1..]
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .map_or(root.end, |i| root.start + 1 + i);
        let qname = &source[root.start + 1..qname_end];
        out.push_str(open.trim_end());
        out.push('>');
        out.push_str(signature);
        out.push_str(&format!("</{qname}>"));
    } else {
        let close = head.rfind("</").ok_or(bad("XML"))?;
        out.push_str(&source[..close]);
        out.push_str(signature);
        out.push_str(&source[close..root.end]);
    }
    out.push_str(&source[root.end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_from_the_tags() {
        assert_eq!(nesting("<a><b/><c x='>' y=\"/>\"><d></d></c></a>", 99), 3);
        assert_eq!(
            nesting("<?p <a>?><!-- <a><a> --><a><![CDATA[<a><a>]]></a>", 99),
            1
        );
        let deep = "<a>".repeat(200_000);
        assert_eq!(nesting(&deep, MAX_DEPTH), MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let fine = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(fine.as_bytes()).is_ok());
    }

    #[test]
    fn the_signature_goes_before_the_roots_end_tag() {
        let cert = {
            let key = rcgen::KeyPair::generate().unwrap();
            rcgen::CertificateParams::new(vec!["x".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap()
                .der()
                .to_vec()
        };
        let fake = |_: &Digest| Ok(crate::der::ecdsa_der(&[1u8; 64]).unwrap());
        for (doc, ends) in [
            (
                "<?xml version=\"1.0\"?>\n<a><b/></a>\n",
                "</Signature></a>\n",
            ),
            ("<a x=\"1\" />", "</Signature></a>"),
            ("<p:a xmlns:p=\"urn:p\"/>", "</Signature></p:a>"),
        ] {
            let out = sign(doc.as_bytes(), HashAlg::Sha256, false, &cert, fake).unwrap();
            let out = String::from_utf8(out).unwrap();
            assert!(out.ends_with(ends), "{out}");
            assert!(Document::parse(&out).is_ok(), "{out}");
            assert!(out.contains("ecdsa-sha256"), "{out}");
        }
        let only = sign(b"<a/>", HashAlg::Sha256, true, &cert, fake).unwrap();
        assert!(only.starts_with(b"<Signature xmlns="));
        assert!(sign(b"<a>", HashAlg::Sha256, false, &cert, fake).is_err());
        assert!(sign(
            b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            HashAlg::Sha256,
            false,
            &cert,
            fake
        )
        .is_err());
    }
}
