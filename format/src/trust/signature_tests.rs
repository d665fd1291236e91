//! Tests of the upstream signature verifier.
