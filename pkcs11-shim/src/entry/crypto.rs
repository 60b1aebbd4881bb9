//! Cryptographic operations (`*Init`, single-part, `*Update`, `*Final` of encrypt, decrypt,
//! digest, sign, verify and their recover forms), key generation, and random numbers.
//!
//! Output buffers travel as [`kyso_proto::OutBuf`]: a NULL output pointer is a size query, a
//! buffer its size, so the vendor module behind kysod decides — as it would in process —
//! whether a call ends the operation. The shim never second-guesses its `rv`.

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BYTE, CK_MECHANISM, CK_OBJECT_HANDLE, CK_SESSION_HANDLE, CK_ULONG,
};
use kyso_proto::mechanism::Mechanism;
use kyso_proto::{Call, Operation, OutBuf, Reply, MAX_FRAME};

use super::{entry, reply};
use crate::client::Client;
use crate::convert;
use crate::error::{check, Error, Result};
use crate::ffi::{self, OutBytes};

fn init(
    client: &Client,
    session: CK_SESSION_HANDLE,
    op: Operation,
    mechanism: Mechanism,
    key: Option<CK_OBJECT_HANDLE>,
) -> Result<()> {
    check(
        client
            .call(Call::OperationInit {
                session,
                op,
                mechanism,
                key,
            })?
            .rv,
    )
}

/// A call that fills an output buffer: `*pulLen` always gets the module's length, the bytes
/// only come with `CKR_OK`.
fn produce(client: &Client, out: OutBytes, call: impl FnOnce(OutBuf) -> Call) -> Result<()> {
    let answer = client.call(call(out.request()))?;
    match answer.reply {
        Reply::Output { len, data } => out.fill(answer.rv, len, data),
        _ => check(answer.rv).and(Err(Error::Protocol)),
    }
}

/// `C_DigestUpdate`, `C_SignUpdate`, `C_VerifyUpdate`: data in, nothing out.
fn absorb(client: &Client, session: CK_SESSION_HANDLE, op: Operation, data: Vec<u8>) -> Result<()> {
    check(
        client
            .call(Call::Update {
                session,
                op,
                data,
                out: None,
            })?
            .rv,
    )
}

/// Generates `C_<Op>Init(session, pMechanism, hKey)` for operations that use a key.
macro_rules! keyed_init {
    ($($name:ident => $op:ident),* $(,)?) => {
        entry! {$(
            fn $name(session: CK_SESSION_HANDLE, mechanism: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) |client| {
                // SAFETY: pMechanism points at a CK_MECHANISM with its parameter (PKCS#11).
                let mechanism = unsafe { convert::mechanism(mechanism) }?;
                init(&client, session, Operation::$op, mechanism, Some(key))
            }
        )*}
    };
}

/// Generates single-part `C_<Op>(session, pIn, ulInLen, pOut, pulOutLen)`.
macro_rules! single_part {
    ($($name:ident => $op:ident),* $(,)?) => {
        entry! {$(
            fn $name(session: CK_SESSION_HANDLE, data: *mut CK_BYTE, data_len: CK_ULONG, out: *mut CK_BYTE, out_len: *mut CK_ULONG) |client| {
                // SAFETY: the input is readable for its length; the output pair is as PKCS#11 says.
                let (data, out) = unsafe { (ffi::bytes(data, data_len)?.to_vec(), OutBytes::new(out, out_len)?) };
                produce(&client, out, |out| Call::Operate { session, op: Operation::$op, data, out })
            }
        )*}
    };
}

/// Generates `C_<Op>Update(session, pPart, ulPartLen)` for operations without update output.
macro_rules! absorbing_update {
    ($($name:ident => $op:ident),* $(,)?) => {
        entry! {$(
            fn $name(session: CK_SESSION_HANDLE, part: *mut CK_BYTE, part_len: CK_ULONG) |client| {
                // SAFETY: pPart is readable for ulPartLen bytes (PKCS#11).
                let data = unsafe { ffi::bytes(part, part_len) }?.to_vec();
                absorb(&client, session, Operation::$op, data)
            }
        )*}
    };
}

/// Generates `C_<Op>Update(session, pPart, ulPartLen, pOut, pulOutLen)` (encrypt, decrypt).
macro_rules! producing_update {
    ($($name:ident => $op:ident),* $(,)?) => {
        entry! {$(
            fn $name(session: CK_SESSION_HANDLE, part: *mut CK_BYTE, part_len: CK_ULONG, out: *mut CK_BYTE, out_len: *mut CK_ULONG) |client| {
                // SAFETY: the input is readable for its length; the output pair is as PKCS#11 says.
                let (data, out) = unsafe { (ffi::bytes(part, part_len)?.to_vec(), OutBytes::new(out, out_len)?) };
                produce(&client, out, |out| Call::Update { session, op: Operation::$op, data, out })
            }
        )*}
    };
}

/// Generates `C_<Op>Final(session, pOut, pulOutLen)`.
macro_rules! final_part {
    ($($name:ident => $op:ident),* $(,)?) => {
        entry! {$(
            fn $name(session: CK_SESSION_HANDLE, out: *mut CK_BYTE, out_len: *mut CK_ULONG) |client| {
                // SAFETY: the output pair is as PKCS#11 says.
                let out = unsafe { OutBytes::new(out, out_len) }?;
                produce(&client, out, |out| Call::Final { session, op: Operation::$op, out })
            }
        )*}
    };
}

keyed_init! {
    C_EncryptInit => Encrypt,
    C_DecryptInit => Decrypt,
    C_SignInit => Sign,
    C_SignRecoverInit => SignRecover,
    C_VerifyInit => Verify,
    C_VerifyRecoverInit => VerifyRecover,
}

single_part! {
    C_Encrypt => Encrypt,
    C_Decrypt => Decrypt,
    C_Digest => Digest,
    C_Sign => Sign,
    C_SignRecover => SignRecover,
    C_VerifyRecover => VerifyRecover,
}

producing_update! {
    C_EncryptUpdate => Encrypt,
    C_DecryptUpdate => Decrypt,
}

absorbing_update! {
    C_DigestUpdate => Digest,
    C_SignUpdate => Sign,
    C_VerifyUpdate => Verify,
}

final_part! {
    C_EncryptFinal => Encrypt,
    C_DecryptFinal => Decrypt,
    C_DigestFinal => Digest,
    C_SignFinal => Sign,
}

/// `C_GenerateRandom` replies travel in one frame; larger requests are refused up front.
const MAX_RANDOM: CK_ULONG = (MAX_FRAME / 2) as CK_ULONG;

entry! {
    fn C_DigestInit(session: CK_SESSION_HANDLE, mechanism: *mut CK_MECHANISM) |client| {
        // SAFETY: pMechanism points at a CK_MECHANISM with its parameter (PKCS#11).
        let mechanism = unsafe { convert::mechanism(mechanism) }?;
        init(&client, session, Operation::Digest, mechanism, None)
    }

    fn C_DigestKey(session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) |client| {
        check(client.call(Call::DigestKey { session, key })?.rv)
    }

    fn C_Verify(
        session: CK_SESSION_HANDLE,
        data: *mut CK_BYTE,
        data_len: CK_ULONG,
        signature: *mut CK_BYTE,
        signature_len: CK_ULONG,
    ) |client| {
        // SAFETY: pData and pSignature are readable for their lengths (PKCS#11).
        let (data, signature) = unsafe {
            (ffi::bytes(data, data_len)?.to_vec(), ffi::bytes(signature, signature_len)?.to_vec())
        };
        check(client.call(Call::Verify { session, data, signature })?.rv)
    }

    fn C_VerifyFinal(session: CK_SESSION_HANDLE, signature: *mut CK_BYTE, signature_len: CK_ULONG) |client| {
        // SAFETY: pSignature is readable for ulSignatureLen bytes (PKCS#11).
        let signature = unsafe { ffi::bytes(signature, signature_len) }?.to_vec();
        check(client.call(Call::VerifyFinal { session, signature })?.rv)
    }

    fn C_GenerateKey(
        session: CK_SESSION_HANDLE,
        mechanism: *mut CK_MECHANISM,
        template: *mut CK_ATTRIBUTE,
        count: CK_ULONG,
        key: *mut CK_OBJECT_HANDLE,
    ) |client| {
        // SAFETY: pointers as PKCS#11 describes C_GenerateKey's arguments.
        let (out, mechanism, template) = unsafe {
            (ffi::Out::new(key)?, convert::mechanism(mechanism)?, convert::template(template, count)?)
        };
        let answer = client.call(Call::GenerateKey { session, mechanism, template })?;
        out.set(reply!(answer, Reply::Handle(h) => h)?);
        Ok(())
    }

    fn C_GenerateKeyPair(
        session: CK_SESSION_HANDLE,
        mechanism: *mut CK_MECHANISM,
        public_template: *mut CK_ATTRIBUTE,
        public_count: CK_ULONG,
        private_template: *mut CK_ATTRIBUTE,
        private_count: CK_ULONG,
        public_key: *mut CK_OBJECT_HANDLE,
        private_key: *mut CK_OBJECT_HANDLE,
    ) |client| {
        // SAFETY: pointers as PKCS#11 describes C_GenerateKeyPair's arguments.
        let (public_out, private_out, mechanism, public, private) = unsafe {
            (
                ffi::Out::new(public_key)?,
                ffi::Out::new(private_key)?,
                convert::mechanism(mechanism)?,
                convert::template(public_template, public_count)?,
                convert::template(private_template, private_count)?,
            )
        };
        let answer = client.call(Call::GenerateKeyPair { session, mechanism, public, private })?;
        let (public, private) = reply!(answer, Reply::KeyPair { public, private } => (public, private))?;
        public_out.set(public);
        private_out.set(private);
        Ok(())
    }

    fn C_GenerateRandom(session: CK_SESSION_HANDLE, out: *mut CK_BYTE, len: CK_ULONG) |client| {
        // SAFETY: pRandomData has room for ulRandomLen bytes (PKCS#11).
        let out = unsafe { ffi::OutArray::new(out, len) }?;
        if len > MAX_RANDOM {
            return Err(Error::ArgumentsBad);
        }
        let answer = client.call(Call::GenerateRandom { session, len })?;
        let bytes = reply!(answer, Reply::Bytes(b) => b)?;
        if bytes.len() as CK_ULONG != len {
            return Err(Error::Protocol);
        }
        out.fill(&bytes)
    }

    fn C_SeedRandom(session: CK_SESSION_HANDLE, seed: *mut CK_BYTE, len: CK_ULONG) |client| {
        // SAFETY: pSeed is readable for ulSeedLen bytes (PKCS#11).
        let seed = unsafe { ffi::bytes(seed, len) }?.to_vec();
        check(client.call(Call::SeedRandom { session, seed })?.rv)
    }
}
