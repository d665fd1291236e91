//! The end-to-end test harness: fixtures, a temp dir per test, and the two
//! programs driven as a user would.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

pub mod cosign;
pub mod delta_fixture;
pub mod fake_helm_get;
pub mod harness;
pub mod oci_fixture;
pub mod parts_fixture;
pub mod registry_fixture;
pub mod release;
pub mod release_fixture;
pub mod root_fixture;
pub mod serve;
pub mod site;
pub mod tamper;
