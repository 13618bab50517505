// The lambda-ws wire types, generated from the Rust types by `lambda-ws schema --typescript`.
// Do not edit: change the Rust types and generate again (the test command checks it).

/** A channel name. */
export type ChannelName = string;

/** A chat line in a channel. */
export interface ChatMessage {
  /** Where. */
  channel: string;
  /** What they wrote. */
  message: string;
  /** Who wrote it. */
  username: string;
}

/** Say something in a channel the connection is in (the worked example of a custom route). */
export interface ChatRequest {
  action: "chat";
  /** Defaults to the channel joined on connect. */
  channel?: ChannelName;
  message: string;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}

/** An API Gateway connection id, e.g. `L0SM9cOFvHcCIhw=`. */
export type ConnectionId = string;

/** What happened to one message sent to one target. */
export interface DeliveryReport {
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
  /** Connections named by the target that have no live session. */
  unknown: ConnectionId[];
}

/** A machine-readable error code, sent in `Outbound::Error` messages and sender errors. */
export type ErrorCode = "bad_json" | "bad_request" | "unknown_action" | "too_large" | "bad_channel" | "forbidden" | "rate_limited" | "not_connected" | "unknown_connection" | "internal";

/** A typed error sent to a client in a session. */
export interface ErrorMessage {
  /** Machine-readable code. */
  code: ErrorCode;
  /** Human-readable explanation (never internal details). */
  message: string;
  /** The client's `ref`, echoed. */
  ref?: string | null;
}

/** A delivery that failed for good, and why. */
export interface FailedDelivery {
  /** The connection. */
  connection_id: ConnectionId;
  /** Why (the last error). */
  reason: string;
}

/**
 * An inbound message: the route (`action`), an optional sub-handler, an optional correlation
 * `ref`, and every other field as given.
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

/** A notification for the user's inbox or bell. */
export interface Notification {
  /** Body text. */
  body?: string | null;
  /** Application data. */
  metadata?: unknown;
  /** Heading. */
  title: string;
  /** A link to open. */
  url?: string | null;
}

/** Every message the server pushes, discriminated by `type`. */
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
  | {
    type: string;
    [field: string]: unknown;
  };

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
}

/** The answer to one inbound message, correlated by `ref`. */
export interface Reply {
  /** The action this answers. */
  action: string;
  /** The result. */
  data?: unknown;
  /** The client's `ref`, echoed. */
  ref?: string | null;
}

/** A resource changed: the page should refetch it. */
export interface ResourceUpdated {
  /** Where to fetch the new version. */
  fetch_url?: string | null;
  /** Its id. */
  id: string;
  /** The kind of resource (`"invoice"`). */
  resource: string;
}

/** One request to the sender. */
export interface SendRequest {
  /** Connections to leave out (e.g. the one whose action caused the broadcast). */
  exclude?: ConnectionId | ConnectionId[];
  /** What to deliver. */
  message: Outbound;
  /** Who to deliver to. */
  target: Target;
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

/** Join a channel, under the same permission check as `$connect`. */
export interface SubscribeRequest {
  action: "subscribe";
  channel: ChannelName;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}

/** A message from the system (maintenance, announcements). */
export interface SystemMessage {
  /** Severity. */
  level: Level;
  /** The text. */
  message: string;
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
  /** Set when the task has finished. */
  done?: boolean | null;
  /** What the task is doing now. */
  message?: string | null;
  /** Percent done, 0 to 100. */
  percent: number;
  /** The task's id. */
  task_id: string;
}

/** A short message the page shows as a toast. */
export interface Toast {
  /** A link the toast offers. */
  action_url?: string | null;
  /** Severity. */
  level: Level;
  /** The text. */
  message: string;
  /** Application data. */
  metadata?: unknown;
  /** How long to show it; the client's default when absent. */
  timeout_ms?: number | null;
  /** Optional heading. */
  title?: string | null;
}

/** Leave a channel. */
export interface UnsubscribeRequest {
  action: "unsubscribe";
  channel: ChannelName;
  /** Correlation id, echoed on the answer. */
  ref?: string;
  [field: string]: unknown;
}
