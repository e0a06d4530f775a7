//! Test-only crate: the trybuild UI suite of the annals derives (`ui.rs`, `ui/`) and the
//! suites that run against every store adapter (`conformance_*.rs`, `repository.rs`).

// The README's code blocks are compiled and run as doctests of this crate, so the
// quickstart can never drift from the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The README's Rust blocks compile as they are rendered: rustdoc would compile lines a
/// reader never sees (`# ...`), so none may hide one.
#[cfg(test)]
mod readme {
    #[test]
    fn no_rust_block_hides_a_line() {
        let readme = include_str!("../../README.md");
        // The info string of the fenced block a line is in, if any.
        let mut block: Option<&str> = None;
        let mut hidden = Vec::new();
        for (n, line) in readme.lines().enumerate() {
            if let Some(info) = line.strip_prefix("```") {
                block = match block {
                    Some(_) => None,
                    None => Some(info.trim()),
                };
                continue;
            }
            if block == Some("rust") && (line == "#" || line.starts_with("# ")) {
                hidden.push(n + 1);
            }
        }
        assert!(hidden.is_empty(), "README lines hidden from readers but compiled: {hidden:?}");
    }
}
