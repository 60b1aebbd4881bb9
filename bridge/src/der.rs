//! The few DER structures the bridge writes: a DigestInfo for RSA PKCS#1 v1.5, and an ECDSA
//! signature (`r`, `s`) as the `ECDSA-Sig-Value` SEQUENCE verifiers expect.

use crate::request::{Digest, HashAlg};

/// `DigestInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING digest }` (RFC 8017, 9.2).
pub fn digest_info(d: &Digest) -> Vec<u8> {
    let prefix: &[u8] = match d.alg {
        HashAlg::Sha1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        HashAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    };
    let mut out = Vec::with_capacity(prefix.len() + d.value.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(&d.value);
    out
}

fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

fn der_integer(bytes: &[u8], out: &mut Vec<u8>) {
    let mut b = bytes;
    while b.len() > 1 && b[0] == 0 {
        b = &b[1..];
    }
    let pad = b.first().is_some_and(|x| x & 0x80 != 0);
    out.push(0x02);
    der_len(b.len() + usize::from(pad), out);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(b);
}

/// `r || s` (PKCS#11's ECDSA output) as `SEQUENCE { INTEGER r, INTEGER s }`; `None` for an
/// odd or empty input.
pub fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 264 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 8);
    der_integer(r, &mut body);
    der_integer(s, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_len(body.len(), &mut out);
    out.extend_from_slice(&body);
    Some(out)
}

/// `SEQUENCE { INTEGER r, INTEGER s }` back to `r || s`, each `half` bytes long.
pub fn ecdsa_raw(der: &[u8], half: usize) -> Option<Vec<u8>> {
    fn take_len(b: &[u8]) -> Option<(usize, &[u8])> {
        match *b.first()? {
            l if l < 0x80 => Some((l as usize, &b[1..])),
            0x81 => Some((*b.get(1)? as usize, b.get(2..)?)),
            0x82 => Some((
                (*b.get(1)? as usize) << 8 | *b.get(2)? as usize,
                b.get(3..)?,
            )),
            _ => None,
        }
    }
    fn take_int(b: &[u8], half: usize) -> Option<(Vec<u8>, &[u8])> {
        if *b.first()? != 0x02 {
            return None;
        }
        let (len, rest) = take_len(&b[1..])?;
        let v = rest.get(..len)?;
        let v: Vec<u8> = v.iter().copied().skip_while(|x| *x == 0).collect();
        if v.len() > half {
            return None;
        }
        let mut out = vec![0u8; half - v.len()];
        out.extend_from_slice(&v);
        Some((out, &rest[len..]))
    }
    if *der.first()? != 0x30 {
        return None;
    }
    let (len, body) = take_len(&der[1..])?;
    let body = body.get(..len)?;
    let (mut r, rest) = take_int(body, half)?;
    let (s, rest) = take_int(rest, half)?;
    if !rest.is_empty() {
        return None;
    }
    r.extend_from_slice(&s);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_round_trip_with_high_bits_and_leading_zeros() {
        let mut raw = vec![0x80u8; 32];
        raw.extend_from_slice(&[0u8; 31]);
        raw.push(5);
        let der = ecdsa_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x05]);
        assert_eq!(ecdsa_raw(&der, 32).unwrap(), raw);
        assert!(ecdsa_der(&[1, 2, 3]).is_none());
        assert!(ecdsa_raw(&[0x30, 0x05, 0x02], 32).is_none());
    }

    #[test]
    fn digest_info_is_what_openssl_writes() {
        let d = Digest {
            alg: HashAlg::Sha256,
            value: vec![0xab; 32],
        };
        let di = digest_info(&d);
        assert_eq!(di.len(), 51);
        assert_eq!(di[1] as usize, di.len() - 2);
        for (alg, n) in [
            (HashAlg::Sha1, 20),
            (HashAlg::Sha384, 48),
            (HashAlg::Sha512, 64),
        ] {
            let di = digest_info(&Digest {
                alg,
                value: vec![1; n],
            });
            assert_eq!(di[1] as usize, di.len() - 2, "{alg:?}");
            assert_eq!(di[di.len() - n - 1] as usize, n);
        }
    }
}
