// lambda-ws browser client: a token-aware, reconnecting WebSocket manager. No dependencies.
//
//   import { WebSocketManager } from './websocket-manager.js';
//   const ws = new WebSocketManager({ url: 'wss://abc.execute-api.eu-west-1.amazonaws.com/prod',
//                                     tokenUrl: '/ws-token', channel: 'lobby' });
//   ws.on('chat_message', (m) => console.log(m.username, m.message));
//   ws.connect();
//   ws.send('chat', { message: 'hi' });
//
// In a channel with history (LWS_HISTORY) every message carries `channel`, `seq` and `epoch`: the
// client keeps the last `seq` of each channel, catches up on every reconnect, drops a message it
// has seen, and emits 'recovered' (nothing missed) or 'gap' (refetch over HTTP).
//
// In a channel with presence (LWS_PRESENCE), presence(channel) asks who is there and keeps the
// answer current from member_joined / member_left, fetching it again after every reconnect;
// 'presence' fires with the channel's members whenever they change.

const MAX_MESSAGE_BYTES = 128 * 1024;

/** Raised for a send the protocol refuses (too large, closed manager). */
export class SendError extends Error {}

/** Raised when the token issuer refuses for good (401/403): reconnecting would not help. */
export class RefusedError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Events this client emits itself; a pushed message's `type` never reaches their listeners. */
const LIFECYCLE = new Set(['open', 'close', 'message', 'refused', 'recovered', 'gap', 'presence']);

function subscribe(map, name, listener) {
  if (!map.has(name)) map.set(name, new Set());
  map.get(name).add(listener);
  return () => map.get(name)?.delete(listener);
}

function notify(listeners, detail) {
  for (const listener of listeners ?? []) {
    try { listener(detail); } catch (e) { console.error(e); }
  }
}

/**
 * `url` if it is safe to put in a link's href: http(s) or relative (resolved against `base`, the
 * page by default); otherwise null. Use it for any URL a message carries (`action_url`,
 * `fetch_url`): a sender could otherwise put `javascript:` there and run code in your page.
 */
export function safeHref(url, base = globalThis.location?.href) {
  if (typeof url !== 'string' || url.trim() === '') return null;
  try {
    const parsed = new URL(url, base);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch {
    return null;
  }
}

export class WebSocketManager {
  /**
   * @param {object} options
   * @param {string} options.url WebSocket API URL, e.g. `wss://…/prod` (no query string).
   * @param {string} [options.tokenUrl='/ws-token'] token issuer URL.
   * @param {() => Promise<string>} [options.getToken] supplies a fresh token instead of tokenUrl.
   * @param {string} [options.channel] channel to join on connect.
   * @param {RequestCredentials} [options.credentials='same-origin'] for the token request.
   * @param {Record<string,string>} [options.headers] extra token request headers (CSRF).
   * @param {number} [options.baseDelayMs=500] first reconnect delay cap.
   * @param {number} [options.maxDelayMs=15000] largest reconnect delay.
   * @param {number} [options.stableAfterMs=10000] a connection open this long resets the backoff.
   * @param {number} [options.queueLimit=100] sends kept while disconnected.
   * @param {number} [options.replyTimeoutMs=10000] how long request() waits for its reply.
   * @param {boolean} [options.resume=true] on every (re)connect, catch up on the channels it is in
   *   (the connect channel and those joined with subscribe()) from the last `seq` seen in each.
   */
  constructor(options) {
    this.options = {
      tokenUrl: '/ws-token',
      credentials: 'same-origin',
      headers: {},
      baseDelayMs: 500,
      maxDelayMs: 15000,
      stableAfterMs: 10000,
      queueLimit: 100,
      replyTimeoutMs: 10000,
      resume: true,
      ...options,
    };
    this.channel = this.options.channel ?? null;
    this.socket = null;
    this.state = 'idle'; // idle | connecting | open | waiting | closed | refused
    this.attempt = 0;
    this.queue = [];
    this.pending = new Map();
    this.listeners = new Map(); // lifecycle events (and client errors)
    this.typeListeners = new Map(); // pushed messages, by type
    this.nextRef = 1;
    this.retryTimer = null;
    this.stableTimer = null;
    this.lastToken = null;
    this.connectionId = null;
    this.streams = new Map(); // channel -> { seq, epoch }: the last message seen in each stream
    this.catchingUp = new Map(); // channel -> messages held until its catch-up answer arrives
    this.subscribed = new Set(); // channels joined with subscribe(), joined again on reconnect
    this.present = new Map(); // channel -> { users, connections, anonymous, members: Map | null, fetching }
    this._onOnline = () => this._wake();
    this._onVisible = () => { if (document.visibilityState === 'visible') this._wake(); };
  }

  /**
   * Subscribes to a lifecycle event ('open', 'close', 'message', 'refused', 'recovered', 'gap',
   * 'presence')
   * or to a message type ('toast', 'chat_message', your own types). 'error' hears both: client
   * errors and `error` messages. Lifecycle events come from this client only: a pushed message
   * whose `type` is one of them never fires them (listen with onMessage for those). 'recovered'
   * ({channel, from, to}): a reconnect caught up on everything missed in a channel with history;
   * 'close' ({code, reason, byServer}): the connection closed and the client will try again;
   * `byServer` is true when the server closed it on purpose (code 1000, e.g. your backend closed
   * the user's sessions at logout). 'refused' ({status, message}): the token issuer refused
   * (401/403), so the client stops until connect() is called again.
   * 'gap' ({channel, from, seq, epoch}): it could not (the window was exceeded or the stream
   * restarted), so refetch that channel's state. 'presence' ({channel, users, connections,
   * anonymous, members}): the members of a channel asked for with presence() changed.
   */
  on(name, listener) {
    if (LIFECYCLE.has(name)) return subscribe(this.listeners, name, listener);
    const offType = subscribe(this.typeListeners, name, listener);
    if (name !== 'error') return offType;
    const offClient = subscribe(this.listeners, name, listener);
    return () => { offType(); offClient(); };
  }

  /** Subscribes to pushed messages of one `type`, whatever it is (even 'open' or 'close'). */
  onMessage(type, listener) {
    return subscribe(this.typeListeners, type, listener);
  }

  _emit(name, detail) {
    notify(this.listeners.get(name), detail);
  }

  /** Opens the connection (fetching a fresh token first) and keeps it open until close(). */
  connect() {
    if (this.state === 'connecting' || this.state === 'open') return;
    if (typeof window !== 'undefined') {
      window.addEventListener('online', this._onOnline);
      document.addEventListener('visibilitychange', this._onVisible);
    }
    this._open();
  }

  /** Closes for good: no reconnect, queued sends dropped, pending requests rejected. */
  close() {
    this.state = 'closed';
    clearTimeout(this.retryTimer);
    clearTimeout(this.stableTimer);
    if (typeof window !== 'undefined') {
      window.removeEventListener('online', this._onOnline);
      document.removeEventListener('visibilitychange', this._onVisible);
    }
    this.socket?.close(1000, 'client closed');
    this.socket = null;
    this.queue = [];
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new SendError('connection closed'));
    }
    this.pending.clear();
  }

  /** Reconnects into another channel, with a fresh token. */
  changeChannel(name) {
    this.channel = name;
    this.attempt = 0;
    if (this.state === 'closed' || this.state === 'refused') this.state = 'idle';
    const old = this.socket;
    this.socket = null;
    if (old) {
      old.onclose = null;
      old.close(1000, 'changing channel');
    }
    clearTimeout(this.retryTimer);
    this._open();
  }

  /** Sends `{action, ...payload}`. Queued (bounded) while disconnected. */
  send(action, payload = {}) {
    const text = JSON.stringify({ ...payload, action });
    if (new TextEncoder().encode(text).length > MAX_MESSAGE_BYTES) {
      throw new SendError(`message is over ${MAX_MESSAGE_BYTES} bytes`);
    }
    if (this.state === 'closed') throw new SendError('manager is closed');
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(text);
      return;
    }
    if (this.queue.length >= this.options.queueLimit) this.queue.shift();
    this.queue.push(text);
  }

  /** Sends with a `ref` and resolves with the reply (or rejects with the error) that echoes it. */
  request(action, payload = {}, { timeoutMs = this.options.replyTimeoutMs } = {}) {
    const ref = `r${this.nextRef++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new SendError(`no reply to ${action} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      try {
        this.send(action, { ...payload, ref });
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(ref);
        reject(e);
      }
    });
  }

  /** Joins `channel` (and again after every reconnect); in a channel with history, from then on
   * nothing is missed: a reconnect catches up from the last message seen. */
  subscribe(channel) {
    this.subscribed.add(channel);
    return this._catchUp(channel);
  }

  unsubscribe(channel) {
    this.subscribed.delete(channel);
    this.streams.delete(channel);
    return this.request('unsubscribe', { channel });
  }

  /**
   * The latest kept messages of a channel with history (numbered below `before`, when given):
   * resolves with `{channel, epoch, seq, messages, more}`; `more` says older ones were left out
   * (by `limit`, or for the answer to fit one message): ask again with `before: messages[0].seq`.
   */
  history(channel, limit, before) {
    const payload = { channel };
    if (limit !== undefined) payload.limit = limit;
    if (before !== undefined) payload.before = before;
    return this.request('history', payload).then((r) => r.data);
  }

  /**
   * Who is in a channel with presence: resolves with `{channel, users, connections, anonymous,
   * members}` (`members` absent when the channel has more users than it lists) and from then on
   * keeps it current from `member_joined` / `member_left`, fetching it again after every
   * reconnect (events missed while away). Each change fires 'presence' with the same shape.
   */
  presence(channel) {
    const tracked = this.present.get(channel) ?? { fetching: null, events: [] };
    this.present.set(channel, tracked);
    if (tracked.fetching) return tracked.fetching;
    tracked.events = [];
    tracked.fetching = this.request('presence', { channel }).then((reply) => {
      const data = reply.data ?? {};
      Object.assign(tracked, {
        users: data.users ?? 0,
        connections: data.connections ?? 0,
        anonymous: data.anonymous ?? 0,
        members: Array.isArray(data.members) ? new Map(data.members.map((m) => [m.user_id, m])) : null,
        fetching: null,
      });
      // Events that arrived while the answer was on its way, in order: applying one twice is
      // harmless (a join sets, a leave deletes).
      for (const event of tracked.events.splice(0)) this._applyPresence(tracked, event);
      const snapshot = this.members(channel);
      this._emit('presence', snapshot);
      return snapshot;
    }, (error) => {
      tracked.fetching = null;
      // Never answered (no presence there, not allowed): not asked again on reconnect.
      if (tracked.users === undefined) this.present.delete(channel);
      throw error;
    });
    return tracked.fetching;
  }

  /** Stops keeping `channel`'s presence. */
  forgetPresence(channel) {
    this.present.delete(channel);
  }

  /**
   * The last known presence of a channel asked for with presence(): `{channel, users,
   * connections, anonymous, members}` (members sorted by user id, absent above the listing size),
   * or null before its first answer.
   */
  members(channel) {
    const tracked = this.present.get(channel);
    if (!tracked || tracked.users === undefined) return null;
    const { users, connections, anonymous, members } = tracked;
    const answer = { channel, users, connections, anonymous };
    if (members) answer.members = [...members.values()].sort((a, b) => (a.user_id < b.user_id ? -1 : 1));
    return answer;
  }

  _presenceEvent(message) {
    const tracked = this.present.get(message.channel);
    if (!tracked) return;
    if (tracked.fetching) {
      tracked.events.push(message);
      return;
    }
    if (this._applyPresence(tracked, message)) this._emit('presence', this.members(message.channel));
  }

  /** Applies one member_joined / member_left; returns whether anything changed. */
  _applyPresence(tracked, message) {
    if (message.type === 'member_joined') {
      const known = tracked.members?.has(message.member.user_id);
      if (known) return false;
      tracked.users += 1;
      tracked.connections += message.member.connections ?? 1;
      tracked.members?.set(message.member.user_id, message.member);
      return true;
    }
    const member = tracked.members?.get(message.user_id);
    if (tracked.members && !member) return false;
    tracked.users = Math.max(0, tracked.users - 1);
    tracked.connections = Math.max(0, tracked.connections - (member?.connections ?? 1));
    tracked.members?.delete(message.user_id);
    return true;
  }

  /** Where this client is in each channel stream: `{ [channel]: { seq, epoch } }`. */
  positions() {
    return Object.fromEntries([...this.streams].map(([channel, p]) => [channel, { ...p }]));
  }

  /**
   * Asks the server for `channel`'s messages after the last one seen (none seen: just its place),
   * holding the channel's messages that arrive meanwhile; then delivers them in order, each once,
   * and emits `recovered` (the gap is closed) or `gap` (it could not be: refetch).
   */
  _catchUp(channel) {
    const running = this.catchingUp.get(channel);
    if (running) return running.done;
    const seen = this.streams.get(channel);
    const held = [];
    const payload = seen ? { channel, since: seen.seq, epoch: seen.epoch } : { channel };
    const finish = () => {
      this.catchingUp.delete(channel);
      held.sort((a, b) => a.seq - b.seq);
      for (const message of held) this._deliverInStream(message);
    };
    const done = this.request('subscribe', payload).then((reply) => {
      const data = reply?.data ?? {};
      const hasStream = typeof data.seq === 'number' && typeof data.epoch === 'string';
      if (seen && data.recovered === false) {
        this.streams.set(channel, hasStream ? { seq: data.seq, epoch: data.epoch } : seen);
        finish();
        this._emit('gap', { channel, from: seen.seq, seq: data.seq ?? null, epoch: data.epoch ?? null });
        return reply;
      }
      finish();
      const now = this.streams.get(channel);
      if (hasStream && (!now || now.epoch !== data.epoch || now.seq < data.seq)) {
        this.streams.set(channel, { seq: data.seq, epoch: data.epoch });
      }
      if (seen && data.recovered === true) this._emit('recovered', { channel, from: seen.seq, to: data.seq });
      return reply;
    }, (error) => {
      finish();
      // Refused (the replay would pass the connection's message limit): what was missed was
      // not sent, so the app refetches as for any other gap.
      if (seen && error?.code === 'rate_limited') {
        this._emit('gap', { channel, from: seen.seq, seq: null, epoch: null });
      }
      throw error;
    });
    this.catchingUp.set(channel, { held, done });
    return done;
  }

  /** A message with its place in a channel stream: held while catching up, else delivered. */
  _inStream(message) {
    const running = this.catchingUp.get(message.channel);
    if (running) running.held.push(message);
    else this._deliverInStream(message);
  }

  _deliverInStream(message) {
    const seen = this.streams.get(message.channel);
    if (seen && seen.epoch === message.epoch) {
      if (message.seq <= seen.seq) return; // delivered already (a replay overlapping live ones)
      if (message.seq > seen.seq + 1) {
        // One before it has not arrived (concurrent sends may overtake each other): hold this
        // one and ask for what came after the last seen, which replays the missing ones.
        this._catchUp(message.channel).catch((e) => this._emit('error', e));
        this.catchingUp.get(message.channel)?.held.push(message);
        return;
      }
    }
    if (seen && seen.epoch !== message.epoch) {
      this._emit('gap', { channel: message.channel, from: seen.seq, seq: message.seq, epoch: message.epoch });
    }
    this.streams.set(message.channel, { seq: message.seq, epoch: message.epoch });
    this._dispatch(message);
  }

  async _token() {
    if (this.options.getToken) return this.options.getToken({ channel: this.channel });
    const url = new URL(this.options.tokenUrl, location.href);
    if (this.channel) url.searchParams.set('channel', this.channel);
    const response = await fetch(url, {
      method: 'POST',
      credentials: this.options.credentials,
      headers: { 'x-lambda-ws': '1', ...this.options.headers },
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      throw new RefusedError(response.status, body?.error?.message ?? 'refused');
    }
    if (!response.ok || typeof body.token !== 'string') {
      throw new Error(`token request failed with ${response.status}`);
    }
    return body.token;
  }

  async _open() {
    this.state = 'connecting';
    let token;
    try {
      token = await this._token();
    } catch (e) {
      if (this.state === 'closed') return;
      if (e instanceof RefusedError) {
        this.state = 'refused';
        this._emit('refused', { status: e.status, message: e.message });
        return;
      }
      this._emit('error', e);
      this._retry();
      return;
    }
    if (this.state === 'closed') return;
    this.lastToken = token;
    const url = new URL(this.options.url);
    url.searchParams.set('ws_token', token);
    if (this.channel) url.searchParams.set('channel', this.channel);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.state = 'open';
      this.stableTimer = setTimeout(() => { this.attempt = 0; }, this.options.stableAfterMs);
      this._emit('open', { channel: this.channel });
      const queued = this.queue;
      this.queue = [];
      for (const text of queued) socket.send(text);
      if (this.options.resume) {
        const channels = new Set([...(this.channel ? [this.channel] : []), ...this.subscribed]);
        for (const channel of channels) this._catchUp(channel).catch((e) => this._emit('error', e));
      }
      // Who came and went while away: ask again.
      for (const channel of this.present.keys()) this.presence(channel).catch((e) => this._emit('error', e));
    };
    socket.onmessage = (event) => this._receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      clearTimeout(this.stableTimer);
      this.socket = null;
      // 1000 from the server: it closed this connection on purpose (API Gateway's DELETE
      // @connections: a logout, a ban). The client still tries again; a token issuer that then
      // refuses (401/403) ends it in 'refused', without a loop.
      this._emit('close', { code: event.code, reason: event.reason, byServer: event.code === 1000 });
      if (this.state !== 'closed') this._retry();
    };
  }

  _receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this._emit('error', new Error('server sent a frame that is not JSON'));
      return;
    }
    // A resume packs several kept messages into one frame: each is handled as if it came alone.
    if (message?.type === 'replay' && Array.isArray(message.messages)) {
      for (const one of message.messages) if (one && typeof one === 'object') this._handle(one);
      return;
    }
    this._handle(message);
  }

  _handle(message) {
    if (message.type === 'pong') this.connectionId = message.connection_id;
    const waiting = message.ref !== undefined && this.pending.get(message.ref);
    if (waiting && (message.type === 'reply' || message.type === 'error' || message.type === 'pong')) {
      clearTimeout(waiting.timer);
      this.pending.delete(message.ref);
      if (message.type === 'error') waiting.reject(Object.assign(new Error(message.message), message));
      else waiting.resolve(message);
    }
    const inStream = typeof message.channel === 'string' && Number.isInteger(message.seq)
      && typeof message.epoch === 'string' && !waiting;
    if (inStream) this._inStream(message);
    else this._dispatch(message);
  }

  _dispatch(message) {
    if ((message.type === 'member_joined' || message.type === 'member_left') && typeof message.channel === 'string') {
      this._presenceEvent(message);
    }
    this._emit('message', message);
    if (typeof message.type === 'string') notify(this.typeListeners.get(message.type), message);
  }

  _retry() {
    this.state = 'waiting';
    const cap = Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** this.attempt);
    this.attempt += 1;
    const delay = Math.random() * cap; // full jitter
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._open(), delay);
  }

  _wake() {
    if (this.state === 'waiting') {
      clearTimeout(this.retryTimer);
      this.attempt = 0;
      this._open();
    }
  }
}
