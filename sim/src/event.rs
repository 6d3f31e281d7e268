//! Virtual time and what happens at an instant: the simulator's event vocabulary, shared
//! by the engine that runs events, the workload that schedules the first of them and the
//! metrics that measure time.

use veil_proto::message::Message;
use veil_proto::router::PeerOrigin;

/// Nanoseconds of virtual time.
pub type Nanos = u64;

/// What happens at an instant. Nodes are indices into the graph; keys are indices
/// into the inserted blocks.
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
/// scheduled (so a run is deterministic). The heap orders small entries (time, sequence
/// number, slot) and the actions wait in a slab beside it: a pop moves 24 bytes per
/// level rather than a whole action, which halved the loop's share of a run.
#[derive(Default)]
pub struct Queue {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Nanos, u64, u32)>>,
    slots: Vec<Option<Action>>,
    free: Vec<u32>,
    seq: u64,
}

impl Queue {
    /// Schedules `action` at `at`.
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
        self.heap.push(std::cmp::Reverse((at, self.seq, slot)));
    }

    /// When the earliest pending event happens.
    pub fn next_at(&self) -> Option<Nanos> {
        self.heap.peek().map(|e| e.0 .0)
    }

    /// Takes the earliest pending event.
    pub fn pop(&mut self) -> Option<(Nanos, Action)> {
        let std::cmp::Reverse((at, _, slot)) = self.heap.pop()?;
        let action = self.slots[slot as usize].take()?;
        self.free.push(slot);
        Some((at, action))
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
}
