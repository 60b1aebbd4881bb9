//! A client: one application (one `C_Initialize` of the shim in one process), possibly over
//! several connections. Its sessions, object handles and login state are its own: handles are
//! numbers kysod hands out per client and translates, so one client's handles mean nothing to
//! another, and a client sees private objects only while it is logged in through kysod.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use cryptoki_sys as ck;
use kyso_proto::{Purpose, Ulong};
use parking_lot::{Mutex, MutexGuard};

use crate::audit::{Actor, SignTrack};
use crate::error::Rv;
use crate::token::Token;

/// A session as the client knows it, bound to a module session on a token.
pub struct Session {
    pub handle: Ulong,
    pub token: Arc<Token>,
    pub module_session: ck::CK_SESSION_HANDLE,
    pub flags: Ulong,
    /// Set while a search was started that must find nothing (private objects asked for by a
    /// client that is not logged in).
    pub find_nothing: AtomicBool,
    /// The signature operation under way, for the audit journal.
    signing: Mutex<Option<SignTrack>>,
}

impl Session {
    /// The session's signature operation, for the audit journal.
    pub fn signing(&self) -> MutexGuard<'_, Option<SignTrack>> {
        self.signing.lock()
    }
}

struct ObjectRef {
    slot: Ulong,
    module_handle: Ulong,
    /// Obtained while logged in: forgotten at logout, as PKCS#11 invalidates private handles.
    logged_in: bool,
}

#[derive(Default)]
struct ClientState {
    sessions: HashMap<Ulong, Arc<Session>>,
    objects: HashMap<Ulong, ObjectRef>,
    object_ids: HashMap<(Ulong, Ulong), Ulong>,
    /// The objects the client made (slot, module handle), with the module session each was
    /// made on: the session objects among them are the only ones its searches find (see
    /// `calls::object::find`), and they go with that session.
    made: HashMap<(Ulong, Ulong), ck::CK_SESSION_HANDLE>,
    next_handle: Ulong,
}

pub struct Client {
    pub id: u64,
    pub uid: u32,
    pub pid: i32,
    /// The program, from `/proc/<pid>/exe` (or `comm`), for logs, prompts and audit.
    pub program: String,
    pub connections: AtomicUsize,
    /// Position in the slot-event stream.
    pub event_cursor: Mutex<u64>,
    /// What the client's calls are for, as a signing service in front of kysod says.
    purpose: Mutex<Option<Purpose>>,
    state: Mutex<ClientState>,
}

impl Client {
    pub fn new(id: u64, uid: u32, pid: i32, event_cursor: u64) -> Client {
        // Handles start at a random point so that handles kept by an application across a
        // daemon restart do not silently name a new session or object.
        let mut seed = [0u8; 4];
        let _ = getrandom::getrandom(&mut seed);
        let start = (u32::from_le_bytes(seed) as Ulong & 0x3fff_ffff) | 1;
        Client {
            id,
            uid,
            pid,
            program: program_of(pid),
            connections: AtomicUsize::new(0),
            event_cursor: Mutex::new(event_cursor),
            purpose: Mutex::new(None),
            state: Mutex::new(ClientState {
                next_handle: start,
                ..Default::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock()
    }

    /// The client as the audit journal names it.
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            uid: self.uid,
            pid: self.pid,
            program: &self.program,
            purpose: self.purpose(),
        }
    }

    /// What the client's calls are for, if it said.
    pub fn purpose(&self) -> Option<Purpose> {
        self.purpose.lock().clone()
    }

    pub fn set_purpose(&self, purpose: Option<Purpose>) {
        *self.purpose.lock() = purpose;
    }

    pub fn session_count(&self) -> usize {
        self.state().sessions.len()
    }

    /// Registers a new session and returns it with its client handle.
    pub fn add_session(
        &self,
        token: Arc<Token>,
        module_session: ck::CK_SESSION_HANDLE,
        flags: Ulong,
    ) -> Arc<Session> {
        let mut st = self.state();
        let handle = st.next_handle;
        st.next_handle += 1;
        let session = Arc::new(Session {
            handle,
            token,
            module_session,
            flags,
            find_nothing: AtomicBool::new(false),
            signing: Mutex::new(None),
        });
        st.sessions.insert(handle, session.clone());
        session
    }

    /// The session behind a client handle; a session whose token left is reported removed.
    pub fn session(&self, handle: Ulong) -> Result<Arc<Session>, Rv> {
        let session = self
            .state()
            .sessions
            .get(&handle)
            .cloned()
            .ok_or(Rv(ck::CKR_SESSION_HANDLE_INVALID))?;
        if !session.token.is_present() {
            return Err(Rv(ck::CKR_DEVICE_REMOVED));
        }
        Ok(session)
    }

    pub fn remove_session(&self, handle: Ulong) -> Option<Arc<Session>> {
        self.state().sessions.remove(&handle)
    }

    pub fn sessions_on(&self, slot: Ulong) -> Vec<Arc<Session>> {
        self.state()
            .sessions
            .values()
            .filter(|s| s.token.slot == slot)
            .cloned()
            .collect()
    }

    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.state().sessions.values().cloned().collect()
    }

    /// The user type this client is logged in as on `token`, if any.
    pub fn login_of(&self, token: &Token) -> Option<Ulong> {
        token.login.lock().user_of(self.id)
    }

    /// The client handle for a module object, allocating one on first sight.
    pub fn export_object(&self, slot: Ulong, module_handle: Ulong, logged_in: bool) -> Ulong {
        let mut st = self.state();
        if let Some(&h) = st.object_ids.get(&(slot, module_handle)) {
            return h;
        }
        let handle = st.next_handle;
        st.next_handle += 1;
        st.objects.insert(
            handle,
            ObjectRef {
                slot,
                module_handle,
                logged_in,
            },
        );
        st.object_ids.insert((slot, module_handle), handle);
        handle
    }

    /// The client handle already given for a module object, if any.
    pub fn exported(&self, slot: Ulong, module_handle: Ulong) -> Option<Ulong> {
        self.state().object_ids.get(&(slot, module_handle)).copied()
    }

    /// The client handle for an object the client just made (created, copied, generated) on
    /// `session`.
    pub fn export_made(&self, session: &Session, module_handle: Ulong, logged_in: bool) -> Ulong {
        let slot = session.token.slot;
        let made_on = session.module_session;
        self.state().made.insert((slot, module_handle), made_on);
        self.export_object(slot, module_handle, logged_in)
    }

    /// Whether the client made this object (it may have no handle for it since a logout).
    pub fn made(&self, slot: Ulong, module_handle: Ulong) -> bool {
        self.state().made.contains_key(&(slot, module_handle))
    }

    /// Forgets the objects made on a session that is closing: its session objects go with it,
    /// and its token objects the client finds without this record.
    pub fn forget_made_on(&self, session: &Session) {
        let slot = session.token.slot;
        self.state()
            .made
            .retain(|(s, _), on| !(*s == slot && *on == session.module_session));
    }

    /// The module handle behind a client object handle, which must belong to `slot`.
    pub fn object(&self, slot: Ulong, handle: Ulong) -> Result<Ulong, Rv> {
        match self.state().objects.get(&handle) {
            Some(o) if o.slot == slot => Ok(o.module_handle),
            _ => Err(Rv(ck::CKR_OBJECT_HANDLE_INVALID)),
        }
    }

    /// Like [`Client::object`] for a key argument, which PKCS#11 reports differently.
    pub fn key(&self, slot: Ulong, handle: Ulong) -> Result<Ulong, Rv> {
        self.object(slot, handle)
            .map_err(|_| Rv(ck::CKR_KEY_HANDLE_INVALID))
    }

    pub fn forget_object(&self, handle: Ulong) {
        let mut st = self.state();
        if let Some(o) = st.objects.remove(&handle) {
            st.object_ids.remove(&(o.slot, o.module_handle));
            st.made.remove(&(o.slot, o.module_handle));
        }
    }

    /// Drops the handles obtained while logged in on `slot` (at logout).
    pub fn forget_private_objects(&self, slot: Ulong) {
        let mut st = self.state();
        let st = &mut *st;
        st.objects.retain(|_, o| !(o.slot == slot && o.logged_in));
        let objects = &st.objects;
        st.object_ids.retain(|_, h| objects.contains_key(h));
    }

    /// Drops every handle on `slot` (the token left, or the client's sessions on it closed).
    pub fn forget_slot_objects(&self, slot: Ulong) {
        let mut st = self.state();
        st.objects.retain(|_, o| o.slot != slot);
        st.object_ids.retain(|(s, _), _| *s != slot);
        st.made.retain(|(s, _), _| *s != slot);
    }
}

fn program_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .or_else(|_| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim().to_string())
        })
        .unwrap_or_else(|_| "unknown".into())
}
