//! Open connections, and the in-process [`Transport`] that reaches them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use lambda_ws::ConnectionId;
use lambda_ws::delivery::{ConnectionInfo, ManagementApi};
use lambda_ws::delivery::{Transport, TransportError};
use lambda_ws::protocol::MAX_MESSAGE_BYTES;
use tokio::sync::Notify;

use crate::events::EventContext;

/// What the gateway asks a connection's task to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send a text frame.
    Text(Bytes),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
}

/// Most bytes of posts waiting for one connection's socket (eight full-size messages). A client
/// that stops reading fills it, and further posts answer 429 `LimitExceededException`, as API
/// Gateway does when "the WebSocket client side buffer is full": memory stays bounded.
pub const MAX_OUTBOX_BYTES: usize = 8 * MAX_MESSAGE_BYTES;

/// A connection's queue and the bytes of text it holds.
#[derive(Debug, Default)]
struct Outbox {
    items: VecDeque<Outgoing>,
    bytes: usize,
}

/// One open WebSocket.
///
/// Its outbox is a plain queue with a wake-up, not a channel: a tokio channel allocates a block
/// of 32 slots up front, over a kilobyte for each idle connection; an empty `VecDeque` holds
/// nothing. It is bounded in bytes ([`MAX_OUTBOX_BYTES`]).
#[derive(Debug)]
pub struct Connection {
    outbox: Mutex<Outbox>,
    ready: Notify,
    open: AtomicBool,
    /// Who it is: id, address, user agent, when it connected (what its events carry).
    pub ctx: EventContext,
    /// Last frame in either direction, Unix milliseconds.
    pub last_active_at: AtomicI64,
}

impl Connection {
    /// An open connection with an empty outbox.
    pub fn new(ctx: EventContext) -> Self {
        Self {
            outbox: Mutex::new(Outbox::default()),
            ready: Notify::new(),
            open: AtomicBool::new(true),
            last_active_at: AtomicI64::new(ctx.connected_at),
            ctx,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues something for the connection's task; `Gone` once it has ended, `Full` when the
    /// text waiting for the socket would pass [`MAX_OUTBOX_BYTES`] (a close is always queued).
    pub fn push(&self, outgoing: Outgoing) -> Result<(), PostError> {
        if !self.open.load(Ordering::Acquire) {
            return Err(PostError::Gone);
        }
        let mut queue = self.queue();
        if let Outgoing::Text(payload) = &outgoing {
            if queue.bytes + payload.len() > MAX_OUTBOX_BYTES {
                return Err(PostError::Full);
            }
            queue.bytes += payload.len();
        }
        queue.items.push_back(outgoing);
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    /// The next queued item, waiting for one. Cancel-safe: an item is only taken when this
    /// returns it.
    pub async fn next(&self) -> Outgoing {
        loop {
            {
                let mut queue = self.queue();
                if let Some(outgoing) = queue.items.pop_front() {
                    if let Outgoing::Text(payload) = &outgoing {
                        queue.bytes -= payload.len();
                    }
                    return outgoing;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Bytes of text waiting for the socket.
    pub fn queued_bytes(&self) -> usize {
        self.queue().bytes
    }

    /// Marks the connection ended: later pushes answer `Gone`, queued items are dropped.
    pub fn end(&self) {
        self.open.store(false, Ordering::Release);
        let mut queue = self.queue();
        queue.items.clear();
        queue.bytes = 0;
    }
}

/// Why a post to a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// No such connection (410).
    Gone,
    /// Over 128 KiB (413).
    TooLarge,
    /// The client is not reading: its outbox is full (429 `LimitExceededException`).
    Full,
}

/// All open connections of one gateway.
#[derive(Debug, Default)]
pub struct Registry {
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Connection>>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection.
    pub fn insert(&self, id: &str, connection: Arc<Connection>) {
        self.map().insert(id.to_owned(), connection);
    }

    /// Removes a connection; returns it if it was there.
    pub fn remove(&self, id: &str) -> Option<Arc<Connection>> {
        self.map().remove(id)
    }

    /// A connection by id.
    pub fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.map().get(id).cloned()
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none are open.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Every open connection's id.
    pub fn ids(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// Queues a text frame to `id`, as `POST @connections/{id}` does.
    pub fn post(&self, id: &str, payload: Bytes) -> Result<(), PostError> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(PostError::TooLarge);
        }
        let connection = self.get(id).ok_or(PostError::Gone)?;
        connection.push(Outgoing::Text(payload))?;
        connection.last_active_at.store(lambda_ws::clock::unix_now_millis(), Ordering::Relaxed);
        Ok(())
    }

    /// Asks `id` to close, as `DELETE @connections/{id}` does. The connection leaves the
    /// registry at once, so posts and reads after the close answer 410 Gone (as API Gateway's
    /// do) even while its close frame is still on the way; its task runs `$disconnect`.
    pub fn close(&self, id: &str, code: u16, reason: &'static str) -> Result<(), PostError> {
        let connection = self.remove(id).ok_or(PostError::Gone)?;
        connection.push(Outgoing::Close(code, reason))
    }
}

/// The transport in-process handlers use: posts to this gateway's own endpoint go straight to
/// the registry (what the HTTP `@connections` route does, minus the HTTP round trip); posts to any
/// other endpoint go through the real Management API client.
#[derive(Debug)]
pub struct LocalTransport {
    registry: Arc<Registry>,
    own_endpoint: String,
    remote: ManagementApi,
}

impl LocalTransport {
    /// A transport for a gateway reachable at `own_endpoint` (e.g. `http://127.0.0.1:3001/local`).
    pub fn new(registry: Arc<Registry>, own_endpoint: String, aws: aws_config::SdkConfig) -> Self {
        Self { registry, own_endpoint, remote: ManagementApi::new(aws) }
    }
}

fn transport_error(e: PostError) -> TransportError {
    match e {
        PostError::Gone => TransportError::Gone,
        PostError::TooLarge => TransportError::PayloadTooLarge,
        PostError::Full => TransportError::Throttled,
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn post(&self, endpoint: &str, connection: &ConnectionId, payload: Bytes) -> Result<(), TransportError> {
        if endpoint != self.own_endpoint {
            return self.remote.post(endpoint, connection, payload).await;
        }
        self.registry.post(connection.as_str(), payload).map_err(transport_error)
    }

    async fn get_connection(
        &self,
        endpoint: &str,
        connection: &ConnectionId,
    ) -> Result<ConnectionInfo, TransportError> {
        if endpoint != self.own_endpoint {
            return self.remote.get_connection(endpoint, connection).await;
        }
        let c = self.registry.get(connection.as_str()).ok_or(TransportError::Gone)?;
        Ok(ConnectionInfo {
            connected_at: Some(c.ctx.connected_at),
            last_active_at: Some(c.last_active_at.load(Ordering::Relaxed)),
            source_ip: Some(c.ctx.source_ip.clone()),
        })
    }

    async fn disconnect(&self, endpoint: &str, connection: &ConnectionId) -> Result<(), TransportError> {
        if endpoint != self.own_endpoint {
            return self.remote.disconnect(endpoint, connection).await;
        }
        self.registry.close(connection.as_str(), 1000, "").map_err(transport_error)
    }
}
