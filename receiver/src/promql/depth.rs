//! How deep a query nests. The parser, the planner, the evaluator, the
//! printer and even dropping the tree recurse once per level of the syntax
//! tree, so a deep enough query would overflow the stack and abort the
//! whole receiver. Depth is bounded twice: from the text before parsing
//! (so the parser only sees what it can take), then exactly on the tree.

use promql_parser::parser::Expr;

/// Deepest syntax tree a query may have. Every binary operator of an
/// unbracketed chain (`a + b + c`, `a and b and c`, `a ^ b ^ c`) is one
/// level, as is every bracket, call, aggregation, subquery and unary minus.
/// Real queries stay far below this; queries run on a stack sized for it
/// ([`super::QUERY_STACK_BYTES`]).
pub const MAX_DEPTH: usize = 1000;

/// Most operators plus twice the bracket depth a query text may have
/// before it is parsed ([`text_depth_bound`]). Above [`MAX_DEPTH`], so a
/// long but balanced query reaches the exact check; low enough that the
/// parser (whose type checks recurse over the tree it builds, taking time
/// in the square of the depth) runs quickly on any thread's stack, even the
/// async workers' in a debug build.
pub const MAX_TEXT_DEPTH: usize = 4 * MAX_DEPTH;

/// An upper bound of the depth of the tree `query` parses into, from the
/// text alone: every level of a root-to-leaf path is a binary or unary
/// operator (one operator token each), a bracket, call or aggregation (one
/// bracket level each, nested), a subquery (which needs a bracket level
/// between it and the next one: a subquery of a subquery is a type error)
/// or the leaf.
///
/// Operators are counted outside string literals: each of `+ - * / % ^ =
/// ! < >` and the keywords `and`, `or`, `unless` and `atan2`. Counting a
/// two-character operator twice, or a `-` in a number or duration, only
/// makes the bound looser.
pub fn text_depth_bound(query: &str) -> usize {
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut word = String::new();
    for c in query.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            if word.len() < 8 {
                word.push(c.to_ascii_lowercase());
            } else {
                // Longer than any keyword: never one.
                word.clear();
                word.push_str("#########");
            }
            continue;
        }
        operators += usize::from(is_keyword(&word));
        word.clear();
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '=' | '!' | '<' | '>' => operators += 1,
            _ => {}
        }
    }
    operators += usize::from(is_keyword(&word));
    operators
        .saturating_add(deepest.saturating_mul(2))
        .saturating_add(2)
}

fn is_keyword(word: &str) -> bool {
    matches!(word, "and" | "or" | "unless" | "atan2")
}

/// The depth of `expr`'s syntax tree (a leaf is 1), walked without
/// recursion so any tree can be measured.
pub fn tree_depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(expr, 1usize)];
    while let Some((expr, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        let below = depth + 1;
        match expr {
            Expr::Aggregate(a) => {
                pending.push((&a.expr, below));
                if let Some(param) = &a.param {
                    pending.push((param, below));
                }
            }
            Expr::Unary(u) => pending.push((&u.expr, below)),
            Expr::Binary(b) => {
                pending.push((&b.lhs, below));
                pending.push((&b.rhs, below));
            }
            Expr::Paren(p) => pending.push((&p.expr, below)),
            Expr::Subquery(s) => pending.push((&s.expr, below)),
            Expr::Call(c) => pending.extend(c.args.args.iter().map(|a| (a.as_ref(), below))),
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed_depth(query: &str) -> usize {
        tree_depth(&promql_parser::parser::parse(query).expect(query))
    }

    #[test]
    fn the_text_bound_is_never_below_the_tree_depth() {
        for query in [
            "1",
            "up",
            "-up",
            "- -1",
            "1 + 2 * 3 ^ 4 ^ 5",
            "up and up or up unless up",
            "clamp(up, 0, 1)",
            "up atan2 up",
            "sum by (job) (rate(x[5m])) / on (job) group_left count(x)",
            "max_over_time((rate(x[5m]) > 0)[1h:1m] offset 5m)",
            "max_over_time(max_over_time(x[5m:1m])[1h:])",
            "topk(3, abs(-(1 + x)))",
            "label_replace(up, \"a\", \"(((\", \"b\", \"\")",
            "((((up))))",
            "x[5m:] @ 100",
        ] {
            let bound = text_depth_bound(query);
            let depth = parsed_depth(query);
            assert!(bound >= depth, "{query}: bound {bound} < depth {depth}");
        }
    }

    #[test]
    fn chains_count_every_operator() {
        let chain = |op: &str, n: usize| vec!["up"; n].join(op);
        assert_eq!(parsed_depth(&chain(" + ", 50)), 50);
        assert_eq!(parsed_depth(&chain(" ^ ", 50)), 50);
        assert_eq!(parsed_depth(&chain(" and ", 50)), 50);
        assert!(text_depth_bound(&chain(" and ", 50)) >= 50);
        assert!(text_depth_bound(&chain("+", 5000)) > MAX_TEXT_DEPTH);
        // Keywords are whole words: `android` is a metric, not `and`.
        assert_eq!(text_depth_bound("android"), 2);
        assert_eq!(text_depth_bound("x{a=\"and or + - ((\"}"), 5);
    }

    #[test]
    fn the_tree_walk_takes_any_depth() {
        let deep = format!("{}1", "-(".repeat(20_000)) + &")".repeat(20_000);
        // Built bottom-up, so neither building nor measuring recurses.
        let mut expr = Expr::from(1.0);
        for _ in 0..100_000 {
            expr = -(Expr::Paren(promql_parser::parser::ParenExpr {
                expr: Box::new(expr),
            }));
        }
        assert_eq!(tree_depth(&expr), 200_001);
        std::mem::forget(expr);
        assert!(text_depth_bound(&deep) > 60_000);
    }
}
