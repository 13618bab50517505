// Types for websocket-manager.js: the lambda-ws protocol as the browser sees it.

import type { ChannelPresence, Outbound } from './protocol';

// The message types are generated from the server's Rust types (protocol.d.ts); these are the
// names this client has always exported.
export type { ErrorCode, Level, Outbound, Inbound, SendRequest, Target, DeliveryReport } from './protocol';

type OfType<T extends string> = Extract<Outbound, { type: T }>;
export type ToastMessage = OfType<'toast'>;
export type TaskProgressMessage = OfType<'task_progress'>;
export type ResourceUpdatedMessage = OfType<'resource_updated'>;
export type NotificationMessage = OfType<'notification'>;
export type ChatMessage = OfType<'chat_message'>;
export type SystemMessage = OfType<'system'>;
export type ReplyMessage = OfType<'reply'>;
export type PongMessage = OfType<'pong'>;
export type ErrorMessage = OfType<'error'>;
export type MemberJoinedMessage = OfType<'member_joined'>;
export type MemberLeftMessage = OfType<'member_left'>;
export type { Member } from './protocol';
/** Any application message with its own `type`. */
export interface CustomMessage { type: string; [field: string]: unknown }

export type OutboundMessage =
  | ToastMessage | TaskProgressMessage | ResourceUpdatedMessage | NotificationMessage | ChatMessage
  | SystemMessage | ReplyMessage | PongMessage | ErrorMessage | MemberJoinedMessage | MemberLeftMessage;

export interface MessageEvents {
  toast: ToastMessage; task_progress: TaskProgressMessage; resource_updated: ResourceUpdatedMessage;
  notification: NotificationMessage; chat_message: ChatMessage; system: SystemMessage; reply: ReplyMessage;
  pong: PongMessage; error: ErrorMessage | Error; member_joined: MemberJoinedMessage; member_left: MemberLeftMessage;
}

export interface ManagerEvents extends MessageEvents {
  open: { channel: string | null };
  /** `byServer`: the server closed the connection on purpose (code 1000, e.g. a logout closed the user's sessions). */
  close: { code: number; reason: string; byServer: boolean };
  message: OutboundMessage | CustomMessage;
  refused: { status: number; message: string };
  /** A reconnect caught up on every message missed in `channel` (numbers `from` + 1 to `to`). */
  recovered: { channel: string; from: number; to: number };
  /** Messages after `from` in `channel` could not be replayed: refetch its state. */
  gap: { channel: string; from: number; seq: number | null; epoch: string | null };
  /** The members of a channel asked for with `presence()` changed (or were fetched again). */
  presence: ChannelPresence;
}

/** Who is in a channel with presence, as the `presence` action answers it. */
export type { ChannelPresence } from './protocol';

/** The last message seen in a channel stream. */
export interface StreamPosition { seq: number; epoch: string }

/** What `history()` resolves with. */
export interface ChannelHistory {
  channel: string; epoch: string | null; seq: number; messages: OutboundMessage[];
  /** Older kept messages were left out (by `limit`, or to fit one message): ask with `before`. */
  more: boolean;
}

export interface ManagerOptions {
  /** WebSocket API URL without query string, e.g. `wss://abc.execute-api.eu-west-1.amazonaws.com/prod`. */
  url: string;
  /** Token issuer URL (default `/ws-token`). */
  tokenUrl?: string;
  /** Supplies a fresh token instead of `tokenUrl`. */
  getToken?: (context: { channel: string | null }) => Promise<string>;
  /** Channel to join on connect. */
  channel?: string;
  /** Credentials mode of the token request (default `same-origin`). */
  credentials?: RequestCredentials;
  /** Extra token request headers (e.g. Authorization, CSRF). */
  headers?: Record<string, string>;
  baseDelayMs?: number;
  maxDelayMs?: number;
  stableAfterMs?: number;
  queueLimit?: number;
  replyTimeoutMs?: number;
  /** Catch up on every (re)connect from the last `seq` seen in each channel (default true). */
  resume?: boolean;
}

/** `url` if it is http(s) or relative (resolved against `base`, the page by default), else null. */
export declare function safeHref(url: unknown, base?: string): string | null;

export declare class SendError extends Error {}
export declare class RefusedError extends Error { status: number }

export declare class WebSocketManager {
  constructor(options: ManagerOptions);
  readonly state: 'idle' | 'connecting' | 'open' | 'waiting' | 'closed' | 'refused';
  readonly channel: string | null;
  /** This connection's id, learned from `pong`. */
  readonly connectionId: string | null;
  /** A lifecycle event (`open`, `close`, `message`, `refused`, `recovered`, `gap`, `presence`; never fired by pushed data) or a message type. */
  on<K extends keyof ManagerEvents>(type: K, listener: (event: ManagerEvents[K]) => void): () => void;
  on(type: string, listener: (event: CustomMessage) => void): () => void;
  /** Pushed messages of one `type`, any type (even `open` or `close`). */
  onMessage<K extends keyof MessageEvents>(type: K, listener: (event: Exclude<MessageEvents[K], Error>) => void): () => void;
  onMessage(type: string, listener: (event: CustomMessage) => void): () => void;
  connect(): void;
  close(): void;
  changeChannel(name: string): void;
  send(action: string, payload?: Record<string, unknown>): void;
  request(action: string, payload?: Record<string, unknown>, options?: { timeoutMs?: number }): Promise<ReplyMessage | PongMessage>;
  /** Joins `channel`, and again after every reconnect, catching up from the last message seen. */
  subscribe(channel: string): Promise<ReplyMessage>;
  unsubscribe(channel: string): Promise<ReplyMessage>;
  /** The latest kept messages of a channel with history. */
  history(channel: string, limit?: number, before?: number): Promise<ChannelHistory>;
  /** The last message seen in each channel stream. */
  positions(): Record<string, StreamPosition>;
  /** Who is in a channel with presence; kept current from then on, and fetched again after every reconnect. */
  presence(channel: string): Promise<ChannelPresence>;
  /** The last known presence of a channel asked for with `presence()`, or null before its first answer. */
  members(channel: string): ChannelPresence | null;
  /** Stops keeping a channel's presence. */
  forgetPresence(channel: string): void;
}
