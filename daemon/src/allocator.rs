//! kysod's memory allocator: jemalloc, for its own code and for the modules it loads.
//!
//! Most of a software token's signature is memory handed between threads. kysod's preparing
//! thread initialises operations (`prepared`), allocating the key objects OpenSSL builds under
//! SoftHSM2, and a connection's thread frees them when its `C_Sign` ends. glibc's allocator
//! returns each such chunk to the arena of the thread that allocated it, under that arena's
//! lock, and the preparing thread's next large allocation sorts through all of them
//! (`malloc_consolidate`): in a `perf` profile at ECDSA P-256 with two signing threads the
//! preparing thread spent a fifth of its time in `malloc` and `free`, and it is what bounds
//! the rate there. jemalloc sends a chunk freed on another thread back in batches from that
//! thread's cache. Measured in one benchmark against the build with glibc's allocator (its
//! per-thread cache enlarged to 64 chunks, as kysod ran until then): ECDSA 2T 0.95–0.97× of
//! SoftHSM2 in process against 0.78–0.87×, kysod's and the application's CPU per signature
//! 66–72 µs against 75–82 µs; see the design notes.
//!
//! The modules are C: they call `malloc` and `free`, not Rust's allocator. jemalloc is built
//! here with its functions under their standard names (`unprefixed_malloc_on_supported_platforms`),
//! so the program itself defines `malloc`, `free`, `calloc`, `realloc`, `posix_memalign`,
//! `aligned_alloc`, `memalign`, `valloc` and `malloc_usable_size`, and the dynamic linker
//! binds a library's calls to the program's definitions before libc's, for the libraries
//! loaded at start and for the modules opened later alike. [`check`] asks the dynamic linker
//! what a module's `malloc` resolves to, and says so in the log.

use std::ffi::c_void;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Whether the `malloc` a module loaded now would call is jemalloc's, as the dynamic linker
/// resolves it for the whole process.
pub fn serves_modules() -> bool {
    // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name only looks the symbol up
    // in the objects already loaded; the pointer it returns is compared, never called.
    let resolved = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    resolved == tikv_jemalloc_sys::malloc as *mut c_void
}

/// Logs which allocator the modules kysod loads will use.
pub fn check() {
    if serves_modules() {
        tracing::debug!(
            allocator = "jemalloc",
            "memory allocator, for kysod and its modules"
        );
    } else {
        tracing::warn!(
            allocator = "jemalloc",
            "the modules kysod loads allocate through another malloc than kysod's own (jemalloc): signatures cost more CPU"
        );
    }
}
