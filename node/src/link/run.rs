//! A running link: the reader and writer tasks, and the watchdogs that end a silent or
//! stuck link.

use super::{
    read_frame, Link, LinkError, LinkEvent, LinkHandle, Traffic, CT_OFFSET, MAX_NOISE_MESSAGE,
    READ_BUFFER, SEND_QUEUE, TAG_LEN, WRITE_BUFFER,
};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use veil_proto::Message;

impl Link {
    /// Starts the reader and writer tasks. Messages and the final close go to `inbox`
    /// tagged with `tag`.
    pub fn spawn<T>(self, tag: T, inbox: mpsc::Sender<LinkEvent<T>>) -> LinkHandle
    where
        T: Clone + Send + Sync + 'static,
    {
        let (read_half, write_half) = self.stream.into_split();
        let transport = Arc::new(self.transport);
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let traffic = self.traffic.clone();
        let pings = Arc::new(PingClock::default());
        let mut reader = tokio::spawn(read_loop(
            traffic.clone(),
            read_half,
            transport.clone(),
            (tx.downgrade(), pings.clone()),
            tag.clone(),
            inbox.clone(),
            self.params.dead_after,
        ));
        let mut writer = tokio::spawn(write_loop(
            traffic,
            write_half,
            transport,
            (rx, pings),
            self.params.keepalive,
            self.params.dead_after,
        ));
        let handle = LinkHandle {
            tx,
            reader: reader.abort_handle(),
        };
        tokio::spawn(async move {
            let reason = tokio::select! {
                r = &mut reader => r,
                w = &mut writer => w,
            };
            reader.abort();
            writer.abort();
            let reason = match reason {
                Ok(e) => e,
                Err(_) => LinkError::Io(io::Error::new(io::ErrorKind::ConnectionAborted, "closed")),
            };
            let _ = inbox.send(LinkEvent::Closed(tag, reason)).await;
        });
        handle
    }
}

/// The ping awaiting its pong, for timing the link's round trip: the writer sets it, the
/// reader takes it when the matching pong comes.
#[derive(Default)]
struct PingClock(std::sync::Mutex<Option<(u64, tokio::time::Instant)>>);

impl PingClock {
    fn sent(&self, nonce: u64) {
        *self.0.lock().expect("ping clock") = Some((nonce, tokio::time::Instant::now()));
    }

    /// The round trip, if `nonce` is the ping awaited (an old or made-up nonce is not).
    fn answered(&self, nonce: u64) -> Option<Duration> {
        let mut slot = self.0.lock().expect("ping clock");
        match *slot {
            Some((n, at)) if n == nonce => {
                *slot = None;
                Some(at.elapsed())
            }
            _ => None,
        }
    }
}

/// A busy link never idles long enough to ping: it is pinged this many keepalive
/// periods after its last ping all the same, so its round trip stays measured.
const PING_EVERY_KEEPALIVES: u32 = 10;

/// A deadline that moves forward on progress, without a timer operation per message:
/// it is re-armed only once a quarter of its period has passed since the last arming, so
/// it fires between 3/4 and 1 period after the last progress.
struct Watchdog {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    period: Duration,
    armed_at: tokio::time::Instant,
}

impl Watchdog {
    fn new(period: Duration) -> Watchdog {
        let now = tokio::time::Instant::now();
        Watchdog {
            sleep: Box::pin(tokio::time::sleep_until(now + period)),
            period,
            armed_at: now,
        }
    }

    /// Records progress.
    fn kick(&mut self) {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.armed_at) >= self.period / 4 {
            self.armed_at = now;
            self.sleep.as_mut().reset(now + self.period);
        }
    }

    /// Completes when the period has passed without (recent enough) progress.
    async fn expired(&mut self) {
        self.sleep.as_mut().await
    }
}

async fn read_loop<T: Clone>(
    traffic: Option<Arc<Traffic>>,
    read_half: OwnedReadHalf,
    transport: Arc<snow::StatelessTransportState>,
    (pong, pings): (mpsc::WeakSender<Message>, Arc<PingClock>),
    tag: T,
    inbox: mpsc::Sender<LinkEvent<T>>,
    dead_after: Duration,
) -> LinkError {
    let mut r = BufReader::with_capacity(READ_BUFFER, read_half);
    let mut ct = vec![0u8; MAX_NOISE_MESSAGE];
    let mut pt = vec![0u8; MAX_NOISE_MESSAGE];
    // Nonce 0 carried the Hello.
    let mut nonce = 1u64;
    let mut silence = Watchdog::new(dead_after);
    loop {
        let n = tokio::select! {
            r = read_frame(&mut r, &mut ct) => match r {
                Ok(n) => n,
                Err(e) => return e,
            },
            () = silence.expired() => return LinkError::Dead(dead_after),
        };
        silence.kick();
        if let Some(t) = &traffic {
            t.received.fetch_add(n as u64 + 2, Ordering::Relaxed);
        }
        if n < TAG_LEN {
            return LinkError::BadFrame(n);
        }
        let m = match transport.read_message(nonce, &ct[..n], &mut pt) {
            Ok(m) => m,
            Err(e) => return LinkError::Noise(e),
        };
        nonce += 1;
        let msg = match Message::decode(&pt[..m]) {
            Ok(msg) => msg,
            Err(e) => return LinkError::Message(e),
        };
        match msg {
            Message::Ping { nonce } => {
                // A full queue drops the pong: the peer is pinging faster than it reads,
                // and only its own keepalive can suffer.
                if let Some(tx) = pong.upgrade() {
                    let _ = tx.try_send(Message::Pong { nonce });
                }
            }
            Message::Pong { nonce } => {
                if let Some(rtt) = pings.answered(nonce) {
                    // Only a sample: dropped if the node is behind on its inbox.
                    let _ = inbox.try_send(LinkEvent::Rtt(tag.clone(), rtt));
                }
            }
            Message::Hello(_) => return LinkError::Protocol("second hello".into()),
            msg => {
                if inbox
                    .send(LinkEvent::Message(tag.clone(), msg))
                    .await
                    .is_err()
                {
                    // The owner is gone: the node is shutting down.
                    return LinkError::Io(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "node stopped",
                    ));
                }
            }
        }
    }
}

async fn write_loop(
    traffic: Option<Arc<Traffic>>,
    write_half: OwnedWriteHalf,
    transport: Arc<snow::StatelessTransportState>,
    (mut rx, pings): (mpsc::Receiver<Message>, Arc<PingClock>),
    keepalive: Duration,
    stall: Duration,
) -> LinkError {
    // A peer that stops reading would make our queue grow without bound (it can keep
    // asking while its replies pile up here): a write that cannot progress for `stall`
    // ends the link.
    let stalled = || {
        LinkError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "peer stopped reading",
        ))
    };
    let mut stuck = Watchdog::new(stall);
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, write_half);
    let mut plain = Vec::with_capacity(MAX_NOISE_MESSAGE);
    let mut out = vec![0u8; CT_OFFSET + MAX_NOISE_MESSAGE];
    let mut nonce = 1u64;
    // The first ping goes out at once, so the link's round trip is known early.
    let mut last_ping: Option<tokio::time::Instant> = None;
    let ping = |last: &mut Option<tokio::time::Instant>| {
        // Random, so a peer cannot answer a ping before it has seen it and look quicker
        // than it is.
        let ping_nonce: u64 = rand::random();
        pings.sent(ping_nonce);
        *last = Some(tokio::time::Instant::now());
        Message::Ping { nonce: ping_nonce }
    };
    loop {
        let due = last_ping.is_none_or(|t| t.elapsed() >= keepalive * PING_EVERY_KEEPALIVES);
        let waited = if due {
            // What is queued follows the ping in the same batch.
            Ok(Some(ping(&mut last_ping)))
        } else {
            tokio::time::timeout(keepalive, rx.recv()).await
        };
        let msg = match waited {
            Ok(Some(m)) => m,
            Ok(None) => {
                // Owner dropped the handle: flush and close our half.
                let _ = tokio::time::timeout(stall, async {
                    let _ = w.flush().await;
                    let _ = w.shutdown().await;
                })
                .await;
                return LinkError::Io(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed locally",
                ));
            }
            Err(_) => ping(&mut last_ping),
        };
        // Idle time is not a stall: the clock starts with this batch.
        stuck.kick();
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            plain.clear();
            msg.encode_into(&mut plain);
            if plain.len() + TAG_LEN > MAX_NOISE_MESSAGE {
                // The router never builds such a message; refuse rather than split.
                tracing::error!(
                    kind = msg.kind(),
                    "message too large for one frame; dropped"
                );
                continue;
            }
            let n = match transport.write_message(nonce, &plain, &mut out[CT_OFFSET..]) {
                Ok(n) => n,
                Err(e) => return LinkError::Noise(e),
            };
            nonce += 1;
            out[CT_OFFSET - 2..CT_OFFSET].copy_from_slice(&(n as u16).to_be_bytes());
            tokio::select! {
                r = w.write_all(&out[CT_OFFSET - 2..CT_OFFSET + n]) => {
                    if let Err(e) = r {
                        return LinkError::Io(e);
                    }
                }
                () = stuck.expired() => return stalled(),
            }
            stuck.kick();
            if let Some(t) = &traffic {
                t.sent.fetch_add(n as u64 + 2, Ordering::Relaxed);
            }
            next = rx.try_recv().ok();
        }
        // Nothing more queued right now: push what we have onto the wire.
        tokio::select! {
            r = w.flush() => {
                if let Err(e) = r {
                    return LinkError::Io(e);
                }
            }
            () = stuck.expired() => return stalled(),
        }
    }
}
