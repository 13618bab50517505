// Types for websocket-manager.js: the lambda-ws protocol as the browser sees it.

export type Level = 'success' | 'info' | 'warning' | 'error';

export type ErrorCode =
  | 'bad_json' | 'bad_request' | 'unknown_action' | 'too_large' | 'bad_channel' | 'forbidden'
  | 'rate_limited' | 'not_connected' | 'unknown_connection' | 'internal';

export interface ToastMessage {
  type: 'toast'; level: Level; message: string; title?: string; timeout_ms?: number;
  action_url?: string; metadata?: unknown;
}
export interface TaskProgressMessage { type: 'task_progress'; task_id: string; percent: number; message?: string; done?: boolean }
export interface ResourceUpdatedMessage { type: 'resource_updated'; resource: string; id: string; fetch_url?: string }
export interface NotificationMessage { type: 'notification'; title: string; body?: string; url?: string; metadata?: unknown }
export interface ChatMessage { type: 'chat_message'; username: string; message: string; channel: string }
export interface SystemMessage { type: 'system'; level: Level; message: string }
export interface ReplyMessage { type: 'reply'; action: string; ref?: string; data: unknown }
export interface PongMessage { type: 'pong'; connection_id: string; ref?: string }
export interface ErrorMessage { type: 'error'; code: ErrorCode; message: string; ref?: string }
/** Any application message with its own `type`. */
export interface CustomMessage { type: string; [field: string]: unknown }

export type OutboundMessage =
  | ToastMessage | TaskProgressMessage | ResourceUpdatedMessage | NotificationMessage | ChatMessage
  | SystemMessage | ReplyMessage | PongMessage | ErrorMessage;

export interface MessageEvents {
  toast: ToastMessage; task_progress: TaskProgressMessage; resource_updated: ResourceUpdatedMessage;
  notification: NotificationMessage; chat_message: ChatMessage; system: SystemMessage; reply: ReplyMessage;
  pong: PongMessage; error: ErrorMessage | Error;
}

export interface ManagerEvents extends MessageEvents {
  open: { channel: string | null };
  close: { code: number; reason: string };
  message: OutboundMessage | CustomMessage;
  refused: { status: number; message: string };
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
}

export declare class SendError extends Error {}
export declare class RefusedError extends Error { status: number }

export declare class WebSocketManager {
  constructor(options: ManagerOptions);
  readonly state: 'idle' | 'connecting' | 'open' | 'waiting' | 'closed' | 'refused';
  readonly channel: string | null;
  /** This connection's id, learned from `pong`. */
  readonly connectionId: string | null;
  on<K extends keyof ManagerEvents>(type: K, listener: (event: ManagerEvents[K]) => void): () => void;
  on(type: string, listener: (event: CustomMessage) => void): () => void;
  connect(): void;
  close(): void;
  changeChannel(name: string): void;
  send(action: string, payload?: Record<string, unknown>): void;
  request(action: string, payload?: Record<string, unknown>, options?: { timeoutMs?: number }): Promise<ReplyMessage | PongMessage>;
  subscribe(channel: string): Promise<ReplyMessage>;
  unsubscribe(channel: string): Promise<ReplyMessage>;
}
