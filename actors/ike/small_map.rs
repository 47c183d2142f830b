//! A map of a handful of entries (a peer's child SA pairs: one per protected-network pair, two
//! during a re-key) in one exact-size vector sorted by key. A `BTreeMap` allocates a whole
//! 11-entry node for the first entry (about 600 bytes for a peer's children), which every
//! established tunnel paid (docs/design.md "Per-tunnel memory budget"). Lookups are binary
//! searches; iteration is in key order, as the `BTreeMap`'s was.

#[derive(Debug)]
pub struct SmallMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord + Copy, V> SmallMap<K, V> {
    fn find(&self, k: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(e, _)| e.cmp(k))
    }

    /// Inserts or replaces; returns the replaced value.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            Err(i) => {
                // Exactly one slot more: a vector's first growth would reserve four.
                self.entries.reserve_exact(1);
                self.entries.insert(i, (k, v));
                None
            }
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.find(k).ok()?;
        let (_, v) = self.entries.remove(i);
        self.entries.shrink_to_fit();
        Some(v)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = self.find(k).ok()?;
        Some(&mut self.entries[i].1)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_exact_capacity() {
        let mut m = SmallMap::default();
        assert!(m.is_empty());
        assert_eq!(m.insert(30u32, "c"), None);
        assert_eq!(m.entries.capacity(), 1, "no spare slots for one entry");
        assert_eq!(m.insert(10, "a"), None);
        assert_eq!(m.insert(20, "b"), None);
        assert_eq!(m.insert(20, "B"), Some("b"));
        assert_eq!(m.values().copied().collect::<Vec<_>>(), ["a", "B", "c"]);
        *m.get_mut(&30).unwrap() = "C";
        assert!(m.get_mut(&25).is_none());
        assert_eq!(m.len(), 3);
        assert_eq!(m.remove(&10), Some("a"));
        assert_eq!(m.remove(&10), None);
        assert_eq!(m.entries.capacity(), 2);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), ["B", "C"]);
    }
}
