//! kysod's memory allocator: mimalloc, for its own code and for the modules it loads.
//!
//! Most of a software token's signature is memory handed between threads. kysod's preparing
//! thread initialises operations (`prepared`), allocating the key objects OpenSSL builds under
//! SoftHSM2, and a connection's thread frees them when its `C_Sign` ends. glibc's allocator
//! returns each such chunk to the arena of the thread that allocated it, under that arena's
//! lock, and the preparing thread's next large allocation sorts through all of them
//! (`malloc_consolidate`): in a `perf` profile at ECDSA P-256 with two signing threads the
//! preparing thread spent a fifth of its time in `malloc` and `free`, and it is what bounds
//! the rate there. mimalloc gives each thread pages of its own and takes a chunk freed by
//! another thread back onto its page's list without a lock. Figures in the design notes
//! ("Signatures prepared ahead").
//!
//! The modules are C: they call `malloc` and `free`, not Rust's allocator. mimalloc is built
//! here overriding them (`override`), so the program itself defines `malloc` and its family
//! (`free`, `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`, `malloc_usable_size`), and the dynamic linker binds a
//! library's calls to the program's definitions before libc's, for the libraries loaded at
//! start and for the modules opened later alike. [`check`] asks the dynamic linker what a
//! module's `malloc` resolves to, and says so in the log.
//!
//! Why not jemalloc, which measured somewhat better (see the design notes): its constructor
//! reads its configuration through `readlink("/etc/malloc.conf")`, and a preloaded library
//! that wraps `readlink` and looks libc up on first use (umockdev's, which the USB tests run
//! kysod under; other sandboxes and test harnesses do the same) allocates inside that call,
//! which re-enters jemalloc's initialisation under its own lock: kysod hung before `main`.
//! mimalloc reads its files through raw system calls for that reason.

use std::ffi::c_void;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Whether the `malloc` a module loaded now would call is mimalloc's, as the dynamic linker
/// resolves it for the whole process. (mimalloc's `malloc` is an alias of `mi_malloc`.)
fn serves_modules() -> bool {
    // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name only looks the symbol up
    // in the objects already loaded; the pointer it returns is compared, never called.
    let resolved = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    resolved == libmimalloc_sys::mi_malloc as *mut c_void
}

/// Logs which allocator the modules kysod loads will use.
pub fn check() {
    if serves_modules() {
        tracing::debug!(
            allocator = "mimalloc",
            "memory allocator, for kysod and its modules"
        );
    } else {
        tracing::warn!(
            allocator = "mimalloc",
            "the modules kysod loads allocate through another malloc than kysod's own (mimalloc): signatures cost more CPU"
        );
    }
}
