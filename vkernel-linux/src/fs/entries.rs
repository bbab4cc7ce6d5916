//! The entries of a directory, in listing order.
//!
//! A directory lists its entries in the order they came: a host directory
//! in the host's own `getdents` order (so `ls -f`, `find` and `tar` see what
//! they see natively), then names made in the overlay in the order they
//! were made; an image directory in archive order. A name keeps its place
//! while it lives (a deleted one stays as a `Gone` slot, see
//! [`super::node::Slot`]), so positions handed to `getdents` stay valid.

use std::collections::{BTreeMap, HashMap};

use super::node::Slot;

/// Name -> slot, iterated in listing order.
#[derive(Clone, Debug, Default)]
pub struct Entries {
    /// Name -> (sequence number, slot).
    map: HashMap<Vec<u8>, (u64, Slot)>,
    /// Sequence number -> name: the listing order.
    order: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl Entries {
    /// No entries.
    pub fn new() -> Entries {
        Entries::default()
    }

    /// Set `name`'s slot: in place if it is there, else at the end.
    pub fn insert(&mut self, name: Vec<u8>, slot: Slot) {
        if let Some(e) = self.map.get_mut(&name) {
            e.1 = slot;
            return;
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, name.clone());
        self.map.insert(name, (seq, slot));
    }

    /// Add `name` at the end unless it is there.
    pub fn insert_absent(&mut self, name: Vec<u8>, slot: Slot) {
        if !self.map.contains_key(&name) {
            self.insert(name, slot);
        }
    }

    /// Forget `name` (the entries after it move up one place).
    pub fn remove(&mut self, name: &[u8]) -> Option<Slot> {
        let (seq, slot) = self.map.remove(name)?;
        self.order.remove(&seq);
        Some(slot)
    }

    /// `name`'s slot.
    pub fn get(&self, name: &[u8]) -> Option<&Slot> {
        self.map.get(name).map(|e| &e.1)
    }

    /// Is `name` there (a `Gone` slot counts)?
    pub fn contains_key(&self, name: &[u8]) -> bool {
        self.map.contains_key(name)
    }

    /// Entries in listing order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Slot)> {
        self.order.values().map(|n| (n, &self.map[n].1))
    }

    /// Slots in listing order.
    pub fn values(&self) -> impl Iterator<Item = &Slot> {
        self.iter().map(|(_, s)| s)
    }

    /// Number of entries (`Gone` slots included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No entries?
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The host listed the directory: its names (with their `Lazy` slots)
    /// in its order come first, each keeping a slot it already has (a node
    /// looked up, a whiteout), then the names only the overlay has, in
    /// their order.
    pub fn merge_host(&mut self, host: Vec<(Vec<u8>, Slot)>) {
        let mut old = std::mem::take(self);
        for (name, slot) in host {
            let slot = old.remove(&name).unwrap_or(slot);
            self.insert_absent(name, slot);
        }
        for (name, slot) in old.iter() {
            self.insert_absent(name.clone(), slot.clone());
        }
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = (&'a Vec<u8>, &'a Slot);
    type IntoIter = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Slot)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &Entries) -> Vec<&[u8]> {
        e.iter().map(|(n, _)| &n[..]).collect()
    }

    #[test]
    fn host_order_first_then_overlay_names() {
        let mut e = Entries::new();
        e.insert(b"looked-up".to_vec(), Slot::Node(7));
        e.insert(b"new".to_vec(), Slot::Node(8));
        e.insert(b"deleted".to_vec(), Slot::Gone);
        e.merge_host(vec![
            (b"z".to_vec(), Slot::Lazy(1, 8)),
            (b"deleted".to_vec(), Slot::Lazy(2, 8)),
            (b"looked-up".to_vec(), Slot::Lazy(3, 8)),
            (b"a".to_vec(), Slot::Lazy(4, 8)),
        ]);
        assert_eq!(
            names(&e),
            [&b"z"[..], b"deleted", b"looked-up", b"a", b"new"]
        );
        assert_eq!(e.get(b"looked-up"), Some(&Slot::Node(7)));
        assert_eq!(e.get(b"deleted"), Some(&Slot::Gone));
        // Replacing keeps the place; new names go last.
        e.insert(b"z".to_vec(), Slot::Gone);
        e.insert(b"b".to_vec(), Slot::Node(9));
        assert_eq!(
            names(&e),
            [&b"z"[..], b"deleted", b"looked-up", b"a", b"new", b"b"]
        );
        assert_eq!(e.remove(b"a"), Some(Slot::Lazy(4, 8)));
        assert_eq!(e.len(), 5);
        assert!(!e.contains_key(b"a"));
    }
}
