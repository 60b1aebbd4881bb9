//! Token recovery: the request and grant (`kyso recover`; on site or remote alike) and the
//! wipe of a returned token on the helpdesk's own machine (`kyso-helpdesk wipe`). Every SO PIN
//! try goes through the guard of [`super::session::guarded_try`]. Every outcome, refusals
//! included, goes to the audit journal; no PIN is ever logged or journaled.

use std::sync::Arc;

use cryptoki_sys as ck;
use kyso_proto::audit::AuditEvent;
use kyso_proto::{Pin, Reply, SoPinCandidate, Ulong};
use kyso_recovery::artefact::{encode_b64, RequestCertificate, REQUEST_KIND, VERSION};
use kyso_recovery::{grant, receipt, RecoveryRequest};

use crate::client::Client;
use crate::error::Rv;
use crate::recovery::PendingRequest;
use crate::state::State;
use crate::token::Token;
use crate::tries::{NextTry, PinKind};

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
    so_usable(d, &token, true)?;
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
    // The private key stays in kysod's memory, with the digest of this very file.
    d.recovery.add_request(
        &nonce,
        PendingRequest {
            serial: token.serial.clone(),
            request_sha256: kyso_recovery::sha256_hex(&bytes),
            private_key,
            expires: request.expires,
        },
        created,
    );
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

/// Refuses to log the SO in while anyone is logged in at the token: SO and user logins
/// exclude each other, and another client's work would be cut.
fn not_in_use(login: &crate::login::TokenLogin) -> Result<(), Refusal> {
    if login.is_logged_in() {
        return Err(Refusal::new(
            ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            "the token is in use (logged in): close the applications using it and try again; nothing was changed",
        ));
    }
    Ok(())
}

/// Refuses when the SO PIN cannot be used: locked, or at its final try (by the token's flags
/// or kysod's count) without `force`. With `force` the guard still asks the user.
fn so_usable(d: &State, token: &Token, force: bool) -> Result<(), Refusal> {
    match super::session::next_try_of(d, token, PinKind::So) {
        NextTry::Locked => Err(so_locked(token)),
        NextTry::Last if !force => Err(Refusal::new(
            ck::CKR_FUNCTION_CANCELED,
            format!(
                "the SO PIN of token {} is at its final try: a wrong SO PIN would lock the device for good; nothing was tried (use --force only with an SO PIN you are sure of; the user is asked too)",
                token.serial
            ),
        )),
        _ => Ok(()),
    }
}

fn so_locked(token: &Token) -> Refusal {
    Refusal::new(
        ck::CKR_PIN_LOCKED,
        format!(
            "the SO PIN of token {} is locked too: the device must go back to the certification authority (thiết bị phải gửi về tổ chức cung cấp dịch vụ chứng thực)",
            token.serial
        ),
    )
}

/// The guard's refusal as a message for a person.
fn guard_refusal(token: &Token, rv: Rv) -> Refusal {
    match rv.0 {
        ck::CKR_PIN_LOCKED => so_locked(token),
        ck::CKR_FUNCTION_CANCELED | ck::CKR_FUNCTION_REJECTED => Refusal(
            rv,
            "the user did not agree to spend the SO PIN's last try; nothing was tried".into(),
        ),
        _ => Refusal(
            rv,
            "the user could not be asked about the SO PIN's last try; nothing was tried".into(),
        ),
    }
}

/// Applies the opened grant `g` to `token`: SO login with its current SO PIN, the user's new
/// PIN through the pinentry, `C_InitPIN`, then the SO PIN becomes the grant's new one,
/// recorded under the grant's digest as the token's generation. The SO PIN's state is checked before
/// anyone is asked, and again under the token's login lock by the guard; there too kysod
/// checks that the grant's SO PIN (its `so_generation`) is the generation it installed, and
/// that no other recovery changed the SO PIN meanwhile, so a stale grant spends no try.
fn unlock_token(
    d: &State,
    c: &Client,
    token: &Token,
    g: &kyso_recovery::Grant,
    secrets: &grant::GrantSecrets,
    force: bool,
) -> Result<(), Refusal> {
    let info = token
        .module
        .token_info(token.module_slot)
        .map_err(|rv| Refusal(rv, "cannot read the token's state".into()))?;
    so_usable(d, token, force)?;
    let (so_pin, new_so_pin) = (&secrets.current_so_pin, &secrets.new_so_pin);
    let (sealed_generation, generation) = (g.body.so_generation.as_deref(), g.body.digest());
    let installed = d.recovery.generation(&token.serial);
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

    super::session::guarded_try(
        d,
        c,
        token,
        false,
        |_| Some(PinKind::So),
        |login, tally| {
            not_in_use(login)?;
            let now_installed = d.recovery.generation(&token.serial);
            if let (Some(sealed), Some(installed)) = (sealed_generation, &now_installed) {
                if sealed != installed {
                    return Err(Refusal::new(
                        ck::CKR_FUNCTION_FAILED,
                        format!("the grant carries the SO PIN of generation {sealed}, but kysod installed generation {installed} on this token; nothing was tried (the helpdesk approves the request again with --so-generation {installed})"),
                    ));
                }
            }
            if now_installed != installed {
                return Err(Refusal::new(
                    ck::CKR_FUNCTION_FAILED,
                    "another recovery changed this token's SO PIN meanwhile: this grant's SO PIN is no longer the token's; nothing was tried (ask the helpdesk for a new grant)",
                ));
            }
            let session = token
                .module
                .open_session(
                    token.module_slot,
                    ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION,
                )
                .map_err(|rv| Refusal(rv, "cannot open a session on the token".into()))?;
            let result = so_steps(d, token, session, tally, so_pin, &new_user_pin, new_so_pin);
            let _ = token.module.logout(session);
            let _ = token.module.close_session(session);
            if result.is_ok() {
                d.recovery.set_generation(&token.serial, &generation);
            }
            result
        },
    )
    .map_err(|rv| guard_refusal(token, rv))
    .and_then(|r| r)
}

fn so_steps(
    d: &State,
    token: &Token,
    session: ck::CK_SESSION_HANDLE,
    tally: &super::session::Tally,
    so_pin: &[u8],
    user_pin: &Pin,
    new_so_pin: &[u8],
) -> Result<(), Refusal> {
    let login = token.module.login(session, ck::CKU_SO, Some(so_pin));
    tally.record(login);
    login.map_err(|rv| {
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
    d.pin_failures.succeeded(&token.serial, PinKind::User);
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
    // Taken out while the grant is applied: a second apply of it finds nothing to use.
    let pending = d.recovery.take_request(&g.body.nonce, now).map_err(|e| {
        refuse(Refusal::new(
            ck::CKR_FUNCTION_FAILED,
            format!("grant refused: {e}"),
        ))
    })?;
    let applied = open_and_apply(d, c, &g, &pending, now, force);
    let (token, secrets, generation) = match applied {
        Ok(done) => done,
        Err((token, r)) => {
            // Not applied: the request can still be answered (by this grant, or a new one).
            d.recovery.put_back(&g.body.nonce, pending);
            return Err(refused(token.as_deref().or(named.as_deref()), case, r));
        }
    };
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

/// A grant applied: the token, the grant's secrets (for the receipt) and the generation.
type Applied = (Arc<Token>, grant::GrantSecrets, String);

/// Opens the grant `g` with the key of `pending` and applies it to its token.
fn open_and_apply(
    d: &State,
    c: &Client,
    g: &kyso_recovery::Grant,
    pending: &PendingRequest,
    now: i64,
    force: bool,
) -> Result<Applied, (Option<Arc<Token>>, Refusal)> {
    let secrets = grant::open(g, &d.recovery.trusted, &pending.made(), now).map_err(|e| {
        (
            None,
            Refusal::new(ck::CKR_FUNCTION_FAILED, format!("grant refused: {e}")),
        )
    })?;
    let token = token_by_serial(d, &pending.serial).map_err(|r| (None, r))?;
    let generation = g.body.digest();
    match unlock_token(d, c, &token, g, &secrets, force) {
        Ok(()) => Ok((token, secrets, generation)),
        Err(r) => Err((Some(token), r)),
    }
}

/// `kyso-helpdesk wipe`: run on the helpdesk's own machine, where the returned token is
/// plugged in; the tool checks that it talks to the kysod of its own user.
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
        let outcome = wipe_token(d, c, &token, candidates, label);
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
    c: &Client,
    token: &Token,
    candidates: &[SoPinCandidate],
    label: &str,
) -> Result<String, Refusal> {
    let used = d
        .recovery
        .choose(&token.serial, candidates)
        .ok_or_else(|| Refusal::new(ck::CKR_ARGUMENTS_BAD, "no SO PIN was given"))?;
    so_usable(d, token, false)?;
    let mut padded = [b' '; 32];
    let n = label.len().min(32);
    padded[..n].copy_from_slice(&label.as_bytes()[..n]);
    super::session::guarded_try(
        d,
        c,
        token,
        false,
        |_| Some(PinKind::So),
        |login, tally| {
            not_in_use(login)?;
            let result =
                token
                    .module
                    .init_token(token.module_slot, Some(used.pin.expose()), &padded);
            tally.record(result);
            result.map_err(|rv| {
                let text = match rv.0 {
                    ck::CKR_PIN_INCORRECT => "the token refused the SO PIN (one SO try was spent)",
                    ck::CKR_SESSION_EXISTS => {
                        "applications have sessions open on the token: close them and try again"
                    }
                    _ => "C_InitToken failed; the token was not wiped",
                };
                Refusal(rv, text.into())
            })?;
            d.pin_failures.succeeded(&token.serial, PinKind::User);
            login.reset(&token.module);
            Ok(used.generation.clone())
        },
    )
    .map_err(|rv| guard_refusal(token, rv))
    .and_then(|r| r)
}
