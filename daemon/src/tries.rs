//! How close a token's PIN is to locking, and whether a try may be spent without asking the
//! user. The token's own flags decide where it reports them; where it does not, kysod's count
//! of consecutive wrong PINs per token and PIN kind (`state_dir/pin-failures.json`, 0600,
//! reset by a right PIN) stands in, assuming the government tokens' three tries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cryptoki_sys as ck;
use kyso_proto::Ulong;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Tries a token that reports no PIN flags is assumed to allow before it locks.
pub const ASSUMED_TRIES: u32 = 3;

/// Which PIN a try spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    User,
    So,
}

impl PinKind {
    /// The PIN `C_Login` with `user` (`CKU_USER`, `CKU_SO`) tries.
    pub fn of_user_type(user: Ulong) -> PinKind {
        if user == ck::CKU_SO {
            PinKind::So
        } else {
            PinKind::User
        }
    }

    /// The token flags (locked, final try, count low) of this PIN.
    fn flags(self) -> (Ulong, Ulong, Ulong) {
        match self {
            PinKind::User => (
                ck::CKF_USER_PIN_LOCKED,
                ck::CKF_USER_PIN_FINAL_TRY,
                ck::CKF_USER_PIN_COUNT_LOW,
            ),
            PinKind::So => (
                ck::CKF_SO_PIN_LOCKED,
                ck::CKF_SO_PIN_FINAL_TRY,
                ck::CKF_SO_PIN_COUNT_LOW,
            ),
        }
    }

    /// The PIN's name in English (logs, messages).
    pub fn name(self) -> &'static str {
        match self {
            PinKind::User => "user PIN",
            PinKind::So => "SO PIN",
        }
    }

    /// The PIN's name in Vietnamese (prompts).
    pub fn name_vi(self) -> &'static str {
        match self {
            PinKind::User => "mã PIN người dùng",
            PinKind::So => "mã PIN quản trị (SO PIN)",
        }
    }
}

/// What the next try of a PIN may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextTry {
    /// The PIN is locked: no try may be made.
    Locked,
    /// A wrong PIN now locks the token: the user must agree to the try.
    Last,
    /// Tries remain after this one.
    Spare,
}

/// The next try of `kind` on a token with `flags` after `failures` wrong PINs kysod counted.
/// A token that reports any of the PIN's flags is believed; one that shows none although kysod
/// saw wrong PINs does not report them, and kysod's count decides.
pub fn next_try(flags: Ulong, kind: PinKind, failures: u32) -> NextTry {
    let (locked, final_try, low) = kind.flags();
    if flags & locked != 0 {
        NextTry::Locked
    } else if flags & final_try != 0 || (flags & low == 0 && failures + 1 >= ASSUMED_TRIES) {
        NextTry::Last
    } else {
        NextTry::Spare
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Counts {
    #[serde(default)]
    user: u32,
    #[serde(default)]
    so: u32,
}

impl Counts {
    fn of(&mut self, kind: PinKind) -> &mut u32 {
        match kind {
            PinKind::User => &mut self.user,
            PinKind::So => &mut self.so,
        }
    }
}

/// kysod's count of consecutive wrong PINs, by token serial and PIN kind.
pub struct PinFailures {
    path: PathBuf,
    counts: Mutex<BTreeMap<String, Counts>>,
}

impl PinFailures {
    /// The counts kept in `state_dir`; a missing or unreadable file counts nothing.
    pub fn open(state_dir: &Path) -> PinFailures {
        let path = state_dir.join("pin-failures.json");
        let counts = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        PinFailures {
            path,
            counts: Mutex::new(counts),
        }
    }

    pub fn count(&self, serial: &str, kind: PinKind) -> u32 {
        self.counts
            .lock()
            .get_mut(serial)
            .map_or(0, |c| *c.of(kind))
    }

    /// A wrong PIN of `kind` was tried on `serial`.
    pub fn failed(&self, serial: &str, kind: PinKind) {
        let mut counts = self.counts.lock();
        let n = counts.entry(serial.into()).or_default().of(kind);
        *n = n.saturating_add(1);
        self.save(&counts);
    }

    /// The PIN of `kind` on `serial` was accepted, or set anew.
    pub fn succeeded(&self, serial: &str, kind: PinKind) {
        let mut counts = self.counts.lock();
        let Some(c) = counts.get_mut(serial) else {
            return;
        };
        if *c.of(kind) == 0 {
            return;
        }
        *c.of(kind) = 0;
        if c.user == 0 && c.so == 0 {
            counts.remove(serial);
        }
        self.save(&counts);
    }

    /// Writes the counts whole (see [`crate::files::replace`]), so a reader never sees half.
    fn save(&self, counts: &BTreeMap<String, Counts>) {
        let result = serde_json::to_vec_pretty(counts)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::files::replace(&self.path, &bytes));
        if let Err(e) = result {
            tracing::error!(file = %self.path.display(), error = %e, "cannot record the count of wrong PINs; it is kept in memory until kysod stops");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokens_flags_are_believed_and_kysods_count_fills_in() {
        use NextTry::*;
        let so = PinKind::So;
        assert_eq!(next_try(ck::CKF_SO_PIN_LOCKED, so, 0), Locked);
        assert_eq!(next_try(ck::CKF_SO_PIN_FINAL_TRY, so, 0), Last);
        assert_eq!(next_try(ck::CKF_USER_PIN_FINAL_TRY, so, 0), Spare);
        assert_eq!(next_try(0, so, 1), Spare);
        // Two wrong SO PINs and no flag: the token does not report, the third try is the last.
        assert_eq!(next_try(0, so, 2), Last);
        // A token that reports a low count but no final try has tries left.
        assert_eq!(next_try(ck::CKF_SO_PIN_COUNT_LOW, so, 5), Spare);
        assert_eq!(next_try(ck::CKF_USER_PIN_LOCKED, PinKind::User, 0), Locked);
    }

    #[test]
    fn counts_survive_a_restart_and_a_right_pin_resets_them() {
        let dir = std::env::temp_dir().join(format!(
            "kyso-tries-{}-{}",
            std::process::id(),
            kyso_recovery::hex(&kyso_recovery::random::<6>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let f = PinFailures::open(&dir);
        f.failed("S1", PinKind::So);
        f.failed("S1", PinKind::So);
        f.failed("S1", PinKind::User);
        let again = PinFailures::open(&dir);
        assert_eq!(again.count("S1", PinKind::So), 2);
        assert_eq!(again.count("S1", PinKind::User), 1);
        assert_eq!(again.count("S2", PinKind::So), 0);
        again.succeeded("S1", PinKind::So);
        assert_eq!(PinFailures::open(&dir).count("S1", PinKind::So), 0);
        assert_eq!(PinFailures::open(&dir).count("S1", PinKind::User), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("pin-failures.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }
}
