//! Path folding: the data source offers itself to a request's return path, and a node
//! there may link to it.

use super::{Fold, Opennet, PeerOrigin, FOLD_TTL, MAX_FOLDS};
use crate::message::{Message, PeerAddress, RequestId};
use crate::router::ctx::{Ctx, PathFolding};
use crate::router::peers::PeerTable;
use crate::router::time::later;
use crate::router::{PeerId, RouterConfig};
use rand::Rng;
use std::collections::VecDeque;
use std::time::Instant;

impl Opennet {
    /// The data source's offer for request `id`, from the peer that delivered its data.
    /// A relay of the return path that is not near the originator dials it if it wants
    /// the peer; otherwise the offer goes upstream, with this node's own address in its
    /// place at `fold_replace_probability`. The originator takes none.
    pub(in crate::router) fn on_fold_offer(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        address: PeerAddress,
    ) {
        let Some(fold) = self.folds.get(&id) else {
            return;
        };
        if fold.data_from != from {
            return;
        }
        let fold = self.folds.remove(&id).expect("just seen");
        let max = cx.config.max_htl.0;
        let near_originator = fold.received_htl > max.saturating_sub(2);
        if fold.upstream.is_some()
            && !near_originator
            && self.connected_to(cx.view(), &address.key).is_none()
            && self.wants_peer(cx.view(), now, None)
            && self.connect(cx, now, address, PeerOrigin::PathFolding, Some(from))
        {
            self.stats.folds_taken += 1;
            return;
        }
        let Some(up) = fold.upstream else {
            return;
        };
        let p = crate::router::probability(cx.config.opennet.fold_replace_probability);
        let address = match self.address {
            Some(own) if cx.rng.gen_bool(p) => own,
            _ => address,
        };
        cx.transmits
            .push_back((up, Message::FoldOffer { id, address }));
    }
}

impl PathFolding for Opennet {
    /// Records a data delivery by `peer` (the least-recently-successful clock).
    fn note_success(&mut self, peers: &mut PeerTable, peer: PeerId) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(p) = peers.get_mut(peer) {
            p.last_success = clock;
        }
    }

    /// The data source offers itself to the request's return path.
    fn offer_fold(
        &mut self,
        config: &RouterConfig,
        transmits: &mut VecDeque<(PeerId, Message)>,
        to: PeerId,
        id: RequestId,
    ) {
        if !config.opennet.enabled {
            return;
        }
        if let Some(address) = self.address {
            self.stats.fold_offers += 1;
            transmits.push_back((to, Message::FoldOffer { id, address }));
        }
    }

    /// A request ended here with data from `data_from`: remember where its fold offer
    /// goes.
    fn await_fold(
        &mut self,
        config: &RouterConfig,
        now: Instant,
        id: RequestId,
        upstream: Option<PeerId>,
        received_htl: u8,
        data_from: PeerId,
    ) {
        if !config.opennet.enabled {
            return;
        }
        if self.folds.len() >= MAX_FOLDS {
            if let Some((_, old)) = self.fold_order.pop_front() {
                self.folds.remove(&old);
            }
        }
        let expires = later(now, FOLD_TTL);
        self.folds.insert(
            id,
            Fold {
                upstream,
                received_htl,
                data_from,
                expires,
            },
        );
        self.fold_order.push_back((expires, id));
    }
}
