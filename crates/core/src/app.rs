//! [`App`]: the dependencies every handler takes, built once per process.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::{MetricsSink, SendOptions, Sender, Transport};
use crate::history::ChannelHistory;
use crate::history::HistoryStore;
use crate::hooks::{ConnectHook, DisconnectHook};
use crate::policy::ChannelCheck;
use crate::presence::{ChannelPresence, PresenceStore, Tracker};
use crate::session::{ChannelName, Identity, Session};
use crate::store::{CounterStore, SessionStore, StoreError, TokenStore};

/// Configuration plus the store, transport and clock the handlers use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    /// Deployment configuration.
    pub config: Arc<Config>,
    /// Sessions and memberships.
    pub sessions: Arc<dyn SessionStore>,
    /// Connect tokens.
    pub tokens: Arc<dyn TokenStore>,
    /// Rate-limit counters.
    pub counters: Arc<dyn CounterStore>,
    /// Channel streams (history for resume) of the channels `config.history` names.
    pub history: Arc<dyn HistoryStore>,
    /// Who is in the channels `config.presence` names.
    pub presence: Arc<dyn PresenceStore>,
    /// How posts reach connections.
    pub transport: Arc<dyn Transport>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
    /// The application's own channel check, if any.
    pub channel_check: Option<Arc<dyn ChannelCheck>>,
    /// Where the sender handler records each send's report (EMF in Lambda), if anywhere.
    pub metrics: Option<Arc<dyn MetricsSink>>,
    /// The application's `$connect` hook (session metadata, its own refusals), if any.
    pub connect_hook: Option<Arc<dyn ConnectHook>>,
    /// Told whenever a session ends, if set.
    pub disconnect_hook: Option<Arc<dyn DisconnectHook>>,
}

impl App {
    /// An app over one store that keeps sessions, tokens, counters, channel streams and presence
    /// alike.
    pub fn new<S>(config: Config, store: Arc<S>, transport: Arc<dyn Transport>) -> Self
    where
        S: SessionStore + TokenStore + CounterStore + HistoryStore + PresenceStore + 'static,
    {
        Self {
            config: Arc::new(config),
            sessions: store.clone(),
            tokens: store.clone(),
            history: store.clone(),
            presence: store.clone(),
            counters: store,
            transport,
            clock: Arc::new(SystemClock),
            channel_check: None,
            metrics: None,
            connect_hook: None,
            disconnect_hook: None,
        }
    }

    /// Reads [`Config`] from the environment, loads AWS configuration (region, credentials,
    /// `AWS_ENDPOINT_URL_*` overrides) and builds the DynamoDB store and Management API transport.
    #[cfg(all(feature = "dynamodb", feature = "management-api"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "dynamodb", feature = "management-api"))))]
    pub async fn from_env() -> Result<Self, crate::config::ConfigError> {
        let config = Config::from_env()?;
        config.require_table()?;
        config.check_deployment()?;
        if config.allowed_origins == crate::policy::OriginPolicy::Any {
            tracing::warn!("LWS_ALLOWED_ORIGINS is not set: connections are accepted from any origin");
        }
        if config.channel_rules.is_empty() {
            tracing::warn!(
                "LWS_CHANNEL_RULES is not set: every channel is open to every connection (set rules, e.g. \
                 \"public-*=all; *=none\")"
            );
        }
        Self::for_table(config, aws_config::load_from_env().await)
    }

    /// An app on the DynamoDB table `config` names, posting through the Management API, both
    /// with the AWS settings in `aws`.
    #[cfg(all(feature = "dynamodb", feature = "management-api"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "dynamodb", feature = "management-api"))))]
    pub fn for_table(config: Config, aws: aws_config::SdkConfig) -> Result<Self, crate::config::ConfigError> {
        let table = config.require_table()?.to_owned();
        let store = Arc::new(crate::store::dynamodb::DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
        Ok(Self::new(config, store, Arc::new(crate::delivery::ManagementApi::new(aws))))
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records every send's report in `sink`.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = Some(sink);
        self
    }

    /// Adds an application channel check, consulted after the channel rules.
    pub fn with_channel_check(mut self, check: Arc<dyn ChannelCheck>) -> Self {
        self.channel_check = Some(check);
        self
    }

    /// Runs `hook` on every `$connect` after the built-in checks: it returns the session's
    /// metadata or refuses the connection.
    pub fn with_connect_hook(mut self, hook: Arc<dyn ConnectHook>) -> Self {
        self.connect_hook = Some(hook);
        self
    }

    /// Tells `hook` whenever a session ends: `$disconnect`, a 410 found by a send, clean-up.
    pub fn with_disconnect_hook(mut self, hook: Arc<dyn DisconnectHook>) -> Self {
        self.disconnect_hook = Some(hook);
        self
    }

    /// A sender using this app's store, transport and concurrency (and disconnect hook, told of
    /// the sessions a send finds gone).
    pub fn sender(&self) -> Sender {
        let options = SendOptions { concurrency: self.config.send_concurrency, ..SendOptions::default() };
        let sender = Sender::new(self.sessions.clone(), self.transport.clone(), self.clock.clone(), options)
            .with_history(self.history.clone(), self.config.history.clone());
        let sender = match self.presence_tracker() {
            Some(tracker) => sender.with_removal_listener(Arc::new(tracker)),
            None => sender,
        };
        match &self.disconnect_hook {
            Some(hook) => sender.with_disconnect_hook(hook.clone()),
            None => sender,
        }
    }

    /// Takes removed sessions (or left memberships) out of presence and announces who left
    /// (nothing when no channel has presence).
    pub async fn leave_presence(&self, removed: &[crate::store::Removed]) {
        if let Some(tracker) = self.presence_tracker() {
            tracker.leave(&self.sender(), removed).await;
        }
    }

    /// Counts `session` in `channel`'s presence (if it has presence) and announces a first join.
    pub async fn join_presence(&self, session: &Session, channel: &ChannelName) -> Result<(), StoreError> {
        match self.presence_tracker() {
            Some(tracker) => tracker.join(&self.sender(), session, channel).await,
            None => Ok(()),
        }
    }

    /// Presence for the channels `config.presence` names (`None` when none has presence).
    pub fn presence_tracker(&self) -> Option<Tracker> {
        let config = &self.config;
        (!config.presence.is_empty()).then(|| {
            Tracker::new(
                self.presence.clone(),
                config.presence.clone(),
                config.presence_metadata.clone(),
                config.session_ttl.as_secs() as i64,
            )
        })
    }

    /// The latest kept messages of `channel` (at most `limit`, numbered below `before` when
    /// given, and no more than `max_bytes` of them), oldest first, stamped with their place;
    /// `None` when the channel keeps no history. `more` says older ones were left out.
    ///
    /// Unchecked: for trusted backend code (the sender's queries). A route answering a client
    /// uses [`MessageContext::channel_history`](crate::routing::MessageContext::channel_history),
    /// which checks that the connection may read the channel first.
    pub async fn channel_history_unchecked(
        &self,
        channel: &ChannelName,
        limit: Option<u32>,
        before: Option<u64>,
        max_bytes: usize,
    ) -> Result<Option<ChannelHistory>, StoreError> {
        let Some(mut rule) = self.config.history.rule_for(channel) else {
            return Ok(None);
        };
        let limit = limit.map_or(rule.size, |l| l.clamp(1, rule.size));
        if before.is_none() {
            // The newest `limit` are all an answer can hold: read no more.
            rule.size = limit;
        }
        let recent = self.history.recent(channel, 0, rule, self.clock.now_millis()).await?;
        ChannelHistory::page(channel, &recent, before, limit as usize, max_bytes).map(Some)
    }

    /// Who is in `channel`; `None` when the channel has no presence.
    ///
    /// Unchecked: for trusted backend code (the sender's queries). A route answering a client
    /// uses [`MessageContext::channel_presence`](crate::routing::MessageContext::channel_presence),
    /// which checks that the connection may read the channel first.
    pub async fn channel_presence_unchecked(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<ChannelPresence>, StoreError> {
        let Some(rule) = self.config.presence.rule_for(channel) else {
            return Ok(None);
        };
        let present = self.presence.present(channel, rule.listed, self.clock.now_secs()).await?;
        Ok(Some(ChannelPresence::fitted(channel, present, crate::protocol::ANSWER_BYTES)))
    }

    /// Whether `session` may join or read `channel`: not bound by its token to another channel,
    /// then the configured rules, then the application check.
    pub async fn may_join(&self, session: &Session, channel: &ChannelName) -> bool {
        if session.bound_channel.as_ref().is_some_and(|bound| bound != channel) {
            return false;
        }
        self.admits(session.identity.as_ref(), channel).await
    }

    /// Whether `identity` may join `channel` by the configured rules and the application check
    /// (`$connect` and the token issuer, which check a token's binding themselves).
    pub(crate) async fn admits(&self, identity: Option<&Identity>, channel: &ChannelName) -> bool {
        if !self.config.channel_rules.admits(identity, channel) {
            return false;
        }
        match &self.channel_check {
            Some(check) => check.allows(identity, channel).await,
            None => true,
        }
    }
}
