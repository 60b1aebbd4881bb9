//! The exported surface: function lists, interfaces, and the entry-point guard.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use super::fake_daemon::{standard, FakeDaemon};
use super::{assert_rv, serial, Initialised, TestDir};
use crate::entry::{entry, guard};
use crate::*;

/// A function list's pointers, read as the raw words a C caller sees: a `CK_VERSION` padded
/// to one word, then one nullable function pointer per word.
fn pointer_words<T>(list: &T) -> Vec<usize> {
    let words = size_of::<T>() / size_of::<usize>();
    let base = (list as *const T).cast::<usize>();
    (1..words).map(|i| unsafe { base.add(i).read() }).collect()
}

#[test]
fn the_2_40_function_list_is_complete() {
    let mut list = ptr::null_mut();
    assert_rv(unsafe { C_GetFunctionList(&mut list) }, CKR_OK);
    let list = unsafe { &*list };
    assert_eq!((list.version.major, list.version.minor), (2, 40));
    let words = pointer_words(list);
    assert_eq!(words.len(), 68);
    assert!(
        words.iter().all(|&w| w != 0),
        "a NULL entry in CK_FUNCTION_LIST"
    );
}

#[test]
fn interfaces_offer_3_0_first_then_2_40() {
    let mut count: CK_ULONG = 0;
    assert_rv(
        unsafe { C_GetInterfaceList(ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_eq!(count, 2);

    let mut one = [CK_INTERFACE {
        pInterfaceName: ptr::null_mut(),
        pFunctionList: ptr::null_mut(),
        flags: 0,
    }; 2];
    count = 1;
    assert_rv(
        unsafe { C_GetInterfaceList(one.as_mut_ptr(), &mut count) },
        CKR_BUFFER_TOO_SMALL,
    );
    assert_eq!(count, 2);

    count = 2;
    assert_rv(
        unsafe { C_GetInterfaceList(one.as_mut_ptr(), &mut count) },
        CKR_OK,
    );
    let versions: Vec<_> = one
        .iter()
        .map(|i| {
            let name = unsafe { std::ffi::CStr::from_ptr(i.pInterfaceName.cast()) };
            assert_eq!(name.to_bytes(), b"PKCS 11");
            let version = unsafe { *i.pFunctionList.cast::<CK_VERSION>() };
            (version.major, version.minor)
        })
        .collect();
    assert_eq!(versions, [(3, 0), (2, 40)]);

    let v3 = unsafe { &*one[0].pFunctionList.cast::<CK_FUNCTION_LIST_3_0>() };
    let words = pointer_words(v3);
    assert_eq!(words.len(), 92);
    assert!(
        words.iter().all(|&w| w != 0),
        "a NULL entry in CK_FUNCTION_LIST_3_0"
    );

    let mut v2 = ptr::null_mut();
    assert_rv(unsafe { C_GetFunctionList(&mut v2) }, CKR_OK);
    assert_eq!(one[1].pFunctionList, v2.cast());
}

#[test]
fn get_interface_matches_name_version_and_flags() {
    let get = |name: *const u8, version: Option<CK_VERSION>, flags| {
        let mut version = version;
        let version_ptr = version.as_mut().map_or(ptr::null_mut(), |v| v as *mut _);
        let mut found = ptr::null_mut();
        let rv = unsafe { C_GetInterface(name.cast_mut(), version_ptr, &mut found, flags) };
        (
            rv,
            unsafe { found.as_ref() }.map(|i| unsafe { *i.pFunctionList.cast::<CK_VERSION>() }),
        )
    };
    let version = |v: Option<CK_VERSION>| v.map(|v| (v.major, v.minor));

    let (rv, v) = get(ptr::null(), None, 0);
    assert_rv(rv, CKR_OK);
    assert_eq!(version(v), Some((3, 0)));

    let (rv, v) = get(
        c"PKCS 11".as_ptr().cast(),
        Some(CK_VERSION {
            major: 2,
            minor: 40,
        }),
        0,
    );
    assert_rv(rv, CKR_OK);
    assert_eq!(version(v), Some((2, 40)));

    let (rv, _) = get(c"Vendor X".as_ptr().cast(), None, 0);
    assert_rv(rv, CKR_ARGUMENTS_BAD);
    let (rv, _) = get(ptr::null(), Some(CK_VERSION { major: 3, minor: 1 }), 0);
    assert_rv(rv, CKR_ARGUMENTS_BAD);
    let (rv, _) = get(ptr::null(), None, CKF_INTERFACE_FORK_SAFE);
    assert_rv(rv, CKR_ARGUMENTS_BAD);

    let rv = unsafe { C_GetInterface(ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), 0) };
    assert_rv(rv, CKR_ARGUMENTS_BAD);
    assert_rv(
        unsafe { C_GetFunctionList(ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetInterfaceList(ptr::null_mut(), ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
}

#[test]
fn a_panic_becomes_general_error() {
    assert_rv(guard(|| panic!("inner failure")), CKR_GENERAL_ERROR);
    assert_rv(guard(|| Ok(())), CKR_OK);
}

entry! {
    /// An entry point whose body panics, to show the generated wrapper catches it.
    fn kyso_test_panicking_entry(session: CK_SESSION_HANDLE) |_client| {
        panic!("inner failure in session {session}")
    }
}

#[test]
fn a_panicking_entry_point_returns_general_error_and_the_library_keeps_working() {
    let _serial = serial();
    let dir = TestDir::new();
    let _daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    assert_rv(unsafe { kyso_test_panicking_entry(1) }, CKR_GENERAL_ERROR);
    let mut info = CK_SESSION_INFO::default();
    assert_rv(unsafe { C_GetSessionInfo(7, &mut info) }, CKR_OK);
    assert_eq!(info.state, 7);
}

#[test]
fn unsupported_functions_say_so_once_initialised() {
    let _serial = serial();
    let mut len: CK_ULONG = 0;
    assert_rv(
        unsafe { C_GetOperationState(1, ptr::null_mut(), &mut len) },
        CKR_CRYPTOKI_NOT_INITIALIZED,
    );
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    assert_rv(
        unsafe { C_GetOperationState(1, ptr::null_mut(), &mut len) },
        CKR_FUNCTION_NOT_SUPPORTED,
    );
    assert_rv(
        unsafe { C_WrapKey(1, ptr::null_mut(), 2, 3, ptr::null_mut(), &mut len) },
        CKR_FUNCTION_NOT_SUPPORTED,
    );
    assert_rv(
        unsafe { C_MessageVerifyFinal(1) },
        CKR_FUNCTION_NOT_SUPPORTED,
    );
    assert_rv(
        unsafe { C_LoginUser(1, CKU_USER, ptr::null_mut(), 0, ptr::null_mut(), 0) },
        CKR_FUNCTION_NOT_SUPPORTED,
    );
    assert!(
        daemon.calls().is_empty(),
        "unsupported calls never reach kysod"
    );
}

#[test]
fn get_info_is_local_and_blank_padded() {
    let _serial = serial();
    let mut info = CK_INFO::default();
    assert_rv(
        unsafe { C_GetInfo(&mut info) },
        CKR_CRYPTOKI_NOT_INITIALIZED,
    );
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    assert_rv(unsafe { C_GetInfo(ptr::null_mut()) }, CKR_ARGUMENTS_BAD);
    assert_rv(unsafe { C_GetInfo(&mut info) }, CKR_OK);
    assert_eq!(
        (info.cryptokiVersion.major, info.cryptokiVersion.minor),
        (2, 40)
    );
    assert_eq!(
        &info.manufacturerID[..],
        format!("{:32}", "kyso").as_bytes()
    );
    assert_eq!(
        &info.libraryDescription[..],
        format!("{:32}", "kyso PKCS#11 middleware").as_bytes()
    );

    let mut interface = ptr::null_mut();
    assert_rv(
        unsafe { C_GetInterface(ptr::null_mut(), ptr::null_mut(), &mut interface, 0) },
        CKR_OK,
    );
    let v3 = unsafe { &*(*interface).pFunctionList.cast::<CK_FUNCTION_LIST_3_0>() };
    assert_rv(unsafe { v3.C_GetInfo.unwrap()(&mut info) }, CKR_OK);
    assert_eq!(
        (info.cryptokiVersion.major, info.cryptokiVersion.minor),
        (3, 0)
    );
    assert!(daemon.calls().is_empty());
}
