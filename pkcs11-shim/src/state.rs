//! Library lifecycle: what `C_Initialize` sets up and `C_Finalize` tears down, once per process.
//!
//! The state of a process lives in a [`Library`] found through an atomic pointer: no global
//! destructor runs at exit, and a forked child, which sees the parent's `Library` with a
//! foreign pid, never takes a lock that a parent thread may have held at fork time. The child's
//! `C_Initialize` makes a fresh `Library` and leaves the parent's (and its connections)
//! untouched.
//!
//! The first process to initialise uses a `Library` in static storage, which goes away with
//! the library image: an application that unloads the module after `C_Finalize` (as
//! `pkcs11-tool` does), and loads it again, loses no memory. Only a forked child (or a thread
//! losing a race to initialise) allocates one, never freed.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use cryptoki_sys::CKR_CRYPTOKI_ALREADY_INITIALIZED;

use crate::client::Client;
use crate::error::{Error, Result};

/// The current process's `Library`, or one inherited across `fork` (told apart by `pid`).
static LIBRARY: AtomicPtr<Library> = AtomicPtr::new(ptr::null_mut());

struct Library {
    /// The process it belongs to; set before the `Library` is published in [`LIBRARY`].
    pid: AtomicU32,
    /// `Some` between `C_Initialize` and `C_Finalize`. Held for a pointer copy at a time.
    client: RwLock<Option<Arc<Client>>>,
}

/// The `Library` of the first process that initialises with this image loaded.
static FIRST: Library = Library {
    pid: AtomicU32::new(0),
    client: RwLock::new(None),
};

/// Set by the one thread that takes [`FIRST`]. A child forked afterwards sees it set and never
/// touches `FIRST`'s lock, whatever state the parent left it in.
static FIRST_TAKEN: AtomicBool = AtomicBool::new(false);

/// This process's `Library`, if it has one. The pid is compared before any lock is touched.
fn this_process() -> Option<&'static Library> {
    let ptr = LIBRARY.load(Ordering::Acquire);
    // SAFETY: non-NULL values of LIBRARY point to `FIRST` or come from `Box::leak` and are
    // never freed.
    let library = unsafe { ptr.as_ref() }?;
    (library.pid.load(Ordering::Acquire) == crate::os::pid()).then_some(library)
}

/// This process's `Library`, created on first use (first `C_Initialize`, or the first one
/// after a `fork`).
fn this_process_or_new() -> &'static Library {
    loop {
        if let Some(library) = this_process() {
            return library;
        }
        let seen = LIBRARY.load(Ordering::Acquire);
        let pid = crate::os::pid();
        let fresh: &'static Library = if FIRST_TAKEN
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            FIRST.pid.store(pid, Ordering::Release);
            &FIRST
        } else {
            Box::leak(Box::new(Library {
                pid: AtomicU32::new(pid),
                client: RwLock::new(None),
            }))
        };
        let fresh_ptr = ptr::from_ref(fresh).cast_mut();
        if LIBRARY
            .compare_exchange(seen, fresh_ptr, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return fresh;
        }
        // Another thread of this process won the race; ours goes unused (when allocated, a
        // few bytes stay leaked, once).
    }
}

/// The initialised client, for one call.
pub(crate) fn client() -> Result<Arc<Client>> {
    let library = this_process().ok_or(Error::NotInitialized)?;
    let slot = library.client.read();
    slot.clone().ok_or(Error::NotInitialized)
}

pub(crate) fn initialize() -> Result<()> {
    let library = this_process_or_new();
    let already = || Error::Rv(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    if library.client.read().is_some() {
        return Err(already());
    }
    // Connect outside the lock: other threads keep getting a quick answer meanwhile.
    let client = Arc::new(Client::start(
        kyso_proto::client::default_socket(),
        instance(),
    ));
    let mut slot = library.client.write();
    if slot.is_some() {
        drop(slot);
        client.close();
        return Err(already());
    }
    *slot = Some(client);
    Ok(())
}

pub(crate) fn finalize() -> Result<()> {
    let library = this_process().ok_or(Error::NotInitialized)?;
    let client = library.client.write().take().ok_or(Error::NotInitialized)?;
    client.close();
    Ok(())
}

/// A random id for this `C_Initialize`, shared by all its connections. Should the kernel's
/// generator fail, pid, time and an address still tell clients apart (the daemon also checks
/// the peer's pid).
fn instance() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_ok() {
        return u64::from_ne_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ (&bytes as *const _ as u64)
}
