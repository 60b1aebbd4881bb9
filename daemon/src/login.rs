//! Virtual login. A module's login is token-wide, but kysod serves many applications: each
//! client is logged in only if it logged in through kysod itself. The token is logged in at
//! the module while at least one client is; a second client's PIN is checked against a salted
//! verifier of the PIN the token accepted. A PIN from an application that does not match logs
//! the token out for every client: the token never counted that guess, so the next one goes to
//! the token, and the verifier cannot be used to guess the PIN beyond the token's own tries. A
//! PIN the user mistyped into kysod's own prompt only fails that login.
//!
//! With `[pin] share_login_seconds` set, a user login is also shared for that long: the user's
//! other applications log in without being asked again, and a session of kysod's own keeps the
//! module logged in after the first application has gone. A shared login is dropped (never
//! retried with any PIN) when it expires, when the token leaves, when a login on the token
//! fails, or when the module turns out to have logged out by itself.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cryptoki_sys as ck;
use kyso_proto::{Pin, Ulong};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::Rv;
use crate::module::Module;

#[derive(Zeroize, ZeroizeOnDrop)]
struct Verifier {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl Verifier {
    fn new(pin: &Pin) -> Verifier {
        let mut salt = [0u8; 16];
        // Without randomness the verifier is merely less strong; it is never stored.
        let _ = getrandom::getrandom(&mut salt);
        let digest = Self::digest(&salt, pin);
        Verifier { salt, digest }
    }

    fn digest(salt: &[u8; 16], pin: &Pin) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(pin.expose());
        h.finalize().into()
    }

    fn matches(&self, pin: &Pin) -> bool {
        let d = Self::digest(&self.salt, pin);
        // Constant-time comparison.
        d.iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// How a second client's login went.
enum Joined {
    Yes,
    /// The PIN does not match the one the token accepted.
    WrongPin,
    /// There was nothing to check it against.
    Unchecked,
}

/// A user login offered to the user's other applications until `until`.
struct SharedLogin {
    until: Instant,
    /// A module session of kysod's own: while it is open, the module stays logged in even when
    /// every application has closed its sessions.
    keeper: ck::CK_SESSION_HANDLE,
}

/// The module-level login state of one token, and which clients share it.
#[derive(Default)]
pub struct TokenLogin {
    /// `CKU_USER` or `CKU_SO` while the token is logged in at the module.
    user: Option<Ulong>,
    verifier: Option<Verifier>,
    clients: HashSet<u64>,
    shared: Option<SharedLogin>,
}

impl TokenLogin {
    /// Logs `client` in as `user`, through `session` (a module session on the token).
    /// `typed` says the user typed `pin` into kysod's own prompt (rather than the application
    /// supplying it).
    pub fn login(
        &mut self,
        module: &Module,
        session: ck::CK_SESSION_HANDLE,
        client: u64,
        user: Ulong,
        pin: Option<&Pin>,
        typed: bool,
    ) -> Result<(), Rv> {
        if user == ck::CKU_CONTEXT_SPECIFIC {
            // Re-authentication for one operation on an always-authenticate key.
            if !self.clients.contains(&client) {
                return Err(Rv(ck::CKR_USER_NOT_LOGGED_IN));
            }
            return module.login(session, user, pin.map(Pin::expose));
        }
        if user != ck::CKU_USER && user != ck::CKU_SO {
            return Err(Rv(ck::CKR_USER_TYPE_INVALID));
        }
        if self.clients.contains(&client) {
            return Err(Rv(if self.user == Some(user) {
                ck::CKR_USER_ALREADY_LOGGED_IN
            } else {
                ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN
            }));
        }
        match self.user {
            Some(current) if current != user => Err(Rv(ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN)),
            Some(_) => match self.join(client, pin) {
                Joined::Yes => Ok(()),
                Joined::Unchecked => {
                    // A failed login ends the sharing at once.
                    self.drop_shared(module);
                    Err(Rv(ck::CKR_PIN_INCORRECT))
                }
                // The user mistyped in kysod's prompt: a person's slip, not a guess an
                // application can repeat at will.
                Joined::WrongPin if typed => Err(Rv(ck::CKR_PIN_INCORRECT)),
                Joined::WrongPin => {
                    // An application's PIN does not match the one the token accepted: the guess
                    // is not the token's to count, so it ends the module login for every client
                    // instead. The next login goes to the token, which counts its tries itself.
                    tracing::warn!(
                        client,
                        "a wrong PIN while the token is logged in: the token is logged out for every application"
                    );
                    self.clients.clear();
                    self.end_module_login(module, Some(session));
                    Err(Rv(ck::CKR_PIN_INCORRECT))
                }
            },
            None => {
                match module.login(session, user, pin.map(Pin::expose)) {
                    Ok(()) => {}
                    // Logged in behind kysod's back (another session of this process that
                    // outlived a client): start over so the PIN is really checked.
                    Err(Rv(ck::CKR_USER_ALREADY_LOGGED_IN)) => {
                        let _ = module.logout(session);
                        module.login(session, user, pin.map(Pin::expose))?;
                    }
                    Err(rv) => return Err(rv),
                }
                self.user = Some(user);
                self.verifier = pin.map(Verifier::new);
                self.clients.insert(client);
                Ok(())
            }
        }
    }

    /// A second client joins a token already logged in: its PIN must match the one the token
    /// accepted.
    fn join(&mut self, client: u64, pin: Option<&Pin>) -> Joined {
        match (&self.verifier, pin) {
            (Some(v), Some(pin)) if v.matches(pin) => {
                self.clients.insert(client);
                Joined::Yes
            }
            (Some(_), Some(_)) => Joined::WrongPin,
            // Logged in through a protected authentication path, or no PIN given: there is
            // nothing to compare, so the login cannot be checked and is refused.
            _ => Joined::Unchecked,
        }
    }

    /// Logs `client` out; the token is logged out at the module when no client remains.
    /// `session` is any module session on the token, used for that final `C_Logout`.
    pub fn logout(
        &mut self,
        module: &Module,
        session: Option<ck::CK_SESSION_HANDLE>,
        client: u64,
    ) -> Result<(), Rv> {
        if !self.clients.remove(&client) {
            return Err(Rv(ck::CKR_USER_NOT_LOGGED_IN));
        }
        if self.clients.is_empty() {
            if self
                .shared
                .as_ref()
                .is_some_and(|s| s.until > Instant::now())
            {
                // Kept for the user's other applications until the sharing expires.
                return Ok(());
            }
            self.end_module_login(module, session);
        }
        Ok(())
    }

    /// Logs the token out at the module (through `session`, else the keeper session) and
    /// forgets the login.
    fn end_module_login(&mut self, module: &Module, session: Option<ck::CK_SESSION_HANDLE>) {
        self.user = None;
        self.verifier = None;
        let keeper = self.shared.take().map(|s| s.keeper);
        if let Some(session) = session.or(keeper) {
            match module.logout(session) {
                Ok(())
                | Err(Rv(ck::CKR_USER_NOT_LOGGED_IN))
                | Err(Rv(ck::CKR_SESSION_HANDLE_INVALID)) => {}
                Err(rv) => tracing::warn!(%rv, "C_Logout failed"),
            }
        }
        if let Some(keeper) = keeper {
            let _ = module.close_session(keeper);
        }
    }

    /// Offers the user login just made to the user's other applications for `period`; the
    /// login is kept at the module until then by a session of kysod's own on `module_slot`.
    pub fn share(&mut self, module: &Module, module_slot: ck::CK_SLOT_ID, period: Duration) {
        if self.user != Some(ck::CKU_USER) || period.is_zero() {
            return;
        }
        let until = Instant::now() + period;
        if let Some(shared) = &mut self.shared {
            shared.until = until;
            return;
        }
        match module.open_session(module_slot, ck::CKF_SERIAL_SESSION) {
            Ok(keeper) => self.shared = Some(SharedLogin { until, keeper }),
            Err(rv) => {
                tracing::warn!(%rv, "cannot keep the login for other applications: not shared")
            }
        }
    }

    /// Logs `client` in on the strength of a shared login, without a PIN. `false` when there
    /// is none (or no longer a valid one: the module logged out by itself, in which case the
    /// shared login is dropped, never retried).
    pub fn join_shared(&mut self, module: &Module, client: u64) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        if self.user != Some(ck::CKU_USER)
            || self.clients.contains(&client)
            || shared.until <= Instant::now()
        {
            return false;
        }
        match module.session_state(shared.keeper) {
            Ok(ck::CKS_RO_USER_FUNCTIONS | ck::CKS_RW_USER_FUNCTIONS) => {
                self.clients.insert(client);
                true
            }
            state => {
                tracing::warn!(
                    ?state,
                    "the shared login is no longer valid at the token: dropped"
                );
                self.drop_shared(module);
                false
            }
        }
    }

    /// Ends the sharing; the module login ends too unless an application is still logged in.
    fn drop_shared(&mut self, module: &Module) {
        if self.clients.is_empty() && self.shared.is_some() {
            self.end_module_login(module, None);
        } else if let Some(shared) = self.shared.take() {
            let _ = module.close_session(shared.keeper);
        }
    }

    /// Ends a sharing whose time is up (called periodically).
    pub fn expire(&mut self, module: &Module, now: Instant) {
        if self.shared.as_ref().is_some_and(|s| s.until <= now) {
            tracing::debug!("shared login expired");
            self.drop_shared(module);
        }
    }

    /// When the shared login ends, if there is one.
    pub fn shared_until(&self) -> Option<Instant> {
        self.shared.as_ref().map(|s| s.until)
    }

    pub fn is_logged_in(&self) -> bool {
        self.user.is_some()
    }

    /// The PIN of `user` was changed: when that user is the one logged in at the module, later
    /// clients must present the new PIN.
    pub fn pin_changed(&mut self, user: Ulong, new: &Pin) {
        if self.user == Some(user) {
            self.verifier = Some(Verifier::new(new));
        }
    }

    /// Who is logged in at the module (`CKU_USER`, `CKU_SO`), if anyone.
    pub fn module_user(&self) -> Option<Ulong> {
        self.user
    }

    pub fn user_of(&self, client: u64) -> Option<Ulong> {
        self.clients
            .contains(&client)
            .then_some(self.user)
            .flatten()
    }

    /// Forgets every login (the token left, or the module logged out by itself).
    pub fn reset(&mut self, module: &Module) {
        if let Some(shared) = self.shared.take() {
            // Should the token come back in the same module slot, it comes back logged out.
            let _ = module.logout(shared.keeper);
            let _ = module.close_session(shared.keeper);
        }
        self.clients.clear();
        self.user = None;
        self.verifier = None;
    }
}
