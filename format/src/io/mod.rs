//! How bytes move, with no format rule of their own: [`durable`] is the one
//! crash-safe write (temp file beside the target, fsync, rename, fsync the
//! folder), [`pipe`] the read-ahead and write-behind threads that put the
//! machine's second core to work, [`retry`] the one retry policy of both
//! programs' network clients (the policy only: this crate has no network
//! code).

pub mod durable;
pub mod pipe;
pub mod retry;
