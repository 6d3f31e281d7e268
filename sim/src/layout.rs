//! How a document's blocks are laid out, as the client lays them out: which block is the
//! top, an index copy or data, and whether a reader holding some of them can rebuild it.

/// The blocks of one document as the client lays them out (client/src/format.rs, with
/// its shipped defaults): a top block; the data blocks cut into segments of 340, each
/// with `ceil(d × 170 / 340)` Reed–Solomon check blocks and a level-1 index block
/// stored in 3 copies; above more than one segment, a root index block in 3 copies.
/// Key offsets within a document: top, root copies, then per segment its index
/// copies, data and checks.
#[derive(Clone, Debug, PartialEq)]
pub struct DocLayout {
    /// Data blocks (1: the whole document is inline in its top block).
    pub data: usize,
    /// Per segment: (data blocks, check blocks).
    pub segments: Vec<(usize, usize)>,
}

/// What a block is to its document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The top block.
    Top,
    /// A copy of the root index block (documents of more than one segment).
    Root,
    /// A copy of segment `s`'s index block.
    Index(usize),
    /// A data or check block of segment `s`.
    Data(usize),
}

impl DocLayout {
    /// Data blocks per segment.
    pub const SEGMENT: usize = 340;
    /// Check blocks per full segment.
    pub const CHECKS: usize = 170;
    /// Copies of each index block.
    pub const COPIES: usize = 3;
    /// Most segments one root lists.
    pub const FANOUT: usize = 170;

    /// The layout of a document of `data` blocks (1 to 340 × 170).
    pub fn new(data: usize) -> DocLayout {
        let segments = if data <= 1 {
            Vec::new()
        } else {
            (0..data.div_ceil(Self::SEGMENT))
                .map(|s| {
                    let d = (data - s * Self::SEGMENT).min(Self::SEGMENT);
                    (d, (d * Self::CHECKS).div_ceil(Self::SEGMENT))
                })
                .collect()
        };
        DocLayout { data, segments }
    }

    fn root_copies(&self) -> usize {
        if self.segments.len() > 1 {
            Self::COPIES
        } else {
            0
        }
    }

    /// Blocks in all.
    pub fn blocks(&self) -> usize {
        1 + self.root_copies()
            + self
                .segments
                .iter()
                .map(|(d, c)| Self::COPIES + d + c)
                .sum::<usize>()
    }

    /// The role of the block at `offset`.
    pub fn role(&self, offset: usize) -> Role {
        if offset == 0 {
            return Role::Top;
        }
        let mut at = 1 + self.root_copies();
        if offset < at {
            return Role::Root;
        }
        for (s, (d, c)) in self.segments.iter().enumerate() {
            if offset < at + Self::COPIES {
                return Role::Index(s);
            }
            at += Self::COPIES + d + c;
            if offset < at {
                return Role::Data(s);
            }
        }
        Role::Data(self.segments.len().saturating_sub(1))
    }

    /// Whether a reader who got the blocks for which `found(offset)` holds can rebuild
    /// the document: its top block, one copy of every index block, and as many of each
    /// segment's data and check blocks as it has data blocks.
    pub fn fetchable(&self, found: impl Fn(usize) -> bool) -> bool {
        if !found(0) {
            return false;
        }
        let root = self.root_copies();
        if root > 0 && !(1..1 + root).any(&found) {
            return false;
        }
        let mut at = 1 + root;
        for (d, c) in &self.segments {
            let index = (at..at + Self::COPIES).any(&found);
            let have = (at + Self::COPIES..at + Self::COPIES + d + c)
                .filter(|&o| found(o))
                .count();
            if !index || have < *d {
                return false;
            }
            at += Self::COPIES + d + c;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_layouts_match_the_client() {
        // A 5 MiB document: top, 3 index copies, 160 data, 80 checks (the client's
        // keep-alive test counts the same 244).
        let l = DocLayout::new(160);
        assert_eq!(l.blocks(), 244);
        assert_eq!(l.role(0), Role::Top);
        assert_eq!((l.role(1), l.role(3)), (Role::Index(0), Role::Index(0)));
        assert_eq!((l.role(4), l.role(243)), (Role::Data(0), Role::Data(0)));
        assert_eq!(DocLayout::new(1).blocks(), 1);
        // Two segments: a root in 3 copies above two level-1 blocks.
        let l = DocLayout::new(341);
        assert_eq!(l.segments, vec![(340, 170), (1, 1)]);
        assert_eq!(l.blocks(), 1 + 3 + (3 + 340 + 170) + (3 + 1 + 1));
        assert_eq!(l.role(2), Role::Root);
        assert_eq!(l.role(4), Role::Index(0));
        assert_eq!(l.role(1 + 3 + 513), Role::Index(1));
        assert_eq!(l.role(l.blocks() - 1), Role::Data(1));
        // Fetchable: top, one copy of each index block, d of each segment's d + c.
        let l = DocLayout::new(10);
        assert!(l.fetchable(|_| true));
        assert!(!l.fetchable(|o| o != 0));
        assert!(l.fetchable(|o| o != 1 && o != 2));
        assert!(!l.fetchable(|o| !(1..4).contains(&o)));
        assert!(l.fetchable(|o| !(4..9).contains(&o)), "5 of 15 lost");
        assert!(!l.fetchable(|o| !(4..10).contains(&o)), "6 of 15 lost");
    }
}
