//! The replica's live hub: one Redis Pub/Sub connection for every stream
//! this API replica holds open (`GET /feed/stream`).
//!
//! A stream listens to its reader's home feed channel and to the timeline
//! channels of the celebrities they follow (see [`feed_core::live`]). The
//! hub subscribes to a channel when its first local stream asks and
//! unsubscribes when its last one leaves, renews the channels' live keys so
//! fan-out keeps publishing to them, and hands each note to the streams
//! listening.
//!
//! Notes are hints: should the Pub/Sub connection drop, the notes published
//! meanwhile are lost, so every stream is ended with a retry hint and its
//! client resumes by cursor from the feed itself. A stream that does not
//! take its notes (its client reads too slowly) is ended the same way
//! instead of queueing without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use feed_core::bus::Redis;
use feed_core::live::{self, Note};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::Metrics;

/// How long a live key lasts unless renewed. A replica that dies stops
/// renewing, and fan-out stops publishing for its streams within this.
const LIVE_KEY_TTL: Duration = Duration::from_secs(60);
/// How often the hub renews the live keys of its channels: three times per
/// TTL, so one failed renewal (a Redis hiccup) does not let a key lapse.
const LIVE_KEY_RENEW: Duration = Duration::from_secs(20);
/// The longest a subscribe may take before the connection counts as lost.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before reconnecting after the Pub/Sub connection failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Why a stream was ended by the hub or its limits (a label of
/// `fanout_stream_drops_total`).
pub mod reason {
    /// The client did not read its events fast enough.
    pub const SLOW: &str = "slow";
    /// Nothing was pushed for the idle timeout.
    pub const IDLE: &str = "idle";
    /// The hub's Pub/Sub connection was lost.
    pub const LOST: &str = "lost";
    /// The server is shutting down.
    pub const SHUTDOWN: &str = "shutdown";
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this user has {0} streams open on this server, the most allowed; close one")]
    PerUser(usize),
    #[error("this server holds the most streams it may; retry shortly")]
    PerReplica,
    #[error("live notes are unavailable")]
    Unavailable,
}

/// Settings of the hub (from `FANOUT_STREAM_*`).
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    pub per_user: usize,
    pub per_replica: usize,
}

/// The hub's handle; cheap to clone.
#[derive(Clone)]
pub struct Live {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    feeds: Redis,
    limits: LiveLimits,
    open: Mutex<Open>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

/// Streams open on this replica, by user.
#[derive(Default)]
struct Open {
    total: usize,
    by_user: HashMap<Uuid, usize>,
}

enum Command {
    Listen {
        channel: String,
        listener: Listener,
        done: oneshot::Sender<bool>,
    },
    Forget {
        channel: String,
        id: u64,
    },
}

/// One stream's place in the hub.
#[derive(Clone)]
struct Listener {
    id: u64,
    notes: mpsc::Sender<Note>,
    end: Ending,
}

/// Ends a stream once, saying why.
#[derive(Clone, Default)]
pub struct Ending {
    token: CancellationToken,
    why: Arc<OnceLock<&'static str>>,
}

impl Ending {
    /// Ends the stream for `why` (the first reason given stands).
    pub fn end(&self, why: &'static str) {
        let _ = self.why.set(why);
        self.token.cancel();
    }

    /// Marks the stream over, however it ended (its watcher of the
    /// server's shutdown stops).
    pub fn finish(&self) {
        self.token.cancel();
    }

    /// Resolves once ended, with the reason.
    pub async fn ended(&self) -> &'static str {
        self.token.cancelled().await;
        self.why.get().copied().unwrap_or(reason::LOST)
    }
}

/// A stream's slot on this replica: freed when dropped.
pub struct Permit {
    user: Uuid,
    live: Live,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.live.inner.open.lock().expect("never poisoned");
        open.total -= 1;
        if let Some(n) = open.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.by_user.remove(&self.user);
            }
        }
        self.live.inner.metrics.streams_open.set(open.total as i64);
    }
}

/// The channels one stream listens to; leaves them when dropped.
pub struct Subscription {
    listener: Listener,
    channels: Vec<String>,
    live: Live,
}

impl Live {
    /// Starts the hub on the feeds' Redis; see [`Live::stop_with`].
    pub fn start(feeds: Redis, limits: LiveLimits, metrics: Arc<Metrics>) -> Live {
        let shutdown = CancellationToken::new();
        let (commands, queue) = mpsc::unbounded_channel();
        let live = Live {
            inner: Arc::new(Inner {
                commands,
                feeds,
                limits,
                open: Mutex::default(),
                next_id: AtomicU64::new(0),
                metrics,
                shutdown,
            }),
        };
        tokio::spawn(run(
            live.inner.feeds.clone(),
            queue,
            live.inner.shutdown.clone(),
        ));
        live
    }

    /// Stops the hub, and ends every stream, once `shutdown` is cancelled.
    pub fn stop_with(&self, shutdown: CancellationToken) {
        let hub = self.inner.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            hub.cancel();
        });
    }

    /// A slot for a new stream of `user`, within the limits.
    pub fn admit(&self, user: Uuid) -> Result<Permit, Refused> {
        let mut open = self.inner.open.lock().expect("never poisoned");
        let mine = open.by_user.get(&user).copied().unwrap_or(0);
        if mine >= self.inner.limits.per_user {
            return Err(Refused::PerUser(mine));
        }
        if open.total >= self.inner.limits.per_replica {
            return Err(Refused::PerReplica);
        }
        open.total += 1;
        *open.by_user.entry(user).or_default() += 1;
        self.inner.metrics.streams_open.set(open.total as i64);
        Ok(Permit {
            user,
            live: self.clone(),
        })
    }

    /// A new stream's subscription, listening to nothing yet, the notes it
    /// will receive (at most `buffer` queued), and what ends it.
    pub fn subscriber(&self, buffer: usize) -> (Subscription, mpsc::Receiver<Note>, Ending) {
        let (notes, receiver) = mpsc::channel(buffer);
        let end = Ending::default();
        let shutdown = self.inner.shutdown.clone();
        let on_shutdown = end.clone();
        // Streams end with the server, so a graceful shutdown does not wait
        // for clients that never hang up.
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => on_shutdown.end(reason::SHUTDOWN),
                _ = on_shutdown.token.cancelled() => {}
            }
        });
        let listener = Listener {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            notes,
            end: end.clone(),
        };
        let subscription = Subscription {
            listener,
            channels: Vec::new(),
            live: self.clone(),
        };
        (subscription, receiver, end)
    }
}

impl Subscription {
    /// Listens to `channel` from now on: its live key is set and the hub
    /// subscribed before this returns, so every note published afterwards
    /// arrives.
    pub async fn listen(&mut self, channel: String) -> Result<(), Refused> {
        if self.channels.contains(&channel) {
            return Ok(());
        }
        let inner = &self.live.inner;
        let conn = inner.feeds.conn().await.map_err(|_| Refused::Unavailable)?;
        live::mark_live(&conn, std::slice::from_ref(&channel), LIVE_KEY_TTL)
            .await
            .map_err(|_| Refused::Unavailable)?;
        let (done, subscribed) = oneshot::channel();
        let listen = Command::Listen {
            channel: channel.clone(),
            listener: self.listener.clone(),
            done,
        };
        inner
            .commands
            .send(listen)
            .map_err(|_| Refused::Unavailable)?;
        if !subscribed.await.unwrap_or(false) {
            return Err(Refused::Unavailable);
        }
        self.channels.push(channel);
        Ok(())
    }

    /// Stops listening to `channel`.
    pub fn forget(&mut self, channel: &str) {
        if let Some(at) = self.channels.iter().position(|c| c == channel) {
            let channel = self.channels.swap_remove(at);
            let _ = self.live.inner.commands.send(Command::Forget {
                channel,
                id: self.listener.id,
            });
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for channel in self.channels.drain(..) {
            let _ = self.live.inner.commands.send(Command::Forget {
                channel,
                id: self.listener.id,
            });
        }
    }
}

/// The hub's loop: (re)connects, serves commands, hands notes out.
async fn run(
    feeds: Redis,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    let mut channels: HashMap<String, Vec<Listener>> = HashMap::new();
    loop {
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            pubsub = feeds.client().get_async_pubsub() => pubsub,
        };
        let (mut sink, mut messages) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(e) => {
                tracing::warn!(error = %e, "live hub: cannot reach Redis for Pub/Sub");
                // Refuse what is asked meanwhile: the streams answer 503.
                let until = tokio::time::sleep(RECONNECT_DELAY);
                tokio::pin!(until);
                loop {
                    tokio::select! {
                        _ = &mut until => break,
                        _ = shutdown.cancelled() => return,
                        command = commands.recv() => match command {
                            None => return,
                            Some(Command::Listen { done, .. }) => { let _ = done.send(false); }
                            Some(Command::Forget { .. }) => {}
                        },
                    }
                }
                continue;
            }
        };
        let mut renew = tokio::time::interval(LIVE_KEY_RENEW);
        renew.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = messages.next() => match message {
                    Some(message) => deliver(&channels, &message),
                    None => break,
                },
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Listen { channel, listener, done }) => {
                        if !channels.contains_key(&channel) {
                            let subscribed =
                                tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(&channel)).await;
                            if !matches!(subscribed, Ok(Ok(()))) {
                                let _ = done.send(false);
                                break;
                            }
                        }
                        channels.entry(channel).or_default().push(listener);
                        let _ = done.send(true);
                    }
                    Some(Command::Forget { channel, id }) => {
                        if let Some(listeners) = channels.get_mut(&channel) {
                            listeners.retain(|l| l.id != id);
                            if listeners.is_empty() {
                                channels.remove(&channel);
                                // A failure shows as a lost connection soon.
                                let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.unsubscribe(&channel)).await;
                            }
                        }
                    }
                },
                _ = renew.tick() => {
                    let keys: Vec<String> = channels.keys().cloned().collect();
                    let feeds = feeds.clone();
                    tokio::spawn(async move {
                        let renewed = async {
                            let conn = feeds.conn().await?;
                            live::mark_live(&conn, &keys, LIVE_KEY_TTL).await
                        };
                        if let Err(e) = renewed.await {
                            tracing::warn!(error = %e, "live hub: renewing live keys failed");
                        }
                    });
                }
            }
        }
        tracing::warn!(
            streams = channels.values().map(Vec::len).sum::<usize>(),
            "live hub: Pub/Sub connection lost; ending streams so their clients resume"
        );
        for listener in channels.drain().flat_map(|(_, l)| l) {
            listener.end.end(reason::LOST);
        }
    }
}

/// Hands a note to every stream listening to its channel; a stream whose
/// queue is full is ended (its client resumes by cursor).
fn deliver(channels: &HashMap<String, Vec<Listener>>, message: &redis::Msg) {
    let Some(listeners) = channels.get(message.get_channel_name()) else {
        return;
    };
    let Ok(payload) = message.get_payload::<String>() else {
        return;
    };
    let Some(note) = Note::decode(&payload) else {
        return;
    };
    for listener in listeners {
        // Closed: the stream is ending, and leaves its channels.
        if let Err(mpsc::error::TrySendError::Full(_)) = listener.notes.try_send(note) {
            listener.end.end(reason::SLOW);
        }
    }
}
