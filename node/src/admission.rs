//! Room for connections that have not yet shown they are worth keeping.
//!
//! Both listeners (peers and API) face the same attack: open many connections, send
//! nothing, and hold every slot until the timeout, so that a real peer or a `veil` command
//! finds no room. Refusing newcomers when full hands the attacker the node; what works is
//! the reverse: a newcomer always gets in, and room is made by closing the connection
//! that has had its chance longest — the oldest one that has not yet *proved* itself
//! (peer port: sent a handshake message that shows it knows our key; API: a request is
//! being answered), taken from the source address that holds the most. An honest client
//! sends its first bytes at once, so it is past that point long before a flood can push
//! it out; an idle flood only ever evicts itself.
//!
//! [`Admission::admit`] gives a [`Ticket`] and an eviction signal; the ticket frees its
//! slot when dropped.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Bounded room for pending connections; see the module docs.
#[derive(Debug)]
pub struct Admission {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// By age: the smallest id is the oldest.
    entries: BTreeMap<u64, Entry>,
    evicted: u64,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    proven: bool,
    /// Dropped to evict: the connection's task sees its receiver close.
    _evict: oneshot::Sender<()>,
}

/// One admitted connection's slot; freed on drop.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
}

/// Resolves when the connection has been evicted to make room; pending forever otherwise.
#[derive(Debug)]
pub struct Evicted(oneshot::Receiver<()>);

impl Evicted {
    /// Waits until this connection is evicted.
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

impl Admission {
    /// Room for `capacity` pending connections (at least one).
    pub fn new(capacity: usize) -> Arc<Admission> {
        Arc::new(Admission {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Admits a connection from `ip`, evicting another one first if the room is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> (Ticket, Evicted) {
        self.admit_counted(ip).0
    }

    /// [`Admission::admit`], also telling whether another connection was evicted.
    pub fn admit_counted(self: &Arc<Self>, ip: IpAddr) -> ((Ticket, Evicted), bool) {
        let mut inner = self.inner.lock().expect("admission lock");
        let mut made_room = false;
        if inner.entries.len() >= self.capacity {
            if let Some(victim) = victim(&inner.entries) {
                inner.entries.remove(&victim);
                inner.evicted += 1;
                made_room = true;
            }
        }
        let id = inner.next;
        inner.next += 1;
        let (tx, rx) = oneshot::channel();
        inner.entries.insert(
            id,
            Entry {
                ip,
                proven: false,
                _evict: tx,
            },
        );
        (
            (
                Ticket {
                    admission: self.clone(),
                    id,
                },
                Evicted(rx),
            ),
            made_room,
        )
    }

    /// Connections admitted and not yet freed.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("admission lock").entries.len()
    }

    /// True when no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections evicted so far to make room.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().expect("admission lock").evicted
    }
}

/// The entry to evict: among unproven entries if there are any (else all), the oldest of
/// the source address holding the most.
fn victim(entries: &BTreeMap<u64, Entry>) -> Option<u64> {
    let any_unproven = entries.values().any(|e| !e.proven);
    let candidates = || {
        entries
            .iter()
            .filter(move |(_, e)| !any_unproven || !e.proven)
    };
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    for (_, e) in candidates() {
        *per_ip.entry(e.ip).or_default() += 1;
    }
    let busiest = per_ip
        .into_iter()
        .max_by_key(|&(ip, n)| (n, std::cmp::Reverse(ip)))?
        .0;
    // Iteration is by id, so the first match is the oldest.
    candidates()
        .find(|(_, e)| e.ip == busiest)
        .map(|(&id, _)| id)
}

impl Ticket {
    /// The connection has shown it is genuine: evict it only when no unproven one is left.
    pub fn prove(&self) {
        self.set_proven(true);
    }

    /// Back to unproven (an API connection between requests).
    pub fn unprove(&self) {
        self.set_proven(false);
    }

    fn set_proven(&self, proven: bool) {
        let mut inner = self.admission.inner.lock().expect("admission lock");
        if let Some(e) = inner.entries.get_mut(&self.id) {
            e.proven = proven;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.admission.inner.lock() {
            inner.entries.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn gone(e: &mut Evicted) -> bool {
        matches!(e.0.try_recv(), Err(oneshot::error::TryRecvError::Closed))
    }

    #[test]
    fn a_newcomer_always_gets_in_and_the_oldest_unproven_goes() {
        let a = Admission::new(3);
        let (t0, mut e0) = a.admit(ip(1));
        let (t1, mut e1) = a.admit(ip(1));
        let (_t2, mut e2) = a.admit(ip(1));
        t0.prove();
        let (_t3, mut e3) = a.admit(ip(1));
        assert!(!gone(&mut e0), "a proven connection outlives unproven ones");
        assert!(gone(&mut e1), "the oldest unproven one made room");
        assert!(!gone(&mut e2) && !gone(&mut e3));
        assert_eq!(a.len(), 3);
        assert_eq!(a.evicted(), 1);
        drop(t1);
        assert_eq!(a.len(), 3, "an evicted ticket frees nothing twice");
    }

    #[test]
    fn the_busiest_source_pays_first() {
        let a = Admission::new(4);
        let (_honest, mut honest) = a.admit(ip(9));
        let mut flood = Vec::new();
        for _ in 0..3 {
            flood.push(a.admit(ip(1)));
        }
        // The honest connection is the oldest, but the flood's address holds three slots.
        let _late = a.admit(ip(1));
        assert!(!gone(&mut honest));
        assert!(gone(&mut flood[0].1));
    }

    #[test]
    fn all_proven_still_admits_by_evicting_the_oldest() {
        let a = Admission::new(2);
        let (t0, mut e0) = a.admit(ip(1));
        let (t1, mut e1) = a.admit(ip(1));
        t0.prove();
        t1.prove();
        let _t2 = a.admit(ip(1));
        assert!(gone(&mut e0));
        assert!(!gone(&mut e1));
        t1.unprove();
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn dropping_tickets_frees_room() {
        let a = Admission::new(2);
        let (t0, _e0) = a.admit(ip(1));
        let (t1, _e1) = a.admit(ip(2));
        drop((t0, t1));
        assert!(a.is_empty());
        assert_eq!(a.evicted(), 0);
    }

    #[tokio::test]
    async fn eviction_wakes_the_connection() {
        let a = Admission::new(1);
        let (_t0, e0) = a.admit(ip(1));
        let mut wait = Box::pin(e0.wait());
        assert!((&mut wait).now_or_never().is_none());
        let _t1 = a.admit(ip(1));
        wait.await;
    }
}
