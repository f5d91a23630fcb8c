//! Holds every `crate::…` path in `src/` to the layers written in `lib.rs`'s docs: a
//! module may name itself and the modules of layers below its own, nothing else. The
//! layers are read from `lib.rs`, so the docs and this test cannot disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `text` block after this line of `lib.rs` lists the layers, top first, one per line.
const MARKER: &str = "Layers, top to bottom";

/// Layer index (0 = top) of every module named in `lib.rs`'s layer block.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let doc: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let start = doc
        .iter()
        .position(|l| l.contains(MARKER))
        .expect("lib.rs documents its layers");
    let block = doc[start..]
        .iter()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"));
    let mut out = BTreeMap::new();
    for (i, line) in block.enumerate() {
        for module in line.split_whitespace() {
            assert!(
                out.insert(module.to_owned(), i).is_none(),
                "lib.rs names `{module}` in two layers"
            );
        }
    }
    out
}

/// The modules `lib.rs` declares (`pub mod x;`).
fn declared(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file of module `name`: `src/name.rs`, or everything under `src/name/`.
fn files(src: &Path, name: &str) -> Vec<PathBuf> {
    let single = src.join(format!("{name}.rs"));
    if single.is_file() {
        return vec![single];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a module folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The modules a line of code names as `crate::<module>`; comments are skipped.
fn named_modules(line: &str) -> Vec<&str> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    code.match_indices("crate::")
        .filter(|(i, _)| !code[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, m)| {
            let rest = &code[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Imports against the layers, as `file:line: message`.
fn violations(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let layers = layers(&lib);
    let mut out = Vec::new();
    for module in declared(&lib) {
        let Some(&own) = layers.get(&module) else {
            out.push(format!("src/lib.rs: `{module}` is in no layer of the docs"));
            continue;
        };
        for file in files(src, &module) {
            let text = std::fs::read_to_string(&file).expect("a source file");
            for (n, line) in text.lines().enumerate() {
                for used in named_modules(line) {
                    let allowed = used == module || layers.get(used).is_some_and(|&l| l > own);
                    if !allowed {
                        out.push(format!(
                            "{}:{}: `{module}` imports `crate::{used}`, which is not in a \
                             layer below its own (see lib.rs)",
                            file.strip_prefix(src.parent().unwrap_or(src))
                                .unwrap_or(&file)
                                .display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(found.is_empty(), "\n{}\n", found.join("\n"));
}

#[test]
fn an_upward_import_is_named_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "//! Layers, top to bottom:\n//! ```text\n//! high\n//! low\n//! ```\npub mod high;\npub mod low;\n",
    )
    .unwrap();
    std::fs::write(src.join("high.rs"), "use crate::low::Thing;\n").unwrap();
    std::fs::write(
        src.join("low").join("mod.rs"),
        "// crate::high in a comment is fine\nuse crate::low::x;\nfn f() { crate::high::g() }\n",
    )
    .unwrap();
    assert_eq!(
        violations(&src),
        [
            "src/low/mod.rs:3: `low` imports `crate::high`, which is not in a layer below its own \
          (see lib.rs)"
        ]
    );
}

#[test]
fn a_module_missing_from_the_layers_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "//! Layers, top to bottom:\n//! ```text\n//! high\n//! ```\npub mod high;\npub mod stray;\n",
    )
    .unwrap();
    std::fs::write(src.join("high.rs"), "").unwrap();
    std::fs::write(src.join("stray.rs"), "").unwrap();
    assert_eq!(
        violations(&src),
        ["src/lib.rs: `stray` is in no layer of the docs"]
    );
}
