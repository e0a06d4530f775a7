//! Test-only crate: the trybuild UI suite of the annals derives (`ui.rs`, `ui/`) and the
//! suites that run against every store adapter (`conformance_*.rs`, `repository.rs`).

// The README's code blocks are compiled and run as doctests of this crate, so the
// quickstart can never drift from the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
