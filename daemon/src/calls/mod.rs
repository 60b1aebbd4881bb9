//! What kysod does with each call, one file per family of PKCS#11 functions. Every handler
//! answers with the module's own return value or a PKCS#11 error of kysod's, never a panic.

mod crypto;
mod object;
mod recovery;
mod session;
mod slot;

use kyso_proto::{Call, Reply};

use crate::client::Client;
use crate::error::Rv;
use crate::state::State;

pub use session::close_everything;

/// Runs one call for `client`. Blocking slot-event waits are handled by the connection
/// itself (they must watch the socket), everything else here.
pub fn handle(d: &State, c: &Client, call: Call) -> (Rv, Reply) {
    let result = match call {
        Call::GetInfo => Err(Rv(cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED)),
        Call::GetSlotList { token_present } => slot::slot_list(d, token_present),
        Call::GetSlotInfo { slot } => slot::slot_info(d, slot),
        Call::GetTokenInfo { slot } => slot::token_info(d, slot),
        Call::WaitForSlotEvent { .. } => slot::poll_event(d, c),
        Call::GetMechanismList { slot } => slot::mechanism_list(d, slot),
        Call::GetMechanismInfo { slot, mechanism } => slot::mechanism_info(d, slot, mechanism),
        Call::InitToken {
            slot,
            so_pin,
            label,
        } => slot::init_token(d, c, slot, so_pin.as_ref(), &label),
        Call::Status => Ok(Reply::Status(d.registry.status())),
        Call::Purpose(purpose) => {
            c.set_purpose(purpose);
            Ok(Reply::None)
        }
        Call::ChangePin { slot } => session::change_pin(d, c, slot),
        Call::RecoveryRequest { slot } => return recovery::request(d, c, slot),
        Call::RecoveryApply { grant, force } => return recovery::apply(d, c, &grant, force),
        Call::Wipe {
            slot,
            candidates,
            label,
            case_ref,
        } => return recovery::wipe(d, c, slot, &candidates, &label, &case_ref),
        Call::OpenSession { slot, flags } => session::open(d, c, slot, flags),
        Call::CloseSession { session } => session::close(c, session),
        Call::CloseAllSessions { slot } => session::close_all(d, c, slot),
        Call::GetSessionInfo { session } => session::info(c, session),
        Call::Login {
            session,
            user_type,
            pin,
        } => session::login(d, c, session, user_type, pin.as_ref()),
        Call::Logout { session } => session::logout(c, session),
        Call::InitPin { session, pin } => session::init_pin(d, c, session, pin.as_ref()),
        Call::SetPin { session, old, new } => {
            session::set_pin(d, c, session, old.as_ref(), new.as_ref())
        }
        Call::CreateObject { session, template } => object::create(c, session, template),
        Call::CopyObject {
            session,
            object,
            template,
        } => object::copy(c, session, object, template),
        Call::DestroyObject { session, object } => object::destroy(c, session, object),
        Call::GetObjectSize { session, object } => object::size(c, session, object),
        Call::GetAttributeValue {
            session,
            object,
            queries,
        } => return object::get_attributes(c, session, object, &queries),
        Call::SetAttributeValue {
            session,
            object,
            template,
        } => object::set_attributes(c, session, object, &template),
        Call::FindObjectsInit { session, template } => object::find_init(c, session, template),
        Call::FindObjects { session, max } => object::find(c, session, max),
        Call::FindObjectsFinal { session } => object::find_final(c, session),
        Call::GenerateKey {
            session,
            mechanism,
            template,
        } => object::generate_key(c, session, &mechanism, &template),
        Call::GenerateKeyPair {
            session,
            mechanism,
            public,
            private,
        } => object::generate_key_pair(c, session, &mechanism, &public, &private),
        Call::OperationInit {
            session,
            op,
            mechanism,
            key,
        } => crypto::init(d, c, session, op, &mechanism, key),
        Call::Operate {
            session,
            op,
            data,
            out,
        } => return crypto::operate(d, c, session, op, &data, out),
        Call::Update {
            session,
            op,
            data,
            out,
        } => return crypto::update(d, c, session, op, &data, out),
        Call::Final { session, op, out } => return crypto::finish(d, c, session, op, out),
        Call::Verify {
            session,
            data,
            signature,
        } => crypto::verify(c, session, &data, &signature),
        Call::VerifyFinal { session, signature } => crypto::verify_final(c, session, &signature),
        Call::DigestKey { session, key } => crypto::digest_key(c, session, key),
        Call::GenerateRandom { session, len } => crypto::random(c, session, len),
        Call::SeedRandom { session, seed } => crypto::seed(c, session, &seed),
    };
    match result {
        Ok(reply) => (Rv::OK, reply),
        Err(rv) => (rv, Reply::None),
    }
}
