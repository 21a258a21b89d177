//! Tidy checks of the code's shape, as rust-analyzer keeps them: the API server's layers
//! import one way only, only the http layer knows axum and hyper, the crates depend on each
//! other as ARCHITECTURE.md says, and no source file grows past 1,500 lines unless
//! ARCHITECTURE.md says why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The server's layers, lowest first. A module may import its own layer and lower ones.
const LAYERS: [&str; 7] = [
    "pki",
    "api",
    "storage",
    "registry",
    "controllers",
    "pipeline",
    "http",
];

/// Crates only the http layer may name.
const HTTP_CRATES: [&str; 5] = ["axum", "hyper", "hyper_util", "tower", "tokio_rustls"];

/// Longest source file, in lines, that needs no explanation in ARCHITECTURE.md.
const MAX_FILE_LINES: usize = 1_500;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the crate lives in crates/")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer of a file under `src/` (`None` for `lib.rs`, which sits above them all).
fn layer_of(relative: &Path) -> Option<usize> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    LAYERS.iter().position(|l| *l == module)
}

/// The top-level modules a source text names as `crate::<module>`.
fn crate_imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `fleetdb_machinery::...` never matches; `xcrate::` would
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inside = &group[..group.find('}').unwrap_or(group.len())];
            for item in inside.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// Whether `text` names crate `name` as a path (`name::`) outside comments.
fn names_crate(text: &str, name: &str) -> bool {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .any(|code| {
            code.match_indices(&format!("{name}::")).any(|(at, _)| {
                !code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            })
        })
}

#[test]
fn layers_import_downward_only_and_only_http_knows_http() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let Some(layer) = layer_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for module in crate_imports(&text) {
            match LAYERS.iter().position(|l| *l == module) {
                Some(imported) if imported > layer => problems.push(format!(
                    "{} ({}) imports crate::{module}, a higher layer",
                    relative.display(),
                    LAYERS[layer]
                )),
                Some(_) => {}
                // Re-exports of lib.rs (`crate::VERSION_GIT`) are constants, fine anywhere.
                None if module.chars().all(|c| c.is_uppercase() || c == '_') => {}
                None => problems.push(format!(
                    "{} names crate::{module}, which is no layer",
                    relative.display()
                )),
            }
        }
        if LAYERS[layer] != "http" {
            for name in HTTP_CRATES {
                if names_crate(&text, name) {
                    problems.push(format!(
                        "{} ({}) uses {name}, which only the http layer may",
                        relative.display(),
                        LAYERS[layer]
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_layer_check_sees_upward_imports() {
    assert_eq!(
        crate_imports("use crate::http::x;\nuse crate::{api, registry::Y};\nfleetdb_crate::z"),
        ["http", "api", "registry"]
    );
    assert!(names_crate("use axum::http;", "axum"));
    assert!(!names_crate("// axum::http in a comment", "axum"));
    assert!(!names_crate("use my_axum::x;", "axum"));
    assert_eq!(layer_of(Path::new("registry/write.rs")), Some(3));
    assert_eq!(layer_of(Path::new("pki.rs")), Some(0));
    assert_eq!(layer_of(Path::new("lib.rs")), None);
}

/// The workspace crates each crate depends on (normal dependencies).
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let crates = workspace().join("crates");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
            .expect("a package name");
        let normal = text
            .split("[dependencies]")
            .nth(1)
            .map(|rest| rest.split("\n[").next().unwrap_or(""))
            .unwrap_or("");
        let deps = normal
            .lines()
            .filter_map(|l| l.split(['.', ' ', '=']).next())
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        out.insert(name, deps);
    }
    out
}

#[test]
fn crates_depend_as_the_architecture_says() {
    let deps = dependencies();
    let forbidden: &[(&str, &[&str])] = &[
        // API machinery: no I/O.
        (
            "fleetdb-machinery",
            &[
                "tokio",
                "fleetdb-store",
                "fleetdb-apiserver",
                "axum",
                "hyper",
                "kube",
            ],
        ),
        // The store knows nothing of HTTP or Kubernetes objects.
        (
            "fleetdb-store",
            &[
                "fleetdb-apiserver",
                "fleetdb-machinery",
                "axum",
                "hyper",
                "serde_json",
            ],
        ),
        // Data types and schemas only.
        (
            "fleetdb-fleet",
            &["fleetdb-apiserver", "fleetdb-store", "tokio"],
        ),
        // Tools are API clients: never the server or the store.
        ("fleetdb-fetch", &["fleetdb-apiserver", "fleetdb-store"]),
        (
            "fleetdb-export",
            &["fleetdb-apiserver", "fleetdb-store", "fleetdb-fetch"],
        ),
    ];
    let mut problems = Vec::new();
    for (krate, never) in forbidden {
        let Some(has) = deps.get(*krate) else {
            problems.push(format!("{krate} not found"));
            continue;
        };
        for dep in *never {
            if has.iter().any(|d| d == dep) {
                problems.push(format!("{krate} depends on {dep}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn long_files_are_explained_in_the_architecture() {
    let root = workspace();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let mut problems = Vec::new();
    for file in files {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        let relative = file.strip_prefix(&root).unwrap().display().to_string();
        if lines > MAX_FILE_LINES && !architecture.contains(&format!("`{relative}`")) {
            problems.push(format!(
                "{relative}: {lines} lines; split it or say why in ARCHITECTURE.md"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
