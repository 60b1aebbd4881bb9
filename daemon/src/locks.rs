//! The locks kysod lends the modules it prepares signatures on (the mutex functions of
//! `CK_C_INITIALIZE_ARGS`).
//!
//! A software token such as SoftHSM2 takes a few short-held locks in every call (its handle,
//! session and object tables). kysod calls it from several threads at once: the connections'
//! threads signing, and the thread initialising the next operations (see `prepared`). With the
//! module's own locks (plain `pthread` mutexes, which sleep at once when taken), those threads
//! met often enough to cost ~4.5 `futex` calls per ECDSA signature at two signing threads, and
//! the sleeps and wake-ups that go with them. The locks lent here spin briefly before they
//! sleep (`parking_lot`), which is what locks held for a few hundred nanoseconds want: ~0.5
//! `futex` calls per signature, and ~7 % less CPU per signature (kysod's and the application's;
//! medians of paired runs).
//!
//! PKCS#11 lets a module given both these functions and `CKF_OS_LOCKING_OK` use either; kysod
//! falls back to the module's own locks if it refuses them (see `Module::load`).

use std::ffi::c_void;

use cryptoki_sys as ck;
use parking_lot::lock_api::RawMutex as _;
use parking_lot::RawMutex;

/// `CK_CREATEMUTEX`: a new unlocked mutex, its address written to `out`.
pub extern "C" fn create(out: *mut *mut c_void) -> ck::CK_RV {
    if out.is_null() {
        return ck::CKR_ARGUMENTS_BAD;
    }
    let mutex = Box::into_raw(Box::new(RawMutex::INIT));
    // SAFETY: `out` is not null, and the module passes where the new mutex's address goes.
    unsafe { *out = mutex.cast() };
    ck::CKR_OK
}

/// `CK_DESTROYMUTEX`.
pub extern "C" fn destroy(mutex: *mut c_void) -> ck::CK_RV {
    if mutex.is_null() {
        return ck::CKR_MUTEX_BAD;
    }
    // SAFETY: a mutex made by `create`, destroyed once and no longer used, as PKCS#11 requires
    // of the module.
    drop(unsafe { Box::from_raw(mutex.cast::<RawMutex>()) });
    ck::CKR_OK
}

/// The mutex behind a module's handle, `None` for a null one.
fn mutex<'a>(handle: *mut c_void) -> Option<&'a RawMutex> {
    // SAFETY: a non-null handle is one `create` made, alive until the module destroys it.
    (!handle.is_null()).then(|| unsafe { &*handle.cast::<RawMutex>() })
}

/// `CK_LOCKMUTEX`.
pub extern "C" fn lock(handle: *mut c_void) -> ck::CK_RV {
    match mutex(handle) {
        Some(m) => {
            m.lock();
            ck::CKR_OK
        }
        None => ck::CKR_MUTEX_BAD,
    }
}

/// `CK_UNLOCKMUTEX`.
pub extern "C" fn unlock(handle: *mut c_void) -> ck::CK_RV {
    match mutex(handle) {
        Some(m) if m.is_locked() => {
            // SAFETY: the mutex is locked, and a module unlocks only a mutex it locked.
            unsafe { m.unlock() };
            ck::CKR_OK
        }
        Some(_) => ck::CKR_MUTEX_NOT_LOCKED,
        None => ck::CKR_MUTEX_BAD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Handle(*mut c_void);
    // SAFETY: the handle is the address of a `RawMutex`, which is `Sync`.
    unsafe impl Send for Handle {}
    // SAFETY: as above.
    unsafe impl Sync for Handle {}

    #[test]
    fn excludes_across_threads() {
        let mut raw = std::ptr::null_mut();
        assert_eq!(create(&mut raw), ck::CKR_OK);
        let handle = Arc::new(Handle(raw));
        // A read-modify-write split in two, correct only under the lock.
        let count = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (handle, count) = (handle.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        assert_eq!(lock(handle.0), ck::CKR_OK);
                        let seen = count.load(Ordering::Relaxed);
                        std::hint::spin_loop();
                        count.store(seen + 1, Ordering::Relaxed);
                        assert_eq!(unlock(handle.0), ck::CKR_OK);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count.load(Ordering::Relaxed), 80_000);
        assert_eq!(destroy(handle.0), ck::CKR_OK);
    }

    #[test]
    fn misuse_is_an_error_not_a_crash() {
        assert_eq!(create(std::ptr::null_mut()), ck::CKR_ARGUMENTS_BAD);
        assert_eq!(lock(std::ptr::null_mut()), ck::CKR_MUTEX_BAD);
        assert_eq!(unlock(std::ptr::null_mut()), ck::CKR_MUTEX_BAD);
        assert_eq!(destroy(std::ptr::null_mut()), ck::CKR_MUTEX_BAD);
        let mut raw = std::ptr::null_mut();
        assert_eq!(create(&mut raw), ck::CKR_OK);
        assert_eq!(unlock(raw), ck::CKR_MUTEX_NOT_LOCKED);
        assert_eq!(lock(raw), ck::CKR_OK);
        assert_eq!(unlock(raw), ck::CKR_OK);
        assert_eq!(destroy(raw), ck::CKR_OK);
    }
}
