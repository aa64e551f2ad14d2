//! The repository's documents cite only files the repository has: every
//! Markdown file name and every relative Markdown link in a Markdown file or
//! in a comment of a Rust file must name an existing file, so a reader with
//! nothing but a checkout can follow each one.
//!
//! A reference resolves when the path exists relative to the citing file's
//! directory or to any directory above it, up to the repository root (so a
//! crate's `src/` may cite its `tests/fixtures/…` by the crate-relative
//! path). Web addresses, names on another host and absolute paths (files of
//! an installed system) are not files of this repository and are skipped.

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root: the receiver crate's parent directory.
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the receiver crate lies inside the workspace")
        .to_path_buf()
}

/// Every `*.md` and `*.rs` file under `dir`, skipping build output and
/// hidden directories (`.git`, editor state).
fn document_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                document_files(&path, out);
            }
        } else if name.ends_with(".md") || name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The text of `line` that may cite files: all of it in Markdown, only
/// comment lines (`//`, `///`, `//!`) in Rust.
fn citing_text(line: &str, markdown: bool) -> Option<&str> {
    if markdown {
        return Some(line);
    }
    let trimmed = line.trim_start();
    trimmed.starts_with("//").then_some(trimmed)
}

/// `line` with every web address (`scheme://…` up to white space or a
/// closing bracket) removed.
fn without_addresses(line: &str) -> String {
    let mut rest = line;
    let mut kept = String::new();
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '-')
            .map_or(0, |i| i + 1);
        kept.push_str(&rest[..start]);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '>' | ']' | '`' | '"'))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    kept.push_str(rest);
    kept
}

/// The files `line` cites: `*.md` names, and in Markdown syntax the
/// targets of relative links (text in brackets, then the path and an
/// optional anchor in parentheses), without anchors.
fn references(line: &str) -> Vec<String> {
    let mut found = Vec::new();

    // Relative links: a closing bracket, then the target in parentheses,
    // where the target has no scheme.
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split_whitespace().next().unwrap_or("");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        let path = target.split('#').next().unwrap_or("");
        if !path.is_empty()
            && !path.starts_with('/')
            && !target.contains("://")
            && !target.starts_with("mailto:")
        {
            found.push(path.to_string());
        }
        rest = &after[end..];
    }

    // `*.md` names, outside web addresses.
    let text = without_addresses(line);
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-');
    for token in text.split(|c: char| !is_path_char(c)) {
        let token = token.trim_end_matches('.');
        if !token.ends_with(".md") || token == ".md" {
            continue;
        }
        // A name on another host (`example.org/owner/repo/…`) or an
        // absolute path of an installed system.
        if token.starts_with('/') {
            continue;
        }
        let first = token.split('/').next().unwrap_or("");
        if token.contains('/') && first.contains('.') && first != "." && first != ".." {
            continue;
        }
        if !found.iter().any(|f| f == token) {
            found.push(token.to_string());
        }
    }
    found
}

/// Whether `reference`, cited in a file of `dir`, names an existing file
/// relative to `dir` or a directory above it, up to `root`.
fn resolves(reference: &str, dir: &Path, root: &Path) -> bool {
    let mut base = Some(dir);
    while let Some(d) = base {
        if d.join(reference).exists() {
            return true;
        }
        if d == root {
            break;
        }
        base = d.parent();
    }
    false
}

/// `path:line: reference` for every citation in the repository that names
/// no file.
fn dangling_references(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    document_files(root, &mut files);
    let mut dangling = Vec::new();
    for file in &files {
        let markdown = file.extension().is_some_and(|e| e == "md");
        let text =
            fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let dir = file.parent().expect("a file has a directory");
        for (number, line) in text.lines().enumerate() {
            let Some(cited) = citing_text(line, markdown) else {
                continue;
            };
            for reference in references(cited) {
                if !resolves(&reference, dir, root) {
                    let shown = file.strip_prefix(root).unwrap_or(file).display();
                    dangling.push(format!("{shown}:{}: `{reference}`", number + 1));
                }
            }
        }
    }
    dangling
}

#[test]
fn every_cited_document_exists() {
    let root = repository_root();
    let dangling = dangling_references(&root);
    assert!(
        dangling.is_empty(),
        "{} reference(s) to files the repository does not have (fix the name, add the file, \
         or say it without citing a path):\n  {}",
        dangling.len(),
        dangling.join("\n  ")
    );
}

#[test]
fn references_are_found_in_prose_links_and_comments() {
    let line = "see [the API](docs/api.md#write), METRICS.md and https://example.org/x/README.md.";
    assert_eq!(references(line), ["docs/api.md", "METRICS.md"]);
    assert_eq!(
        references("[home](https://example.org/) [top](#top) github.com/o/r/README.md"),
        Vec::<String>::new()
    );
    assert_eq!(references("[script](../scripts/test)"), ["../scripts/test"]);
    assert_eq!(
        citing_text("    //! names from METRICS.md", false),
        Some("//! names from METRICS.md")
    );
    assert_eq!(citing_text("let s = \"METRICS.md\";", false), None);
}

#[test]
fn a_missing_target_is_reported() {
    let root = repository_root();
    let dir = root.join("receiver/tests");
    assert!(resolves("docs.rs", &dir, &root));
    assert!(
        resolves("README.md", &dir, &root),
        "the root README, from a directory below it"
    );
    assert!(!resolves("SEMANTICS.md", &dir, &root));
}
