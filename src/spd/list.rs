//! A list that keeps a single element inline.
//!
//! The SPD's lists hold one element in the common case: a policy of the shard has one
//! protected-network pair, a remote block one entry, a spoke's policy one SPD entry. A `Vec`
//! pays a heap block for it, and its first push reserves four elements (320 bytes for one
//! 80-byte index entry): docs/design.md "Per-tunnel memory budget".

use std::ops::{Deref, DerefMut};

/// One element inline, or a vector of any other number (empty: no allocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    /// Appends; the vector, once there is one, grows by exactly one slot.
    pub fn push(&mut self, v: T) {
        *self = match std::mem::take(self) {
            Self::Many(vec) if vec.is_empty() => Self::One(v),
            Self::One(first) => Self::Many(vec![first, v]),
            Self::Many(mut vec) => {
                vec.reserve_exact(1);
                vec.push(v);
                Self::Many(vec)
            }
        };
    }

    /// Keeps the elements for which `keep` is true; a single survivor moves back inline.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut T) -> bool) {
        *self = match std::mem::take(self) {
            Self::One(mut v) => {
                if keep(&mut v) {
                    Self::One(v)
                } else {
                    Self::default()
                }
            }
            Self::Many(mut vec) => {
                vec.retain_mut(keep);
                match vec.pop() {
                    Some(last) if vec.is_empty() => Self::One(last),
                    Some(last) => {
                        vec.push(last);
                        vec.shrink_to_fit();
                        Self::Many(vec)
                    }
                    None => Self::default(),
                }
            }
        };
    }
}

impl<T> From<Vec<T>> for OneOrMany<T> {
    fn from(mut vec: Vec<T>) -> Self {
        match vec.pop() {
            Some(v) if vec.is_empty() => Self::One(v),
            Some(v) => {
                vec.push(v);
                Self::Many(vec)
            }
            None => Self::default(),
        }
    }
}

impl<T> Deref for OneOrMany<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Self::One(v) => std::slice::from_ref(v),
            Self::Many(vec) => vec,
        }
    }
}

impl<T> DerefMut for OneOrMany<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Self::One(v) => std::slice::from_mut(v),
            Self::Many(vec) => vec,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OneOrMany;

    #[test]
    fn one_inline_more_in_a_vector() {
        let mut l = OneOrMany::default();
        assert!(l.is_empty());
        l.push(1);
        assert_eq!(l, OneOrMany::One(1));
        l.push(2);
        l.push(3);
        assert_eq!(&*l, &[1, 2, 3]);
        l.retain(|v| *v != 2);
        assert_eq!(&*l, &[1, 3]);
        l.retain(|v| *v == 3);
        assert_eq!(l, OneOrMany::One(3));
        l[0] = 4;
        l.retain(|v| *v != 4);
        assert!(l.is_empty());
        assert_eq!(OneOrMany::from(vec![7]), OneOrMany::One(7));
        assert_eq!(OneOrMany::from(vec![7, 8]).len(), 2);
        assert!(OneOrMany::<u8>::from(vec![]).is_empty());
    }
}
