//! PDFs for the document tests and benchmark, and the independent tools that judge signed ones:
//! pyHanko (from `tests/python/venv`, made by `scripts/setup-debian`) and poppler's `pdfsig`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::repo_root;
use crate::util::run;

/// A PDF of `pages` A4 pages, each with a line of text and, when `padding` is non-zero, an
/// uncompressible stream of that many bytes (to reach a realistic file size).
pub fn sample_pdf(pages: usize, padding: usize) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    // 1: catalog, 2: pages, 3: font; then per page: page, content, padding.
    let mut kids = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..pages {
        let page = 4 + i * 3;
        kids.push(format!("{page} 0 R"));
        let text = format!(
            "BT /F1 14 Tf 72 760 Td (Van ban so {}/UBND - trang {} / page {}) Tj ET",
            i + 1,
            i + 1,
            i + 1
        );
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R /PieceInfo << /kyso << /Private {} 0 R >> >> >>",
            page + 1,
            page + 2
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{text}\nendstream",
            text.len()
        ));
        let mut blob = Vec::with_capacity(padding);
        while blob.len() < padding {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            blob.extend_from_slice(&seed.to_le_bytes());
        }
        blob.truncate(padding);
        objects.push(format!("<< /Length {} >>\nstream\n", blob.len()));
        blobs.push(blob);
    }
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let mut put = |out: &mut Vec<u8>, n: usize, body: &[u8], tail: &[u8]| {
        offsets.push(out.len());
        out.extend_from_slice(format!("{n} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(tail);
        out.extend_from_slice(b"\nendobj\n");
    };
    put(&mut out, 1, b"<< /Type /Catalog /Pages 2 0 R >>", b"");
    put(
        &mut out,
        2,
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        )
        .as_bytes(),
        b"",
    );
    put(
        &mut out,
        3,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Times-Roman >>",
        b"",
    );
    for (i, obj) in objects.iter().enumerate() {
        let n = 4 + i;
        if i % 3 == 2 {
            let blob = &blobs[i / 3];
            let mut tail = blob.clone();
            tail.extend_from_slice(b"\nendstream");
            put(&mut out, n, obj.as_bytes(), &tail);
        } else {
            put(&mut out, n, obj.as_bytes(), b"");
        }
    }
    let xref = out.len();
    let count = offsets.len() + 1;
    out.extend_from_slice(format!("xref\n0 {count}\n0000000000 65535 f \n").as_bytes());
    for o in &offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {count} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

/// The venv's Python with pyHanko.
pub fn pyhanko_python() -> PathBuf {
    let p = repo_root().join("tests/python/venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-debian (it installs pyHanko for the document tests)",
        p.display()
    );
    p
}

/// One signature as pyHanko judges it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PyHankoSignature {
    pub field: String,
    pub intact: bool,
    pub valid: bool,
    pub trusted: bool,
    /// Whether the signature covers the whole file.
    pub whole: bool,
    /// pyHanko's modification level ("NONE", "LTA_UPDATES", "FORM_FILLING", "ANNOTATIONS", "OTHER").
    pub modification_level: Option<String>,
    pub docmdp_ok: Option<bool>,
    pub bottom_line: bool,
    pub summary: String,
}

const VALIDATE: &str = r#"
import json, sys
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko.keys import load_cert_from_pemder
ctx = ValidationContext(trust_roots=[load_cert_from_pemder(sys.argv[2])], allow_fetching=False,
                        revocation_mode="soft-fail")
out = []
with open(sys.argv[1], "rb") as f:
    r = PdfFileReader(f)
    for s in r.embedded_signatures:
        st = validate_pdf_signature(s, ctx)
        ml = getattr(st, "modification_level", None)
        out.append({"field": s.field_name, "intact": bool(st.intact), "valid": bool(st.valid),
                    "trusted": bool(st.trusted),
                    "whole": s.coverage.name == "ENTIRE_FILE",
                    "modification_level": ml.name if ml is not None else None,
                    "docmdp_ok": getattr(st, "docmdp_ok", None),
                    "bottom_line": bool(st.bottom_line), "summary": st.summary()})
print(json.dumps(out))
"#;

/// pyHanko's verdict on every signature of `pdf`, trusting `ca_pem`.
pub fn pyhanko_validate(pdf: &Path, ca_pem: &Path) -> Vec<PyHankoSignature> {
    let out = run(
        Command::new(pyhanko_python())
            .args(["-W", "ignore", "-c", VALIDATE])
            .arg(pdf)
            .arg(ca_pem),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "pyHanko could not validate {}: {}",
        pdf.display(),
        out.stderr
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("pyHanko's answer: {e}: {}", out.stdout))
}

/// `pdfsig`'s output for `pdf` (poppler-utils, installed by `scripts/setup-debian`).
pub fn pdfsig(pdf: &Path) -> String {
    let out = run(Command::new("pdfsig").arg(pdf), Duration::from_secs(60));
    out.stdout + &out.stderr
}

/// How many signatures `pdfsig` calls valid ("Signature is Valid.").
pub fn pdfsig_valid_count(pdf: &Path) -> usize {
    pdfsig(pdf)
        .matches("Signature Validation: Signature is Valid.")
        .count()
}
