//! Queries parsed before, by their text.
//!
//! A dashboard sends the same query texts on every refresh, and parsing
//! one took longer (about 0.15 ms for `count by (instance) (up)`) than
//! evaluating a refresh's new steps from the answer cache. Only queries
//! that parsed are kept; a text that failed is parsed (and fails) again.

use std::collections::HashMap;
use std::sync::Mutex;

use promql_parser::parser::Expr;

/// At most this many texts are kept.
const KEPT: usize = 512;

/// Parsed queries, the recently used kept: entries live in `current` or,
/// once it filled up, in `previous`, which is dropped when `current` fills
/// up again; a hit in `previous` moves to `current`.
#[derive(Debug, Default)]
pub struct ParsedQueries {
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<String, Expr>,
    previous: HashMap<String, Expr>,
}

impl ParsedQueries {
    /// The tree of `text`, from `parse` unless kept.
    pub fn get_or_parse<E>(
        &self,
        text: &str,
        parse: impl FnOnce(&str) -> Result<Expr, E>,
    ) -> Result<Expr, E> {
        {
            let mut kept = self.lock();
            if let Some(expr) = kept.current.get(text) {
                return Ok(expr.clone());
            }
            if let Some(expr) = kept.previous.remove(text) {
                let copy = expr.clone();
                kept.insert(text.to_owned(), expr);
                return Ok(copy);
            }
        }
        // Parsed outside the lock: other queries go on meanwhile.
        let expr = parse(text)?;
        self.lock().insert(text.to_owned(), expr.clone());
        Ok(expr)
    }

    /// Texts kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        let kept = self.lock();
        kept.current.len() + kept.previous.len()
    }

    /// Whether none is kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Generations {
    fn insert(&mut self, text: String, expr: Expr) {
        if self.current.len() >= KEPT / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(text, expr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Expr, String> {
        promql_parser::parser::parse(text)
    }

    #[test]
    fn a_kept_text_is_not_parsed_again_and_gives_the_same_tree() {
        let kept = ParsedQueries::default();
        let first = kept
            .get_or_parse("sum by (a) (rate(x[5m]))", parse)
            .unwrap();
        let again = kept
            .get_or_parse("sum by (a) (rate(x[5m]))", |_| -> Result<Expr, String> {
                panic!("parsed again")
            })
            .unwrap();
        assert_eq!(first.to_string(), again.to_string());
        // Another text is another tree.
        let other = kept.get_or_parse("up", parse).unwrap();
        assert_eq!(other.to_string(), "up");
    }

    #[test]
    fn failures_are_not_kept() {
        let kept = ParsedQueries::default();
        assert!(kept.get_or_parse("sum(", parse).is_err());
        assert!(kept.is_empty());
        assert!(kept.get_or_parse("sum(", parse).is_err());
    }

    #[test]
    fn at_most_kept_texts_stay_and_the_recently_used_survive() {
        let kept = ParsedQueries::default();
        kept.get_or_parse("up", parse).unwrap();
        for i in 0..2 * KEPT {
            kept.get_or_parse(&format!("x{i}"), parse).unwrap();
            // "up" is used all along, so it stays.
            kept.get_or_parse("up", parse).unwrap();
            assert!(kept.len() <= KEPT);
        }
        kept.get_or_parse("up", |_| -> Result<Expr, String> { panic!("dropped") })
            .unwrap();
        // The first of the others is long gone.
        let mut parsed = false;
        kept.get_or_parse("x0", |t| {
            parsed = true;
            parse(t)
        })
        .unwrap();
        assert!(parsed);
    }
}
