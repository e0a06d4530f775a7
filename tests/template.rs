//! The cargo-generate template (`template/`) generates a project that compiles, passes
//! its own tests against this checkout of annals, and passes clippy with warnings denied.
//!
//! cargo-generate is taken from `PATH`, `~/.cargo/bin`, or installed into
//! `target/tools` on first use (its newest releases need a newer Rust than this
//! project's, hence the pinned version).
#![allow(clippy::expect_used, clippy::panic, reason = "test code: a failure is a failed test")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The newest cargo-generate that builds with this project's Rust (see shared/FACTS.md).
const CARGO_GENERATE_VERSION: &str = "0.23.8";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_owned()
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(status.success(), "{what} failed with {status}");
}

fn cargo_generate() -> PathBuf {
    let on_path = Command::new("cargo-generate").arg("--version").output().is_ok_and(|o| o.status.success());
    if on_path {
        return PathBuf::from("cargo-generate");
    }
    if let Some(home) = std::env::var_os("HOME") {
        let installed = Path::new(&home).join(".cargo/bin/cargo-generate");
        if installed.exists() {
            return installed;
        }
    }
    let root = workspace_root().join("target/tools");
    let local = root.join("bin/cargo-generate");
    if !local.exists() {
        eprintln!("installing cargo-generate {CARGO_GENERATE_VERSION} into {} (takes minutes, once)", root.display());
        run(
            Command::new(env!("CARGO"))
                .args(["install", "--locked", "--root"])
                .arg(&root)
                .arg(format!("cargo-generate@{CARGO_GENERATE_VERSION}"))
                // Link-time optimisation would triple the build time for no test benefit.
                .env("CARGO_PROFILE_RELEASE_LTO", "false")
                .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
            "cargo install cargo-generate",
        );
    }
    local
}

#[test]
fn a_generated_service_compiles_and_passes_its_tests() {
    let root = workspace_root();
    let out = std::env::temp_dir().join(format!("annals-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("a temporary directory");
    run(
        Command::new(cargo_generate())
            .args(["generate", "--path"])
            .arg(root.join("template"))
            .args(["--name", "order-desk", "--silent", "--vcs", "none", "--no-workspace", "--destination"])
            .arg(&out)
            .args(["-d", "aggregate=Order", "-d"])
            .arg(format!("annals_path={}", root.display()))
            // cargo-generate fills in the author from $USER and refuses to run without it
            // (CI environments may not set it).
            .env("USER", std::env::var("USER").unwrap_or_else(|_| "annals".to_owned())),
        "cargo generate",
    );
    let project = out.join("order-desk");
    let lib = std::fs::read_to_string(project.join("src/lib.rs")).expect("the generated src/lib.rs");
    assert!(lib.contains("pub struct Order {") && lib.contains("\"order.created\""), "placeholders were filled in");
    assert!(project.join("README.md").exists());
    // The workspace's lock file keeps the generated project on dependency versions that
    // build with this Rust; its own target directory avoids waiting on this build's lock.
    std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock")).expect("copy Cargo.lock");
    run(
        Command::new(env!("CARGO"))
            .args(["test", "--quiet"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", root.join("target/template-project")),
        "cargo test in the generated project",
    );
    run(
        Command::new(env!("CARGO"))
            .args(["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", root.join("target/template-project")),
        "cargo clippy -D warnings in the generated project",
    );
    let _ = std::fs::remove_dir_all(&out);
}
