// The signaling connection: join, keep-alive, and coming back by itself after a drop.
//
// One `Session` per tab. It opens `ws(s)://<this host>/v1/signal?token=...` (browsers cannot set
// headers on a WebSocket; the server logs the path only), sends `join` or `resume`, pings every
// 15 s, counts `seq`, and when the connection drops it reconnects with the resume token and the
// last `seq` it saw, so missed events are replayed. If the resume token no longer works (the
// server restarted, the grace period passed) it joins again with the join token, which takes
// over the same seat when it still exists.

/** @typedef {import('./protocol').ServerMessage} ServerMessage */
/** @typedef {import('./protocol').ClientMessage} ClientMessage */
/** @typedef {import('./protocol').ErrorCode} ErrorCode */

/** Keep-alive interval; the server closes a connection silent for 60 s. */
export const PING_MS = 15_000;
/** Delays between reconnect attempts (the last one repeats). */
const BACKOFF_MS = [400, 1000, 2000, 4000, 7000, 10_000];
/** Reconnect attempts before asking the person to try again. */
const MAX_ATTEMPTS = 24;

/**
 * What the connection is doing, for the screen.
 * - idle: not connected and not trying (before joining, after the end)
 * - connecting: the first connection
 * - online: joined (or resumed)
 * - reconnecting: the connection dropped; trying to come back (`attempt` counts)
 * - stopped: the connection closed for good (`code` says why), or reconnecting gave up
 * @typedef {{ state: 'idle' } | { state: 'connecting' } | { state: 'online', resumed: boolean }
 *   | { state: 'reconnecting', attempt: number } | { state: 'stopped', code: number, gaveUp?: boolean }} Status
 */

/**
 * @typedef {object} SessionHooks
 * @property {(msg: ServerMessage) => void} message every server frame after dedup, in order
 * @property {(status: Status) => void} status
 * @property {(code: ErrorCode, message: string, suggestion: string | null) => void} joinRefused
 *   the first join was refused (invalid_name, name_taken, ...); the socket is closed
 * @property {() => void} unreachable the first join could not connect at all
 * @property {(token: string | null) => void} resumeToken the current resume token (to keep for a reload)
 */

/** Close codes after which the client does not come back by itself. */
export const FINAL_CLOSE = new Map([
  [1000, 'left'],
  [4000, 'removed'],
  [4001, 'banned'],
  [4002, 'denied'],
  [4003, 'meeting_ended'],
  [4004, 'replaced'],
]);

export class Session {
  /** @type {WebSocket | null} */
  #ws = null;
  #joinToken;
  /** @type {string | null} */
  #resumeToken = null;
  /** @type {string | null} */
  #displayName = null;
  #lastSeq = 0;
  /**
   * The next snapshot (`welcome`/`waiting`) starts a new numbering: set on a join socket and after
   * a resume the server could not replay, where the server's `seq` may restart below ours.
   */
  #rebase = false;
  /** Joined at least once: drops are reconnected. */
  #joined = false;
  /** This socket was opened with the resume token and its `resumed` arrived. */
  #resumedHere = false;
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #pingTimer = null;
  #nextId = 1;
  #hooks;
  #wsBase;
  #stopped = false;

  /**
   * @param {string} joinToken
   * @param {SessionHooks} hooks
   * @param {{ resumeToken?: string | null, displayName?: string | null, wsBase?: string }} [opts]
   */
  constructor(joinToken, hooks, opts = {}) {
    this.#joinToken = joinToken;
    this.#hooks = hooks;
    this.#resumeToken = opts.resumeToken ?? null;
    this.#displayName = opts.displayName ?? null;
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.#wsBase = opts.wsBase ?? `${scheme}//${window.location.host}/v1/signal`;
    window.addEventListener('online', () => {
      if (this.#retryTimer !== null) this.#retryNow();
    });
  }

  get connected() {
    return this.#ws?.readyState === WebSocket.OPEN && this.#joinedHere;
  }

  /** The socket finished join/resume. */
  #joinedHere = false;

  /**
   * First entry: join with a display name, or with none for a server-picked pseudonym.
   * @param {string | null} displayName
   */
  join(displayName) {
    this.#stopped = false;
    this.#displayName = displayName;
    this.#hooks.status({ state: 'connecting' });
    this.#open('join');
  }

  /** After a reload: come back to the seat this tab had. */
  resumeSaved() {
    this.#stopped = false;
    this.#joined = true;
    this.#hooks.status({ state: 'reconnecting', attempt: 1 });
    this.#open(this.#resumeToken ? 'resume' : 'join');
  }

  /**
   * Sends a command; returns its request id, or null when not connected.
   * @param {ClientMessage} cmd
   * @returns {string | null}
   */
  send(cmd) {
    if (!this.connected || !this.#ws) return null;
    const id = cmd.id ?? `c${this.#nextId++}`;
    this.#ws.send(JSON.stringify({ ...cmd, id }));
    return id;
  }

  /** Leaves the meeting (the server closes with 1000). */
  leave() {
    this.#stopped = true;
    this.#clearRetry();
    if (this.connected) this.send({ type: 'leave' });
    else this.#closeSocket();
    this.#forgetSeat();
  }

  /** Stops for good without a word to the server (the meeting ended, we were removed). */
  stop() {
    this.#stopped = true;
    this.#clearRetry();
    this.#closeSocket();
    this.#forgetSeat();
  }

  /** Tries to reconnect at once (the "Try again" button). */
  retryNow() {
    this.#stopped = false;
    this.#joined = true;
    this.#attempt = 0;
    this.#retryNow();
  }

  #forgetSeat() {
    this.#resumeToken = null;
    this.#hooks.resumeToken(null);
  }

  #retryNow() {
    this.#clearRetry();
    const mode = this.#modeFor(this.#attempt);
    this.#attempt += 1;
    this.#hooks.status({ state: 'reconnecting', attempt: this.#attempt });
    this.#open(mode);
  }

  /**
   * Resume first; when that fails (a browser cannot see why a WebSocket was refused: the server
   * may have restarted, or be unreachable for a moment), alternate with joining again, which
   * takes over the same seat while it is held.
   * @param {number} attempt
   * @returns {'join' | 'resume'}
   */
  #modeFor(attempt) {
    return this.#resumeToken && attempt % 2 === 0 ? 'resume' : 'join';
  }

  #clearRetry() {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #closeSocket() {
    const ws = this.#ws;
    this.#ws = null;
    this.#joinedHere = false;
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
  }

  /** @param {'join' | 'resume'} mode */
  #open(mode) {
    this.#closeSocket();
    const token = mode === 'resume' ? this.#resumeToken : this.#joinToken;
    if (!token) return;
    const ws = new WebSocket(`${this.#wsBase}?token=${encodeURIComponent(token)}`);
    this.#ws = ws;
    this.#resumedHere = false;
    this.#rebase = mode === 'join';
    const hello = `${mode}-${this.#nextId++}`;
    ws.onopen = () => {
      /** @type {ClientMessage} */
      const first =
        mode === 'resume'
          ? { type: 'resume', resume_token: /** @type {string} */ (this.#resumeToken), last_seq: this.#lastSeq, id: hello }
          : { type: 'join', display_name: this.#displayName, id: hello };
      ws.send(JSON.stringify(first));
      this.#pingTimer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'ping' }));
      }, PING_MS);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.#ws || typeof ev.data !== 'string') return;
      /** @type {ServerMessage} */
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === 'resumed' && !msg.replayed) this.#rebase = true;
      if (this.#rebase && (msg.type === 'welcome' || msg.type === 'waiting')) {
        // A fresh snapshot replaces everything we had: count from its seq, whatever came before.
        this.#rebase = false;
        this.#lastSeq = msg.seq;
      } else if (msg.seq > 0) {
        if (msg.seq <= this.#lastSeq) return; // already seen (a replay overlapping what we had)
        this.#lastSeq = msg.seq;
      }
      this.#frame(msg, mode, hello);
    };
    ws.onclose = (ev) => {
      if (ws !== this.#ws) return; // a socket we replaced or closed ourselves
      this.#closeSocket();
      this.#closed(ev.code);
    };
  }

  /**
   * @param {ServerMessage} msg
   * @param {'join' | 'resume'} mode
   * @param {string} hello the id of this socket's join/resume
   */
  #frame(msg, mode, hello) {
    switch (msg.type) {
      case 'welcome':
      case 'waiting':
        // After `resumed`, this socket's token is final: replayed snapshots carry older ones.
        if (!this.#resumedHere) this.#setResumeToken(msg.resume_token);
        this.#displayName = msg.display_name;
        this.#online(false);
        break;
      case 'resumed':
        this.#resumedHere = true;
        this.#setResumeToken(msg.resume_token);
        this.#online(true);
        break;
      case 'error':
        if (msg.id === hello) {
          this.#helloRefused(msg.code, msg.message, msg.suggestion ?? null, mode);
          return;
        }
        break;
      default:
        break;
    }
    this.#hooks.message(msg);
  }

  /** @param {boolean} resumed */
  #online(resumed) {
    const first = !this.#joinedHere;
    this.#joinedHere = true;
    this.#joined = true;
    this.#attempt = 0;
    if (first) this.#hooks.status({ state: 'online', resumed });
  }

  /** @param {string} token */
  #setResumeToken(token) {
    this.#resumeToken = token;
    this.#hooks.resumeToken(token);
  }

  /**
   * @param {ErrorCode} code
   * @param {string} message
   * @param {string | null} suggestion
   * @param {'join' | 'resume'} mode
   */
  #helloRefused(code, message, suggestion, mode) {
    if (!this.#joined) {
      // The first join: the person fixes their name (or reads why) and tries again.
      this.#stopped = true;
      this.#closeSocket();
      this.#hooks.status({ state: 'idle' });
      this.#hooks.joinRefused(code, message, suggestion);
      return;
    }
    if (mode === 'resume' && code === 'invalid_resume_token') {
      this.#resumeToken = null;
      this.#hooks.resumeToken(null);
      this.#closeSocket();
      this.#open('join');
      return;
    }
    if (mode === 'join' && (code === 'name_taken' || code === 'invalid_name')) {
      // Our seat is gone and the name was taken meanwhile: take the suggestion (or a pseudonym).
      this.#displayName = code === 'name_taken' ? suggestion : null;
      this.#closeSocket();
      this.#open('join');
      return;
    }
    if (code === 'meeting_ended' || code === 'banned') {
      this.#stopped = true;
      this.#closeSocket();
      this.#hooks.status({ state: 'stopped', code: code === 'banned' ? 4001 : 4003 });
      return;
    }
    this.#closeSocket();
    this.#scheduleRetry();
  }

  /**
   * @param {number} code
   */
  #closed(code) {
    if (this.#stopped) {
      this.#hooks.status({ state: 'stopped', code });
      return;
    }
    if (FINAL_CLOSE.has(code)) {
      this.#stopped = true;
      if (code !== 4004) this.#forgetSeat();
      this.#hooks.status({ state: 'stopped', code });
      return;
    }
    if (!this.#joined) {
      // The first join never got in: the HTTP refusal is not visible to a browser WebSocket.
      this.#stopped = true;
      this.#hooks.status({ state: 'idle' });
      this.#hooks.unreachable();
      return;
    }
    this.#scheduleRetry();
  }

  #scheduleRetry() {
    this.#clearRetry();
    if (this.#attempt >= MAX_ATTEMPTS) {
      this.#stopped = true;
      this.#hooks.status({ state: 'stopped', code: 1006, gaveUp: true });
      return;
    }
    const base = BACKOFF_MS[Math.min(this.#attempt, BACKOFF_MS.length - 1)];
    const delay = this.#attempt === 0 ? 0 : base + Math.floor(Math.random() * base * 0.3);
    const mode = this.#modeFor(this.#attempt);
    this.#attempt += 1;
    this.#hooks.status({ state: 'reconnecting', attempt: this.#attempt });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#open(mode);
    }, delay);
  }
}
