//! The anonymity walk: a request leaves its originator through a random-walk prefix
//! before greedy routing starts, so the neighbour that sees a key asked for first is
//! rarely next to the one who asked (docs/anonymity.md).
//!
//! Crowds (Reiter & Rubin) with one change that matters against Levine et al.'s
//! neighbour test: the walk is chosen per *tunnel*, not per request. The originator
//! always takes one walk hop; each node on the walk ends it with chance
//! `1 − walk_probability` or passes it to one of its peers. Both choices are drawn from a
//! hash of the node's secret and the tunnel id, not from a random generator, so every
//! request of one tunnel (every block of one download) takes the same walk and leaves
//! the same node for greedy routing. No state is kept per tunnel. A neighbour of the
//! originator therefore sees either all of a download's blocks (it is on the walk, and so
//! are relayers further on: each forwards the whole tunnel) or none; and the node that
//! spreads the blocks over its peers, the pattern the neighbour test looks for, is the
//! walk's end, which is not the originator.
//!
//! The node ending the walk routes as an originator does (full HTL, first attempt not
//! decremented), so its neighbours cannot tell it from one. A walk's next hop that
//! refuses it (loop, overload) or times out ends the walk at the node that sent it;
//! answers (`Data`, `DataNotFound`, `RouteNotFound`) travel back as for any request.
//! Each hop renames the tunnel for the next, so colluding nodes on one walk do not learn
//! from the tunnel id that they are on the same one.

use super::ctx::Ctx;
use super::peers::PeerTable;
use super::time::later;
use super::{PeerId, RouterConfig};
use sha2::{Digest, Sha256};
use std::time::Instant;

/// Hops a walk step's own deadline allows beyond the greedy search's budget: the walk
/// after it and its way back.
pub(super) const WALK_SLACK_HOPS: u32 = 8;

/// Peers a walk step tries in turn (the tunnel's first, second and third choices)
/// before it gives up on walking from here.
pub(super) const WALK_TRIES: usize = 3;

/// What one node's secret says about one tunnel.
struct Draw {
    /// Uniform in `[0, 2^64)`: the walk goes on here if below `walk_probability × 2^64`.
    go_on: u64,
    /// The tunnel's name at the next hop.
    renamed: u64,
    /// Key of the rendezvous hash that picks the next hop.
    pick: u64,
}

/// A 64-bit mixer (splitmix64's finaliser): spreads the rendezvous scores.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The walk's choices at this node: a secret that keys them (so nobody else can predict
/// where this node sends a tunnel) and the tunnel of the moment for local requests whose
/// user named none.
#[derive(Clone, Debug)]
pub(super) struct Walker {
    /// Keys this node's walk choices.
    secret: [u8; 32],
    /// The tunnel for local requests whose user named none, and until when it holds.
    tunnel: Option<(u64, Instant)>,
}

impl Walker {
    /// The walk's choices keyed from this node's random seed.
    pub(super) fn new(seed: u64) -> Walker {
        let mut h = Sha256::new();
        h.update(b"veil walk secret");
        h.update(seed.to_le_bytes());
        Walker {
            secret: h.finalize().into(),
            tunnel: None,
        }
    }

    fn draw(&self, tunnel: u64) -> Draw {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(tunnel.to_le_bytes());
        let d: [u8; 32] = h.finalize().into();
        let word = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&d[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Draw {
            go_on: word(0),
            renamed: word(1),
            pick: word(2),
        }
    }

    /// The tunnel's name at the next hop.
    pub(super) fn renamed(&self, tunnel: u64) -> u64 {
        self.draw(tunnel).renamed
    }

    /// Whether the walk of `tunnel` goes on from this node (the originator always takes
    /// one hop: `first`).
    pub(super) fn goes_on(&self, config: &RouterConfig, tunnel: u64, first: bool) -> bool {
        if first {
            return true;
        }
        let p = config.walk_probability.clamp(0.0, 1.0);
        // u64::MAX as f64 rounds to 2^64; the cast saturates, so p = 1 never ends.
        (self.draw(tunnel).go_on as f64) < p * u64::MAX as f64
    }

    /// The tunnel for a local request whose user named none: one per `tunnel_lifetime`,
    /// so a burst of requests (a download) shares a walk.
    pub(super) fn default_tunnel(&mut self, cx: &mut Ctx, now: Instant) -> u64 {
        use rand::Rng;
        match self.tunnel {
            Some((t, until)) if now < until => t,
            _ => {
                let t = cx.rng.gen();
                self.tunnel = Some((t, later(now, cx.config.tunnel_lifetime)));
                t
            }
        }
    }

    /// The walk's next hop for `tunnel`: a rendezvous hash over the routable peers that
    /// are not `exclude`d and not backed off (backed-off ones only if nothing else is
    /// left), so the choice moves only when the chosen peer goes, and a second try takes
    /// the tunnel's second choice.
    pub(super) fn next(
        &self,
        peers: &PeerTable,
        tunnel: u64,
        exclude: &[PeerId],
        now: Instant,
    ) -> Option<PeerId> {
        let key = self.draw(tunnel).pick;
        peers
            .iter()
            .filter(|p| p.routable && !exclude.contains(&p.id))
            .map(|p| {
                let backed_off = p.backoff_until.is_some_and(|t| t > now);
                (!backed_off, mix(key ^ mix(p.id.0)), p.id)
            })
            .max()
            .map(|(_, _, id)| id)
    }
}

/// Whether requests start with a walk here.
pub(super) fn walking(config: &RouterConfig) -> bool {
    config.walk_probability > 0.0
}

#[cfg(test)]
mod tests {
    use super::mix;

    #[test]
    fn the_mixer_is_splitmix64s() {
        // splitmix64's first output for seed 0 is the finaliser of its golden-ratio step.
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix(0), 0);
    }
}
