//! Virtual time and what happens at an instant: the simulator's event vocabulary, shared
//! by the engine that runs events, the workload that schedules the first of them and the
//! metrics that measure time.

use veil_proto::message::Message;
use veil_proto::router::PeerOrigin;

/// Nanoseconds of virtual time.
pub type Nanos = u64;

/// What happens at an instant. Nodes are indices into the graph; keys are indices
/// into the inserted blocks.
#[derive(Clone)]
pub enum Action {
    /// A message arrives at `to` from `from`.
    Deliver {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// The message.
        msg: Message,
    },
    /// A node's router timer fires.
    Timer {
        /// The node.
        node: u32,
    },
    /// A random live node inserts key `key`, and the next insert is scheduled (one at a
    /// time, so the heap stays small) while keys below `end` remain.
    Insert {
        /// The key.
        key: u32,
        /// One past the last key of this run of inserts.
        end: u32,
    },
    /// Opennet warm-up: a random live node requests one of the warm-up keys (no record
    /// is kept), and the next warm-up request is scheduled.
    Warmup {
        /// Warm-up requests left after this one.
        left: u32,
    },
    /// Healing: the publisher of `key`, if it is still up, inserts it again (as a
    /// keepalive pass does for a block it finds missing), and the next is scheduled (at
    /// ten times the requests' pace) while keys below `end` remain.
    Reinsert {
        /// The key.
        key: u32,
        /// One past the last key of this pass.
        end: u32,
    },
    /// Opennet: a node comes up knowing only a seed, links to it and announces.
    Bootstrap {
        /// The node.
        node: u32,
    },
    /// Darknet, swapping over the wire: every router stops swapping (the swap phase is
    /// over; the workload then runs on fixed locations, as after offline swapping).
    StopSwaps,
    /// Debugging: report whether a node found its ring neighbours.
    Check {
        /// The node.
        node: u32,
    },
    /// Opennet: a dial from `from` reaches `to`; both sides decide whether to keep it.
    Link {
        /// The dialling node.
        from: u32,
        /// The dialled node.
        to: u32,
        /// Why `from` dialled.
        origin: PeerOrigin,
    },
    /// A random live node requests a key drawn by popularity, and the next request is
    /// scheduled.
    Request {
        /// Request number, in issue order.
        index: u32,
    },
    /// A fraction of all nodes fails at once.
    Fail {
        /// The fraction.
        fraction: f64,
    },
    /// A node leaves (churn).
    Leave {
        /// The node.
        node: u32,
    },
    /// A node comes back and links to its live friends again (churn).
    Join {
        /// The node.
        node: u32,
    },
}

/// The pending events, earliest first and, at one instant, in the order they were
/// scheduled (so a run is deterministic). Time never runs backwards: an event scheduled
/// before the last one taken is due at once, at that one's time.
///
/// A radix heap (Ahuja, Mehlhorn, Orlin and Tarjan): every key is at least the last key
/// taken, so keys can be kept in buckets by the highest bit in which they differ from
/// it, and a pop only ever sorts the lowest non-empty bucket into lower ones. The key is
/// time and sequence number in one `u128`, so ties keep their order. Each entry moves
/// down at most 128 times over its life, with sequential reads and writes, where a
/// binary heap of a million pending events takes twenty cache misses a pop: at 100,000
/// opennet nodes the heap's pop was a quarter of the run. The actions wait in a slab
/// beside the buckets, so sorting moves 24 bytes an entry rather than a whole action.
#[derive(Clone)]
pub struct Queue {
    /// Bucket `i` holds the keys whose highest bit differing from `last` is bit
    /// `i - 1`; bucket 0 the key equal to it.
    buckets: Vec<Vec<(u128, u32)>>,
    /// Bit `i - 1` set when bucket `i` (1..=128) holds anything.
    nonempty: u128,
    /// The key the buckets are relative to: the last key taken, or the earliest
    /// pending one once [`Queue::next_at`] has looked.
    last: u128,
    /// The time of the last event taken: nothing is scheduled before it.
    floor: Nanos,
    len: usize,
    slots: Vec<Option<Action>>,
    free: Vec<u32>,
    seq: u64,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            buckets: (0..=128).map(|_| Vec::new()).collect(),
            nonempty: 0,
            last: 0,
            floor: 0,
            len: 0,
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

/// The bucket of `key` while the last key taken is `last`.
fn bucket(key: u128, last: u128) -> usize {
    (128 - (key ^ last).leading_zeros()) as usize
}

impl Queue {
    /// Schedules `action` at `at` (or at the last event's time, if that is later).
    pub fn push(&mut self, at: Nanos, action: Action) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(action);
                s
            }
            None => {
                self.slots.push(Some(action));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        let at = at.max(self.floor);
        let key = (u128::from(at) << 64) | u128::from(self.seq);
        if key < self.last {
            // Earlier than what `next_at` found (a run stopped there and the next
            // phase schedules before it): sort everything anew relative to this key.
            self.rebase(key);
        }
        self.put(key, slot);
        self.len += 1;
    }

    fn put(&mut self, key: u128, slot: u32) {
        let b = bucket(key, self.last);
        if b > 0 {
            self.nonempty |= 1 << (b - 1);
        }
        self.buckets[b].push((key, slot));
    }

    /// Makes `key`, below every pending key, the one the buckets are relative to.
    fn rebase(&mut self, key: u128) {
        let entries: Vec<(u128, u32)> = self.buckets.iter_mut().flat_map(std::mem::take).collect();
        self.nonempty = 0;
        self.last = key;
        for (k, slot) in entries {
            self.put(k, slot);
        }
    }

    /// Brings the earliest key into bucket 0; false when nothing is pending.
    fn settle(&mut self) -> bool {
        if !self.buckets[0].is_empty() {
            return true;
        }
        if self.nonempty == 0 {
            return false;
        }
        let b = self.nonempty.trailing_zeros() as usize + 1;
        self.nonempty &= !(1 << (b - 1));
        let mut entries = std::mem::take(&mut self.buckets[b]);
        self.last = entries.iter().map(|e| e.0).min().unwrap_or(self.last);
        // Every entry lands in a lower bucket: they all share the bits above b - 1
        // with the new `last`, and bit b - 1 too.
        for &(key, slot) in &entries {
            self.put(key, slot);
        }
        entries.clear();
        self.buckets[b] = entries;
        true
    }

    /// When the earliest pending event happens.
    pub fn next_at(&mut self) -> Option<Nanos> {
        if self.settle() {
            Some((self.last >> 64) as Nanos)
        } else {
            None
        }
    }

    /// Takes the earliest pending event.
    pub fn pop(&mut self) -> Option<(Nanos, Action)> {
        if !self.settle() {
            return None;
        }
        let (key, slot) = self.buckets[0].pop()?;
        self.len -= 1;
        self.floor = (key >> 64) as Nanos;
        let action = self.slots[slot as usize].take()?;
        self.free.push(slot);
        Some(((key >> 64) as Nanos, action))
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(a: &Action) -> u32 {
        match a {
            Action::Timer { node } => *node,
            _ => unreachable!("only timers are queued here"),
        }
    }

    /// Earliest first; ties in the order scheduled, also after slots are reused.
    #[test]
    fn pops_by_time_then_in_schedule_order() {
        let mut q = Queue::default();
        q.push(5, Action::Timer { node: 0 });
        q.push(3, Action::Timer { node: 1 });
        q.push(5, Action::Timer { node: 2 });
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_at(), Some(3));
        let (at, a) = q.pop().unwrap();
        assert_eq!((at, node(&a)), (3, 1));
        // The freed slot is reused by a later event at the same instant as others.
        q.push(5, Action::Timer { node: 3 });
        q.push(4, Action::Timer { node: 4 });
        let order: Vec<(Nanos, u32)> = std::iter::from_fn(|| q.pop())
            .map(|(at, a)| (at, node(&a)))
            .collect();
        assert_eq!(order, vec![(4, 4), (5, 0), (5, 2), (5, 3)]);
        assert!(q.is_empty());
        assert_eq!(q.pop().map(|(at, _)| at), None);
    }

    proptest::proptest! {
        /// Against a reference (a sorted list of (time, order scheduled)): any mix of
        /// pushes, some before the last event taken, and pops gives the same events in
        /// the same order, at the same times.
        #[test]
        fn matches_a_sorted_reference(
            ops in proptest::collection::vec((0u8..3, 0u64..1 << 40), 0..400),
        ) {
            let mut q = Queue::default();
            let mut reference: Vec<(Nanos, u32)> = Vec::new();
            let mut now: Nanos = 0;
            for (i, (op, delay)) in ops.into_iter().enumerate() {
                if op == 2 {
                    // A look without a pop (a run stopping at its end), then pushes.
                    proptest::prop_assert_eq!(q.next_at(), reference.first().map(|w| w.0));
                } else if op == 1 {
                    let want = (!reference.is_empty()).then(|| reference.remove(0));
                    proptest::prop_assert_eq!(q.next_at(), want.map(|w| w.0));
                    let got = q.pop().map(|(at, a)| (at, node(&a)));
                    proptest::prop_assert_eq!(got, want);
                    if let Some((at, _)) = want {
                        now = at;
                    }
                } else {
                    // Mostly later than now, sometimes (delay odd and small) earlier.
                    let at = if delay % 7 == 0 { now.saturating_sub(delay >> 20) } else { now + (delay >> (delay % 41)) };
                    q.push(at, Action::Timer { node: i as u32 });
                    let at = at.max(now);
                    let pos = reference.partition_point(|&(t, _)| t <= at);
                    reference.insert(pos, (at, i as u32));
                }
                proptest::prop_assert_eq!(q.len(), reference.len());
            }
        }
    }
}
