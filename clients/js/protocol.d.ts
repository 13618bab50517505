// The lambda-ws wire types, generated from the Rust types by `lambda-ws schema --typescript`.
// Do not edit: change the Rust types and generate again (the test command checks it).

/**
 * A channel's latest kept messages, as the `history` action and the sender's history query
 * answer them.
 */
export interface ChannelHistory {
  /** The channel. */
  channel: ChannelName;
  /** Its stream (`null` when nothing was ever sent to it). */
  epoch?: string | null;
  /** The kept messages, oldest first, each with its `channel`, `seq` and `epoch`. */
  messages: unknown[];
  /**
   * Whether older kept messages were left out (by `limit`, or because the answer must fit in
   * one 128 KiB message): ask again with `before` set to the first message's `seq`.
   */
  more: boolean;
  /** The last sequence number allocated. */
  seq: number;
}

/** A channel name. */
export type ChannelName = string;

/** Who is in a channel, as the `presence` action and the sender's presence query answer it. */
export interface ChannelPresence {
  /** Anonymous connections present (counted, never listed). */
  anonymous: number;
  /** The channel. */
  channel: ChannelName;
  /** Connections present, anonymous ones included. */
  connections: number;
  /** One per user, by id; absent when the channel has more users than its rule lists. */
  members?: Member[] | null;
  /**
   * Whether `members` lists only the first users by id, the rest left out for the answer to
   * fit in one 128 KiB message (`users` still counts them all).
   */
  more?: boolean;
  /** Users present. */
  users: number;
}

/** The request of `subscribe` and `unsubscribe`. */
export interface ChannelRequest {
  /** The channel. */
  channel: ChannelName;
}

/** The request of `chat` and `chat_message`. */
export interface ChatLine {
  /** The channel; the first one the connection is in when absent. */
  channel?: ChannelName | null;
  /** What to say. */
  message: ChatText;
}

/** A chat line. `channel` (or `room`, as the reference package's chat example names it) says where. */
export interface ChatMessage {
  /** The channel it was said in. */
  channel?: string | null;
  /** With `channel`: the stream `seq` belongs to. */
  epoch?: string;
  /** What they wrote. */
  message: string;
  /** The room it was said in (the reference package's name for a channel). */
  room?: string | null;
  /** With `channel`: the message's number in the channel's stream (resume with the last one seen). */
  seq?: number;
  /** Who wrote it. */
  username: string;
  [field: string]: unknown;
}

/** Say something in a channel the connection is in (the worked example of an application route; `chat_message` is the same, under the name the reference package's browser code sends). */
export interface ChatMessageRequest {
  action: "chat_message";
  /** The channel; the first one the connection is in when absent. */
  channel?: ChannelName | null;
  /** What to say. */
  message: ChatText;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}

/** Say something in a channel the connection is in (the worked example of an application route; `chat_message` is the same, under the name the reference package's browser code sends). */
export interface ChatRequest {
  action: "chat";
  /** The channel; the first one the connection is in when absent. */
  channel?: ChannelName | null;
  /** What to say. */
  message: ChatText;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}

/** 1 to 4096 bytes once trimmed. */
export type ChatText = string;

/** An API Gateway connection id, e.g. `L0SM9cOFvHcCIhw=`. */
export type ConnectionId = string;

/** What happened to one message sent to one target. */
export interface DeliveryReport {
  /**
   * Connections closed (a request with `close`; absent otherwise). Connections already gone
   * are in `gone`, ones that could not be closed in `failed`.
   */
  closed?: number | null;
  /** Posts the Management API accepted. */
  delivered: number;
  /** Wall time of the send, in milliseconds. */
  duration_ms: number;
  /** Connections left out by `exclude`. */
  excluded: number;
  /** Connections that could not be reached, with the reason. */
  failed: FailedDelivery[];
  /** Connections the API reported gone (410); their sessions were removed. */
  gone: ConnectionId[];
  /** Set when the recipient listing failed part way: some recipients were not tried. */
  incomplete?: string | null;
  /** Connections the target resolved to, exclusions not counted. */
  recipients: number;
  /** Retries made (throttling, 5xx, timeouts). */
  retries: number;
  /** The message's place in each channel stream it was appended to (channels with history). */
  streams?: StreamPosition[];
  /** Connections named by the target that have no live session. */
  unknown: ConnectionId[];
}

/** A machine-readable error code, sent in `Outbound::Error` messages and sender errors. */
export type ErrorCode = "bad_json" | "bad_request" | "unknown_action" | "too_large" | "bad_channel" | "unauthorized" | "forbidden" | "rate_limited" | "not_connected" | "unknown_connection" | "internal";

/** A typed error sent to a client in a session. */
export interface ErrorMessage {
  /** Machine-readable code. */
  code: ErrorCode;
  /** The request field that failed, as a path (`items[0].qty`), when one did. */
  field?: string | null;
  /** Human-readable explanation (never internal details). */
  message: string;
  /** The client's `ref`, echoed. */
  ref?: string | null;
  [field: string]: unknown;
}

/** A delivery that failed for good, and why. */
export interface FailedDelivery {
  /** The connection. */
  connection_id: ConnectionId;
  /** Why (the last error). */
  reason: string;
}

/** The request of `history`: a channel and how many of its latest messages. */
export interface HistoryQuery {
  /** Only messages numbered below this (the next page back: the first `seq` of the last answer). */
  before?: number | null;
  /** The channel. */
  channel: ChannelName;
  /** At most this many (the channel's rule may keep fewer). */
  limit?: number | null;
}

/** Read a channel's latest kept messages (a channel with history), under the same permission check as `subscribe`; the reply's data has `channel`, `epoch`, `seq`, `messages` (as many as fit in one message) and `more` (older ones were left out: ask again with `before`). */
export interface HistoryRequest {
  action: "history";
  /** Only messages numbered below this (the next page back: the first `seq` of the last answer). */
  before?: number | null;
  /** The channel. */
  channel: ChannelName;
  /** At most this many (the channel's rule may keep fewer). */
  limit?: number | null;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}

/**
 * An id as its sender wrote it: an integer (`"task_id": 123`, a database key) or a string
 * (`"task_id": "export-7"`). It is delivered in the same form.
 */
export type Id = number | string;

/**
 * An inbound message: the route (`action`, or `handler` when there is no `action`), an optional
 * sub-handler, an optional correlation `ref`, and every other field as given.
 */
export interface Inbound {
  /** The route key, as API Gateway's `$request.body.action` selects it. */
  action: string;
  /** Optional sub-handler inside the route. */
  handler?: string | null;
  /** Optional correlation id, echoed on the reply or error this message causes. */
  ref?: string | null;
  [field: string]: unknown;
}

/** Severity of a toast or system message. */
export type Level = "success" | "info" | "warning" | "error";

/** One user present in a channel. */
export interface Member {
  /** How many of the user's connections are in the channel. */
  connections: number;
  /**
   * The public part of the session's metadata (the keys `LWS_PRESENCE_METADATA` names), from
   * the user's latest connection to join.
   */
  info?: Record<string, string>;
  /** The user. */
  user_id: string;
}

/** A user's first connection joined a channel with presence (sent to its other members). */
export interface MemberJoined {
  /** The channel. */
  channel: string;
  /** Who joined: the user, its connection count there and the public part of its metadata. */
  member: Member;
  [field: string]: unknown;
}

/**
 * A user's last connection left a channel with presence: unsubscribe, `$disconnect`, a 410 a
 * send found, or clean-up (sent to its remaining members).
 */
export interface MemberLeft {
  /** The channel. */
  channel: string;
  /** Who left. */
  user_id: string;
  [field: string]: unknown;
}

/** A notification for the user's inbox or bell. It needs a `message` or a `title` (or both). */
export interface Notification {
  /** Body text under the heading. */
  body?: string | null;
  /** Set on copies sent to a channel with history: the channel. */
  channel?: string;
  /** With `channel`: the stream `seq` belongs to. */
  epoch?: string;
  /** The text (`{"type":"notification","message":"You have a new notification."}`). */
  message?: string | null;
  /** Application data. */
  metadata?: unknown;
  /** With `channel`: the message's number in the channel's stream (resume with the last one seen). */
  seq?: number;
  /** Heading. */
  title?: string | null;
  /** A link to open. */
  url?: string | null;
  [field: string]: unknown;
}

/**
 * Every message the server pushes, discriminated by `type`.
 *
 * Parsing (`Outbound::from_object`, and `Deserialize`) picks the variant by `type`: a built-in
 * type is checked field by field and a mistake names the type and the field
 * (`task_progress: "percent" must be an integer 0-100`); any other `type` is a custom message.
 * Fields beyond a built-in type's own are kept in its `extra` and delivered unchanged.
 */
export type Outbound =
  | { type: "toast" } & Toast
  | { type: "task_progress" } & TaskProgress
  | { type: "resource_updated" } & ResourceUpdated
  | { type: "notification" } & Notification
  | { type: "chat_message" } & ChatMessage
  | { type: "system" } & SystemMessage
  | { type: "reply" } & Reply
  | { type: "pong" } & Pong
  | { type: "error" } & ErrorMessage
  | { type: "member_joined" } & MemberJoined
  | { type: "member_left" } & MemberLeft
  | { type: "replay" } & Replay
  | {
    type: string;
    [field: string]: unknown;
  };

/** The request of `ping`: nothing. */
export type Ping = Record<string, unknown>;

/** Ask for this connection's id (answered with `pong`). */
export interface PingRequest {
  action: "ping";
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}

/**
 * The answer to `ping`: the connection's own id, which a page passes to HTTP endpoints so the
 * broadcast its request causes can leave it out.
 */
export interface Pong {
  /** The connection's id. */
  connection_id: string;
  /** The client's `ref`, echoed. */
  ref?: string | null;
  [field: string]: unknown;
}

/** Ask who is in a channel with presence, under the same permission check as `subscribe`. The reply's data has `channel`, `users`, `connections` (anonymous ones included) and `anonymous`, and `members` (one per user: `user_id`, `connections`, `info`, the public part of its metadata) unless the channel has more users than it lists. */
export interface PresenceRequest {
  action: "presence";
  /** The channel. */
  channel: ChannelName;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}

/** What a `SenderQuery` reads. */
export type Query =
  | { history: {
    /** Only messages numbered below this (the next page back). */
    before?: number | null;
    /** The channel. */
    channel: ChannelName;
    /** At most this many (the channel's rule may keep fewer). */
    limit?: number | null;
  } }
  | { presence: {
    /** The channel. */
    channel: ChannelName;
  } };

/**
 * Several of a channel's kept messages in one frame, oldest first, as a resume replays them:
 * the client handles each as if it had arrived alone. A replay packs what fits in 32 KiB (one
 * billed unit of API Gateway) into one frame, so catching up on 100 small messages is one post,
 * not 100; a message too large to share a frame is sent alone, as itself.
 */
export interface Replay {
  /** The channel. */
  channel: string;
  /** The messages, oldest first, each with its `channel`, `seq` and `epoch`. */
  messages: unknown[];
  [field: string]: unknown;
}

/**
 * The answer to one inbound message, correlated by `ref`; or a plain reply to the current
 * connection (`{"type":"reply","message":"Received."}`).
 */
export interface Reply {
  /** The action this answers. */
  action?: string | null;
  /** The result. */
  data?: unknown;
  /** A text for the user. */
  message?: string | null;
  /** The client's `ref`, echoed. */
  ref?: string | null;
  [field: string]: unknown;
}

/** A resource changed: the page should refetch it (a lightweight invalidation). */
export interface ResourceUpdated {
  /** Set on copies sent to a channel with history: the channel. */
  channel?: string;
  /** With `channel`: the stream `seq` belongs to. */
  epoch?: string;
  /** Where to fetch the new version. */
  fetch_url?: string | null;
  /** Its id (an integer or a string). */
  id: Id;
  /** The kind of resource (`"order"`). */
  resource: string;
  /** With `channel`: the message's number in the channel's stream (resume with the last one seen). */
  seq?: number;
  [field: string]: unknown;
}

/** One request to the sender. */
export interface SendRequest {
  /**
   * Close every targeted connection (after delivering `message`, if any) and remove its
   * session, as a logout, a password change or a ban needs; for a `user` target, tokens
   * issued to the user before the close are refused at `$connect`. See `Sender::close`.
   *
   * `Sender::close`: crate::delivery::Sender::close
   */
  close?: boolean;
  /** Connections to leave out (e.g. the one whose action caused the broadcast). */
  exclude?: ConnectionId | ConnectionId[];
  /** What to deliver. Required unless `close` is set; with `close`, delivered first. */
  message?: Outbound | null;
  /** Who to deliver to (and, with `close`, whose connections to close). */
  target: Target;
  /** Contract version; absent means the current one. */
  version?: number | null;
}

/**
 * A question to the sender instead of a send: what code that may invoke the sender (a backend
 * Lambda) may read of a channel, as a browser would with the `history` and `presence` actions.
 *
 * ```json
 * {"version": 1, "query": {"history": {"channel": "room-1", "limit": 20}}}
 * {"query": {"presence": {"channel": "room-1"}}}
 * ```
 */
export interface SenderQuery {
  /** What to read. */
  query: Query;
  /** Contract version; absent means the current one. */
  version?: number | null;
}

/**
 * Which sessions a scan returns: every condition given must hold.
 *
 * `channel_prefix` matches connections that are in at least one channel starting with the
 * prefix (each such connection may be listed once per matching channel; the sender
 * de-duplicates). The default filter matches every live session.
 */
export interface SessionFilter {
  /** Only sessions of this WebSocket API (`requestContext.apiId`). */
  api_id?: string | null;
  /** Only connections in a channel whose name starts with this. */
  channel_prefix?: string | null;
  /** Only sessions whose metadata has every one of these key = value pairs. */
  metadata?: Record<string, string>;
}

/** Where a send put its message in one channel's stream. */
export interface StreamPosition {
  /** The channel. */
  channel: ChannelName;
  /** The stream's epoch. */
  epoch: string;
  /** The message's sequence number in it. */
  seq: number;
}

/** Join a channel, under the same permission check as `$connect`. In a channel with history, the reply carries the stream's `epoch` and `seq`; with `since` (and `epoch`) the messages after it are sent first, in order, and the reply says whether they close the gap (`recovered`). */
export interface SubscribeRequest {
  action: "subscribe";
  /** The channel. */
  channel: ChannelName;
  /** The stream `since` belongs to. */
  epoch?: string | null;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  /** The last sequence number seen in the channel: the messages after it are sent first. */
  since?: number | null;
  [field: string]: unknown;
}

/**
 * The request of `subscribe`: the channel, and to resume, the last `seq` seen in it with its
 * `epoch` (both from the channel's messages or an earlier `subscribe` reply).
 */
export interface Subscription {
  /** The channel. */
  channel: ChannelName;
  /** The stream `since` belongs to. */
  epoch?: string | null;
  /** The last sequence number seen in the channel: the messages after it are sent first. */
  since?: number | null;
}

/** A message from the system (maintenance, announcements). */
export interface SystemMessage {
  /** Set on copies sent to a channel with history: the channel. */
  channel?: string;
  /** With `channel`: the stream `seq` belongs to. */
  epoch?: string;
  /** Severity. */
  level: Level;
  /** The text. */
  message: string;
  /** With `channel`: the message's number in the channel's stream (resume with the last one seen). */
  seq?: number;
  [field: string]: unknown;
}

/** Who a message is delivered to. */
export type Target =
  | { connection: ConnectionId }
  | { connections: ConnectionId[] }
  | { user: string }
  | { channel: ChannelName }
  | { channels: ChannelName[] }
  | "all"
  | { api: string }
  | { filter: SessionFilter };

/** Progress of a long-running task. */
export interface TaskProgress {
  /** Set on copies sent to a channel with history: the channel. */
  channel?: string;
  /** Set when the task has finished. */
  done?: boolean | null;
  /** With `channel`: the stream `seq` belongs to. */
  epoch?: string;
  /** What the task is doing now. */
  message?: string | null;
  /** Percent done, an integer 0 to 100. */
  percent: number;
  /** With `channel`: the message's number in the channel's stream (resume with the last one seen). */
  seq?: number;
  /** The task's id (an integer or a string). */
  task_id: Id;
  [field: string]: unknown;
}

/** A short message the page shows as a toast. */
export interface Toast {
  /** A link the toast offers (render only `http(s)` and relative URLs). */
  action_url?: string | null;
  /** Set on copies sent to a channel with history: the channel. */
  channel?: string;
  /** With `channel`: the stream `seq` belongs to. */
  epoch?: string;
  /** Severity. */
  level: Level;
  /** The text. */
  message: string;
  /** Application data. */
  metadata?: unknown;
  /** With `channel`: the message's number in the channel's stream (resume with the last one seen). */
  seq?: number;
  /** How long to show it; the client's default when absent. */
  timeout_ms?: number | null;
  /** Optional heading. */
  title?: string | null;
  [field: string]: unknown;
}

/** Leave a channel. */
export interface UnsubscribeRequest {
  action: "unsubscribe";
  /** The channel. */
  channel: ChannelName;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}
