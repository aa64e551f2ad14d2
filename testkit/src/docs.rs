//! Documents in `docs/` that tests generate from the code: each generated
//! part sits between two marker comments, so a page can hold prose around
//! it and parts that different crates' tests produce. A test compares the
//! part it generates with the committed one and fails when they differ;
//! with `DCMON_BLESS=1` in the environment it rewrites the part instead.

use std::path::{Path, PathBuf};

/// The workspace root (this crate's parent directory).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lies inside the workspace")
        .to_path_buf()
}

/// The markers around the part named `part`.
fn markers(part: &str) -> (String, String) {
    (
        format!("<!-- generated: {part} (do not edit; see the note above) -->\n"),
        format!("<!-- end of generated: {part} -->\n"),
    )
}

/// `text` with the part named `part` replaced by `content`, or `None` when
/// `text` lacks its markers.
pub fn with_generated_part(text: &str, part: &str, content: &str) -> Option<String> {
    let (open, close) = markers(part);
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(format!("{}{content}{}", &text[..start], &text[end..]))
}

/// Checks that the part named `part` of `relative` (a path from the
/// workspace root) is `content`; with `DCMON_BLESS=1` rewrites it. The
/// failure message names `command`, the test that regenerates it.
pub fn check_generated(relative: &str, part: &str, content: &str, command: &str) {
    let path = repository_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (open, close) = markers(part);
    let expected = with_generated_part(&text, part, content).unwrap_or_else(|| {
        panic!("{relative} lacks the markers of its generated part:\n{open}{close}")
    });
    if expected == text {
        return;
    }
    if std::env::var_os("DCMON_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, expected).unwrap_or_else(|e| panic!("writing {relative}: {e}"));
        return;
    }
    let first_difference = text
        .lines()
        .zip(expected.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(text.lines().count().min(expected.lines().count()));
    panic!(
        "{relative} is out of date with the code (part `{part}`, first difference at line {}).\n\
         Regenerate it with:\n    DCMON_BLESS=1 {command}\nand commit the result.",
        first_difference + 1
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_part_is_replaced() {
        let (open, close) = markers("a");
        let text = format!("intro\n{open}old\n{close}outro\n");
        let new = with_generated_part(&text, "a", "new\n").unwrap();
        assert_eq!(new, format!("intro\n{open}new\n{close}outro\n"));
        assert!(with_generated_part(&text, "b", "x").is_none());
    }
}
