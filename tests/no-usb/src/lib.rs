//! Preloaded (`LD_PRELOAD`) into kysod by the fault tests: libusb's initialisation fails as it
//! does where there is no USB to find (a container, a machine without USB, a libusb built
//! without udev and no `/dev/bus/usb`). Everything else in libusb is left alone.

use std::ffi::c_void;

/// libusb's `LIBUSB_ERROR_OTHER`, what its Linux backend answers when it finds no usbfs.
const LIBUSB_ERROR_OTHER: i32 = -99;

/// `int libusb_init(libusb_context **ctx)`: fails without touching `ctx`.
// SAFETY: no other symbol of this name is linked into this library; preloading it is the point.
#[no_mangle]
pub extern "C" fn libusb_init(_ctx: *mut *mut c_void) -> i32 {
    LIBUSB_ERROR_OTHER
}

/// `int libusb_init_context(libusb_context **ctx, const struct libusb_init_option[], int)`
/// (libusb 1.0.27 and later): fails the same way.
// SAFETY: as for `libusb_init`.
#[no_mangle]
pub extern "C" fn libusb_init_context(
    _ctx: *mut *mut c_void,
    _options: *const c_void,
    _num_options: i32,
) -> i32 {
    LIBUSB_ERROR_OTHER
}
