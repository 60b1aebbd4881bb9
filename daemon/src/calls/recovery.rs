//! Token recovery: the remote request and grant (`kyso recover`), the helpdesk's on-site
//! unlock and the wipe of a returned token (`kyso-helpdesk`). Every outcome, refusals
//! included, goes to the audit journal; no PIN is ever logged or journaled.

use std::sync::Arc;

use cryptoki_sys as ck;
use kyso_proto::audit::AuditEvent;
use kyso_proto::{Pin, Reply, SoPinCandidate, Ulong, Unlock};
use kyso_recovery::artefact::{encode_b64, RequestCertificate, REQUEST_KIND, VERSION};
use kyso_recovery::{grant, receipt, RecoveryRequest};

use crate::client::Client;
use crate::error::Rv;
use crate::state::State;
use crate::token::Token;

/// A refusal: the PKCS#11 code and a message for a person.
struct Refusal(Rv, String);

impl Refusal {
    fn new(rv: Ulong, text: impl Into<String>) -> Refusal {
        Refusal(Rv(rv), text.into())
    }
}

fn present_token(d: &State, slot: Ulong) -> Result<Arc<Token>, Refusal> {
    let token = d
        .registry
        .token(slot)
        .ok_or_else(|| Refusal::new(ck::CKR_SLOT_ID_INVALID, "no such token"))?;
    if !token.is_present() {
        return Err(Refusal::new(
            ck::CKR_TOKEN_NOT_PRESENT,
            format!("token {} is not plugged in", token.serial),
        ));
    }
    Ok(token)
}

fn token_by_serial(d: &State, serial: &str) -> Result<Arc<Token>, Refusal> {
    d.registry
        .slots(true)
        .into_iter()
        .filter_map(|s| d.registry.token(s))
        .find(|t| t.serial == serial)
        .ok_or_else(|| {
            Refusal::new(
                ck::CKR_TOKEN_NOT_PRESENT,
                format!("token {serial} is not plugged in"),
            )
        })
}

fn answer(result: Result<Reply, Refusal>) -> (Rv, Reply) {
    match result {
        Ok(reply) => (Rv::OK, reply),
        Err(Refusal(rv, text)) => (rv, Reply::Text(text)),
    }
}

/// `kyso recover request`.
pub fn request(d: &State, c: &Client, slot: Ulong) -> (Rv, Reply) {
    answer(make_request(d, c, slot))
}

fn make_request(d: &State, c: &Client, slot: Ulong) -> Result<Reply, Refusal> {
    let token = present_token(d, slot)?;
    let info = token
        .module
        .token_info(token.module_slot)
        .map_err(|rv| Refusal(rv, "cannot read the token's state".into()))?;
    so_usable(&token, info.flags, true)?;
    // The certificates themselves go with their description (the helpdesk checks one against
    // the other); one that cannot be read again now is left out.
    let ders = crate::certs::certificates_der(&token.module, token.module_slot);
    let described = |c: &kyso_proto::CertificateStatus| {
        let (_, der) = ders.iter().find(|(id, _)| kyso_recovery::hex(id) == c.id)?;
        RequestCertificate::from_der(der, &c.class)
    };
    let (private_key, public_key) = grant::ephemeral_keypair();
    let nonce = kyso_recovery::hex(&kyso_recovery::random::<16>());
    let created = kyso_recovery::now();
    d.recovery.purge_expired(created);
    let request = RecoveryRequest {
        kind: REQUEST_KIND.into(),
        version: VERSION,
        serial: token.serial.clone(),
        label: token.label.clone(),
        model: token.model.clone(),
        certificates: token.certificates.iter().filter_map(described).collect(),
        nonce: nonce.clone(),
        public_key: encode_b64(&public_key),
        min_pin_len: info.ulMinPinLen,
        max_pin_len: info.ulMaxPinLen,
        created,
        expires: created + kyso_recovery::REQUEST_LIFETIME_SECS,
    };
    // The grant must answer this very file (written as it is, line feed included): kysod
    // keeps its digest with the key.
    let mut bytes = serde_json::to_vec_pretty(&request)
        .map_err(|e| Refusal::new(ck::CKR_FUNCTION_FAILED, e.to_string()))?;
    bytes.push(b'\n');
    d.recovery
        .save_request(
            &nonce,
            &token.serial,
            &kyso_recovery::sha256_hex(&bytes),
            &private_key,
            request.expires,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "cannot keep the recovery key");
            Refusal::new(
                ck::CKR_FUNCTION_FAILED,
                format!("kysod cannot keep the request's key in its state directory: {e}"),
            )
        })?;
    d.audit.recovery(
        AuditEvent::RecoveryRequest,
        &c.actor(),
        token.audit_ref(),
        None,
        &format!("nonce {nonce}"),
        Rv::OK,
    );
    tracing::info!(client = c.id, serial = %token.serial, nonce, "recovery request made");
    Ok(Reply::Bytes(bytes))
}

/// Refuses when the SO PIN cannot be used: locked, or at its final try without `force`.
fn so_usable(token: &Token, flags: Ulong, force: bool) -> Result<(), Refusal> {
    if flags & ck::CKF_SO_PIN_LOCKED != 0 {
        return Err(Refusal::new(
            ck::CKR_PIN_LOCKED,
            format!(
                "the SO PIN of token {} is locked too: the device must go back to the certification authority (thiết bị phải gửi về tổ chức cung cấp dịch vụ chứng thực)",
                token.serial
            ),
        ));
    }
    if flags & ck::CKF_SO_PIN_FINAL_TRY != 0 && !force {
        return Err(Refusal::new(
            ck::CKR_FUNCTION_CANCELED,
            format!(
                "the SO PIN of token {} is at its final try: a wrong SO PIN would lock the device for good; nothing was tried (use --force only with an SO PIN you are sure of)",
                token.serial
            ),
        ));
    }
    Ok(())
}

/// SO login with `so_pin`, the user's new PIN through the pinentry, `C_InitPIN`, then the SO
/// PIN becomes `new_so_pin`. The SO flags are checked before any try is spent; the user is
/// asked before the SO logs in, so a cancelled prompt spends nothing.
fn unlock_token(
    d: &State,
    c: &Client,
    token: &Token,
    so_pin: &[u8],
    new_so_pin: &[u8],
    force: bool,
) -> Result<(), Refusal> {
    let info = token
        .module
        .token_info(token.module_slot)
        .map_err(|rv| Refusal(rv, "cannot read the token's state".into()))?;
    so_usable(token, info.flags, force)?;
    let (min, max) = (info.ulMinPinLen as usize, info.ulMaxPinLen as usize);
    if new_so_pin.len() < min || new_so_pin.len() > max {
        return Err(Refusal::new(
            ck::CKR_PIN_LEN_RANGE,
            format!("the new SO PIN must have {min}–{max} characters; nothing was changed"),
        ));
    }
    let settings =
        crate::pinentry::PinentrySettings::for_client(d.settings().pinentry.clone(), c.pid);
    let ask = |prompt: &crate::pinentry::PinPrompt| {
        crate::pinentry::ask_pin(&settings, prompt).map_err(|e| {
            tracing::warn!(client = c.id, serial = %token.serial, error = %e, "recovery: no PIN from the pinentry");
            e.rv()
        })
    };
    let mut prompt = super::session::pin_prompt(c, token);
    prompt.title = "kyso — khôi phục thiết bị / token recovery".into();
    prompt.description = format!(
        "Thiết bị \"{label}\" (số sê-ri {serial}) đang được khôi phục. Hãy tự chọn mã PIN mới; bộ phận hỗ trợ sẽ không biết mã này.\n\nThe token \"{label}\" (serial {serial}) is being recovered. Choose your new PIN; the helpdesk will not learn it.",
        label = token.label,
        serial = token.serial
    );
    prompt.error = None;
    let new_user_pin =
        super::session::ask_new_pin(c, token, &info, &mut prompt, &ask).map_err(|rv| {
            Refusal(
                rv,
                "no acceptable new PIN was chosen; nothing was changed on the token".into(),
            )
        })?;

    let login = token.login.lock();
    if login.is_logged_in() {
        return Err(Refusal::new(
            ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            "the token is in use (logged in): close the applications using it and try again; nothing was changed",
        ));
    }
    let session = token
        .module
        .open_session(
            token.module_slot,
            ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION,
        )
        .map_err(|rv| Refusal(rv, "cannot open a session on the token".into()))?;
    let result = so_steps(token, session, so_pin, &new_user_pin, new_so_pin);
    let _ = token.module.logout(session);
    let _ = token.module.close_session(session);
    drop(login);
    result
}

fn so_steps(
    token: &Token,
    session: ck::CK_SESSION_HANDLE,
    so_pin: &[u8],
    user_pin: &Pin,
    new_so_pin: &[u8],
) -> Result<(), Refusal> {
    token
        .module
        .login(session, ck::CKU_SO, Some(so_pin))
        .map_err(|rv| {
            let text = if rv == Rv(ck::CKR_PIN_INCORRECT) {
                "the token refused the SO PIN (one SO try was spent); check the escrow with the helpdesk before trying again"
            } else {
                "SO login failed; nothing was changed"
            };
            Refusal(rv, text.into())
        })?;
    token
        .module
        .init_pin(session, Some(user_pin.expose()))
        .map_err(|rv| Refusal(rv, "C_InitPIN failed: the user PIN was not set".into()))?;
    tracing::info!(serial = %token.serial, "recovery: new user PIN set");
    token
        .module
        .set_pin(session, Some(so_pin), Some(new_so_pin))
        .map_err(|rv| {
            Refusal(
                rv,
                "the new user PIN is set, but the SO PIN could not be rotated: the old SO PIN is still valid".into(),
            )
        })?;
    tracing::info!(serial = %token.serial, "recovery: SO PIN rotated");
    Ok(())
}

/// `kyso recover apply`.
pub fn apply(d: &State, c: &Client, grant_bytes: &[u8], force: bool) -> (Rv, Reply) {
    answer(apply_grant(d, c, grant_bytes, force))
}

fn apply_grant(d: &State, c: &Client, grant_bytes: &[u8], force: bool) -> Result<Reply, Refusal> {
    let refused = |token: Option<&Token>, case: Option<&str>, r: Refusal| {
        tracing::warn!(client = c.id, reason = %r.1, "recovery grant refused");
        if let Some(token) = token {
            d.audit.recovery(
                AuditEvent::RecoveryApply,
                &c.actor(),
                token.audit_ref(),
                case,
                &r.1,
                r.0,
            );
        }
        r
    };
    let g = kyso_recovery::parse_grant(grant_bytes).map_err(|e| {
        refused(
            None,
            None,
            Refusal::new(ck::CKR_ARGUMENTS_BAD, format!("grant refused: {e}")),
        )
    })?;
    let case = Some(g.body.case_ref.as_str());
    // The token the grant names, when it is here: refusals are journaled against it.
    let named = token_by_serial(d, &g.body.serial).ok();
    let refuse = |r: Refusal| refused(named.as_deref(), case, r);
    grant::check_signature(&g, &d.recovery.trusted).map_err(|e| {
        refuse(Refusal::new(
            ck::CKR_FUNCTION_FAILED,
            format!("grant refused: {e}"),
        ))
    })?;
    let now = kyso_recovery::now();
    let pending = d.recovery.load_request(&g.body.nonce, now).map_err(|e| {
        refuse(Refusal::new(
            ck::CKR_FUNCTION_FAILED,
            format!("grant refused: {e}"),
        ))
    })?;
    let secrets = grant::open(&g, &d.recovery.trusted, &pending.made(), now).map_err(|e| {
        refuse(Refusal::new(
            ck::CKR_FUNCTION_FAILED,
            format!("grant refused: {e}"),
        ))
    })?;
    let token = token_by_serial(d, &pending.serial).map_err(&refuse)?;
    let generation = g.body.digest();
    unlock_token(
        d,
        c,
        &token,
        &secrets.current_so_pin,
        &secrets.new_so_pin,
        force,
    )
    .map_err(|r| refused(Some(&token), case, r))?;
    d.recovery.set_generation(&token.serial, &generation);
    d.recovery.forget_request(&g.body.nonce);
    let r = receipt::make(
        &secrets.receipt_key,
        &token.serial,
        &g.body.nonce,
        &generation,
    );
    d.audit.recovery(
        AuditEvent::RecoveryApply,
        &c.actor(),
        token.audit_ref(),
        case,
        &format!(
            "grant {generation} by {}; new user PIN set, SO PIN rotated",
            g.body.operator
        ),
        Rv::OK,
    );
    let bytes = serde_json::to_vec_pretty(&r)
        .map_err(|e| Refusal::new(ck::CKR_FUNCTION_FAILED, e.to_string()))?;
    Ok(Reply::Bytes(bytes))
}

/// `kyso-helpdesk unlock`.
pub fn unlock(d: &State, c: &Client, order: &Unlock) -> (Rv, Reply) {
    let generation = &order.generation;
    let result = present_token(d, order.slot).and_then(|token| {
        let case = Some(order.case_ref.as_str()).filter(|c| !c.is_empty());
        let used = d
            .recovery
            .choose(&token.serial, &order.candidates)
            .ok_or_else(|| Refusal::new(ck::CKR_ARGUMENTS_BAD, "no SO PIN was given"))?;
        let (old, new) = (used.pin.expose(), order.new_so_pin.expose());
        match unlock_token(d, c, &token, old, new, order.force) {
            Ok(()) => {
                d.recovery.set_generation(&token.serial, generation);
                let detail = format!(
                    "on site: SO PIN {} used; new user PIN set; SO PIN rotated to {generation}",
                    used.generation
                );
                d.audit.recovery(
                    AuditEvent::Unlock,
                    &c.actor(),
                    token.audit_ref(),
                    case,
                    &detail,
                    Rv::OK,
                );
                Ok(Reply::Text(used.generation.clone()))
            }
            Err(r) => {
                d.audit.recovery(
                    AuditEvent::Unlock,
                    &c.actor(),
                    token.audit_ref(),
                    case,
                    &r.1,
                    r.0,
                );
                Err(r)
            }
        }
    });
    answer(result)
}

/// `kyso-helpdesk wipe`.
pub fn wipe(
    d: &State,
    c: &Client,
    slot: Ulong,
    candidates: &[SoPinCandidate],
    label: &str,
    case_ref: &str,
) -> (Rv, Reply) {
    let result = present_token(d, slot).and_then(|token| {
        let case = Some(case_ref).filter(|c| !c.is_empty());
        let outcome = wipe_token(d, &token, candidates, label);
        let (rv, detail) = match &outcome {
            Ok(generation) => (Rv::OK, format!("re-initialised with SO PIN {generation}")),
            Err(r) => (r.0, r.1.clone()),
        };
        d.audit.recovery(
            AuditEvent::Wipe,
            &c.actor(),
            token.audit_ref(),
            case,
            &detail,
            rv,
        );
        outcome.map(Reply::Text)
    });
    answer(result)
}

fn wipe_token(
    d: &State,
    token: &Token,
    candidates: &[SoPinCandidate],
    label: &str,
) -> Result<String, Refusal> {
    let used = d
        .recovery
        .choose(&token.serial, candidates)
        .ok_or_else(|| Refusal::new(ck::CKR_ARGUMENTS_BAD, "no SO PIN was given"))?;
    let info = token
        .module
        .token_info(token.module_slot)
        .map_err(|rv| Refusal(rv, "cannot read the token's state".into()))?;
    so_usable(token, info.flags, false)?;
    let mut padded = [b' '; 32];
    let n = label.len().min(32);
    padded[..n].copy_from_slice(&label.as_bytes()[..n]);
    let mut login = token.login.lock();
    if login.is_logged_in() {
        return Err(Refusal::new(
            ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            "the token is in use (logged in): close the applications using it; nothing was changed",
        ));
    }
    token
        .module
        .init_token(token.module_slot, Some(used.pin.expose()), &padded)
        .map_err(|rv| {
            let text = match rv.0 {
                ck::CKR_PIN_INCORRECT => "the token refused the SO PIN (one SO try was spent)",
                ck::CKR_SESSION_EXISTS => {
                    "applications have sessions open on the token: close them and try again"
                }
                _ => "C_InitToken failed; the token was not wiped",
            };
            Refusal(rv, text.into())
        })?;
    login.reset(&token.module);
    Ok(used.generation.clone())
}
