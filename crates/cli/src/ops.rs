//! The operator commands of `lambda-ws` (`sessions list`, `send`, `cleanup`, `tokens purge`),
//! against a DynamoDB table or a running local gateway.
//!
//! Against a table, the core library's [`lambda_ws::admin`] functions and the sender run here,
//! with AWS settings from the usual environment (`AWS_REGION`, credentials,
//! `AWS_ENDPOINT_URL_DYNAMODB`). Against a gateway, the same functions run inside it: sessions,
//! clean-up and tokens through its `/_admin/*` endpoints, sends through its Lambda Invoke API.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lambda_ws::admin::{self, CleanupOptions, CleanupSummary, Selection, SessionListing};
use lambda_ws::client::{ClientError, SenderClient};
use lambda_ws::handlers;
use lambda_ws::{App, Config, SendRequest};
use serde_json::Value;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The table could not be read or written.
    #[error("DynamoDB: {0}")]
    Store(#[from] lambda_ws::store::StoreError),
    /// The gateway could not be reached.
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable {
        /// The gateway URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The gateway answered with an error.
    #[error("the gateway answered {status}: {body}")]
    Gateway {
        /// The HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
    /// Something given on the command line is not usable.
    #[error("{0}")]
    Usage(String),
}

/// Where the sessions live.
pub enum Backend {
    /// A DynamoDB table (the deployed stack's, or `lambda-ws dev --dynamodb-endpoint`'s).
    Table(App),
    /// A running `lambda-ws dev`, e.g. `http://127.0.0.1:3001`.
    Gateway {
        /// Its base URL.
        url: String,
        /// An HTTP client for `/_admin/*`.
        http: Box<Client<HttpConnector, Full<Bytes>>>,
        /// The sender function, through its Lambda Invoke API.
        sender: SenderClient,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Table(app) => f.debug_tuple("Table").field(&app.config.table_name).finish(),
            Self::Gateway { url, .. } => f.debug_tuple("Gateway").field(url).finish(),
        }
    }
}

impl Backend {
    /// A table, with AWS settings (region, credentials, endpoint) from the environment.
    pub async fn table(name: &str) -> Result<Self, OpsError> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let config = Config { table_name: Some(name.to_owned()), ..Config::default() };
        let app = App::for_table(config, sdk).map_err(|e| OpsError::Usage(e.to_string()))?;
        Ok(Self::Table(app))
    }

    /// A running local gateway at `url`.
    pub fn gateway(url: &str) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        let conf =
            aws_sdk_lambda::config::Builder::from(&lambda_ws_local::local_aws_config()).endpoint_url(&url).build();
        Self::Gateway {
            url,
            http: Box::new(Client::builder(TokioExecutor::new()).build_http()),
            sender: SenderClient::new(aws_sdk_lambda::Client::from_conf(conf), "sender"),
        }
    }

    /// Live sessions matching `selection`, oldest first.
    pub async fn list_sessions(
        &self,
        selection: &Selection,
        limit: Option<usize>,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<SessionListing>, OpsError> {
        match self {
            Self::Table(app) => {
                let now = app.clock.now_secs();
                Ok(admin::list_sessions(&*app.sessions, selection, limit, now, progress).await?)
            }
            Self::Gateway { .. } => {
                let mut query = match selection {
                    Selection::All => String::new(),
                    Selection::Channel(channel) => format!("channel={}", encode(channel.as_str())),
                    Selection::User(user) => format!("user={}", encode(user)),
                };
                if let Some(limit) = limit {
                    query.push_str(&format!("&limit={limit}"));
                }
                let body = self.call("GET", &format!("/_admin/sessions?{query}")).await?;
                let listings: Vec<SessionListing> = parse(&body)?;
                progress(listings.len());
                Ok(listings)
            }
        }
    }

    /// Sends one request; the answer is the delivery report, or the sender's error answer.
    pub async fn send(&self, request: &SendRequest) -> Result<Value, OpsError> {
        match self {
            Self::Table(app) => Ok(handlers::send_response(app, request).await),
            Self::Gateway { url, sender, .. } => match sender.send(request).await {
                Ok(report) => serde_json::to_value(report).map_err(|e| OpsError::Usage(e.to_string())),
                // The sender's own refusal, shown as it answered.
                Err(ClientError::Refused { code, message }) => {
                    Ok(lambda_ws::protocol::ErrorEnvelope::new(code, message).to_json())
                }
                Err(e) => Err(OpsError::Unreachable { url: url.clone(), reason: e.to_string() }),
            },
        }
    }

    /// Removes expired sessions (and stale ones with `options.check_connections`).
    pub async fn cleanup(
        &self,
        options: CleanupOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<CleanupSummary, OpsError> {
        match self {
            Self::Table(app) => Ok(admin::cleanup(app, options, progress).await?),
            Self::Gateway { .. } => {
                let path = format!(
                    "/_admin/cleanup?dry_run={}&check_connections={}",
                    options.dry_run, options.check_connections
                );
                parse(&self.call("POST", &path).await?)
            }
        }
    }

    /// Deletes expired tokens (counts them on a dry run).
    pub async fn purge_tokens(&self, dry_run: bool) -> Result<usize, OpsError> {
        match self {
            Self::Table(app) => Ok(admin::purge_tokens(app, dry_run).await?),
            Self::Gateway { .. } => {
                let body = self.call("POST", &format!("/_admin/tokens/purge?dry_run={dry_run}")).await?;
                let answer: Value = parse(&body)?;
                answer["purged"]
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| OpsError::Gateway { status: 200, body: String::from_utf8_lossy(&body).into_owned() })
            }
        }
    }

    async fn call(&self, method: &str, path: &str) -> Result<Bytes, OpsError> {
        let Self::Gateway { url, http, .. } = self else {
            return Err(OpsError::Usage("not a gateway".into()));
        };
        let unreachable = |reason: String| OpsError::Unreachable { url: url.clone(), reason };
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{url}{path}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| OpsError::Usage(format!("bad gateway URL {url}: {e}")))?;
        let response = http.request(request).await.map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
        if status == 200 {
            Ok(body)
        } else {
            Err(OpsError::Gateway { status, body: String::from_utf8_lossy(&body).into_owned() })
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OpsError> {
    serde_json::from_slice(body).map_err(|e| OpsError::Gateway {
        status: 200,
        body: format!("unexpected answer ({e}): {}", String::from_utf8_lossy(body)),
    })
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An error and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
