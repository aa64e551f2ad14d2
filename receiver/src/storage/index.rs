//! The in-memory series index: every series' labels by id, a hash lookup
//! from labels to id (for ingest), and postings (label name → value →
//! sorted series ids) to answer label matchers (for queries). It is
//! rebuilt from the `series` table on start and kept in step with it by the
//! writer.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::hash::Hasher;
use std::sync::Arc;

use regex::Regex;
use rustc_hash::{FxHashMap, FxHasher};

use super::id_map::IdMap;

/// Identifier of a series: its rowid in the `series` table.
pub type SeriesId = u64;

/// A series' labels, sorted by name, `__name__` included.
pub type Labels = Arc<[(String, String)]>;

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

/// One label matcher, as in `{job="node", instance=~"gpu.*"}`. A missing
/// label matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Literal value, or the regex source.
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// A matcher; regexes are anchored at both ends, as PromQL's are.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, regex::Error> {
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Regex::new(&format!("^(?s:{value})$"))?),
            _ => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|re| re.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|re| re.is_match(value)),
        }
    }
}

/// A label set flattened into one buffer (see [`flatten`]).
type FlatLabels = Box<[u8]>;

/// Series and postings.
#[derive(Debug, Default)]
pub struct SeriesIndex {
    series: IdMap<Labels>,
    /// Label-set hash → the series with that hash. A second series with
    /// the same 64-bit hash, which practically never happens, goes to
    /// `collided`, so the common entry sits in the map's own slot.
    by_hash: FxHashMap<u64, SeriesId>,
    /// Further series whose hash is already in `by_hash`.
    collided: FxHashMap<u64, Vec<SeriesId>>,
    /// Each series' labels flattened into one buffer: ingest compares
    /// against one contiguous allocation instead of chasing a pointer per
    /// label string, and the next id's lies next to the previous one's.
    keys: IdMap<FlatLabels>,
    postings: FxHashMap<String, BTreeMap<String, Vec<SeriesId>>>,
}

/// Hash of a label set, for the labels → id lookup. Fx, not SipHash: it is
/// on the ingest hot path, and only authenticated senders choose labels.
pub fn hash_labels<S: AsRef<str>>(labels: &[(S, S)]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write_usize(labels.len());
    for (name, value) in labels {
        hasher.write(name.as_ref().as_bytes());
        hasher.write_u8(0xff);
        hasher.write(value.as_ref().as_bytes());
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

impl SeriesIndex {
    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether there are no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The id of the series with exactly these (sorted) labels.
    pub fn lookup<S: AsRef<str>>(&self, hash: u64, labels: &[(S, S)]) -> Option<SeriesId> {
        let id = *self.by_hash.get(&hash)?;
        if self.key_matches(id, labels) {
            return Some(id);
        }
        self.collided
            .get(&hash)?
            .iter()
            .copied()
            .find(|&id| self.key_matches(id, labels))
    }

    /// The series after `previous` (id + 1) if it has exactly these labels.
    ///
    /// Senders repeat their series in the same order in every request, and
    /// ids are handed out in the order series first arrive, so the series
    /// after one in a request is most often the next id: checking it first
    /// costs one comparison against memory next to the previous one's,
    /// where [`SeriesIndex::lookup`] hashes the labels and probes a table
    /// the size of the index.
    pub fn next_after<S: AsRef<str>>(
        &self,
        previous: SeriesId,
        labels: &[(S, S)],
    ) -> Option<SeriesId> {
        let id = previous.checked_add(1)?;
        self.key_matches(id, labels).then_some(id)
    }

    fn key_matches<S: AsRef<str>>(&self, id: SeriesId, labels: &[(S, S)]) -> bool {
        self.keys
            .get(id)
            .is_some_and(|key| key_matches(key, labels))
    }

    /// Labels of a series.
    pub fn labels(&self, id: SeriesId) -> Option<&Labels> {
        self.series.get(id)
    }

    /// All series ids.
    pub fn ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.series.iter().map(|(id, _)| id)
    }

    /// Adds a series. Ids must be new.
    pub fn insert(&mut self, id: SeriesId, labels: Labels) {
        self.insert_key(hash_labels(&labels), id, flatten(&labels));
        for (name, value) in labels.iter() {
            let list = self
                .postings
                .entry(name.clone())
                .or_default()
                .entry(value.clone())
                .or_default();
            // Ids only grow, so appending keeps the list sorted; restore
            // order if an older id arrives late (index rebuild).
            if list.last().is_some_and(|last| *last > id) {
                let at = list.partition_point(|x| *x < id);
                list.insert(at, id);
            } else {
                list.push(id);
            }
        }
        self.series.insert(id, labels);
    }

    fn insert_key(&mut self, hash: u64, id: SeriesId, key: FlatLabels) {
        match self.by_hash.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(id);
            }
            Entry::Occupied(_) => self.collided.entry(hash).or_default().push(id),
        }
        self.keys.insert(id, key);
    }

    fn remove_key(&mut self, hash: u64, id: SeriesId) {
        self.keys.remove(id);
        let Entry::Occupied(mut slot) = self.by_hash.entry(hash) else {
            return;
        };
        let Some(others) = self.collided.get_mut(&hash) else {
            if *slot.get() == id {
                slot.remove();
            }
            return;
        };
        if *slot.get() == id {
            // The slot stays taken while the hash has series.
            *slot.get_mut() = others.pop().expect("collided lists are never empty");
        } else {
            others.retain(|x| *x != id);
        }
        if others.is_empty() {
            self.collided.remove(&hash);
        }
    }

    /// Removes a series (retention dropped its last sample).
    pub fn remove(&mut self, id: SeriesId) {
        let Some(labels) = self.series.remove(id) else {
            return;
        };
        self.remove_key(hash_labels(&labels), id);
        for (name, value) in labels.iter() {
            if let Some(values) = self.postings.get_mut(name) {
                if let Some(list) = values.get_mut(value) {
                    list.retain(|x| *x != id);
                    if list.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.postings.remove(name);
                }
            }
        }
    }

    /// Ids of the series matching every matcher, ascending.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        // Start from the most selective postings list: a matcher that cannot
        // match the empty string selects only series having that label.
        let mut candidates: Option<Vec<SeriesId>> = None;
        for matcher in matchers.iter().filter(|m| !m.matches("")) {
            let ids = self.postings_matching(matcher);
            candidates = Some(match candidates {
                None => ids,
                Some(current) => intersect(&current, &ids),
            });
        }
        let mut ids = candidates.unwrap_or_else(|| {
            let mut all: Vec<SeriesId> = self.ids().collect();
            all.sort_unstable();
            all
        });
        // Matchers that also match an absent label are checked per series.
        let rest: Vec<&Matcher> = matchers.iter().filter(|m| m.matches("")).collect();
        if !rest.is_empty() {
            ids.retain(|id| {
                let labels = &self.series[*id];
                rest.iter().all(|m| {
                    let value = labels
                        .iter()
                        .find(|(n, _)| *n == m.name)
                        .map_or("", |(_, v)| v.as_str());
                    m.matches(value)
                })
            });
        }
        ids
    }

    /// Union of the postings of every value of `matcher.name` it matches.
    fn postings_matching(&self, matcher: &Matcher) -> Vec<SeriesId> {
        let Some(values) = self.postings.get(&matcher.name) else {
            return Vec::new();
        };
        if matcher.op == MatchOp::Equal {
            return values.get(&matcher.value).cloned().unwrap_or_default();
        }
        let mut ids: Vec<SeriesId> = values
            .iter()
            .filter(|(value, _)| matcher.matches(value))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Distinct label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.postings.keys().cloned().collect();
        names.sort();
        names
    }

    /// Distinct values of one label, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .get(name)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Labels as one buffer: name, 0xff, value, 0xff, … (0xff never occurs in
/// UTF-8, so the encoding is unambiguous).
fn flatten(labels: &[(String, String)]) -> FlatLabels {
    let mut key = Vec::with_capacity(labels.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (name, value) in labels {
        key.extend_from_slice(name.as_bytes());
        key.push(0xff);
        key.extend_from_slice(value.as_bytes());
        key.push(0xff);
    }
    key.into_boxed_slice()
}

/// Whether `labels` flatten to `key`, without building the buffer.
fn key_matches<S: AsRef<str>>(key: &[u8], labels: &[(S, S)]) -> bool {
    let mut rest = key;
    for (name, value) in labels {
        for part in [name.as_ref().as_bytes(), value.as_ref().as_bytes()] {
            match rest
                .strip_prefix(part)
                .and_then(|r| r.strip_prefix(&[0xff]))
            {
                Some(r) => rest = r,
                None => return false,
            }
        }
    }
    rest.is_empty()
}

fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn index() -> SeriesIndex {
        let mut index = SeriesIndex::default();
        index.insert(
            1,
            labels(&[("__name__", "up"), ("instance", "a"), ("job", "node")]),
        );
        index.insert(
            2,
            labels(&[("__name__", "up"), ("instance", "b"), ("job", "dcmon")]),
        );
        index.insert(3, labels(&[("__name__", "node_load1"), ("instance", "a")]));
        index
    }

    /// Series whose hashes collide are each found, and removing any of
    /// them, in any order, keeps the others found.
    #[test]
    fn colliding_hashes_keep_every_series() {
        let sets: Vec<Labels> = (0..4)
            .map(|i| labels(&[("__name__", "up"), ("instance", &format!("h{i}"))]))
            .collect();
        for removal in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]] {
            let mut index = SeriesIndex::default();
            // One hash for all: the shape a 64-bit collision would make.
            for (id, set) in sets.iter().enumerate() {
                index.insert_key(7, id as SeriesId, flatten(set));
            }
            let mut present: Vec<usize> = (0..sets.len()).collect();
            for gone in removal {
                for &id in &present {
                    assert_eq!(index.lookup(7, &sets[id]), Some(id as SeriesId));
                }
                index.remove_key(7, gone as SeriesId);
                present.retain(|&id| id != gone);
                assert_eq!(index.lookup(7, &sets[gone]), None, "{removal:?}");
            }
            assert!(index.by_hash.is_empty() && index.collided.is_empty());
            assert!(index.keys.is_empty());
        }
    }

    /// The next id is found only when it holds exactly these labels, and
    /// `lookup` (the reference) agrees with it everywhere, through removals
    /// and ids far past the others.
    #[test]
    fn the_next_id_is_found_only_for_its_own_labels() {
        let set = |i: u64| labels(&[("__name__", "up"), ("instance", &format!("h{i}"))]);
        let mut ids: Vec<SeriesId> = (1..=40).collect();
        // Far past the others: kept aside, still found.
        ids.extend([5_000_000, 5_000_001]);
        let mut index = SeriesIndex::default();
        for &id in &ids {
            index.insert(id, set(id));
        }
        for gone in [7, 8, 40, 5_000_000] {
            index.remove(gone);
        }
        for id in (0..=45).chain(4_999_999..=5_000_002) {
            let labels = set(id);
            let by_hash = index.lookup(hash_labels(&labels), &labels);
            assert_eq!(
                by_hash.is_some(),
                ids.contains(&id) && ![7, 8, 40, 5_000_000].contains(&id),
                "{id}"
            );
            if id > 0 {
                assert_eq!(index.next_after(id - 1, &labels), by_hash, "{id}");
            }
            // Another series' labels are never taken for the next id's.
            assert_eq!(index.next_after(id, &labels), None, "{id}");
        }
    }

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(name, op, value).unwrap()
    }

    #[test]
    fn selects_with_all_four_matchers() {
        let index = index();
        assert_eq!(
            index.select(&[m("__name__", MatchOp::Equal, "up")]),
            vec![1, 2]
        );
        assert_eq!(
            index.select(&[
                m("__name__", MatchOp::Equal, "up"),
                m("job", MatchOp::NotEqual, "node")
            ]),
            vec![2]
        );
        assert_eq!(
            index.select(&[
                m("instance", MatchOp::Regex, "a|b"),
                m("__name__", MatchOp::NotRegex, "up")
            ]),
            vec![3]
        );
        // Regexes are anchored: "a" does not match "ab".
        assert_eq!(
            index.select(&[m("instance", MatchOp::Regex, "")]),
            Vec::<SeriesId>::new()
        );
        // An absent label matches `=""` and `!="x"`.
        assert_eq!(index.select(&[m("job", MatchOp::Equal, "")]), vec![3]);
        assert_eq!(
            index.select(&[m("job", MatchOp::NotEqual, "node")]),
            vec![2, 3]
        );
    }

    #[test]
    fn lookup_and_remove() {
        let mut index = index();
        let l = labels(&[("__name__", "up"), ("instance", "b"), ("job", "dcmon")]);
        assert_eq!(index.lookup(hash_labels(&l), &l), Some(2));
        index.remove(2);
        assert_eq!(index.lookup(hash_labels(&l), &l), None);
        assert_eq!(index.label_values("job"), vec!["node"]);
        assert_eq!(index.len(), 2);
    }
}
