//! Virtual login. A module's login is token-wide, but kysod serves many applications: each
//! client is logged in only if it logged in through kysod itself. The token is logged in at
//! the module while at least one client is; a second client's PIN is checked against a salted
//! verifier of the PIN the token accepted, so it spends no try on the token and a wrong PIN
//! never lets it in.

use std::collections::HashSet;

use cryptoki_sys as ck;
use kyso_proto::{Pin, Ulong};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::Rv;
use crate::module::Module;

/// After this many wrong PINs checked against the verifier during one module login, further
/// logins on the token are refused until it is logged out, so the verifier cannot be used to
/// guess the PIN without the token counting.
const MAX_MISMATCHES: u32 = 3;

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

/// The module-level login state of one token, and which clients share it.
#[derive(Default)]
pub struct TokenLogin {
    /// `CKU_USER` or `CKU_SO` while the token is logged in at the module.
    user: Option<Ulong>,
    verifier: Option<Verifier>,
    clients: HashSet<u64>,
    mismatches: u32,
}

impl TokenLogin {
    /// Logs `client` in as `user`, through `session` (a module session on the token).
    pub fn login(
        &mut self,
        module: &Module,
        session: ck::CK_SESSION_HANDLE,
        client: u64,
        user: Ulong,
        pin: Option<&Pin>,
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
            Some(_) => self.join(client, pin),
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
                self.mismatches = 0;
                self.clients.insert(client);
                Ok(())
            }
        }
    }

    /// A second client joins a token already logged in: its PIN must match the one the token
    /// accepted.
    fn join(&mut self, client: u64, pin: Option<&Pin>) -> Result<(), Rv> {
        if self.mismatches >= MAX_MISMATCHES {
            tracing::warn!(
                client,
                "login refused: too many wrong PINs while the token is logged in"
            );
            return Err(Rv(ck::CKR_PIN_INCORRECT));
        }
        let ok = match (&self.verifier, pin) {
            (Some(v), Some(pin)) => v.matches(pin),
            // Logged in through a protected authentication path: there is nothing to compare
            // with, so a PIN-less login cannot be checked and is refused.
            _ => false,
        };
        if ok {
            self.clients.insert(client);
            Ok(())
        } else {
            self.mismatches += 1;
            Err(Rv(ck::CKR_PIN_INCORRECT))
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
            self.user = None;
            self.verifier = None;
            self.mismatches = 0;
            if let Some(session) = session {
                match module.logout(session) {
                    Ok(())
                    | Err(Rv(ck::CKR_USER_NOT_LOGGED_IN))
                    | Err(Rv(ck::CKR_SESSION_HANDLE_INVALID)) => {}
                    Err(rv) => tracing::warn!(%rv, "C_Logout failed"),
                }
            }
        }
        Ok(())
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
    pub fn reset(&mut self) {
        self.clients.clear();
        self.user = None;
        self.verifier = None;
        self.mismatches = 0;
    }
}
