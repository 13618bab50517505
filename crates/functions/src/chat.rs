//! The worked example of an application route: `chat {message, channel?}` says a line in a
//! channel the sender is in. It is a [`TypedRoute`]: the router parses [`ChatLine`] before the
//! route runs, and the same type is the action's entry in the AsyncAPI document.

use lambda_ws::protocol::ChatMessage;
use lambda_ws::{ChannelName, MessageContext, Outbound, RouteError, Router, Target, TypedRoute};
use serde::Deserialize;
use serde_json::json;

/// Longest chat line accepted, in bytes.
pub const MAX_CHAT_BYTES: usize = 4096;

/// The request of `chat` and `chat_message`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct ChatLine {
    /// What to say.
    pub message: ChatText,
    /// The channel; the first one the connection is in when absent.
    #[serde(default)]
    pub channel: Option<ChannelName>,
}

/// A chat line's text: 1 to [`MAX_CHAT_BYTES`] bytes once trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ChatText(String);

impl TryFrom<String> for ChatText {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.len() > MAX_CHAT_BYTES {
            return Err(format!("must be 1 to {MAX_CHAT_BYTES} bytes"));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl ChatText {
    /// The trimmed text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl schemars::JsonSchema for ChatText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChatText".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": format!("1 to {MAX_CHAT_BYTES} bytes once trimmed."),
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_CHAT_BYTES,
        })
    }
}

/// `chat {message, channel?}` broadcasts a `chat_message` to a channel the sender is in. With a
/// `ref`, the sender also gets a `reply` with the delivery count. It also answers to
/// `chat_message`, the action the reference package's browser code sends
/// (`{"action":"chat_message","message":"hi"}`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatRoute;

impl ChatRoute {
    /// The actions the chat example answers to.
    pub const ACTIONS: [&'static str; 2] = ["chat", "chat_message"];
}

#[lambda_ws::async_trait]
impl TypedRoute for ChatRoute {
    type Request = ChatLine;

    fn description(&self) -> &str {
        "Say something in a channel the connection is in (the worked example of an application route; \
         `chat_message` is the same, under the name the reference package's browser code sends)."
    }

    fn answers(&self) -> &[&str] {
        &["chat_message", "reply", "error"]
    }

    async fn handle(&self, ctx: &MessageContext<'_>, line: ChatLine) -> Result<Option<Outbound>, RouteError> {
        if ctx.handler.is_some_and(|h| h != "say" && h != ctx.action) {
            return Err(RouteError::new(lambda_ws::ErrorCode::UnknownAction, "chat has one handler: \"say\""));
        }
        let app = ctx.app;
        let joined = app.sessions.channels_of(ctx.connection_id(), app.clock.now_secs()).await?;
        let channel = match line.channel {
            Some(channel) => channel,
            None => joined.first().cloned().ok_or_else(|| RouteError::bad_request("join a channel first"))?,
        };
        if !joined.contains(&channel) {
            return Err(RouteError::forbidden("you are not in that channel").at_field("channel"));
        }
        let username = ctx.user_id().unwrap_or("anonymous").to_owned();
        let said = Outbound::ChatMessage(ChatMessage::new(username, line.message.as_str(), channel.as_str()));
        let report = app.sender().send(&Target::Channel(channel), &said, &[]).await?;
        Ok(ctx.reference.map(|_| ctx.reply(json!({ "delivered": report.delivered }))))
    }
}

/// This repository's `$default` function: the built-in actions and the chat example (for
/// messages that name it by `handler` rather than `action`).
pub fn default_router() -> Router {
    chat(Router::builtin())
}

/// This repository's chat function: the chat example under both its names.
pub fn chat_router() -> Router {
    chat(Router::new())
}

fn chat(router: Router) -> Router {
    ChatRoute::ACTIONS.iter().fold(router, |router, action| router.typed(*action, ChatRoute))
}
