//! Verification of every signature in a PDF, as Decree 68/2024 Art. 30–32 asks.
//!
//! For each signed signature field: the byte range and the CMS ([`fields`], [`cms_check`]),
//! the signing time (a verified signature timestamp, else the time the signer claims), the
//! certificate's validity then, the path to the trust anchors ([`chain`]) and revocation
//! ([`revocation`]), summed up in a [`Verdict`].

mod asn1;
mod chain;
mod cms_check;
mod crypto;
mod fields;
mod revocation;
mod words;

use der::Decode;
use serde::Serialize;
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::net::Fetch;
use crate::Error;
use cms_check::Content;
use words::reason;

/// What to verify against.
pub struct Options<'a> {
    /// Trusted root certificates, DER.
    pub trust_anchors: Vec<Vec<u8>>,
    /// Reaches CRLs and OCSP responders; [`crate::net::Offline`] gives "not checked".
    pub fetch: &'a dyn Fetch,
    /// "Now", for signatures without a timestamp and for revocation.
    pub now: OffsetDateTime,
}

/// The answer for a file; its JSON is the `kyso verify --json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: String,
    pub signatures: Vec<SignatureReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Personal,
    Organisation,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Covers {
    Whole,
    Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    Good,
    Revoked,
    NotChecked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Indeterminate,
}

/// One signature.
///
/// The verdict is decided in this order:
/// - `invalid` when the signed bytes are not intact (byte range, digest, signature or
///   signing-certificate binding fail), when the certificate was outside its validity period
///   at the signing time (proven or claimed), or when it was revoked before the signing time
///   (or revoked with no proven signing time);
/// - `indeterminate` when the signature could not be checked (unsupported kind, unreadable
///   CMS, no signer certificate), the path does not reach a trust anchor, revocation was not
///   checked, a certificate was revoked after a proven signing time, or the signing time is only
///   claimed and the certificate has expired since;
/// - `valid` otherwise. `covers: revision` alone does not change the verdict: it is normal for
///   every signature but the last of a co-signed document.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureReport {
    pub field: String,
    /// The subject of the signing certificate.
    pub signer: String,
    /// Hexadecimal.
    pub certificate_serial: String,
    pub class: Class,
    /// RFC 3339; from the timestamp when there is one.
    pub signing_time: Option<String>,
    pub intact: bool,
    pub covers: Covers,
    pub certificate_valid_at_signing: bool,
    pub trusted: bool,
    pub revocation: Revocation,
    pub verdict: Verdict,
    /// Why the verdict is not "valid", and what was not checked; Vietnamese, then English.
    pub reasons: Vec<String>,
}

/// Whether what follows a signed range is only white space or padding, which is no change.
fn only_white_space(rest: &[u8]) -> bool {
    rest.iter().all(|b| b.is_ascii_whitespace() || *b == 0)
}

/// Verifies every signature of `pdf`. `file` names it in the report. Fails only when the file
/// is not a PDF, cannot be read as one, or is encrypted; every problem of a signature is in its
/// report.
pub fn verify_pdf(file: &str, pdf: &[u8], options: &Options) -> Result<Report, Error> {
    let head = &pdf[..pdf.len().min(1024)];
    if memchr::memmem::find(head, b"%PDF-").is_none() {
        return Err(Error::NotPdf);
    }
    let loaded = std::panic::catch_unwind(|| lopdf::Document::load_mem(pdf))
        .map_err(|_| Error::Damaged("the file's structure cannot be read".into()))?;
    let doc = match loaded {
        Ok(doc) => doc,
        Err(lopdf::Error::Decryption(_)) => return Err(Error::Encrypted),
        Err(e) => return Err(Error::Damaged(e.to_string())),
    };
    if doc.was_encrypted() || doc.trailer.has(b"Encrypt") {
        return Err(Error::Encrypted);
    }
    let anchors: Vec<Certificate> = options
        .trust_anchors
        .iter()
        .filter_map(|der| {
            // Re-encoded for signature checks, so only DER anchors are of use.
            let cert = Certificate::from_der(der).ok()?;
            (der::Encode::to_der(&cert).ok().as_deref() == Some(der.as_slice())).then_some(cert)
        })
        .collect();
    let signatures = fields::signature_fields(&doc)
        .into_iter()
        .map(|field| check_field(pdf, field, &anchors, options))
        .collect();
    Ok(Report {
        file: file.into(),
        signatures,
    })
}

/// The signing time and whether a verified timestamp proves it.
struct SigningTime {
    at: OffsetDateTime,
    proven: bool,
}

fn check_field(
    pdf: &[u8],
    field: fields::SigField,
    anchors: &[Certificate],
    options: &Options,
) -> SignatureReport {
    let mut report = SignatureReport {
        field: field.name.clone(),
        signer: String::new(),
        certificate_serial: String::new(),
        class: Class::Other,
        signing_time: None,
        intact: false,
        covers: Covers::Whole,
        certificate_valid_at_signing: false,
        trusted: false,
        revocation: Revocation::NotChecked,
        verdict: Verdict::Indeterminate,
        reasons: Vec::new(),
    };
    if let Some([_, _, start, len]) = field.byte_range.as_deref() {
        let end = start.saturating_add(*len);
        if let Some(rest) = usize::try_from(end).ok().and_then(|e| pdf.get(e..)) {
            if !only_white_space(rest) {
                report.covers = Covers::Revision;
                report.reasons.push(reason(
                    "Tệp đã có thay đổi sau chữ ký này (bình thường với các chữ ký trước chữ ký cuối cùng)",
                    "Changes were made after this signature (normal for all but the last of co-signed documents)",
                ));
            }
        }
    }
    match field.sub_filter.as_deref() {
        Some("ETSI.CAdES.detached") | Some("adbe.pkcs7.detached") => {}
        other => {
            report.reasons.push(format!(
                "Không hỗ trợ kiểu chữ ký {0} / Signatures of kind {0} are not supported",
                other.unwrap_or("(none)")
            ));
            return report;
        }
    }
    let (Some(byte_range), Some(contents)) = (&field.byte_range, &field.contents) else {
        report.reasons.push(reason(
            "Chữ ký thiếu /ByteRange hoặc /Contents",
            "The signature has no /ByteRange or /Contents",
        ));
        report.verdict = Verdict::Invalid;
        return report;
    };
    let (first, second) = match fields::signed_ranges(pdf, byte_range, contents) {
        Ok(ranges) => ranges,
        Err(e) => {
            report.reasons.push(format!(
                "Phạm vi ký (ByteRange) không hợp lệ / The signed byte range is malformed: {e}"
            ));
            report.verdict = Verdict::Invalid;
            return report;
        }
    };
    let digest = |h: crypto::Hash| h.digest_parts(&[first, second]);
    let checked = match cms_check::check(contents, Content::Detached(&digest)) {
        Ok(checked) => checked,
        Err(e) => {
            report.reasons.push(format!(
                "Không đọc được chữ ký CMS / The CMS signature cannot be read: {e}"
            ));
            report.verdict = Verdict::Invalid;
            return report;
        }
    };
    report.intact = checked.intact;
    report.reasons.extend(checked.problems.iter().cloned());
    let Some(signer) = checked.signer.clone() else {
        report.verdict = if report.intact {
            Verdict::Indeterminate
        } else {
            Verdict::Invalid
        };
        return report;
    };
    describe_signer(&signer, &mut report);

    let time = signing_time(&checked, &field, anchors, &mut report.reasons);
    let at = time.as_ref().map(|t| t.at).unwrap_or(options.now);
    report.signing_time = time.as_ref().and_then(|t| {
        t.at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    let (not_before, not_after) = chain::validity(&signer);
    report.certificate_valid_at_signing = chain::valid_at(&signer, at);
    if at < not_before {
        report.reasons.push(reason(
            "Chứng thư số chưa có hiệu lực khi ký",
            "The certificate was not yet valid at signing time",
        ));
    } else if at > not_after {
        report.reasons.push(reason(
            "Chứng thư số đã hết hạn khi ký",
            "The certificate had expired at signing time",
        ));
    }
    let proven = time.as_ref().is_some_and(|t| t.proven);
    let expired_since = !proven && options.now > not_after;
    if expired_since && report.certificate_valid_at_signing {
        report.reasons.push(reason(
            "Chứng thư số đã hết hạn và không có dấu thời gian chứng minh chữ ký được tạo khi nó còn hiệu lực",
            "The certificate has expired and no timestamp proves the signature was made while it was valid",
        ));
    }

    let path = chain::build(&signer, &checked.certificates, anchors, at);
    report.trusted = path.anchored && path.problems.is_empty();
    report.reasons.extend(path.problems.iter().cloned());

    let mut revoked_before = false;
    let mut revoked_after = false;
    if !path.anchored {
        // The addresses in certificates no anchor vouches for are anyone's: not fetched.
        report.reasons.push(reason(
            "Chưa kiểm tra thu hồi vì đường dẫn chứng thực không tới chứng thư số gốc tin cậy",
            "Revocation not checked: the certification path does not reach a trusted root",
        ));
    } else if path.certificates.len() < 2 {
        report.reasons.push(reason(
            "Chưa kiểm tra thu hồi: chứng thư số của người ký là chứng thư số gốc tin cậy",
            "Revocation not checked: the signer's certificate is itself a trust anchor",
        ));
    } else {
        let statuses = revocation::check_path(&path.certificates, options.fetch, options.now);
        let mut all_good = true;
        for (subject, status) in statuses {
            match status {
                revocation::Status::Good => {}
                revocation::Status::Revoked(when) => {
                    all_good = false;
                    report.revocation = Revocation::Revoked;
                    let when_text = when
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                    report.reasons.push(format!(
                        "Chứng thư số {subject} đã bị thu hồi lúc {when_text} / The certificate {subject} was revoked at {when_text}"
                    ));
                    if proven && when > at {
                        revoked_after = true;
                    } else {
                        revoked_before = true;
                    }
                }
                revocation::Status::NotChecked(why) => {
                    all_good = false;
                    report.reasons.push(why);
                }
            }
        }
        if all_good {
            report.revocation = Revocation::Good;
        }
    }

    report.verdict = if !report.intact || !report.certificate_valid_at_signing || revoked_before {
        Verdict::Invalid
    } else if !report.trusted
        || revoked_after
        || report.revocation != Revocation::Good
        || expired_since
    {
        Verdict::Indeterminate
    } else {
        Verdict::Valid
    };
    report
}

fn describe_signer(signer: &Certificate, report: &mut SignatureReport) {
    report.signer = signer.tbs_certificate.subject.to_string();
    report.certificate_serial = kyso_proto::normalise_serial(&kyso_proto::hex::encode(
        signer.tbs_certificate.serial_number.as_bytes(),
    ));
    let uid = signer
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid.to_string() == kyso_proto::class::OID_UID)
        .and_then(|atv| attribute_text(&atv.value));
    report.class = match kyso_proto::class::class_of_uid(uid.as_deref()) {
        kyso_proto::class::CertClass::Personal => Class::Personal,
        kyso_proto::class::CertClass::Organisation => Class::Organisation,
        kyso_proto::class::CertClass::Other => Class::Other,
    };
}

/// A directory string's text (UTF8String, PrintableString, IA5String, …).
fn attribute_text(value: &der::Any) -> Option<String> {
    std::str::from_utf8(value.value()).ok().map(str::to_string)
}

/// The signing time: a verified signature timestamp whose TSA chains to an anchor proves it;
/// otherwise the signature dictionary's `/M` or the CMS `signingTime` is what the signer claims.
fn signing_time(
    checked: &cms_check::Checked,
    field: &fields::SigField,
    anchors: &[Certificate],
    reasons: &mut Vec<String>,
) -> Option<SigningTime> {
    let mut stamped = None;
    if let Some(token) = checked.timestamp_tokens.first() {
        match cms_check::check_timestamp(token, &checked.signature_value) {
            Ok(ts) => {
                let mut pool = ts.certificates.clone();
                pool.extend(checked.certificates.iter().cloned());
                let path = chain::build(&ts.tsa, &pool, anchors, ts.time);
                if path.anchored && path.problems.is_empty() && chain::valid_at(&ts.tsa, ts.time) {
                    return Some(SigningTime {
                        at: ts.time,
                        proven: true,
                    });
                }
                reasons.push(reason(
                    "Dấu thời gian không do đơn vị cấp dấu thời gian tin cậy cấp; thời điểm ký chưa được chứng minh",
                    "The timestamp is not from a trusted timestamping authority; the signing time is not proven",
                ));
                stamped = Some(ts.time);
            }
            Err(e) => reasons.push(format!(
                "Dấu thời gian không hợp lệ / The signature timestamp is invalid: {e}"
            )),
        }
    }
    let claimed = stamped
        .or_else(|| field.m.as_deref().and_then(pdf_date))
        .or(checked.claimed_time);
    match claimed {
        Some(at) => {
            reasons.push(reason(
                "Thời điểm ký do người ký tự khai, không có dấu thời gian chứng minh",
                "The signing time is claimed by the signer, not proven by a timestamp",
            ));
            Some(SigningTime { at, proven: false })
        }
        None => {
            reasons.push(reason(
                "Chữ ký không ghi thời điểm ký; chứng thư số được đánh giá tại thời điểm hiện tại",
                "The signature states no signing time; the certificate is judged at the present time",
            ));
            None
        }
    }
}

/// A PDF date (`D:YYYYMMDDHHmmSSOHH'mm'`, everything after the year optional).
fn pdf_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    let text = text.strip_prefix("D:").unwrap_or(text);
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (numbers, zone) = text.split_at(digits);
    if numbers.len() < 4 || numbers.len() % 2 != 0 || numbers.len() > 14 {
        return None;
    }
    let field = |from: usize, default: u32| {
        numbers
            .get(from..from + 2)
            .map_or(Some(default), |s| s.parse::<u32>().ok())
    };
    let year: i32 = numbers[..4].parse().ok()?;
    let month = time::Month::try_from(field(4, 1)? as u8).ok()?;
    let date = time::Date::from_calendar_date(year, month, field(6, 1)? as u8).ok()?;
    let clock =
        time::Time::from_hms(field(8, 0)? as u8, field(10, 0)? as u8, field(12, 0)? as u8).ok()?;
    let offset = match zone.as_bytes().first() {
        None | Some(b'Z') => time::UtcOffset::UTC,
        Some(&sign @ (b'+' | b'-')) => {
            let parts: Vec<&str> = zone[1..].split('\'').filter(|p| !p.is_empty()).collect();
            let hours: i8 = parts.first()?.parse().ok()?;
            let minutes: i8 = parts.get(1).map_or(Some(0), |m| m.parse().ok())?;
            let s = if sign == b'-' { -1 } else { 1 };
            time::UtcOffset::from_hms(s * hours, s * minutes, 0).ok()?
        }
        _ => return None,
    };
    Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

impl Report {
    /// The verdicts for a terminal: one block per signature, Vietnamese first, English after.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "Tệp / File: {}", self.file);
        if self.signatures.is_empty() {
            let _ = writeln!(out, "Tệp không có chữ ký số / The file has no signatures");
        }
        let yes_no = |b: bool| if b { "có / yes" } else { "không / no" };
        for s in &self.signatures {
            let verdict = match s.verdict {
                Verdict::Valid => "HỢP LỆ / VALID",
                Verdict::Invalid => "KHÔNG HỢP LỆ / INVALID",
                Verdict::Indeterminate => "CHƯA XÁC ĐỊNH / INDETERMINATE",
            };
            let class = match s.class {
                Class::Personal => "cá nhân / personal",
                Class::Organisation => "tổ chức / organisation",
                Class::Other => "khác / other",
            };
            let covers = match s.covers {
                Covers::Whole => "toàn bộ tệp / the whole file",
                Covers::Revision => {
                    "một phiên bản, có thay đổi sau đó / a revision, with changes after it"
                }
            };
            let revocation = match s.revocation {
                Revocation::Good => "chưa bị thu hồi / not revoked",
                Revocation::Revoked => "đã bị thu hồi / revoked",
                Revocation::NotChecked => "chưa kiểm tra / not checked",
            };
            let _ = writeln!(out);
            let _ = writeln!(out, "Chữ ký / Signature: {}", s.field);
            let _ = writeln!(out, "  Kết luận / Verdict: {verdict}");
            let _ = writeln!(out, "  Người ký / Signer: {}", s.signer);
            let _ = writeln!(
                out,
                "  Số hiệu chứng thư số / Certificate serial: {}",
                s.certificate_serial
            );
            let _ = writeln!(out, "  Loại chứng thư số / Class: {class}");
            let _ = writeln!(
                out,
                "  Thời điểm ký / Signing time: {}",
                s.signing_time.as_deref().unwrap_or("không rõ / unknown")
            );
            let _ = writeln!(out, "  Toàn vẹn / Intact: {}", yes_no(s.intact));
            let _ = writeln!(out, "  Phạm vi ký / Covers: {covers}");
            let _ = writeln!(
                out,
                "  Chứng thư số còn hiệu lực khi ký / Certificate valid at signing: {}",
                yes_no(s.certificate_valid_at_signing)
            );
            let _ = writeln!(out, "  Tin cậy / Trusted: {}", yes_no(s.trusted));
            let _ = writeln!(out, "  Thu hồi / Revocation: {revocation}");
            for r in &s.reasons {
                let _ = writeln!(out, "  - {r}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_dates() {
        let t = pdf_date("D:20240305123456+07'00'").unwrap();
        assert_eq!(t.unix_timestamp(), 1709642096 - 7 * 3600);
        assert_eq!(
            pdf_date("D:20240305123456Z").unwrap().unix_timestamp(),
            1709642096
        );
        assert_eq!(pdf_date("D:2024").unwrap().year(), 2024);
        assert!(pdf_date("D:20241305").is_none());
        assert!(pdf_date("junk").is_none());
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        let options = Options {
            trust_anchors: Vec::new(),
            fetch: &crate::net::Offline,
            now: OffsetDateTime::now_utc(),
        };
        assert!(matches!(
            verify_pdf("x", b"hello", &options),
            Err(Error::NotPdf)
        ));
        assert!(verify_pdf("x", b"%PDF-1.7\n1 0 obj <<", &options).is_err());
    }
}
