//! Delivery: reaching connections through the Management API.
//!
//! - [`Transport`]: one post to one connection ([`ManagementApi`] in production).
//! - [`Target`]: who a message is for; the JSON contract of the sender function.
//! - [`Sender`]: streams recipients from the store into a bounded-concurrency pipeline, retries
//!   what may succeed, removes sessions the API reports gone, and returns a [`DeliveryReport`].
//! - [`metrics`]: the report as CloudWatch Embedded Metric Format.

#[cfg(feature = "management-api")]
mod management_api;
pub mod metrics;
mod report;
mod sender;
mod target;
mod transport;

#[cfg(feature = "management-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "management-api")))]
pub use management_api::ManagementApi;
pub use metrics::MetricsSink;
pub use report::{DeliveryReport, FailedDelivery, StreamPosition};
pub use sender::{OnRemoved, SendError, SendOptions, Sender};
pub use target::{Query, SEND_CONTRACT_VERSION, SendRequest, SenderQuery, Target};
pub use transport::{ConnectionInfo, Transport, TransportError};
