//! Wire messages: the postcard-encoded enum that nodes speak inside Noise transport
//! messages.
//!
//! A message carries no originator: requests name a key, a hops-to-live and a random
//! request id, nothing about where they started. [`Message::decode`] treats its input as
//! hostile: it bounds the frame size before anything else, every collection is bounded
//! before it is allocated, and any bytes at all give a value or an error, never a panic.

use crate::block::Block;
use crate::keys::{KeyParseError, NodeKey, RoutingKey};
use crate::ring::Location;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// The protocol version spoken in [`Hello`]. Version 2: inserts carry their replica
/// count and how many nodes stored them so far. Version 3: [`Message::Offer`]. Version 4:
/// darknet location swapping ([`Message::SwapRequest`], [`Message::SwapCommit`],
/// [`Message::SwapReveal`], [`Message::LocationChanged`]). Version 5: the anonymity
/// walk ([`Message::Walk`], [`Message::InsertWalk`]).
pub const PROTOCOL_VERSION: u16 = 5;

/// Most nodes one insert is stored on, whatever its originator asks.
pub const MAX_REPLICAS: u8 = 16;

/// Largest plaintext a Noise transport message can carry (65,535 minus the 16-byte tag).
pub const MAX_MESSAGE_LEN: usize = 65_535 - 16;

/// Most peer addresses one [`Message::PeerInfo`] may carry.
pub const MAX_PEER_INFO: usize = 64;

/// Most locations one [`Message::Neighbours`] may carry.
pub const MAX_NEIGHBOURS: usize = 64;

/// A random request id. Loops are detected by it; it says nothing about the originator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req:{:016x}", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Hops-to-live: how many more nodes a request or insert may visit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Htl(pub u8);

impl Htl {
    /// The default maximum.
    pub const DEFAULT_MAX: Htl = Htl(18);
}

/// The first message on every link, each way.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// The sender's ring location.
    pub location: Location,
    /// The TCP port the sender listens on (0 if it does not listen).
    pub listen_port: u16,
}

/// A node's address: its static key and where it listens, as `--peer` takes it.
///
/// Text form: `<key>@<ip>:<port>`, the key in base64url (as Lightning writes
/// `pubkey@host:port`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct PeerAddress {
    /// The node's static X25519 public key.
    pub key: NodeKey,
    /// The node's listening socket address.
    pub addr: SocketAddr,
}

/// Why a peer address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerAddressError {
    /// No `@` between key and socket address.
    #[error("a peer address is <key>@<ip>:<port>; no '@' found")]
    MissingAt,
    /// The key part is malformed.
    #[error("bad node key: {0}")]
    BadKey(KeyParseError),
    /// The socket address part is malformed.
    #[error("bad socket address {0:?}: expected <ip>:<port>")]
    BadSocketAddr(String),
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.key, self.addr)
    }
}

impl FromStr for PeerAddress {
    type Err = PeerAddressError;
    fn from_str(s: &str) -> Result<PeerAddress, PeerAddressError> {
        let (key, addr) = s
            .trim()
            .split_once('@')
            .ok_or(PeerAddressError::MissingAt)?;
        Ok(PeerAddress {
            key: key.parse().map_err(PeerAddressError::BadKey)?,
            addr: addr
                .parse()
                .map_err(|_| PeerAddressError::BadSocketAddr(addr.to_string()))?,
        })
    }
}

/// A list that refuses, while decoding, to grow past `N` entries.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct BoundedVec<T, const N: usize>(Vec<T>);

impl<T, const N: usize> BoundedVec<T, N> {
    /// Wraps `items`, or gives them back if there are more than `N`.
    pub fn new(items: Vec<T>) -> Result<Self, Vec<T>> {
        if items.len() > N {
            Err(items)
        } else {
            Ok(BoundedVec(items))
        }
    }

    /// The entries.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// The entries, owned.
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for BoundedVec<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for V<T, N> {
            type Value = BoundedVec<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {N} entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                if seq.size_hint().is_some_and(|n| n > N) {
                    return Err(serde::de::Error::invalid_length(
                        seq.size_hint().unwrap_or(0),
                        &self,
                    ));
                }
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if out.len() == N {
                        return Err(serde::de::Error::invalid_length(N + 1, &self));
                    }
                    out.push(item);
                }
                Ok(BoundedVec(out))
            }
        }
        d.deserialize_seq(V::<T, N>(std::marker::PhantomData))
    }
}

/// Everything nodes say to each other.
///
/// Variant order is part of the wire format (postcard encodes the index): append only.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Message {
    /// First message each way on a link.
    Hello(Hello),
    /// Asks for the block under `key`.
    Request {
        /// Random id, for loop detection and matching replies.
        id: RequestId,
        /// The block wanted.
        key: RoutingKey,
        /// Hops left.
        htl: Htl,
    },
    /// Carries a block towards the nodes closest to its key.
    Insert {
        /// Random id.
        id: RequestId,
        /// The block's routing key (the receiver verifies the block against it).
        key: RoutingKey,
        /// Hops left. Once the insert is being stored (`stored > 0`) the replica count,
        /// not HTL, bounds the rest of its walk, and HTL stays as it was.
        htl: Htl,
        /// How many nodes near the key should store the block (the originator's choice,
        /// capped by every receiver at [`MAX_REPLICAS`]).
        replicas: u8,
        /// How many nodes on this path already store it: 0 while the insert still
        /// approaches the key.
        stored: u8,
        /// The block.
        block: Block,
    },
    /// The answer to a request: the block, travelling back along the request's path.
    Data {
        /// The request answered.
        id: RequestId,
        /// The block (verified by every node against the key it asked for).
        block: Block,
    },
    /// The request ran out of hops without finding the block. Ends the request.
    DataNotFound {
        /// The request.
        id: RequestId,
    },
    /// The sender ran out of peers to try with hops left; the receiver may try another.
    RouteNotFound {
        /// The request or insert.
        id: RequestId,
        /// Hops still left when the sender gave up.
        htl: Htl,
    },
    /// The sender is already handling this id: the request has looped.
    RejectedLoop {
        /// The request or insert.
        id: RequestId,
    },
    /// The sender is too busy; back off and try another peer.
    RejectedOverload {
        /// The request or insert.
        id: RequestId,
    },
    /// The insert has run its course and the block is stored.
    InsertReply {
        /// The insert.
        id: RequestId,
    },
    /// Keepalive probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Addresses of other nodes, for finding peers.
    PeerInfo {
        /// At most [`MAX_PEER_INFO`] entries.
        peers: BoundedVec<PeerAddress, MAX_PEER_INFO>,
    },
    /// Opennet: a node announces itself. Routed greedily towards `target` (the
    /// newcomer's own location); nodes on the way that want a peer answer with
    /// [`Message::AnnounceReply`], and so do the ring neighbours of the target.
    Announce {
        /// Random id, for loop detection and matching replies.
        id: RequestId,
        /// The location the newcomer took.
        target: Location,
        /// Where the newcomer can be dialled.
        address: PeerAddress,
        /// Hops left.
        htl: Htl,
    },
    /// Opennet: a node that would link to an announcing newcomer, travelling back along
    /// the announcement's path.
    AnnounceReply {
        /// The announcement answered.
        id: RequestId,
        /// Where the offered node can be dialled.
        address: PeerAddress,
        /// Its ring location, so a full newcomer can tell a ring neighbour (worth a
        /// replacement) from any other offer.
        location: Location,
    },
    /// Opennet path folding: after `Data`, the address of a node offered as a peer to
    /// the nodes on the request's return path (the data source's, or a relay's own).
    FoldOffer {
        /// The request that succeeded.
        id: RequestId,
        /// Where the offered node can be dialled.
        address: PeerAddress,
    },
    /// The answer to an insert's replica walk that reached a node already on the insert's
    /// approach path: that node now stores the block too, and the sender counts it as a
    /// copy and goes on (instead of `RejectedLoop`, which counts nothing).
    Stored {
        /// The insert.
        id: RequestId,
    },
    /// The sender's routable peers' locations (friend-of-a-friend routing): the receiver
    /// may route through the sender to a key one of them is close to. Sent when the
    /// sender's peers change, at most once a second.
    Neighbours {
        /// At most [`MAX_NEIGHBOURS`] locations.
        locations: BoundedVec<Location, MAX_NEIGHBOURS>,
    },
    /// A block that the receiver asked the sender for recently and did not get: it has
    /// arrived at the sender since (the failure table's offer). The receiver takes it
    /// only if it asked the sender for that key itself, and verifies it.
    Offer {
        /// The block's routing key.
        key: RoutingKey,
        /// The block.
        block: Block,
    },
    /// Darknet location swapping: a swap looking for a partner, walking at random for
    /// `hops` more hops. It carries the initiator's commitment
    /// ([`crate::swap::commit`]) and nothing that names the initiator.
    SwapRequest {
        /// Random id: relays pass the swap's other messages along the walk by it.
        id: RequestId,
        /// Hops left; the node that receives it with 1 (or has no other peer) is the
        /// partner.
        hops: u8,
        /// The initiator's commitment to its nonce, location and peer locations.
        commitment: [u8; 32],
    },
    /// The partner's commitment, travelling back to the initiator.
    SwapCommit {
        /// The swap.
        id: RequestId,
        /// The partner's commitment.
        commitment: [u8; 32],
    },
    /// One end's reveal (the initiator's first, then the partner's), checked by the other
    /// end against the commitment it received; both then decide alike.
    SwapReveal {
        /// The swap.
        id: RequestId,
        /// The nonce committed to.
        nonce: [u8; 32],
        /// The sender's location.
        location: Location,
        /// Its peers' locations, at most [`MAX_NEIGHBOURS`].
        peers: BoundedVec<Location, MAX_NEIGHBOURS>,
    },
    /// The sender has moved to `location` (it swapped): the receiver routes by the new
    /// one.
    LocationChanged {
        /// The sender's new location.
        location: Location,
    },
    /// A request on its anonymity walk: passed to a peer picked by the tunnel (not by
    /// the key) until some node on the way ends the walk and routes it greedily with a
    /// full HTL, as if it were its own. Replies are those of [`Message::Request`].
    Walk {
        /// Random id, kept for the whole route (loop detection, replies).
        id: RequestId,
        /// The block wanted.
        key: RoutingKey,
        /// The tunnel, as this hop names it: every request of one tunnel takes the same
        /// walk, and each hop renames it for the next.
        tunnel: u64,
    },
    /// An insert on its anonymity walk (as [`Message::Walk`]); the node that ends the
    /// walk inserts it from there at full HTL. Replies are those of [`Message::Insert`].
    InsertWalk {
        /// Random id.
        id: RequestId,
        /// The block's routing key (the receiver verifies the block against it).
        key: RoutingKey,
        /// The tunnel, as this hop names it.
        tunnel: u64,
        /// Nodes near the key the block is to be stored on.
        replicas: u8,
        /// The block.
        block: Block,
    },
}

/// Why a message could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Frame larger than [`MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    TooLarge(usize),
    /// The bytes are not a valid message.
    #[error("undecodable message: {0}")]
    Malformed(String),
    /// Valid message followed by extra bytes.
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
}

impl Message {
    /// Encodes the message into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }

    /// Appends the encoded message to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let bytes =
            postcard::to_extend(self, std::mem::take(buf)).expect("encoding to a Vec cannot fail");
        *buf = bytes;
    }

    /// Decodes one message that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(MessageError::TooLarge(bytes.len()));
        }
        let (msg, rest) = postcard::take_from_bytes::<Message>(bytes)
            .map_err(|e| MessageError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(MessageError::Trailing(rest.len()));
        }
        Ok(msg)
    }

    /// The request id this message belongs to, if it is part of a request or insert.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Message::Request { id, .. }
            | Message::Insert { id, .. }
            | Message::Data { id, .. }
            | Message::DataNotFound { id }
            | Message::RouteNotFound { id, .. }
            | Message::RejectedLoop { id }
            | Message::RejectedOverload { id }
            | Message::InsertReply { id }
            | Message::Stored { id }
            | Message::Walk { id, .. }
            | Message::InsertWalk { id, .. } => Some(*id),
            Message::Hello(_)
            | Message::Ping { .. }
            | Message::Pong { .. }
            | Message::PeerInfo { .. }
            | Message::Announce { .. }
            | Message::AnnounceReply { .. }
            | Message::FoldOffer { .. }
            | Message::Neighbours { .. }
            | Message::Offer { .. }
            | Message::SwapRequest { .. }
            | Message::SwapCommit { .. }
            | Message::SwapReveal { .. }
            | Message::LocationChanged { .. } => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Request { .. } => "request",
            Message::Insert { .. } => "insert",
            Message::Data { .. } => "data",
            Message::DataNotFound { .. } => "data_not_found",
            Message::RouteNotFound { .. } => "route_not_found",
            Message::RejectedLoop { .. } => "rejected_loop",
            Message::RejectedOverload { .. } => "rejected_overload",
            Message::InsertReply { .. } => "insert_reply",
            Message::Stored { .. } => "stored",
            Message::Neighbours { .. } => "neighbours",
            Message::Offer { .. } => "offer",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::PeerInfo { .. } => "peer_info",
            Message::Announce { .. } => "announce",
            Message::AnnounceReply { .. } => "announce_reply",
            Message::FoldOffer { .. } => "fold_offer",
            Message::SwapRequest { .. } => "swap_request",
            Message::SwapCommit { .. } => "swap_commit",
            Message::SwapReveal { .. } => "swap_reveal",
            Message::LocationChanged { .. } => "location_changed",
            Message::Walk { .. } => "walk",
            Message::InsertWalk { .. } => "insert_walk",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn addr() -> PeerAddress {
        PeerAddress {
            key: NodeKey([9; 32]),
            addr: "127.0.0.1:4100".parse().unwrap(),
        }
    }

    /// Frozen encodings: a change here breaks every deployed node.
    #[test]
    fn vectors() {
        let cases: Vec<(Message, &str)> = vec![
            (
                Message::Hello(Hello { version: 1, location: Location(0x0102), listen_port: 4100 }),
                "000182028420",
            ),
            (
                Message::Request { id: RequestId(5), key: RoutingKey([0xAA; 32]), htl: Htl(18) },
                "0105aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa12",
            ),
            (Message::DataNotFound { id: RequestId(300) }, "04ac02"),
            (Message::RouteNotFound { id: RequestId(1), htl: Htl(3) }, "050103"),
            (Message::RejectedLoop { id: RequestId(1) }, "0601"),
            (Message::RejectedOverload { id: RequestId(1) }, "0701"),
            (Message::InsertReply { id: RequestId(1) }, "0801"),
            (Message::Ping { nonce: 7 }, "0907"),
            (Message::Pong { nonce: 7 }, "0a07"),
            (
                Message::PeerInfo { peers: BoundedVec::new(vec![addr()]).unwrap() },
                "0b010909090909090909090909090909090909090909090909090909090909090909007f0000018420",
            ),
            (
                Message::Announce { id: RequestId(2), target: Location(0x0102), address: addr(), htl: Htl(18) },
                "0c0282020909090909090909090909090909090909090909090909090909090909090909007f000001842012",
            ),
            (
                Message::AnnounceReply { id: RequestId(2), address: addr(), location: Location(0x0102) },
                "0d020909090909090909090909090909090909090909090909090909090909090909007f00000184208202",
            ),
            (
                Message::FoldOffer { id: RequestId(2), address: addr() },
                "0e020909090909090909090909090909090909090909090909090909090909090909007f0000018420",
            ),
            (Message::Stored { id: RequestId(3) }, "0f03"),
            (
                Message::Neighbours { locations: BoundedVec::new(vec![Location(1), Location(0x0102)]).unwrap() },
                "1002018202",
            ),
            (
                Message::SwapRequest { id: RequestId(2), hops: 6, commitment: [1; 32] },
                "120206",
            ),
            (Message::SwapCommit { id: RequestId(2), commitment: [3; 32] }, "1302"),
            (
                Message::SwapReveal {
                    id: RequestId(2),
                    nonce: [4; 32],
                    location: Location(0x0102),
                    peers: BoundedVec::new(vec![Location(1)]).unwrap(),
                },
                "1402",
            ),
            (Message::LocationChanged { location: Location(0x0102) }, "158202"),
            (
                Message::Walk { id: RequestId(5), key: RoutingKey([0xAA; 32]), tunnel: 300 },
                "1605aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac02",
            ),
        ];
        // The 32-byte commitments and nonces, spelt out.
        let (ones, threes, fours) = ("01".repeat(32), "03".repeat(32), "04".repeat(32));
        let cases: Vec<(Message, String)> = cases
            .into_iter()
            .map(|(m, e)| {
                let full = match &m {
                    Message::SwapRequest { .. } => format!("{e}{ones}"),
                    Message::SwapCommit { .. } => format!("{e}{threes}"),
                    Message::SwapReveal { .. } => format!("{e}{fours}82020101"),
                    _ => e.to_string(),
                };
                (m, full)
            })
            .collect();
        for (msg, expected) in cases {
            assert_eq!(hex(&msg.encode()), expected, "{msg:?}");
            assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
        }
    }

    #[test]
    fn block_messages_fit_one_noise_frame() {
        let (b, keys) = block::encode(&[1; block::MAX_PAYLOAD]).unwrap();
        let insert = Message::Insert {
            id: RequestId(u64::MAX),
            key: keys.routing,
            htl: Htl(255),
            replicas: 255,
            stored: 255,
            block: b.clone(),
        };
        // An insert's header is frozen too: id, key, HTL, replicas, stored, then the block.
        let small = Message::Insert {
            id: RequestId(5),
            key: RoutingKey([0xAA; 32]),
            htl: Htl(18),
            replicas: 5,
            stored: 1,
            block: b.clone(),
        }
        .encode();
        assert_eq!(
            hex(&small[..37]),
            "0205aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa120501"
        );
        let enc = insert.encode();
        assert!(enc.len() <= MAX_MESSAGE_LEN, "{}", enc.len());
        // An insert's walk: tag 0x17, id, key, tunnel, replicas, then the block.
        let walk = Message::InsertWalk {
            id: RequestId(u64::MAX),
            key: RoutingKey([0xAA; 32]),
            tunnel: u64::MAX,
            replicas: 255,
            block: b.clone(),
        };
        let walk_enc = walk.encode();
        assert!(walk_enc.len() <= MAX_MESSAGE_LEN, "{}", walk_enc.len());
        assert_eq!(Message::decode(&walk_enc).unwrap(), walk);
        let small_walk = Message::InsertWalk {
            id: RequestId(5),
            key: RoutingKey([0xAA; 32]),
            tunnel: 300,
            replicas: 7,
            block: b.clone(),
        }
        .encode();
        assert_eq!(
            hex(&small_walk[..37]),
            "1705aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac0207"
        );
        // An offer: tag 0x11, the key, then the block.
        let offer = Message::Offer {
            key: RoutingKey([0xAA; 32]),
            block: b.clone(),
        }
        .encode();
        assert_eq!(
            hex(&offer[..33]),
            "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert!(offer.len() <= MAX_MESSAGE_LEN);
        assert_eq!(Message::decode(&offer).unwrap().kind(), "offer");
        assert_eq!(Message::decode(&enc).unwrap(), insert);
        // A block's length prefix and payload are frozen too.
        let data = Message::Data {
            id: RequestId(1),
            block: b,
        }
        .encode();
        assert_eq!(hex(&data[..5]), "0301948002");
        assert_eq!(data.len(), 5 + block::BLOCK_LEN);
    }

    #[test]
    fn rejects_hostile_frames() {
        assert_eq!(
            Message::decode(&vec![0; MAX_MESSAGE_LEN + 1]),
            Err(MessageError::TooLarge(MAX_MESSAGE_LEN + 1))
        );
        assert!(matches!(
            Message::decode(&[]),
            Err(MessageError::Malformed(_))
        ));
        assert!(matches!(
            Message::decode(&[0xff]),
            Err(MessageError::Malformed(_))
        ));
        assert_eq!(
            Message::decode(&[0x09, 0x07, 0x00]),
            Err(MessageError::Trailing(1))
        );
        // A block of the wrong length.
        assert!(matches!(
            Message::decode(&[0x03, 0x01, 0x02, 0xAA, 0xBB]),
            Err(MessageError::Malformed(_))
        ));
        // A peer list that claims more entries than allowed fails before allocating.
        assert!(matches!(
            Message::decode(&[0x0b, 0xff, 0xff, 0x03]),
            Err(MessageError::Malformed(_))
        ));
        let too_many = Message::PeerInfo {
            peers: BoundedVec(vec![addr(); MAX_PEER_INFO + 1]),
        }
        .encode();
        assert!(matches!(
            Message::decode(&too_many),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn encode_into_appends_what_encode_makes() {
        // The link encodes into a reused buffer that already holds a frame header.
        let msg = Message::Request {
            id: RequestId(7),
            key: RoutingKey([0xAA; 32]),
            htl: Htl(18),
        };
        let mut buf = vec![1, 2, 3];
        msg.encode_into(&mut buf);
        assert_eq!(buf[..3], [1, 2, 3]);
        assert_eq!(buf[3..], msg.encode()[..]);
    }

    #[test]
    fn request_ids_print_as_sixteen_hex_digits() {
        // Logs and traces quote ids this way; operators match them across nodes.
        assert_eq!(format!("{:?}", RequestId(0xab)), "req:00000000000000ab");
        assert_eq!(RequestId(u64::MAX).to_string(), "ffffffffffffffff");
    }

    #[test]
    fn limits_sit_exactly_at_their_bounds() {
        // Noise carries at most 65,535 bytes, 16 of them the tag: one byte more than
        // that is refused before anything is parsed.
        assert_eq!(
            Message::decode(&vec![0; 65_520]),
            Err(MessageError::TooLarge(65_520))
        );
        assert!(!matches!(
            Message::decode(&vec![0; MAX_MESSAGE_LEN]),
            Err(MessageError::TooLarge(_))
        ));
        // A list of exactly the most entries allowed is accepted, one more is not.
        let full = Message::PeerInfo {
            peers: BoundedVec(vec![addr(); MAX_PEER_INFO]),
        };
        assert_eq!(Message::decode(&full.encode()).unwrap(), full);
        let full = Message::Neighbours {
            locations: BoundedVec(vec![Location(1 << 62); MAX_NEIGHBOURS]),
        };
        assert_eq!(Message::decode(&full.encode()).unwrap(), full);
        let over = Message::Neighbours {
            locations: BoundedVec(vec![Location(1 << 62); MAX_NEIGHBOURS + 1]),
        };
        assert!(matches!(
            Message::decode(&over.encode()),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn peer_address_text() {
        let a = addr();
        let t = a.to_string();
        assert_eq!(
            t,
            "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk@127.0.0.1:4100"
        );
        assert_eq!(t.parse::<PeerAddress>().unwrap(), a);
        assert_eq!(
            "nokey".parse::<PeerAddress>(),
            Err(PeerAddressError::MissingAt)
        );
        assert!(matches!(
            "abc@127.0.0.1:1".parse::<PeerAddress>(),
            Err(PeerAddressError::BadKey(_))
        ));
        assert!(matches!(
            format!("{}@nowhere", a.key).parse::<PeerAddress>(),
            Err(PeerAddressError::BadSocketAddr(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_messages_never_panics(idx in 0usize..40, val: u8, kind in 0u8..16) {
            let mut m = vec![kind, 1, 2, 3];
            m.extend_from_slice(&[0x55; 36]);
            m[idx] = val;
            let _ = Message::decode(&m);
        }

        #[test]
        fn request_round_trips(id: u64, key: [u8; 32], htl: u8) {
            let m = Message::Request { id: RequestId(id), key: RoutingKey(key), htl: Htl(htl) };
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }
}
