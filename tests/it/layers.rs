//! The layering of `src/` as `docs/architecture.md` draws it: every `crate::…` (and, in
//! `main.rs`, `imgorigin::…`) reference of a module must point to a module in a lower row
//! of the layer table. Modules of one row may not use each other, so no cycle can form.
//! A module missing from the table fails too: new modules are placed on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Module name → row (0 = top), from the table between `<!-- layers -->` markers.
fn layer_table() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/architecture.md")).unwrap();
    let start = doc
        .find("<!-- layers -->")
        .expect("docs/architecture.md: <!-- layers -->");
    let end = doc.find("<!-- /layers -->").expect("<!-- /layers -->");
    let mut rows = BTreeMap::new();
    let mut row = 0;
    for line in doc[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| 3 | delivery, api | … |`: a row number, then the modules.
        if cells.len() < 3 || cells[1].parse::<usize>().is_err() {
            continue;
        }
        for m in cells[2].split(',') {
            let m = m.trim().trim_matches('`');
            if !m.is_empty() {
                assert!(
                    rows.insert(m.to_string(), row).is_none(),
                    "{m} listed twice"
                );
            }
        }
        row += 1;
    }
    assert!(row > 3, "layer table not found or too short");
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/api/images.rs` → `api`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// Names referenced as `crate::name` / `crate::{a, b::c}` (or `imgorigin::…`), outside
/// comments.
fn references(text: &str, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let pat = format!("{root}::");
        let mut rest = code;
        while let Some(i) = rest.find(&pat) {
            // Not part of a longer path segment (`foo_crate::`).
            let before = rest[..i].chars().last();
            rest = &rest[i + pat.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn modules_only_use_lower_layers() {
    let rows = layer_table();
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: std::collections::BTreeSet<String> =
        files.iter().map(|f| module_of(&src, f)).collect();
    let mut problems = Vec::new();
    for m in &modules {
        if m != "lib" && !rows.contains_key(m) {
            problems.push(format!(
                "src/{m}: not in the layer table of docs/architecture.md"
            ));
        }
    }
    for file in &files {
        let m = module_of(&src, file);
        if m == "lib" {
            continue;
        }
        let Some(&from) = rows.get(&m) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        let root = if m == "main" { "imgorigin" } else { "crate" };
        for name in references(&text, root) {
            // Items of lib.rs itself (`crate::unix_now`) belong to no layer.
            let Some(&to) = rows.get(&name) else { continue };
            if name != m && to <= from {
                problems.push(format!(
                    "{}: uses `{name}` (row {}), not below `{m}` (row {})",
                    file.strip_prefix(ROOT).unwrap().display(),
                    to + 1,
                    from + 1
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "imports against the layer table:\n{}",
        problems.join("\n")
    );
}

#[test]
fn reference_scanner() {
    let refs = references(
        "use crate::{auth::x, error::Error};\n// crate::nope\nlet a = crate::cache::f(); my_crate::no()",
        "crate",
    );
    assert_eq!(refs, ["auth", "error", "cache"]);
}
