//! Sessions and login: each client's sessions are module sessions kysod opened for it; its
//! login is virtual (see [`crate::login`]).

use cryptoki_sys as ck;
use kyso_proto::{Pin, Reply, SessionInfo, Ulong};

use crate::client::{Client, Session};
use crate::error::Rv;
use crate::login::TokenLogin;
use crate::state::State;
use crate::token::Token;
use crate::tries::{next_try, NextTry, PinKind};

pub fn open(d: &State, c: &Client, slot: Ulong, flags: Ulong) -> Result<Reply, Rv> {
    if flags & ck::CKF_SERIAL_SESSION == 0 {
        return Err(Rv(ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED));
    }
    let token = d.registry.token(slot).ok_or(Rv(ck::CKR_SLOT_ID_INVALID))?;
    if !token.is_present() {
        return Err(Rv(ck::CKR_TOKEN_NOT_PRESENT));
    }
    if c.session_count() >= d.settings().limits.sessions_per_client {
        tracing::warn!(client = c.id, pid = c.pid, "session limit reached");
        return Err(Rv(ck::CKR_SESSION_COUNT));
    }
    // An SO-logged-in client may not open read-only sessions, as in process.
    if flags & ck::CKF_RW_SESSION == 0 && c.login_of(&token) == Some(ck::CKU_SO) {
        return Err(Rv(ck::CKR_SESSION_READ_WRITE_SO_EXISTS));
    }
    let module_session = token.module.open_session(token.module_slot, flags)?;
    let session = c.add_session(token, module_session, flags);
    Ok(Reply::Handle(session.handle))
}

/// Ends one session: when it was the client's last on its token, the client's login there
/// ends too (as in process, where closing the last session logs the application out).
fn end(c: &Client, session: &Session) {
    let token = &session.token;
    c.forget_made_on(session);
    if c.sessions_on(token.slot).is_empty() {
        let mut login = token.login.lock();
        if login.user_of(c.id).is_some() {
            let _ = login.logout(&token.module, Some(session.module_session), c.id);
        }
        drop(login);
        c.forget_slot_objects(token.slot);
    }
    match token.module.close_session(session.module_session) {
        Ok(()) | Err(Rv(ck::CKR_SESSION_HANDLE_INVALID)) | Err(Rv(ck::CKR_SESSION_CLOSED)) => {}
        Err(rv) if !token.is_present() => {
            tracing::debug!(%rv, "closing a session of a removed token")
        }
        Err(rv) => tracing::warn!(%rv, "C_CloseSession failed"),
    }
}

pub fn close(c: &Client, handle: Ulong) -> Result<Reply, Rv> {
    let session = c
        .remove_session(handle)
        .ok_or(Rv(ck::CKR_SESSION_HANDLE_INVALID))?;
    end(c, &session);
    Ok(Reply::None)
}

pub fn close_all(d: &State, c: &Client, slot: Ulong) -> Result<Reply, Rv> {
    d.registry.token(slot).ok_or(Rv(ck::CKR_SLOT_ID_INVALID))?;
    for session in c.sessions_on(slot) {
        if let Some(session) = c.remove_session(session.handle) {
            end(c, &session);
        }
    }
    Ok(Reply::None)
}

/// Closes everything a departing client left open.
pub fn close_everything(c: &Client) {
    for session in c.all_sessions() {
        if let Some(session) = c.remove_session(session.handle) {
            end(c, &session);
        }
    }
}

pub fn info(c: &Client, handle: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let rw = s.flags & ck::CKF_RW_SESSION != 0;
    let state = match (c.login_of(&s.token), rw) {
        (Some(ck::CKU_SO), _) => ck::CKS_RW_SO_FUNCTIONS,
        (Some(_), true) => ck::CKS_RW_USER_FUNCTIONS,
        (Some(_), false) => ck::CKS_RO_USER_FUNCTIONS,
        (None, true) => ck::CKS_RW_PUBLIC_SESSION,
        (None, false) => ck::CKS_RO_PUBLIC_SESSION,
    };
    Ok(Reply::SessionInfo(SessionInfo {
        slot: s.token.slot,
        state,
        flags: s.flags,
        device_error: 0,
    }))
}

/// `C_Login`, journaled (success, failure or lockout) once it reached a token.
pub fn login(
    d: &State,
    c: &Client,
    handle: Ulong,
    user: Ulong,
    pin: Option<&Pin>,
) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let result = login_unjournaled(d, c, handle, user, pin);
    let (rv, detail) = match &result {
        Ok(how) => (Rv::OK, *how),
        Err(rv) => (*rv, None),
    };
    d.audit.login(&c.actor(), s.token.audit_ref(), rv, detail);
    result.map(|_| Reply::None)
}

/// What the journal says of a login made without the token checking a PIN.
const SHARED_LOGIN: &str = "shared login: no PIN asked (pin.share_login_seconds)";

/// Logs in; `Ok(Some(detail))` for a login worth a note in the journal.
fn login_unjournaled(
    d: &State,
    c: &Client,
    handle: Ulong,
    user: Ulong,
    pin: Option<&Pin>,
) -> Result<Option<&'static str>, Rv> {
    let s = c.session(handle)?;
    // Another application of the user logged in recently: no prompt while that is shared.
    if pin.is_none()
        && user == ck::CKU_USER
        && d.settings().pin.share_login_seconds > 0
        && s.token.login.lock().join_shared(&s.token.module, c.id)
    {
        tracing::info!(client = c.id, pid = c.pid, program = %c.program, slot = s.token.slot, serial = %s.token.serial, "login (shared)");
        return Ok(Some(SHARED_LOGIN));
    }
    // The token may count tries and lock: say so instead of spending one.
    let kind = PinKind::of_user_type(user);
    let next = next_try_of(d, &s.token, kind);
    if next == NextTry::Locked {
        tracing::error!(slot = s.token.slot, serial = %s.token.serial, label = %s.token.label, pin = kind.name(), "the token's PIN is locked: it must be recovered (khôi phục thiết bị) by the helpdesk or the CA with the SO PIN; kysod will not try a PIN on it");
        // The user, not the application, would have typed the PIN: tell them why
        // nothing will be signed, and what to do.
        if kind == PinKind::User && pin.is_none() && d.settings().pin.protected_path {
            tell_locked(d, c, &s.token);
        }
        return Err(Rv(ck::CKR_PIN_LOCKED));
    }
    // Protected authentication path: no PIN from the application, so ask the user. One
    // prompt, one C_Login: a wrong PIN goes back to the application, never retried.
    let mut asked = None;
    let prompted = pin.is_none();
    let pin = match pin {
        None if user == ck::CKU_USER
            && d.settings().pin.protected_path
            && c.login_of(&s.token).is_none() =>
        {
            let settings =
                crate::pinentry::PinentrySettings::for_client(d.settings().pinentry.clone(), c.pid);
            let mut prompt = pin_prompt(c, &s.token);
            if next == NextTry::Last {
                prompt.error = Some(LAST_TRY_WARNING.into());
            }
            let got = crate::pinentry::ask_pin(&settings, &prompt).map_err(|e| {
                tracing::warn!(client = c.id, pid = c.pid, program = %c.program, serial = %s.token.serial, error = %e, "no PIN from the pinentry");
                e.rv()
            })?;
            Some(&*asked.insert(got))
        }
        pin => pin,
    };
    // The user typed the PIN in a prompt that said this try was the last: that is their
    // consent. A PIN the application supplied needs the user's word at the last try (a PIN
    // checked against kysod's verifier spends no try and needs none).
    let agreed = prompted && pin.is_some() && next == NextTry::Last;
    if user == ck::CKU_SO
        && c.sessions_on(s.token.slot)
            .iter()
            .any(|s| s.flags & ck::CKF_RW_SESSION == 0)
    {
        return Err(Rv(ck::CKR_SESSION_READ_ONLY_EXISTS));
    }
    let mut fresh = false;
    let result = guarded_try(
        d,
        c,
        &s.token,
        agreed,
        |login| (user == ck::CKU_CONTEXT_SPECIFIC || !login.is_logged_in()).then_some(kind),
        |login, tally| {
            fresh = !login.is_logged_in();
            let result = login.login(&s.token.module, s.module_session, c.id, user, pin, prompted);
            if fresh || user == ck::CKU_CONTEXT_SPECIFIC {
                tally.record(result);
            }
            result
        },
    )
    .and_then(|r| r);
    let fresh_user = result.is_ok() && fresh && user == ck::CKU_USER;
    if fresh_user
        && s.token
            .module
            .token_info(s.token.module_slot)
            .is_ok_and(|i| i.flags & ck::CKF_USER_PIN_TO_BE_CHANGED != 0)
    {
        forced_pin_change(d, c, &s, pin)?;
    }
    if fresh_user {
        s.token.login.lock().share(
            &s.token.module,
            s.token.module_slot,
            std::time::Duration::from_secs(d.settings().pin.share_login_seconds),
        );
        d.registry.shared_logins_changed();
    }
    let rv = result.err().unwrap_or(Rv::OK);
    tracing::info!(client = c.id, pid = c.pid, program = %c.program, slot = s.token.slot, serial = %s.token.serial, user, %rv, "login");
    result.map(|()| None)
}

pub fn logout(c: &Client, handle: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    s.token
        .login
        .lock()
        .logout(&s.token.module, Some(s.module_session), c.id)?;
    c.forget_private_objects(s.token.slot);
    tracing::info!(client = c.id, pid = c.pid, slot = s.token.slot, "logout");
    Ok(Reply::None)
}

pub fn init_pin(d: &State, c: &Client, handle: Ulong, pin: Option<&Pin>) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    if c.login_of(&s.token) != Some(ck::CKU_SO) {
        return Err(Rv(ck::CKR_USER_NOT_LOGGED_IN));
    }
    // Needs the SO logged in, and checks no PIN: no try is spent.
    let result = s
        .token
        .module
        .init_pin(s.module_session, pin.map(Pin::expose));
    if result.is_ok() {
        d.pin_failures.succeeded(&s.token.serial, PinKind::User);
    }
    tracing::info!(client = c.id, pid = c.pid, slot = s.token.slot, serial = %s.token.serial, rv = %result.err().unwrap_or(Rv::OK), "user PIN initialisation");
    result.map(|()| Reply::None)
}

/// `C_SetPIN`: the old PIN is checked, which spends a try of the PIN of whoever is logged in
/// at the module (the user's when nobody is).
pub fn set_pin(
    d: &State,
    c: &Client,
    handle: Ulong,
    old: Option<&Pin>,
    new: Option<&Pin>,
) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let kind_of = |login: &TokenLogin| match login.module_user() {
        Some(ck::CKU_SO) => PinKind::So,
        _ => PinKind::User,
    };
    let result = guarded_try(
        d,
        c,
        &s.token,
        false,
        |login| Some(kind_of(login)),
        |login, tally| {
            // Which PIN C_SetPIN changes depends on who is logged in at the module; a client
            // that is not logged in itself must not change the PIN of whoever is.
            let mine = login.user_of(c.id);
            if mine.is_none() && login.is_logged_in() {
                return Err(Rv(ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN));
            }
            let result = s.token.module.set_pin(
                s.module_session,
                old.map(Pin::expose),
                new.map(Pin::expose),
            );
            tally.record(result);
            if result.is_ok() {
                if let Some(new) = new {
                    // C_SetPIN changed the PIN of whoever is logged in (this client).
                    if let Some(user) = mine {
                        login.pin_changed(user, new);
                    }
                }
            }
            result
        },
    )
    .and_then(|r| r);
    tracing::info!(client = c.id, pid = c.pid, slot = s.token.slot, serial = %s.token.serial, rv = %result.err().unwrap_or(Rv::OK), "PIN change");
    result.map(|()| Reply::None)
}

/// Shown in a PIN prompt when a wrong PIN would lock the token.
const LAST_TRY_WARNING: &str =
    "Còn 1 lần thử — nhập sai sẽ khóa thiết bị / 1 try left — a wrong PIN will lock the token";

/// The next try of `kind` on `token`, from its flags and kysod's count (no lock held: a
/// first look, before anyone is asked anything; [`guarded_try`] looks again).
pub(super) fn next_try_of(d: &State, token: &Token, kind: PinKind) -> NextTry {
    let flags = token
        .module
        .token_info(token.module_slot)
        .map_or(0, |i| i.flags);
    next_try(flags, kind, d.pin_failures.count(&token.serial, kind))
}

/// Records what one PIN try came to in kysod's count of wrong PINs.
pub(super) struct Tally<'a> {
    d: &'a State,
    serial: &'a str,
    kind: Option<PinKind>,
}

impl Tally<'_> {
    /// `result` is what the module answered to the call that checked the PIN.
    pub(super) fn record(&self, result: Result<(), Rv>) {
        let Some(kind) = self.kind else {
            return;
        };
        match result {
            Ok(()) => self.d.pin_failures.succeeded(self.serial, kind),
            Err(Rv(ck::CKR_PIN_INCORRECT)) => self.d.pin_failures.failed(self.serial, kind),
            Err(_) => {}
        }
    }
}

/// The one guard of every PIN try kysod makes (login, `C_SetPIN`, `C_InitToken`, recovery):
/// under the token's login lock, the token's flags and kysod's count are read, a locked PIN is
/// refused, and a try that could be the last is made only once the user agreed in the
/// pinentry (`agreed`: they already did). The lock is let go while the user is asked, then the
/// state is read again, so two callers can never both pass the check and both spend a try.
/// `tried` says which PIN `attempt` would try with the login state as it is (`None`: none,
/// as when a PIN is checked against kysod's verifier); `attempt` runs under the lock and
/// reports the module's answer to its [`Tally`]. `Err` is the guard's refusal.
pub(super) fn guarded_try<T>(
    d: &State,
    c: &Client,
    token: &Token,
    mut agreed: bool,
    tried: impl Fn(&TokenLogin) -> Option<PinKind>,
    attempt: impl FnOnce(&mut TokenLogin, &Tally) -> T,
) -> Result<T, Rv> {
    loop {
        let mut login = token.login.lock();
        let kind = tried(&login);
        let next = kind.map_or(NextTry::Spare, |kind| next_try_of(d, token, kind));
        match (next, kind) {
            (NextTry::Locked, Some(kind)) => {
                tracing::error!(client = c.id, serial = %token.serial, pin = kind.name(), "the PIN is locked: no try made");
                return Err(Rv(ck::CKR_PIN_LOCKED));
            }
            (NextTry::Last, Some(kind)) if !agreed => {
                drop(login);
                confirm_last_try(d, c, token, kind)?;
                agreed = true;
            }
            _ => {
                let tally = Tally {
                    d,
                    serial: &token.serial,
                    kind,
                };
                return Ok(attempt(&mut login, &tally));
            }
        }
    }
}

/// Asks the user whether the last try of `kind` on `token` may be spent.
fn confirm_last_try(d: &State, c: &Client, token: &Token, kind: PinKind) -> Result<(), Rv> {
    let settings =
        crate::pinentry::PinentrySettings::for_client(d.settings().pinentry.clone(), c.pid);
    let mut prompt = pin_prompt(c, token);
    prompt.title = "kyso — lần thử cuối / last try".into();
    prompt.error = None;
    prompt.description.push_str(&format!(
        "\n\nCòn 1 lần thử {kind_vi} của thiết bị \"{label}\" (số sê-ri {serial}): mã sai sẽ khóa thiết bị. Tiếp tục?\nOne try of the {kind} of token \"{label}\" (serial {serial}) is left: a wrong one locks the token. Go on?",
        kind_vi = kind.name_vi(),
        kind = kind.name(),
        label = token.label,
        serial = token.serial,
    ));
    match crate::pinentry::confirm(&settings, &prompt) {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(client = c.id, pid = c.pid, program = %c.program, serial = %token.serial, pin = kind.name(), "last try not confirmed by the user: no PIN was tried");
            Err(Rv(ck::CKR_FUNCTION_CANCELED))
        }
        Err(e) => {
            tracing::warn!(client = c.id, pid = c.pid, serial = %token.serial, error = %e, "last try: no confirmation from the pinentry; no PIN was tried");
            Err(e.rv())
        }
    }
}

/// What the user is told when kysod asks for the PIN (Vietnamese first, English below).
/// How many times a new PIN may be typed again (mismatch, wrong length) before giving up.
const NEW_PIN_ATTEMPTS: usize = 3;

/// `kyso pin change`: the current PIN, then the new one twice within the token's length
/// limits, all through the pinentry; then `C_SetPIN`. The current PIN is tried once, never
/// again on kysod's own: a wrong one goes back to the caller.
pub fn change_pin(d: &State, c: &Client, slot: Ulong) -> Result<Reply, Rv> {
    let token = d.registry.token(slot).ok_or(Rv(ck::CKR_SLOT_ID_INVALID))?;
    if !token.is_present() {
        return Err(Rv(ck::CKR_TOKEN_NOT_PRESENT));
    }
    let info = token.module.token_info(token.module_slot)?;
    let next = next_try_of(d, &token, PinKind::User);
    if next == NextTry::Locked {
        tracing::error!(slot, serial = %token.serial, "the token's user PIN is locked: it must be recovered by the helpdesk");
        return Err(Rv(ck::CKR_PIN_LOCKED));
    }
    let settings =
        crate::pinentry::PinentrySettings::for_client(d.settings().pinentry.clone(), c.pid);
    let ask = |prompt: &crate::pinentry::PinPrompt| {
        crate::pinentry::ask_pin(&settings, prompt).map_err(|e| {
            tracing::warn!(client = c.id, pid = c.pid, serial = %token.serial, error = %e, "PIN change: no PIN from the pinentry");
            e.rv()
        })
    };
    let mut prompt = pin_prompt(c, &token);
    prompt.title = "kyso — đổi PIN / change PIN".into();
    prompt.prompt = "PIN hiện tại / current PIN:".into();
    if next == NextTry::Last {
        prompt.error = Some(LAST_TRY_WARNING.into());
    }
    let old = ask(&prompt)?;
    let new = ask_new_pin(c, &token, &info, &mut prompt, &ask)?;
    let result = guarded_try(
        d,
        c,
        &token,
        next == NextTry::Last,
        |_| Some(PinKind::User),
        |login, tally| {
            // C_SetPIN acts on whoever is logged in at the module: with the SO logged in it
            // would change the SO PIN.
            if login.module_user() == Some(ck::CKU_SO) {
                return Err(Rv(ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN));
            }
            let result = set_user_pin(&token, Some(&old), &new);
            tally.record(result);
            if result.is_ok() {
                login.pin_changed(ck::CKU_USER, &new);
            }
            result
        },
    )
    .and_then(|r| r);
    tracing::info!(client = c.id, pid = c.pid, program = %c.program, slot, serial = %token.serial, rv = %result.err().unwrap_or(Rv::OK), "PIN change");
    result.map(|()| Reply::None)
}

/// `C_SetPIN` from `old` to `new` in a read-write session of kysod's own (the PIN changed is
/// the user's unless the SO is logged in at the module, which callers rule out).
fn set_user_pin(token: &crate::token::Token, old: Option<&Pin>, new: &Pin) -> Result<(), Rv> {
    let session = token.module.open_session(
        token.module_slot,
        ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION,
    )?;
    let result = token
        .module
        .set_pin(session, old.map(Pin::expose), Some(new.expose()));
    let _ = token.module.close_session(session);
    result
}

/// Asks a new PIN twice through the pinentry, within the token's length limits (`info`),
/// letting the user try again a few times after a mismatch or a wrong length.
pub(super) fn ask_new_pin(
    c: &Client,
    token: &crate::token::Token,
    info: &ck::CK_TOKEN_INFO,
    prompt: &mut crate::pinentry::PinPrompt,
    ask: &dyn Fn(&crate::pinentry::PinPrompt) -> Result<Pin, Rv>,
) -> Result<Pin, Rv> {
    let (min, max) = (info.ulMinPinLen as usize, info.ulMaxPinLen as usize);
    let mut error = None;
    for _ in 0..NEW_PIN_ATTEMPTS {
        prompt.prompt = format!("PIN mới ({min}–{max} ký tự) / new PIN ({min}–{max} characters):");
        prompt.error = error.take();
        let first = ask(prompt)?;
        if first.len() < min || first.len() > max {
            error = Some(format!(
                "PIN mới phải có {min}–{max} ký tự / The new PIN must have {min}–{max} characters"
            ));
            continue;
        }
        prompt.prompt = "Nhập lại PIN mới / new PIN again:".into();
        let again = ask(prompt)?;
        if again != first {
            error = Some("Hai lần nhập PIN mới không khớp / The two new PINs differ".into());
            continue;
        }
        return Ok(first);
    }
    tracing::warn!(client = c.id, serial = %token.serial, "PIN change abandoned: no acceptable new PIN");
    Err(Rv(ck::CKR_PIN_INVALID))
}

/// The token says the user PIN must be changed (`CKF_USER_PIN_TO_BE_CHANGED`) and `c` has just
/// logged in with `old`: a new PIN is asked (twice, within the token's limits) and set before
/// the client may do anything else. When that fails the client is logged out again.
fn forced_pin_change(d: &State, c: &Client, s: &Session, old: Option<&Pin>) -> Result<(), Rv> {
    let token = &s.token;
    let settings =
        crate::pinentry::PinentrySettings::for_client(d.settings().pinentry.clone(), c.pid);
    let ask = |prompt: &crate::pinentry::PinPrompt| {
        crate::pinentry::ask_pin(&settings, prompt).map_err(|e| {
            tracing::warn!(client = c.id, pid = c.pid, serial = %token.serial, error = %e, "forced PIN change: no PIN from the pinentry");
            e.rv()
        })
    };
    let result = token.module.token_info(token.module_slot).and_then(|info| {
        let mut prompt = pin_prompt(c, token);
        prompt.title = "kyso — đổi PIN / change PIN".into();
        prompt.description.push_str("\n\nThiết bị yêu cầu đổi mã PIN trước khi dùng. / The token requires a new PIN before it can be used.");
        let new = ask_new_pin(c, token, &info, &mut prompt, &ask)?;
        set_user_pin(token, old, &new)?;
        token
            .login
            .lock()
            .pin_changed(ck::CKU_USER, &new);
        Ok(())
    });
    tracing::info!(client = c.id, pid = c.pid, program = %c.program, slot = token.slot, serial = %token.serial, rv = %result.err().unwrap_or(Rv::OK), "forced PIN change");
    if result.is_err() {
        let _ = token
            .login
            .lock()
            .logout(&token.module, Some(s.module_session), c.id);
    }
    result
}

/// Tells the user, through the pinentry, that the token's PIN is locked and how to get it
/// recovered.
fn tell_locked(d: &State, c: &Client, token: &crate::token::Token) {
    let settings =
        crate::pinentry::PinentrySettings::for_client(d.settings().pinentry.clone(), c.pid);
    let prompt = crate::pinentry::PinPrompt {
        title: "kyso — PIN".into(),
        description: format!(
            "Mã PIN của thiết bị \"{label}\" (số sê-ri {serial}) đã bị khóa do nhập sai quá số lần cho phép. Không thể ký số cho đến khi thiết bị được khôi phục: hãy liên hệ bộ phận hỗ trợ và cung cấp số sê-ri {serial} (xem: kyso token status).\n\nThe PIN of the token \"{label}\" (serial {serial}) is locked after too many wrong entries. Nothing can be signed until the token is recovered: ask your helpdesk, quoting serial {serial} (see: kyso token status).",
            label = token.label,
            serial = token.serial,
        ),
        prompt: String::new(),
        error: None,
    };
    if let Err(e) = crate::pinentry::notify(&settings, &prompt) {
        tracing::warn!(client = c.id, pid = c.pid, serial = %token.serial, error = %e, "could not show the locked-PIN message");
    }
}

pub(super) fn pin_prompt(c: &Client, token: &crate::token::Token) -> crate::pinentry::PinPrompt {
    let program = std::path::Path::new(&c.program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| c.program.clone());
    let tries = token
        .module
        .token_info(token.module_slot)
        .map(|i| i.flags)
        .unwrap_or(0);
    let error = if tries & ck::CKF_USER_PIN_FINAL_TRY != 0 {
        Some(LAST_TRY_WARNING.to_string())
    } else if tries & ck::CKF_USER_PIN_COUNT_LOW != 0 {
        Some(
            "Đã nhập sai PIN — còn ít lần thử / A wrong PIN was entered — few tries left"
                .to_string(),
        )
    } else {
        None
    };
    // Whose signatures the PIN unlocks: the certificate holders (CN, O), once each.
    let mut holders: Vec<&str> = Vec::new();
    for cert in &token.certificates {
        if !cert.holder.is_empty() && !holders.contains(&cert.holder.as_str()) {
            holders.push(&cert.holder);
        }
    }
    holders.sort_unstable();
    let holders = if holders.is_empty() {
        String::new()
    } else {
        let list = holders.join("; ");
        format!("\nChứng thư số: {list}")
    };
    let holders_en = holders.replacen("Chứng thư số", "Certificates", 1);
    let (site, site_en) = purpose_lines(c);
    crate::pinentry::PinPrompt {
        title: "kyso — PIN".into(),
        description: format!(
            "Ứng dụng {program} (pid {pid}) yêu cầu mã PIN của thiết bị \"{label}\" (số sê-ri {serial}).{site}{holders}\n\nThe application {program} (pid {pid}) asks for the PIN of the token \"{label}\" (serial {serial}).{site_en}{holders_en}",
            pid = c.pid,
            label = token.label,
            serial = token.serial,
        ),
        prompt: "PIN:".into(),
        error,
    }
}

/// The lines of a prompt that name the site a client acts for and what it signs (Vietnamese,
/// English); empty when the client acts for itself.
pub(super) fn purpose_lines(c: &Client) -> (String, String) {
    match c.purpose() {
        Some(p) => (
            format!("\nTrang web {} yêu cầu ký: {}", p.site, p.document),
            format!("\nThe web site {} asks to sign: {}", p.site, p.document),
        ),
        None => (String::new(), String::new()),
    }
}
