//! Compile-time tests of `#[task]`: what must compile (`ui/pass`) and the
//! errors for what must not (`ui/fail`, compared with the `.stderr` files).
//!
//! After changing an error message, regenerate the expected output with
//! `TRYBUILD=overwrite cargo test -p worker-core --test macro_ui` and read
//! the new `.stderr` files before committing them.

#[test]
fn task_macro_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
