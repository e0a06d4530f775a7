//! Compile-fail and pass cases of `#[derive(Event)]`, `#[derive(Aggregate)]` and
//! `#[derive(Projection)]`.
//!
//! Paths are relative to this package's directory. The `.stderr` snapshots depend on the
//! compiler's wording: the suite is pinned to the toolchain in `rust-toolchain.toml`.

#[test]
fn event() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/event/fail/*.rs");
    t.pass("ui/event/pass/*.rs");
}

#[test]
fn aggregate() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/aggregate/fail/*.rs");
    t.pass("ui/aggregate/pass/*.rs");
}

#[test]
fn projection() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/projection/fail/*.rs");
    t.pass("ui/projection/pass/*.rs");
}

#[test]
fn process() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/process/fail/*.rs");
    t.pass("ui/process/pass/*.rs");
}
