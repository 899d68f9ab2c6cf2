//! A small LRU of rendered images bounded by their total size in bytes (a tiny one of our own:
//! a map to the entries and an ordered map of last uses; `lru` bounds counts, not bytes).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

/// Rendered images by key (the ETag), least recently used evicted first.
pub(crate) struct Lru {
    capacity: usize,
    used: usize,
    tick: u64,
    entries: HashMap<String, (Bytes, u64)>,
    order: BTreeMap<u64, String>,
}

impl Lru {
    /// A cache holding at most `capacity` bytes (keys and images); 0 keeps nothing.
    pub fn new(capacity: usize) -> Lru {
        Lru {
            capacity,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, key: &str) -> Option<Bytes> {
        self.tick += 1;
        let (value, used) = self.entries.get_mut(key)?;
        let last = std::mem::replace(used, self.tick);
        let key = self
            .order
            .remove(&last)
            .expect("every entry is in the order");
        self.order.insert(self.tick, key);
        Some(value.clone())
    }

    pub fn insert(&mut self, key: String, value: Bytes) {
        let size = key.len() + value.len();
        if size > self.capacity {
            return;
        }
        self.remove(&key);
        self.tick += 1;
        self.used += size;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, self.tick));
        while self.used > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((value, _)) = self.entries.remove(&oldest) {
                self.used -= oldest.len() + value.len();
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((value, used)) = self.entries.remove(key) {
            self.order.remove(&used);
            self.used -= key.len() + value.len();
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(size: usize) -> Bytes {
        Bytes::from(vec![0u8; size])
    }

    #[test]
    fn the_total_size_stays_within_the_bound() {
        let mut lru = Lru::new(300);
        lru.insert("a".into(), image(99));
        lru.insert("b".into(), image(99));
        lru.insert("c".into(), image(99));
        assert_eq!(lru.used(), 300);
        // "a" used recently: "b" goes first.
        assert!(lru.get("a").is_some());
        lru.insert("d".into(), image(99));
        assert!(lru.used() <= 300);
        assert!(lru.get("b").is_none());
        assert!(lru.get("a").is_some() && lru.get("c").is_some() && lru.get("d").is_some());
        // Replacing an entry does not count it twice; too large an entry is not kept.
        lru.insert("d".into(), image(9));
        assert_eq!(lru.used(), 100 + 100 + 10);
        lru.insert("huge".into(), image(1000));
        assert!(lru.get("huge").is_none());
        assert_eq!(lru.used(), 210);
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let mut lru = Lru::new(0);
        lru.insert("a".into(), image(1));
        assert!(lru.get("a").is_none());
        assert_eq!(lru.used(), 0);
    }
}
