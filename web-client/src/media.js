// Audio and video: one RTCPeerConnection to the server's SFU, negotiated over the signaling socket.
//
// The server decides who is heard and who is seen (mute, the floor, observers, the waiting room,
// the meeting's `video` setting): it drops what may not be forwarded, whatever this client sends.
// So this module is simple on purpose:
//
// - A *session* is one RTCPeerConnection. It starts with this client's offer (`media_offer`, with
//   the microphone track, sendrecv; the camera track too when it is on) and the server's
//   `media_answer`. Turning the camera on or off, a reconnect or a resume, and "Try again" all
//   close the connection and start a new session with a new offer. The one offer made on a live
//   connection is an ICE restart (the network changed): the server keeps the session.
// - ICE uses the server's UDP and TCP candidates and its own TURN relay (`ice_servers`, which
//   follows `welcome`), falling back by itself; the path is shown when it may be felt.
// - When others start or stop sending, the server renegotiates: `media_offer` in,
//   `media_answer` out, one at a time (all SDP work of a session runs on one promise chain).
// - Every incoming track's stream id is the sender's participant id: audio plays through one
//   `<audio>` element per participant, video shows in that participant's row.
// - Signaling for an older session (replayed after a resume, or in flight when a new session
//   started) is recognised and ignored: the server answers an offer with the offer's request id,
//   and server offers that arrive before the current session's answer belong to an older one.
// - `setMicEnabled(false)` disables the local track: it keeps sending (silence), and the server
//   does not forward it anyway while this participant may not be heard.
//
// For diagnostics and the browser tests, `media.peerConnection` is the current connection and
// `media.remoteStreams` the streams received, by participant id. The tests read them with
// `page.evaluate(async () => (await import('/media.js')).media.peerConnection)`; the page's own
// module instance is returned, so nothing is exposed on `window`.

import { t } from './i18n.js';

/** @typedef {import('./protocol').ClientMessage} ClientMessage */
/** @typedef {import('./protocol').ServerMessage} ServerMessage */

/**
 * What the page gives the media layer.
 * @typedef {object} MediaHost
 * @property {(cmd: ClientMessage) => string | null} send sends on the signaling socket; null when offline
 * @property {(text: string, urgent?: boolean) => void} announce tells screen-reader users
 * @property {() => void} changed something shown changed (status, tiles, buttons)
 * @property {HTMLElement} sinks where the `<audio>` elements live
 */

/**
 * - idle: not in a meeting
 * - connecting: asking for the microphone or connecting to the server
 * - connected: audio flows both ways (as far as the server allows)
 * - failed: the connection could not be made (see `problem`)
 * - unavailable: this browser or server has no media
 * @typedef {'idle' | 'connecting' | 'connected' | 'failed' | 'unavailable'} MediaStatus
 */

/**
 * The server refuses client messages over 16 KiB (its default `limits.max_message_bytes`). An
 * answer grows with every track in the session, stopped ones included (their m-lines stay);
 * a fresh session starts without the stopped ones.
 */
const MAX_MESSAGE_BYTES = 16 * 1024;

/** How long ICE may stay disconnected before the client restarts it (a network change). */
const DISCONNECTED_MS = 3000;
/** How long a session waits for the server's relay credentials (`ice_servers`) after `welcome`. */
const ICE_SERVERS_MS = 2000;

/** How many times a failed session is retried by itself before asking the person. */
const AUTO_RETRIES = 3;
/** Delays before those retries, in ms. */
const RETRY_MS = [500, 2000, 5000];

/** Tells this page's request ids from those of an earlier page load (replayed after a reload). */
const PAGE = Math.random().toString(36).slice(2, 8);

/** @param {unknown} e */
function errorName(e) {
  return e instanceof DOMException || e instanceof Error ? e.name : '';
}

class Media {
  /** @type {MediaHost | null} */
  #host = null;
  /** In a meeting: start() was called and stop() was not. */
  #running = false;
  /** Whether to ask for the microphone at all (observers only listen). */
  #speak = true;
  /** Counts sessions; work of an older one is dropped when it finishes. */
  #gen = 0;
  /** @type {RTCPeerConnection | null} */
  #pc = null;
  /** The request id of this session's offer while its answer is awaited. @type {string | null} */
  #offerId = null;
  /** The server answered this session's offer: its renegotiation offers are for this session. */
  #answered = false;
  /** The session's SDP work, one step at a time. @type {Promise<void>} */
  #chain = Promise.resolve();
  /** Candidates found before the offer was sent. @type {string[]} */
  #earlyCandidates = [];
  /** Numbers this session's requests. */
  #requests = 0;
  /** Answers in a row that were too large to send. */
  #oversize = 0;
  #retries = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;

  /** @type {MediaStream | null} */
  #mic = null;
  /** Why there is no microphone, for the screen. @type {string | null} */
  #micProblem = null;
  #micEnabled = false;
  /** @type {MediaStream | null} */
  #camera = null;
  #wantCamera = false;
  /** @type {string | null} */
  #cameraProblem = null;

  /** @type {Map<string, MediaStream>} */
  #remote = new Map();
  /** @type {Map<string, HTMLAudioElement>} */
  #audio = new Map();
  /** @type {WeakSet<MediaStream>} */
  #watched = new WeakSet();
  /** The browser refused to play sound until the person presses a button. */
  #soundBlocked = false;

  /** The server's relays with this participant's credentials (`ice_servers`). @type {RTCIceServer[] | null} */
  #iceServers = null;
  /** Sessions waiting for them. @type {(() => void)[]} */
  #iceWaiters = [];
  /** How the current session reaches the server, once connected. @type {'direct' | 'tcp' | 'relay' | null} */
  #path = null;
  /** This session already restarted ICE since it last connected. */
  #iceRestarted = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #disconnectTimer = null;

  /** @type {MediaStatus} */
  #status = 'idle';
  /** What went wrong, in words for the person. @type {string | null} */
  #problem = null;

  /** Whether this browser can do media at all. */
  get available() {
    return typeof RTCPeerConnection === 'function' && Boolean(navigator.mediaDevices?.getUserMedia);
  }

  /** @param {MediaHost} host */
  attach(host) {
    this.#host = host;
    // Back online (often on another network): restart ICE rather than wait for it to fail.
    window.addEventListener('online', () => this.networkChanged());
  }

  /** The current connection to the SFU (diagnostics and tests). */
  get peerConnection() {
    return this.#pc;
  }

  /** How the current session reaches the server (tests, and the note above). */
  get path() {
    return this.#path;
  }

  /** Streams received, by the sender's participant id. @returns {ReadonlyMap<string, MediaStream>} */
  get remoteStreams() {
    return this.#remote;
  }

  /** @returns {MediaStatus} */
  get status() {
    return this.#status;
  }

  /** One sentence for the person about the media state, or '' when all is well. */
  get statusText() {
    if (this.#status === 'unavailable') return this.#problem ?? t('media.unavailable');
    if (this.#status === 'failed') return this.#problem ?? t('media.failed');
    const bits = [];
    if (this.#status === 'connecting') bits.push(t(this.#iceRestarted ? 'media.reconnecting' : 'media.connecting'));
    // The path is worth a word only when it may be felt.
    if (this.#status === 'connected' && this.#path === 'relay') bits.push(t('media.relayed'));
    if (this.#status === 'connected' && this.#path === 'tcp') bits.push(t('media.overTcp'));
    if (this.#micProblem) bits.push(this.#micProblem);
    if (this.#cameraProblem) bits.push(this.#cameraProblem);
    return bits.join(' ');
  }

  /** Whether "Try again" makes sense now. */
  get canRetry() {
    return this.#running && (this.#status === 'failed' || (this.#micProblem !== null && this.#speak));
  }

  get soundBlocked() {
    return this.#soundBlocked;
  }

  get cameraOn() {
    return this.#wantCamera;
  }

  /**
   * The video to show for a participant: their camera as received, or my own preview.
   * @param {string} participantId
   * @param {boolean} mine
   * @returns {MediaStream | null}
   */
  videoOf(participantId, mine) {
    if (mine) return this.#camera && this.#camera.getVideoTracks().some(live) ? this.#camera : null;
    const stream = this.#remote.get(participantId);
    // A track the server does not forward to us stays muted (no packets): show nothing for it.
    return stream && stream.getVideoTracks().some((t) => live(t) && !t.muted) ? stream : null;
  }

  /**
   * Joins the meeting's media, or starts a fresh session (after a resume or a reconnect).
   * @param {{ speak?: boolean }} [opts] speak: false for observers (no microphone is asked for)
   */
  async start(opts = {}) {
    this.#running = true;
    if (opts.speak !== undefined) this.#speak = opts.speak;
    if (!this.available) {
      this.#setStatus('unavailable', t('media.noBrowser'));
      return;
    }
    this.#retries = 0;
    await this.#newSession();
  }

  /** "Try again": asks for the microphone again if it was refused, and reconnects. */
  async retry() {
    if (!this.#running) return;
    this.#retries = 0;
    this.#oversize = 0;
    await this.#newSession();
  }

  /** Whether my own microphone track carries sound (a disabled track still sends silence). @param {boolean} enabled */
  setMicEnabled(enabled) {
    this.#micEnabled = enabled;
    for (const t of this.#mic?.getAudioTracks() ?? []) t.enabled = enabled;
  }

  /**
   * Turns the camera on or off. Each offer is a fresh session on the server, so this starts a new
   * session with (or without) the camera track: audio drops for a moment, which keeps the client
   * simple (no client-side renegotiation).
   * @param {boolean} on
   */
  async setCamera(on) {
    if (on === this.#wantCamera) return;
    this.#wantCamera = on;
    this.#cameraProblem = null;
    if (!on) this.#stopCamera();
    this.#host?.changed();
    if (this.#running) await this.#newSession();
  }

  /** Leaving, removed, the end: closes the connection and releases the microphone and camera. */
  stop() {
    this.#running = false;
    this.#gen += 1;
    this.#clearRetry();
    this.#closeSession();
    for (const t of this.#mic?.getTracks() ?? []) t.stop();
    this.#mic = null;
    this.#micProblem = null;
    this.#wantCamera = false;
    this.#stopCamera();
    this.#soundBlocked = false;
    this.#status = 'idle';
    this.#problem = null;
    this.#host?.changed();
  }

  /** A participant left: drop what plays for them (the server also stops their tracks). @param {string} participantId */
  forget(participantId) {
    if (this.#remote.delete(participantId)) this.#sync();
  }

  /** "Turn on sound": plays what the browser refused to play without a click. */
  enableSound() {
    this.#soundBlocked = false;
    for (const el of this.#audio.values()) this.#play(el);
    this.#host?.changed();
  }

  /**
   * A server message: media signaling, or an error about it. Returns true when it was media's.
   * @param {ServerMessage} msg
   */
  handle(msg) {
    switch (msg.type) {
      case 'media_answer': {
        const pc = this.#pc;
        if (!pc || !msg.id || msg.id !== this.#offerId) return true; // an older session's
        this.#offerId = null;
        this.#answered = true;
        this.#step(pc, async () => {
          await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
          // An ICE restart on a connection that never stopped working: no state change follows.
          if (this.#iceRestarted && pc.connectionState === 'connected') {
            this.#iceRestarted = false;
            this.#setStatus('connected', null);
            void this.#readPath(pc, 10);
          }
        });
        return true;
      }
      case 'ice_servers': {
        this.#iceServers = msg.ice_servers.map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }));
        for (const wake of this.#iceWaiters.splice(0)) wake();
        return true;
      }
      case 'media_offer': {
        const pc = this.#pc;
        if (!pc || !this.#answered) return true; // for a session this client already replaced
        this.#step(pc, async () => {
          // Our own offer (an ICE restart) is out: the server drops its offer for ours and makes
          // it again after answering.
          if (pc.signalingState !== 'stable') return;
          await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
          await pc.setLocalDescription();
          const sdp = pc.localDescription?.sdp;
          if (!sdp || pc !== this.#pc) return;
          /** @type {ClientMessage} */
          const answer = { type: 'media_answer', sdp, id: this.#requestId('a') };
          if (JSON.stringify(answer).length > MAX_MESSAGE_BYTES) {
            // Unsendable: the server would wait for it forever. A fresh session sheds the stopped
            // tracks; when even that is too large, say so instead of retrying.
            this.#oversize += 1;
            const problem = t('media.tooLarge');
            if (this.#oversize >= 2) this.#giveUp(problem);
            else this.#failed(problem);
            return;
          }
          this.#oversize = 0;
          this.#host?.send(answer);
        });
        return true;
      }
      case 'media_restart': {
        // The server cannot renegotiate this session (a refused or missing answer, or too many
        // stopped tracks): start over with a fresh session, which gets everyone's tracks again.
        if (this.#running) void this.#newSession();
        return true;
      }
      case 'error': {
        // Media requests carry ids `media-<page>-<session>-<o|a|c>...` (offer, answer, candidate).
        const id = /^media-(\w+)-(\d+)-([oac])/.exec(msg.id ?? '');
        if (!id && msg.code !== 'invalid_media') return false;
        if (id && (id[1] !== PAGE || Number(id[2]) !== this.#gen || !this.#pc)) return true; // an older session's
        const kind = id?.[3] ?? (/candidate/i.test(msg.message) ? 'c' : 'a');
        if (kind === 'c') return true; // a trickled candidate: ICE works without it
        if (msg.code === 'unavailable' && kind === 'o') {
          this.#closeSession();
          this.#setStatus('unavailable', t('media.noServer'));
          return true;
        }
        // The offer or an answer was refused: the session cannot go on. Start a fresh one.
        this.#failed(t('media.refused', { code: msg.code }));
        return true;
      }
      default:
        return false;
    }
  }

  // --- sessions -------------------------------------------------------------------------------

  async #newSession() {
    const gen = ++this.#gen;
    this.#clearRetry();
    this.#closeSession();
    this.#setStatus('connecting', null);
    if (this.#speak) await this.#ensureMic();
    if (gen !== this.#gen) return;
    if (this.#wantCamera) await this.#ensureCamera();
    if (gen !== this.#gen) return;
    await this.#relays();
    if (gen !== this.#gen) return;

    // The server's own relay (TURN over UDP, TCP and TLS) beside its UDP and TCP candidates: the
    // browser's ICE tries the direct paths first and falls back by itself. Nothing else's.
    const pc = new RTCPeerConnection({
      iceServers: this.#iceServers ?? [],
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    this.#pc = pc;
    this.#path = null;
    this.#iceRestarted = false;
    this.#answered = false;
    this.#chain = Promise.resolve();
    this.#earlyCandidates = [];

    // Our own m-lines. The server answers the microphone's sendrecv line with a stream of its own
    // that carries nothing: only the m-lines the server adds (one per sender, stream id = the
    // sender's participant id) are played.
    /** @type {RTCRtpTransceiver[]} */
    const own = [];
    const mic = this.#mic?.getAudioTracks().find(live);
    if (mic && this.#mic) {
      mic.enabled = this.#micEnabled;
      own.push(pc.addTransceiver(mic, { direction: 'sendrecv', streams: [this.#mic] }));
    } else {
      own.push(pc.addTransceiver('audio', { direction: 'recvonly' }));
    }
    const cam = this.#camera?.getVideoTracks().find(live);
    if (cam && this.#camera) own.push(pc.addTransceiver(cam, { direction: 'sendonly', streams: [this.#camera] }));

    pc.ontrack = (ev) => {
      if (pc !== this.#pc || own.includes(ev.transceiver)) return;
      const stream = ev.streams[0];
      if (!stream) return; // without a stream id we cannot tell whose it is
      this.#remote.set(stream.id, stream);
      if (!this.#watched.has(stream)) {
        this.#watched.add(stream);
        stream.addEventListener('removetrack', () => this.#sync());
      }
      const track = ev.track;
      track.addEventListener('ended', () => this.#sync());
      track.addEventListener('mute', () => this.#sync());
      track.addEventListener('unmute', () => this.#sync());
      this.#sync();
    };
    pc.onicecandidate = (ev) => {
      if (pc !== this.#pc || !ev.candidate) return;
      const line = ev.candidate.candidate;
      // The server is ICE-lite on UDP; it learns our address from our checks, so trickle is a
      // help, not a need. mDNS names (`*.local`) and TCP candidates are no use to it.
      if (!line || / tcp /i.test(line) || /\.local /i.test(line)) return;
      if (this.#offerId === null && !this.#answered) this.#earlyCandidates.push(line);
      else this.#host?.send({ type: 'ice_candidate', candidate: line, id: this.#requestId('c') });
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.#pc) return;
      switch (pc.connectionState) {
        case 'connected':
          this.#retries = 0;
          this.#iceRestarted = false;
          this.#setStatus('connected', null);
          void this.#readPath(pc, 10);
          break;
        case 'failed':
          // First an ICE restart on this connection (the server keeps the session); then a fresh one.
          if (!this.#iceRestarted) this.#restartIce(pc);
          else this.#failed(t('media.failedServer'));
          break;
        default:
          break;
      }
    };
    pc.oniceconnectionstatechange = () => {
      if (pc !== this.#pc) return;
      if (this.#disconnectTimer !== null) clearTimeout(this.#disconnectTimer);
      this.#disconnectTimer = null;
      if (pc.iceConnectionState === 'disconnected') {
        // Wi-Fi to mobile, or a blip: give it a moment, then restart ICE.
        this.#disconnectTimer = setTimeout(() => {
          this.#disconnectTimer = null;
          if (pc === this.#pc && pc.iceConnectionState === 'disconnected') this.#restartIce(pc);
        }, DISCONNECTED_MS);
      }
    };

    try {
      await pc.setLocalDescription();
    } catch (e) {
      if (pc === this.#pc) this.#failed(t('media.setupFailed', { error: errorName(e) || 'error' }));
      return;
    }
    if (pc !== this.#pc) return;
    const sdp = pc.localDescription?.sdp ?? '';
    const id = this.#requestId('o');
    if (this.#host?.send({ type: 'media_offer', sdp, id }) === null) {
      // Offline: the reconnect starts a fresh session.
      return;
    }
    this.#offerId = id;
    for (const line of this.#earlyCandidates.splice(0)) {
      this.#host?.send({ type: 'ice_candidate', candidate: line, id: this.#requestId('c') });
    }
  }

  /** Waits (a little) for the server's relay credentials, which follow `welcome`. */
  async #relays() {
    if (this.#iceServers !== null) return;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, ICE_SERVERS_MS);
      this.#iceWaiters.push(() => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }

  /**
   * The network changed under a session: restart ICE on the same connection. The server keeps the
   * session, its tracks and this participant's place; only the path changes.
   * @param {RTCPeerConnection} pc
   */
  #restartIce(pc) {
    if (pc !== this.#pc || !this.#answered || this.#iceRestarted) return;
    this.#iceRestarted = true;
    this.#setStatus('connecting', null);
    this.#step(pc, async () => {
      pc.restartIce();
      await pc.setLocalDescription();
      const sdp = pc.localDescription?.sdp;
      if (!sdp || pc !== this.#pc) return;
      const id = this.#requestId('o');
      this.#offerId = id;
      if (this.#host?.send({ type: 'media_offer', sdp, id }) === null) this.#offerId = null;
    });
  }

  /** The network came back (or changed): a connected session checks its path again. */
  networkChanged() {
    const pc = this.#pc;
    if (pc && this.#answered && pc.iceConnectionState !== 'new') this.#restartIce(pc);
  }

  /**
   * Which path the connected session uses: direct (UDP), TCP to the server, or the relay. Read
   * again when ICE picks another pair; retried a few times while the statistics lag behind.
   * @param {RTCPeerConnection} pc @param {number} tries
   */
  async #readPath(pc, tries) {
    const ice = pc.getSenders().find((s) => s.transport)?.transport?.iceTransport;
    if (ice && !ice.onselectedcandidatepairchange) {
      ice.onselectedcandidatepairchange = () => {
        if (pc === this.#pc) void this.#readPath(pc, 10);
      };
    }
    const stats = await pc.getStats();
    /** @type {string | undefined} */
    let pairId;
    stats.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    });
    const pair = pairId ? stats.get(pairId) : undefined;
    const local = pair ? stats.get(pair.localCandidateId) : undefined;
    if (pc !== this.#pc) return;
    if (!local) {
      if (tries > 0) setTimeout(() => void this.#readPath(pc, tries - 1), 300);
      return;
    }
    this.#path = local.candidateType === 'relay' ? 'relay' : local.protocol === 'tcp' ? 'tcp' : 'direct';
    this.#host?.changed();
  }

  /**
   * A request id that says which page load, session and kind of request it belongs to.
   * @param {'o' | 'a' | 'c'} kind offer, answer, candidate
   */
  #requestId(kind) {
    this.#requests += 1;
    return `media-${PAGE}-${this.#gen}-${kind}${this.#requests}`;
  }

  /**
   * Runs one SDP step of a session after the ones before it.
   * @param {RTCPeerConnection} pc @param {() => Promise<void>} fn
   */
  #step(pc, fn) {
    this.#chain = this.#chain
      .then(() => (pc === this.#pc && pc.signalingState !== 'closed' ? fn() : undefined))
      .catch((e) => {
        if (pc === this.#pc) this.#failed(t('media.setupFailed', { error: errorName(e) || 'error' }));
      });
  }

  /** Closes the current connection and forgets what it received. */
  #closeSession() {
    const pc = this.#pc;
    this.#pc = null;
    this.#offerId = null;
    this.#answered = false;
    if (pc) {
      pc.ontrack = null;
      pc.onicecandidate = null;
      pc.onconnectionstatechange = null;
      pc.oniceconnectionstatechange = null;
      pc.close();
    }
    if (this.#disconnectTimer !== null) clearTimeout(this.#disconnectTimer);
    this.#disconnectTimer = null;
    this.#path = null;
    this.#remote.clear();
    this.#sync();
  }

  /** @param {string} problem */
  #failed(problem) {
    if (!this.#running) return;
    this.#closeSession();
    this.#clearRetry();
    if (this.#retries < AUTO_RETRIES) {
      const delay = RETRY_MS[Math.min(this.#retries, RETRY_MS.length - 1)];
      this.#retries += 1;
      this.#setStatus('connecting', null);
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = null;
        void this.#newSession();
      }, delay);
      return;
    }
    this.#giveUp(problem);
  }

  /** @param {string} problem */
  #giveUp(problem) {
    this.#closeSession();
    this.#clearRetry();
    this.#setStatus('failed', `${problem} ${t('media.whatToTry')}`);
    this.#host?.announce(t('media.failed'), true);
  }

  #clearRetry() {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  /**
   * @param {MediaStatus} status
   * @param {string | null} problem
   */
  #setStatus(status, problem) {
    if (this.#status === status && this.#problem === problem) return;
    this.#status = status;
    this.#problem = problem;
    this.#host?.changed();
  }

  // --- local devices --------------------------------------------------------------------------

  async #ensureMic() {
    if (this.#mic?.getAudioTracks().some(live)) return;
    try {
      const mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      if (!this.#running || this.#mic?.getAudioTracks().some(live)) {
        // Left the meeting while the browser asked (let the microphone go at once), or an
        // overlapping request got one first.
        for (const t of mic.getTracks()) t.stop();
        return;
      }
      this.#mic = mic;
      for (const t of mic.getAudioTracks()) t.enabled = this.#micEnabled;
      if (this.#micProblem) this.#host?.announce(t('media.micReady'));
      this.#micProblem = null;
    } catch (e) {
      const name = errorName(e);
      const before = this.#micProblem;
      if (name === 'NotAllowedError' || name === 'SecurityError') {
        this.#micProblem = t('media.micBlocked');
      } else if (name === 'NotFoundError' || name === 'OverconstrainedError') {
        this.#micProblem = t('media.micMissing');
      } else {
        this.#micProblem = t('media.micFailed');
      }
      if (before !== this.#micProblem) this.#host?.announce(this.#micProblem, true);
    }
    this.#host?.changed();
  }

  async #ensureCamera() {
    if (this.#camera?.getVideoTracks().some(live)) return;
    try {
      const camera = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15, max: 24 } },
      });
      if (!this.#running || !this.#wantCamera || this.#camera?.getVideoTracks().some(live)) {
        // Left, the camera was turned off again while the browser asked, or an overlapping
        // request got one first.
        for (const t of camera.getTracks()) t.stop();
        return;
      }
      this.#camera = camera;
      this.#cameraProblem = null;
    } catch (e) {
      this.#wantCamera = false;
      this.#cameraProblem =
        errorName(e) === 'NotAllowedError' ? t('media.cameraBlocked') : t('media.cameraFailed');
      this.#host?.announce(this.#cameraProblem, true);
    }
    this.#host?.changed();
  }

  #stopCamera() {
    for (const t of this.#camera?.getTracks() ?? []) t.stop();
    this.#camera = null;
  }

  // --- playback -------------------------------------------------------------------------------

  /** Makes the `<audio>` elements match the streams received, and tells the page. */
  #sync() {
    for (const [pid, stream] of this.#remote) {
      if (!stream.getTracks().some(live)) this.#remote.delete(pid);
    }
    const sinks = this.#host?.sinks;
    for (const [pid, el] of this.#audio) {
      const stream = this.#remote.get(pid);
      if (!stream || !stream.getAudioTracks().some(live)) {
        el.srcObject = null;
        el.remove();
        this.#audio.delete(pid);
      }
    }
    for (const [pid, stream] of this.#remote) {
      if (!stream.getAudioTracks().some(live)) continue;
      let el = this.#audio.get(pid);
      if (!el) {
        el = document.createElement('audio');
        el.autoplay = true;
        el.dataset.pid = pid;
        this.#audio.set(pid, el);
        sinks?.append(el);
      }
      if (el.srcObject !== stream) {
        el.srcObject = stream;
        this.#play(el);
      }
    }
    this.#host?.changed();
  }

  /** @param {HTMLAudioElement} el */
  #play(el) {
    el.play().then(
      () => {
        if (this.#soundBlocked && [...this.#audio.values()].every((a) => !a.paused)) {
          this.#soundBlocked = false;
          this.#host?.changed();
        }
      },
      (e) => {
        // NotAllowedError: the autoplay policy wants a click (e.g. after a reload). Other
        // rejections (the element was removed or given another stream) need nothing.
        if (errorName(e) === 'NotAllowedError' && !this.#soundBlocked) {
          this.#soundBlocked = true;
          this.#host?.announce(t('media.soundPaused'), true);
          this.#host?.changed();
        }
      },
    );
  }
}

/** @param {MediaStreamTrack} t */
function live(t) {
  return t.readyState === 'live';
}

export const media = new Media();
