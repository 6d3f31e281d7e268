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
    /// Opennet: a node comes up knowing only a seed, links to it and announces.
    Bootstrap {
        /// The node.
        node: u32,
    },
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
