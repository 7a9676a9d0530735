//! The layers of the crate, bottom first. A module may use the modules of the layers below its
//! own, never one of its own layer or above: the dependencies point one way, and each layer can
//! be read (and tested) knowing only what is under it.
//!
//! ```text
//! build_info clock healthcheck outbound ← cli config ← shutdown systemd telemetry ← domain
//!   ← objects ← store ← operation ← auth billing ratelimit webhooks ← api ← http ← admin app
//! ```
//!
//! `main.rs` sits on top of them all. The test below reads every file under `src/` and fails on a
//! `crate::` path that points at a module of the same layer or a higher one.

/// Each layer's top-level modules, bottom first.
pub const LAYERS: &[&[&str]] = &[
    &["build_info", "clock", "healthcheck", "outbound"],
    &["cli", "config"],
    &["shutdown", "systemd", "telemetry"],
    &["domain"],
    &["objects"],
    &["store"],
    &["operation"],
    &["auth", "billing", "ratelimit", "webhooks"],
    &["api"],
    &["http"],
    &["admin", "app", "doctor"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a source text names through `crate::` (comments aside).
fn crate_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::x, b};`: the first segment of each item.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
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
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

/// Every use of a module at or above `module`'s layer, as "module -> used".
pub fn upward_uses(module: &str, source: &str) -> Vec<String> {
    let Some(own) = layer_of(module) else {
        return vec![format!("{module} is in no layer: add it to LAYERS")];
    };
    crate_paths(source)
        .into_iter()
        .filter(|used| used != module)
        .filter(|used| layer_of(used).is_none_or(|layer| layer >= own))
        .map(|used| format!("{module} -> {used}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_module_uses_a_layer_above_its_own() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut problems = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs");
            // The crate roots stand above every layer; this file holds the check itself.
            if ["main", "lib", "layers"].contains(&module) {
                continue;
            }
            let source = std::fs::read_to_string(file).unwrap();
            for problem in upward_uses(module, &source) {
                problems.push(format!("{}: {problem}", relative.display()));
            }
        }
        assert!(files.len() > 50, "the walk found the sources");
        assert!(
            problems.is_empty(),
            "imports against the layers:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_check_sees_upward_and_sideways_uses() {
        assert_eq!(
            upward_uses("domain", "use crate::api::objects::Customer;"),
            ["domain -> api"]
        );
        assert_eq!(
            upward_uses(
                "billing",
                "use crate::{store::x, webhooks::y};\nlet n = crate::clock::now();"
            ),
            ["billing -> webhooks"],
            "a sibling is not below"
        );
        assert!(upward_uses("api", "use crate::billing::x; // see crate::http").is_empty());
        assert_eq!(upward_uses("nowhere", ""), ["nowhere is in no layer: add it to LAYERS"]);
        assert_eq!(upward_uses("store", "crate::unknown::x()"), ["store -> unknown"]);
    }
}
