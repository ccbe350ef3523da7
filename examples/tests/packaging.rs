//! What a registry user gets: every library crate carries the metadata and
//! files a published crate needs, and the declared minimum Rust version is
//! not below what the crates' own dependencies require (the machine has one
//! toolchain, so the bound is checked against the dependency tree instead of
//! an old compiler). `.ci/run` packages the crates with `cargo package`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The crates users depend on.
const LIBRARIES: &[&str] = &[
    "worker-core",
    "worker-macros",
    "worker-testkit",
    "worker-operator",
    "worker-devbroker",
];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repository)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// `1.89` and `1.89.0` compare equal.
fn version(text: &str) -> [u32; 3] {
    let mut parts = text.split('.').map(|part| part.parse().unwrap_or(0));
    [(); 3].map(|()| parts.next().unwrap_or(0))
}

fn package<'a>(meta: &'a Value, name: &str) -> &'a Value {
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name && p["source"].is_null())
        .unwrap_or_else(|| panic!("{name} is a workspace member"))
}

#[test]
fn every_library_crate_has_what_publishing_needs() {
    let meta = metadata();
    for name in LIBRARIES {
        let p = package(&meta, name);
        for field in [
            "description",
            "license",
            "repository",
            "readme",
            "rust_version",
        ] {
            assert!(
                p[field].as_str().is_some_and(|v| !v.is_empty()),
                "{name} has no {field}"
            );
        }
        for field in ["keywords", "categories"] {
            assert!(
                p[field].as_array().is_some_and(|v| !v.is_empty()),
                "{name} has no {field}"
            );
        }
        let dir = Path::new(p["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap();
        for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
            assert!(dir.join(file).is_file(), "{name} has no {file}");
        }
        for dep in p["dependencies"].as_array().unwrap() {
            let is_path = dep["path"].is_string();
            let normal = dep["kind"].is_null();
            if is_path && normal {
                assert_ne!(
                    dep["req"], "*",
                    "{name} depends on {} by path without a version: cargo package refuses it",
                    dep["name"]
                );
            }
        }
    }
}

#[test]
fn the_minimum_rust_version_covers_every_dependency() {
    let meta = metadata();
    let declared = package(&meta, "worker-core")["rust_version"]
        .as_str()
        .expect("worker-core declares a rust-version")
        .to_owned();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let node = |id: &str| nodes.iter().find(|n| n["id"] == id).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let by_id = |id: &str| packages.iter().find(|p| p["id"] == id).unwrap();

    // Everything the library crates need to build (normal and build deps).
    let mut todo: Vec<String> = LIBRARIES
        .iter()
        .map(|name| package(&meta, name)["id"].as_str().unwrap().to_owned())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut highest = ([0; 3], String::new());
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let p = by_id(&id);
        if let Some(rv) = p["rust_version"].as_str() {
            if version(rv) > highest.0 {
                highest = (version(rv), format!("{} {rv}", p["name"]));
            }
        }
        for dep in node(&id)["deps"].as_array().unwrap() {
            let builds = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if builds {
                todo.push(dep["pkg"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(
        version(&declared) >= highest.0,
        "rust-version {declared} is below what {} requires: raise it in the workspace Cargo.toml",
        highest.1
    );
}
