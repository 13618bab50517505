//! An application built on lambda-ws, outside the library: a billing app pushes invoice comments
//! and payment notices to the browsers of one tenant.
//!
//! - [`TenantHook`] (a connect hook) attaches the caller's tenant to the session, from the
//!   `tenant-<name>` group of their identity, and refuses callers who belong to no tenant.
//! - [`TenantChannels`] (a channel check) lets a tenant's users, and only them, into
//!   `invoices-<tenant>`.
//! - Two typed routes: [`CommentRoute`] says something about an invoice to the tenant's channel,
//!   [`WhoAmIRoute`] answers with what the session knows.
//! - [`announce_payment`], run by the `notify` function, sends [`InvoicePaid`] through the sender
//!   function with a [`SenderClient`].
//!
//! `src/bin/` holds the Lambda functions (three lines each, named `invoices-*`) and `dev`, the local gateway with
//! these routes and hooks; `template.yaml` deploys them.

use std::sync::Arc;

use lambda_ws::client::{ClientError, SenderClient};
use lambda_ws::hooks::{ConnectHook, ConnectInfo, Metadata, Refusal};
use lambda_ws::protocol::OutboundMessage;
use lambda_ws::schema::Contract;
use lambda_ws::{
    App, ChannelCheck, ChannelName, DeliveryReport, Identity, MessageContext, Outbound, RouteError, Router,
    SendRequest, Target, TypedRoute,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The group prefix that names a user's tenant: `tenant-acme` is tenant `acme`.
pub const TENANT_GROUP_PREFIX: &str = "tenant-";

/// The tenant of an identity: its one `tenant-<name>` group.
pub fn tenant_of(identity: &Identity) -> Option<&str> {
    let mut tenants = identity.groups.iter().filter_map(|g| g.strip_prefix(TENANT_GROUP_PREFIX));
    match (tenants.next(), tenants.next()) {
        (Some(tenant), None) if !tenant.is_empty() => Some(tenant),
        _ => None,
    }
}

/// A tenant's channel: `invoices-<tenant>`.
pub fn tenant_channel(tenant: &str) -> Result<ChannelName, lambda_ws::session::NameError> {
    ChannelName::new(format!("invoices-{tenant}"))
}

/// `$connect`: the session's metadata is `{"tenant": …, "client": …}` (`client` from
/// `?client=web|mobile`, default `web`); a caller with no tenant is refused with 403.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantHook;

#[lambda_ws::async_trait]
impl ConnectHook for TenantHook {
    async fn on_connect(&self, info: &ConnectInfo<'_>) -> Result<Metadata, Refusal> {
        let tenant = info.identity.and_then(tenant_of).ok_or_else(|| Refusal::new(403, "no tenant"))?;
        let client = match info.query("client") {
            Some(client @ ("web" | "mobile")) => client,
            None => "web",
            Some(_) => return Err(Refusal::new(400, "client must be web or mobile")),
        };
        Ok(Metadata::from([("tenant".to_owned(), tenant.to_owned()), ("client".to_owned(), client.to_owned())]))
    }
}

/// Who may join which channel: `invoices-<tenant>` is for that tenant's users; other channels
/// are left to `LWS_CHANNEL_RULES`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantChannels;

#[lambda_ws::async_trait]
impl ChannelCheck for TenantChannels {
    async fn allows(&self, identity: Option<&Identity>, channel: &ChannelName) -> bool {
        match channel.as_str().strip_prefix("invoices-") {
            Some(tenant) => identity.and_then(tenant_of) == Some(tenant),
            None => true,
        }
    }
}

/// The app every function of this application runs with: the hook and the check.
pub fn setup(app: App) -> App {
    app.with_connect_hook(Arc::new(TenantHook)).with_channel_check(Arc::new(TenantChannels))
}

/// An invoice id: `inv-` and 1 to 32 letters, digits or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InvoiceId(String);

impl schemars::JsonSchema for InvoiceId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InvoiceId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An invoice id, e.g. `inv-42`.",
            "type": "string",
            "pattern": "^inv-[A-Za-z0-9-]{1,32}$",
        })
    }
}

impl TryFrom<String> for InvoiceId {
    type Error = &'static str;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        let rest = id.strip_prefix("inv-").ok_or("an invoice id starts with inv-")?;
        if (1..=32).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            Ok(Self(id))
        } else {
            Err("an invoice id is inv- and 1 to 32 letters, digits or -")
        }
    }
}

impl From<InvoiceId> for String {
    fn from(id: InvoiceId) -> Self {
        id.0
    }
}

/// `{"action":"comment","invoice":"inv-42","text":"Sent the reminder"}`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct Comment {
    /// The invoice commented on.
    pub invoice: InvoiceId,
    /// The comment, 1 to 500 characters.
    #[schemars(length(min = 1, max = 500))]
    pub text: String,
}

/// Pushed to a tenant's channel when someone comments on an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InvoiceComment {
    /// The invoice.
    pub invoice: InvoiceId,
    /// Who commented.
    pub author: String,
    /// What they said.
    pub text: String,
}

impl OutboundMessage for InvoiceComment {
    const TYPE: &'static str = "invoice_comment";
}

/// `comment {invoice, text}`: every connection of the sender's tenant gets an
/// [`InvoiceComment`]; with a `ref`, the sender gets a reply with the delivery count.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommentRoute;

#[lambda_ws::async_trait]
impl TypedRoute for CommentRoute {
    type Request = Comment;

    fn description(&self) -> &str {
        "Comment on an invoice; the tenant's connections get `invoice_comment`."
    }

    async fn handle(&self, ctx: &MessageContext<'_>, comment: Comment) -> Result<Option<Outbound>, RouteError> {
        let text = comment.text.trim();
        if text.is_empty() || text.chars().count() > 500 {
            return Err(RouteError::bad_request("text: 1 to 500 characters").at_field("text"));
        }
        // The tenant the connect hook attached, not anything the client says.
        let tenant = ctx.session.metadata.get("tenant").ok_or_else(|| RouteError::forbidden("no tenant"))?;
        let channel = tenant_channel(tenant).map_err(RouteError::internal)?;
        let author = ctx.user_id().unwrap_or("anonymous").to_owned();
        let said = InvoiceComment { invoice: comment.invoice, author, text: text.to_owned() };
        let message = Outbound::message(&said)?;
        let report = ctx.app.sender().send(&Target::Channel(channel), &message, &[]).await?;
        Ok(ctx.reference.map(|_| ctx.reply(json!({ "delivered": report.delivered }))))
    }
}

/// `whoami {}`: `reply` with the user, the tenant and the client the session was opened with.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhoAmIRoute;

/// The request of `whoami`: nothing.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
pub struct WhoAmI {}

#[lambda_ws::async_trait]
impl TypedRoute for WhoAmIRoute {
    type Request = WhoAmI;

    fn description(&self) -> &str {
        "What the server knows about this connection: user, tenant, client."
    }

    async fn handle(&self, ctx: &MessageContext<'_>, _: WhoAmI) -> Result<Option<Outbound>, RouteError> {
        let metadata = &ctx.session.metadata;
        Ok(Some(ctx.reply(json!({
            "user": ctx.user_id(),
            "tenant": metadata.get("tenant"),
            "client": metadata.get("client"),
        }))))
    }
}

/// The routes of the `messages` function: the built-in actions and this app's.
pub fn routes() -> Router {
    Router::builtin().typed("comment", CommentRoute).typed("whoami", WhoAmIRoute)
}

/// Pushed to a tenant's channel when an invoice is paid (by the `notify` function).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InvoicePaid {
    /// The invoice.
    pub invoice: InvoiceId,
    /// The amount paid, in cents.
    pub amount_cents: u64,
}

impl OutboundMessage for InvoicePaid {
    const TYPE: &'static str = "invoice_paid";
}

/// What the payment system sends the `notify` function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// The tenant whose invoice was paid.
    pub tenant: String,
    /// The invoice.
    pub invoice: InvoiceId,
    /// The amount paid, in cents.
    pub amount_cents: u64,
}

/// Why a payment could not be announced.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The event names no valid tenant.
    #[error("bad tenant: {0}")]
    Tenant(String),
    /// The message could not be built.
    #[error("bad message: {0}")]
    Message(#[from] lambda_ws::protocol::OutboundError),
    /// The sender could not be reached, or refused.
    #[error(transparent)]
    Sender(#[from] ClientError),
}

/// Announces a payment to the tenant's channel through the sender function.
pub async fn announce_payment(sender: &SenderClient, event: PaymentEvent) -> Result<DeliveryReport, NotifyError> {
    let channel = tenant_channel(&event.tenant).map_err(|e| NotifyError::Tenant(e.to_string()))?;
    let paid = InvoicePaid { invoice: event.invoice, amount_cents: event.amount_cents };
    let request = SendRequest::new(Target::Channel(channel), Outbound::message(&paid)?);
    Ok(sender.send(&request).await?)
}

/// This app's contract: its routes and its two outbound messages.
pub fn contract(contract: Contract<'_>) -> Contract<'_> {
    contract
        .info("invoices", env!("CARGO_PKG_VERSION"))
        .description("An example application on lambda-ws: invoice comments and payment notices per tenant.")
        .outbound::<InvoiceComment>()
        .outbound::<InvoicePaid>()
}

/// The local gateway with this app's functions (the binaries `template.yaml` names), hook,
/// check and contract: what `cargo run --bin dev` runs.
pub fn dev() -> lambda_ws_local::Dev {
    // The binaries are named for the app: a workspace shares one target folder, and the
    // repository's own functions are `connect`, `disconnect`, ... there.
    let functions = lambda_ws_local::Functions::new()
        .connect("invoices-connect")
        .disconnect("invoices-disconnect")
        .messages("invoices-messages", routes());
    lambda_ws_local::Dev::new("invoices dev", functions).app(setup).contract(contract)
}
