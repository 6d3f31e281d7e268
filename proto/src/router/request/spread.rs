//! Spread inserts: one local insert sent by several routes, each with its share of the
//! replicas, reported to its user once every route has ended.

use super::state::{Kind, Walk};
use super::Requests;
use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{Htl, RequestId};
use crate::router::ctx::Ctx;
use crate::router::spread::{route_tunnel, share, Spread};
use crate::router::time::later;
use crate::router::{Event, InsertFailure, InsertReport};
use std::time::Instant;

impl Requests {
    /// Starts `routes` (≥ 2, at most `replicas`) routes of one local insert of `block`
    /// under `key`; returns the id the shell will hear of.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::router) fn start_spread(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        key: RoutingKey,
        block: Block,
        htl: Htl,
        replicas: u8,
        routes: u8,
        tunnel: u64,
    ) -> RequestId {
        let parent = self.fresh_id(cx);
        // Never handed to a peer; reserved so that no later id takes it.
        cx.seen.insert(later(now, cx.config.seen_ttl), parent);
        // The parent first: a route that ended at once would find no one to tell.
        self.spread_parents.insert(
            parent,
            Spread {
                left: routes,
                ..Spread::default()
            },
        );
        for i in 0..routes {
            let id = self.fresh_id(cx);
            let kind = Kind::Insert {
                block: block.clone(),
                replicas: share(replicas, routes, i),
                stored: 0,
                resume: None,
            };
            self.spreads.insert(id, parent);
            let walk = Walk::Step(route_tunnel(tunnel, i));
            self.begin_walk(cx, now, id, key, kind, None, htl.0, walk);
        }
        parent
    }

    /// A local insert finished with `result`: reported as it is, or, for a route of a
    /// spread insert, counted towards its parent, which is reported when its last route
    /// is done.
    pub(in crate::router) fn insert_finished(
        &mut self,
        cx: &mut Ctx,
        id: RequestId,
        key: RoutingKey,
        result: Result<InsertReport, InsertFailure>,
    ) {
        let Some(parent) = self.spreads.remove(&id) else {
            if result.is_ok() {
                self.stats.local_inserts_succeeded += 1;
            }
            cx.events
                .push_back(Event::InsertFinished { id, key, result });
            return;
        };
        let Some(spread) = self.spread_parents.get_mut(&parent) else {
            return;
        };
        spread.left = spread.left.saturating_sub(1);
        match result {
            Ok(report) => {
                let exhausted = spread.ok.is_none_or(|r| r.route_exhausted);
                spread.ok = Some(InsertReport {
                    route_exhausted: exhausted && report.route_exhausted,
                });
            }
            Err(InsertFailure::Collision) => spread.err = Some(InsertFailure::Collision),
            Err(e) => {
                spread.err.get_or_insert(e);
            }
        }
        if spread.left > 0 {
            return;
        }
        let Some(spread) = self.spread_parents.remove(&parent) else {
            return;
        };
        let result = match (spread.err, spread.ok) {
            (Some(InsertFailure::Collision), _) => Err(InsertFailure::Collision),
            (_, Some(report)) => Ok(report),
            (Some(e), None) => Err(e),
            (None, None) => Err(InsertFailure::RouteNotFound),
        };
        if result.is_ok() {
            self.stats.local_inserts_succeeded += 1;
        }
        cx.events.push_back(Event::InsertFinished {
            id: parent,
            key,
            result,
        });
    }
}
