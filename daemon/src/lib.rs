//! The parts of kysod that read outside text without touching tokens: the configuration file,
//! PKCS#11 return values, and the pinentry (Assuan) conversation. They are a library so that
//! the fuzz targets in `fuzz/` can call the same parsers the daemon runs.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod pinentry;
