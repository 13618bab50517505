//! Open connections, and the in-process [`Transport`] that reaches them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use lambda_ws::delivery::{ConnectionInfo, ManagementApi};
use lambda_ws::protocol::MAX_MESSAGE_BYTES;
use lambda_ws::{ConnectionId, Transport, TransportError};
use tokio::sync::mpsc;

/// What the gateway asks a connection's task to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send a text frame.
    Text(Bytes),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
}

/// One open WebSocket.
#[derive(Debug)]
pub struct Connection {
    /// Frames to this client.
    pub tx: mpsc::UnboundedSender<Outgoing>,
    /// When it connected, Unix milliseconds.
    pub connected_at: i64,
    /// Last frame in either direction, Unix milliseconds.
    pub last_active_at: AtomicI64,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

/// Why a post to a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// No such connection (410).
    Gone,
    /// Over 128 KiB (413).
    TooLarge,
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
        connection.tx.send(Outgoing::Text(payload)).map_err(|_| PostError::Gone)?;
        connection.last_active_at.store(lambda_ws::clock::unix_now_millis(), Ordering::Relaxed);
        Ok(())
    }

    /// Asks `id` to close, as `DELETE @connections/{id}` does.
    pub fn close(&self, id: &str, code: u16, reason: &'static str) -> Result<(), PostError> {
        let connection = self.get(id).ok_or(PostError::Gone)?;
        connection.tx.send(Outgoing::Close(code, reason)).map_err(|_| PostError::Gone)
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
            connected_at: Some(c.connected_at),
            last_active_at: Some(c.last_active_at.load(Ordering::Relaxed)),
            source_ip: Some(c.source_ip.clone()),
        })
    }

    async fn disconnect(&self, endpoint: &str, connection: &ConnectionId) -> Result<(), TransportError> {
        if endpoint != self.own_endpoint {
            return self.remote.disconnect(endpoint, connection).await;
        }
        self.registry.close(connection.as_str(), 1000, "").map_err(transport_error)
    }
}
