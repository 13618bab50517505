// Compiled (not run) by scripts/check-contract.mjs with tsc --strict: the generated message types
// are what a page using the client gets, and they stay strict.
import type { ToastMessage, OutboundMessage, WebSocketManager } from '../websocket-manager';
declare const m: WebSocketManager;
m.on('toast', (t: ToastMessage) => { const l: 'success' | 'info' | 'warning' | 'error' = t.level; const s: string = t.message; void l; void s; });
const x: OutboundMessage = { type: 'pong', connection_id: 'abc' };
// @ts-expect-error a toast needs a level
const bad: ToastMessage = { type: 'toast', message: 'x' };
void x; void bad;
import { safeHref } from '../websocket-manager';
m.onMessage('toast', (t: ToastMessage) => { void t.level; });
m.onMessage('open', (custom) => { const t: string = custom.type; void t; });
const href: string | null = safeHref('/orders/7');
void href;
m.on('recovered', (r) => { const n: number = r.to - r.from; void n; });
m.on('gap', (g) => { const c: string = g.channel; void c; });
const at: number | undefined = m.positions()['room-1']?.seq;
void at;
m.on('task_progress', (t) => { const seq: number | undefined = t.seq; void seq; });
m.on('presence', (p) => { const who: string[] = (p.members ?? []).map((member) => member.user_id); void who; });
m.on('member_left', (left) => { const u: string = left.user_id; void u; });
void m.presence('room-1').then((p) => { const n: number = p.users + p.connections; void n; });
