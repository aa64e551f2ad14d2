//! Values by series id, for the maps the write path touches once per
//! series per request (the index's label keys and labels, the head).
//!
//! Series ids are SQLite rowids, handed out one after another from 1 as
//! series first arrive, so a vector indexed by id is dense, and the
//! entries of series that arrive together lie together: a request's
//! series are found by indexing, not by probing a hash table the size of
//! the index, and the next one is usually in the cache line already read.
//! Ids far past the others (rowids SQLite picks at random once the largest
//! is taken, or a long churn of series) go to a hash map instead, so a
//! stray id never makes the vector mostly holes.

use rustc_hash::FxHashMap;

use super::index::SeriesId;

/// A map from series id to `T`.
#[derive(Debug)]
pub struct IdMap<T> {
    dense: Vec<Option<T>>,
    sparse: FxHashMap<SeriesId, T>,
    len: usize,
}

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        Self {
            dense: Vec::new(),
            sparse: FxHashMap::default(),
            len: 0,
        }
    }
}

/// How far past the entries held the vector may grow for a new id.
fn dense_limit(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(1024)
}

impl<T> IdMap<T> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, id: SeriesId) -> Option<usize> {
        usize::try_from(id).ok().filter(|&i| i < self.dense.len())
    }

    /// The entry of `id`.
    pub fn get(&self, id: SeriesId) -> Option<&T> {
        match self.slot(id) {
            Some(i) => self.dense[i].as_ref(),
            None => self.sparse.get(&id),
        }
    }

    /// The entry of `id`, to change.
    pub fn get_mut(&mut self, id: SeriesId) -> Option<&mut T> {
        match self.slot(id) {
            Some(i) => self.dense[i].as_mut(),
            None => self.sparse.get_mut(&id),
        }
    }

    /// Sets the entry of `id`, returning the one it replaces.
    pub fn insert(&mut self, id: SeriesId, value: T) -> Option<T> {
        let old = match self.slot(id) {
            Some(i) => self.dense[i].replace(value),
            None => match usize::try_from(id) {
                Ok(i) if i < dense_limit(self.len) => {
                    self.grow(i);
                    self.dense[i].replace(value)
                }
                _ => self.sparse.insert(id, value),
            },
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Makes the vector reach index `i`, by half its length at least (so
    /// that ids kept aside move in rarely), and moves in the entries kept
    /// aside whose ids it now reaches: an id is in the vector exactly when
    /// the vector reaches it.
    fn grow(&mut self, i: usize) {
        let step = self.dense.len() + self.dense.len() / 2 + 16;
        let len = (i + 1).max(step.min(dense_limit(self.len)));
        self.dense.resize_with(len, || None);
        if !self.sparse.is_empty() {
            let reached: Vec<SeriesId> = self
                .sparse
                .keys()
                .copied()
                .filter(|&id| usize::try_from(id).is_ok_and(|i| i < len))
                .collect();
            for id in reached {
                self.dense[id as usize] = self.sparse.remove(&id);
            }
        }
    }

    /// The entry of `id`, made with `make` if there is none.
    pub fn get_or_insert_with(&mut self, id: SeriesId, make: impl FnOnce() -> T) -> &mut T {
        if self.get(id).is_none() {
            self.insert(id, make());
        }
        self.get_mut(id).expect("just inserted")
    }

    /// Removes the entry of `id`.
    pub fn remove(&mut self, id: SeriesId) -> Option<T> {
        let old = match self.slot(id) {
            Some(i) => self.dense[i].take(),
            None => self.sparse.remove(&id),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Keeps the entries for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(SeriesId, &mut T) -> bool) {
        let mut removed = 0;
        for (i, slot) in self.dense.iter_mut().enumerate() {
            if let Some(value) = slot
                && !keep(i as SeriesId, value)
            {
                *slot = None;
                removed += 1;
            }
        }
        self.sparse.retain(|id, value| {
            let kept = keep(*id, value);
            removed += usize::from(!kept);
            kept
        });
        self.len -= removed;
    }

    /// Every entry: those in the vector in id order, then the others in
    /// no order.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesId, &T)> {
        let dense = self
            .dense
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|value| (i as SeriesId, value)));
        dense.chain(self.sparse.iter().map(|(id, value)| (*id, value)))
    }

    /// Every value, in [`IdMap::iter`]'s order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.iter().map(|(_, value)| value)
    }
}

impl<T> std::ops::Index<SeriesId> for IdMap<T> {
    type Output = T;

    fn index(&self, id: SeriesId) -> &T {
        self.get(id).expect("no entry for this series id")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(SeriesId, u32),
        Remove(SeriesId),
        Append(SeriesId),
        RetainEven,
    }

    /// Ids mostly dense and small, some far past them, some repeated.
    fn id() -> impl Strategy<Value = SeriesId> {
        prop_oneof![
            8 => 0u64..3000,
            1 => 1_000_000u64..1_000_010,
            1 => Just(u64::MAX),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (id(), any::<u32>()).prop_map(|(id, v)| Op::Insert(id, v)),
            3 => id().prop_map(Op::Remove),
            3 => id().prop_map(Op::Append),
            1 => Just(Op::RetainEven),
        ]
    }

    proptest! {
        /// After any operations the map holds what an ordered map given
        /// the same operations holds (the reference).
        #[test]
        fn behaves_as_an_ordered_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut map: IdMap<u32> = IdMap::default();
            let mut reference: BTreeMap<SeriesId, u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(id, v) => {
                        prop_assert_eq!(map.insert(id, v), reference.insert(id, v));
                    }
                    Op::Remove(id) => prop_assert_eq!(map.remove(id), reference.remove(&id)),
                    Op::Append(id) => {
                        *map.get_or_insert_with(id, || 7) += 1;
                        *reference.entry(id).or_insert(7) += 1;
                    }
                    Op::RetainEven => {
                        map.retain(|_, v| *v % 2 == 0);
                        reference.retain(|_, v| *v % 2 == 0);
                    }
                }
                prop_assert_eq!(map.len(), reference.len());
            }
            let mut held: Vec<(SeriesId, u32)> = map.iter().map(|(id, v)| (id, *v)).collect();
            // The vector's part comes first, in id order.
            let in_vector = map.dense.iter().flatten().count();
            let dense: Vec<SeriesId> = held.iter().map(|e| e.0).take(in_vector).collect();
            prop_assert!(dense.windows(2).all(|w| w[0] < w[1]));
            held.sort_unstable();
            let want: Vec<(SeriesId, u32)> = reference.into_iter().collect();
            prop_assert_eq!(held, want);
        }
    }

    /// An id kept aside while it was far is found once the vector has
    /// grown past it.
    #[test]
    fn an_id_kept_aside_is_found_after_the_vector_reaches_it() {
        let mut map = IdMap::default();
        map.insert(1128, 1128);
        assert!(map.dense.len() <= 1128, "kept aside at first");
        for id in 0..1200 {
            *map.get_or_insert_with(id, || 0) += 1;
        }
        assert_eq!(map.get(1128), Some(&1129));
        assert_eq!(map.len(), 1200);
        assert!(map.sparse.is_empty());
    }

    #[test]
    fn far_ids_do_not_grow_the_vector() {
        let mut map = IdMap::default();
        map.insert(1, "a");
        map.insert(5_000_000_000, "far");
        map.insert(u64::MAX, "max");
        assert!(map.dense.len() < 100, "{}", map.dense.len());
        assert_eq!(map[5_000_000_000], "far");
        assert_eq!(map.get(u64::MAX), Some(&"max"));
        assert_eq!(map.len(), 3);
    }
}
