//! Binary searches that start at one end of a sorted slice.
//!
//! A refresh reads the newest minutes of each series, from a tail or a
//! cached answer holding hours of it. A plain binary search over those
//! touches a dozen cache lines spread over tens of kilobytes, per series,
//! and on a refresh none of them is cached: at fifty series it took longer
//! than evaluating the new steps. Galloping from the end the search starts
//! near touches a few neighbouring lines, and is never worse than twice a
//! binary search.

/// [`slice::partition_point`] (`items` holds the items satisfying `pred`
/// before those that do not), looking from the end first: for a point
/// near the end.
pub fn partition_point_from_end<T>(items: &[T], pred: impl Fn(&T) -> bool) -> usize {
    // `items[hi..]` all fail `pred`.
    let mut hi = items.len();
    let mut step = 1;
    while step <= hi {
        let probe = hi - step;
        if pred(&items[probe]) {
            return probe + 1 + items[probe + 1..hi].partition_point(&pred);
        }
        hi = probe;
        step *= 2;
    }
    items[..hi].partition_point(&pred)
}

/// [`slice::partition_point`], looking from the start first: for a point
/// near the start.
pub fn partition_point_from_start<T>(items: &[T], pred: impl Fn(&T) -> bool) -> usize {
    // `items[..lo]` all satisfy `pred`.
    let mut lo = 0;
    let mut step = 1;
    while lo + step <= items.len() {
        let probe = lo + step - 1;
        if !pred(&items[probe]) {
            return lo + items[lo..probe].partition_point(&pred);
        }
        lo = probe + 1;
        step *= 2;
    }
    lo + items[lo..].partition_point(&pred)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn both_find_what_a_binary_search_finds(
            mut items in proptest::collection::vec(0i64..200, 0..300),
            at in -5i64..210,
        ) {
            items.sort_unstable();
            let expected = items.partition_point(|&t| t < at);
            prop_assert_eq!(partition_point_from_end(&items, |&t| t < at), expected);
            prop_assert_eq!(partition_point_from_start(&items, |&t| t < at), expected);
            let expected = items.partition_point(|&t| t <= at);
            prop_assert_eq!(partition_point_from_end(&items, |&t| t <= at), expected);
            prop_assert_eq!(partition_point_from_start(&items, |&t| t <= at), expected);
        }
    }
}
