//! Raw pointers in, Rust values out: where the application's pointers are checked and read,
//! and where results are written back. Every `unsafe fn` here has PKCS#11's own contract: a
//! non-NULL pointer points at what the specification says it does, for the length given.
//! Output wrappers are validated *before* anything is sent to the daemon, so a bad pointer
//! never leaves half an operation behind (an open session nobody holds a handle to).

use std::ptr;
use std::slice;

use cryptoki_sys::{CKR_BUFFER_TOO_SMALL, CKR_OK, CK_ATTRIBUTE, CK_RV, CK_ULONG};
use kyso_proto::{OutBuf, Ulong, MAX_FRAME};

use crate::error::{check, Error, Result};

// kyso speaks LP64: `CK_ULONG` is the wire's `Ulong`, so values pass without casts.
const _: () = assert!(std::mem::size_of::<CK_ULONG>() == std::mem::size_of::<Ulong>());

/// Lengths beyond one frame cannot travel; refusing them early also means a bogus length never
/// makes the shim walk gigabytes of memory.
const MAX_LEN: CK_ULONG = MAX_FRAME as CK_ULONG;

fn valid<T>(ptr: *const T) -> Result<()> {
    if ptr.is_null() || !ptr.is_aligned() {
        Err(Error::ArgumentsBad)
    } else {
        Ok(())
    }
}

/// A pointer to one input struct, or `None` for NULL.
///
/// # Safety
/// A non-NULL `ptr` points at an initialised `T` that outlives the returned reference.
pub(crate) unsafe fn optional<'a, T>(ptr: *const T) -> Result<Option<&'a T>> {
    if ptr.is_null() {
        return Ok(None);
    }
    valid(ptr)?;
    // SAFETY: non-NULL and aligned; the caller vouches for the pointee.
    Ok(Some(unsafe { &*ptr }))
}

/// A required pointer to one input struct.
///
/// # Safety
/// As [`optional`].
pub(crate) unsafe fn required<'a, T>(ptr: *const T) -> Result<&'a T> {
    // SAFETY: same contract as ours.
    unsafe { optional(ptr) }?.ok_or(Error::ArgumentsBad)
}

/// `len` bytes at `ptr`; NULL is fine only for an empty buffer.
///
/// # Safety
/// A non-NULL `ptr` is readable for `len` bytes while the slice lives.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: CK_ULONG) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::ArgumentsBad);
    }
    if len > MAX_LEN {
        return Err(Error::TooLarge);
    }
    // SAFETY: non-NULL, `len` readable bytes per the caller, and `len` fits in usize (≤ MAX_LEN).
    Ok(unsafe { slice::from_raw_parts(ptr, len as usize) })
}

/// An array of `count` `T`s; NULL is fine only for an empty array.
///
/// # Safety
/// A non-NULL `ptr` points at `count` initialised `T`s, not aliased while the slice lives.
pub(crate) unsafe fn array_mut<'a, T>(ptr: *mut T, count: CK_ULONG) -> Result<&'a mut [T]> {
    if count == 0 {
        return Ok(&mut []);
    }
    valid(ptr)?;
    if count > MAX_LEN / std::mem::size_of::<T>().max(1) as CK_ULONG {
        return Err(Error::TooLarge);
    }
    // SAFETY: non-NULL, aligned, `count` elements per the caller, and the size is bounded.
    Ok(unsafe { slice::from_raw_parts_mut(ptr, count as usize) })
}

/// As [`array_mut`], read-only.
///
/// # Safety
/// A non-NULL `ptr` points at `count` initialised `T`s.
pub(crate) unsafe fn array<'a, T>(ptr: *const T, count: CK_ULONG) -> Result<&'a [T]> {
    // SAFETY: same contract; the slice is only read.
    Ok(unsafe { array_mut(ptr.cast_mut(), count) }?)
}

/// Where a single result goes (`CK_SESSION_HANDLE_PTR`, `CK_SLOT_INFO_PTR`, …): checked
/// non-NULL and aligned when made, written once at the end. The target may be uninitialised.
pub(crate) struct Out<T> {
    ptr: *mut T,
}

impl<T> Out<T> {
    /// # Safety
    /// A non-NULL `ptr` has room for a `T` and stays valid for this call.
    pub(crate) unsafe fn new(ptr: *mut T) -> Result<Self> {
        valid(ptr)?;
        Ok(Out { ptr })
    }

    pub(crate) fn set(self, value: T) {
        // SAFETY: checked in `new`, whose caller vouched for the memory.
        unsafe { self.ptr.write(value) }
    }
}

/// A `(pOut, pulOutLen)` pair: `pulOutLen` is required, `pOut` NULL asks for the length.
pub(crate) struct OutBytes {
    ptr: *mut u8,
    len: *mut CK_ULONG,
    capacity: CK_ULONG,
}

impl OutBytes {
    /// # Safety
    /// `len` is NULL or points at the buffer's size; a non-NULL `ptr` is writable for `*len`
    /// bytes. Both stay valid for this call.
    pub(crate) unsafe fn new(ptr: *mut u8, len: *mut CK_ULONG) -> Result<Self> {
        valid(len)?;
        // SAFETY: `len` is non-NULL, aligned and, per the caller, initialised.
        let capacity = unsafe { *len };
        Ok(OutBytes { ptr, len, capacity })
    }

    /// The buffer as the wire describes it.
    pub(crate) fn request(&self) -> OutBuf {
        (!self.ptr.is_null()).then_some(self.capacity)
    }

    /// Applies the daemon's result: `*pulLen = len` always, the bytes only on `CKR_OK`.
    pub(crate) fn fill(self, rv: CK_RV, len: Ulong, data: Option<Vec<u8>>) -> Result<()> {
        if rv == CKR_OK {
            if let Some(data) = data {
                let fits = !self.ptr.is_null() && data.len() as CK_ULONG <= self.capacity;
                if !fits {
                    return Err(Error::Protocol);
                }
                // SAFETY: `ptr` is writable for `capacity` ≥ `data.len()` bytes (see `new`).
                unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.ptr, data.len()) };
            }
        }
        // SAFETY: `len` was checked in `new`.
        unsafe { *self.len = len };
        check(rv)
    }
}

/// A `(pList, pulCount)` pair with PKCS#11's two-call convention (`C_GetSlotList`,
/// `C_GetMechanismList`): NULL list → count only; too small → `CKR_BUFFER_TOO_SMALL`.
pub(crate) struct OutList<T> {
    ptr: *mut T,
    count: *mut CK_ULONG,
}

impl<T: Copy> OutList<T> {
    /// # Safety
    /// `count` is NULL or points at the list's capacity; a non-NULL `ptr` has room for
    /// `*count` `T`s. Both stay valid for this call.
    pub(crate) unsafe fn new(ptr: *mut T, count: *mut CK_ULONG) -> Result<Self> {
        valid(count)?;
        if !ptr.is_null() && !ptr.is_aligned() {
            return Err(Error::ArgumentsBad);
        }
        Ok(OutList { ptr, count })
    }

    pub(crate) fn fill(self, items: &[T]) -> Result<()> {
        // SAFETY: `count` was checked in `new` and is initialised per its caller.
        let capacity = unsafe { *self.count };
        // SAFETY: as above.
        unsafe { *self.count = items.len() as CK_ULONG };
        if self.ptr.is_null() {
            return Ok(());
        }
        if items.len() as CK_ULONG > capacity {
            return Err(Error::Rv(CKR_BUFFER_TOO_SMALL));
        }
        // SAFETY: `ptr` has room for `capacity` ≥ `items.len()` elements (see `new`).
        unsafe { ptr::copy_nonoverlapping(items.as_ptr(), self.ptr, items.len()) };
        Ok(())
    }
}

/// Copies an attribute value the daemon returned into the application's `pValue`.
///
/// # Safety
/// `attr.pValue` is NULL or writable for `attr.ulValueLen` bytes.
pub(crate) unsafe fn store_value(attr: &mut CK_ATTRIBUTE, value: &[u8]) -> Result<()> {
    if attr.pValue.is_null() || value.len() as CK_ULONG > attr.ulValueLen {
        return Err(Error::Protocol);
    }
    // SAFETY: `pValue` has room for `ulValueLen` ≥ `value.len()` bytes per the caller.
    unsafe { ptr::copy_nonoverlapping(value.as_ptr(), attr.pValue.cast::<u8>(), value.len()) };
    Ok(())
}

/// An output array of fixed capacity (`C_FindObjects`' `phObject`, `ulMaxObjectCount`), which
/// may be uninitialised; checked when made, written once at the end.
pub(crate) struct OutArray<T> {
    ptr: *mut T,
    capacity: CK_ULONG,
}

impl<T: Copy> OutArray<T> {
    /// # Safety
    /// A non-NULL `ptr` has room for `capacity` `T`s and stays valid for this call.
    pub(crate) unsafe fn new(ptr: *mut T, capacity: CK_ULONG) -> Result<Self> {
        if capacity > 0 {
            valid(ptr)?;
        }
        Ok(OutArray { ptr, capacity })
    }

    /// Writes `items`, which must fit (the daemon was told the capacity).
    pub(crate) fn fill(self, items: &[T]) -> Result<()> {
        if items.len() as CK_ULONG > self.capacity {
            return Err(Error::Protocol);
        }
        if !items.is_empty() {
            // SAFETY: `ptr` is valid for `capacity` ≥ `items.len()` > 0 elements (see `new`).
            unsafe { ptr::copy_nonoverlapping(items.as_ptr(), self.ptr, items.len()) };
        }
        Ok(())
    }
}
