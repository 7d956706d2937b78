//! A slab: connections live in a vector and are named by their index (the mio token), and
//! freed indices are reused, so lookups are O(1) and tokens stay small.

#[derive(Debug)]
pub(super) struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its index.
    pub(super) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(value);
                i
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.entries.get_mut(i)?.as_mut()
    }

    pub(super) fn remove(&mut self, i: usize) -> Option<T> {
        let value = self.entries.get_mut(i)?.take()?;
        self.free.push(i);
        self.len -= 1;
        if self.len == 0 {
            // Everything closed: forget the holes, and give a large table back.
            self.free.clear();
            self.entries.clear();
            if self.entries.capacity() > 1024 {
                self.entries = Vec::new();
                self.free = Vec::new();
            }
        }
        Some(value)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The indices in use, as a snapshot (the caller may remove while walking it).
    pub(super) fn keys(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_freed_indices() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!((a, b), (0, 1));
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None, "double remove");
        assert_eq!(s.insert("c"), a, "the hole is reused");
        assert_eq!(s.get_mut(b).copied(), Some("b"));
        assert_eq!(s.keys(), vec![0, 1]);
        assert_eq!(s.len(), 2);
        s.remove(0);
        s.remove(1);
        assert!(s.is_empty());
        assert_eq!(s.insert("d"), 0, "an empty slab starts over");
        assert_eq!(s.get_mut(7), None);
    }
}
