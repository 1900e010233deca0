// Test harness: a real `haven` server on port 0 with its own data directory, Debian's Chromium
// driven by playwright-core, and helpers that act through the UI the way a person would.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const run = promisify(execFile);

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** The server binary; `WEB_TEST_SERVER_BIN` overrides it (e.g. a release build). */
export const HAVEN = process.env.WEB_TEST_SERVER_BIN ?? path.join(REPO, 'target', 'debug', 'haven');
export const ARTIFACTS = path.join(REPO, 'test-artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** How long a UI condition may take before the test fails (the server answers in milliseconds). */
export const TIMEOUT = 10_000;

/** @typedef {import('playwright-core').Browser} Browser */
/** @typedef {import('playwright-core').BrowserContext} BrowserContext */
/** @typedef {import('playwright-core').Page} Page */

/** The environment without configuration meant for another server (HAVEN_*, DATABASE_URL). */
function serverEnv() {
  /** @type {Record<string, string | undefined>} */
  const env = { ...process.env, RUST_LOG: 'warn' };
  for (const key of Object.keys(env)) if (key.startsWith('HAVEN_') || key === 'DATABASE_URL') delete env[key];
  return env;
}

/**
 * A program for a configured server (instead of the demo program): HS256 tokens minted by the
 * test, an API key whose hash goes into the configuration, optional crisis resources.
 * @typedef {{ id: string, secret: string, apiKey: string,
 *   crisis?: { name: string, contact: string, note?: string }[] }} TestProgram
 */

/** @param {string} s */
const b64url = (s) => Buffer.from(s).toString('base64url');

/** @param {string} v TOML basic string */
const tomlStr = (v) => JSON.stringify(v);

/**
 * The configuration file for `programs`.
 * @param {TestProgram[]} programs
 */
export function programsToml(programs) {
  return programs
    .map((p) => {
      const crisis = (p.crisis ?? [])
        .map((c) => `{ name = ${tomlStr(c.name)}, contact = ${tomlStr(c.contact)}${c.note ? `, note = ${tomlStr(c.note)}` : ''} }`)
        .join(', ');
      return [
        '[[programs]]',
        `id = ${tomlStr(p.id)}`,
        `name = ${tomlStr(p.id)}`,
        'token_alg = "HS256"',
        `token_key = ${tomlStr(p.secret)}`,
        `api_key_sha256 = ${tomlStr(createHash('sha256').update(p.apiKey).digest('hex'))}`,
        p.crisis ? `crisis_resources = [${crisis}]` : '',
        '',
      ].join('\n');
    })
    .join('\n');
}

/**
 * An HS256 join token for a configured program (`exp` in seconds from now; negative: expired).
 * @param {TestProgram} program @param {{ meeting: string, member: string, role: string, exp?: number }} c
 */
export function mintToken(program, c) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(
    JSON.stringify({ iss: program.id, sub: c.member, aud: 'haven', meeting: c.meeting, role: c.role, iat: now - 60, exp: now + (c.exp ?? 3600) }),
  );
  const sig = createHmac('sha256', program.secret).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${sig}`;
}

export class Harness {
  /** Configured programs (empty: the server's demo program). @type {TestProgram[]} */
  programs;

  /** Where the server listens (an address a network namespace reaches, for the UDP-blocked test). */
  listen;
  /** A network namespace to run a second Chromium in (`open(..., { netns: true })`). @type {string | null} */
  netns;

  /** @param {{ programs?: TestProgram[], listen?: string, netns?: string }} [opts] */
  constructor(opts = {}) {
    this.programs = opts.programs ?? [];
    this.listen = opts.listen ?? '127.0.0.1:0';
    this.netns = opts.netns ?? null;
  }

  /** The Chromium inside `netns`, when there is one. @type {Browser | null} */
  nsBrowser = null;

  /** @type {import('node:child_process').ChildProcess | null} */
  server = null;
  /** @type {Browser | null} */
  browser = null;
  dataDir = '';
  base = '';
  apiKey = '';
  /** @type {string[]} */
  serverLog = [];
  /** Errors seen in any page (uncaught exceptions, console errors such as CSP violations). @type {string[]} */
  pageErrors = [];
  /** @type {BrowserContext[]} */
  contexts = [];

  async start() {
    if (!existsSync(HAVEN)) {
      throw new Error(`${HAVEN} is missing: build it first with \`cargo build --bin haven\``);
    }
    this.dataDir = await mkdtemp(path.join(tmpdir(), 'haven-browser-'));
    await mkdir(ARTIFACTS, { recursive: true });
    const args = ['--data-dir', this.dataDir];
    if (this.programs.length > 0) {
      const config = path.join(this.dataDir, 'haven.toml');
      await writeFile(config, programsToml(this.programs));
      args.push('--config', config);
      this.apiKey = this.programs[0].apiKey;
    }
    // Global flags after the subcommand: `haven serve --data-dir ...` (the CLI accepts them there).
    const server = spawn(HAVEN, ['serve', ...args, '--listen', this.listen], {
      env: serverEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.server = server;
    server.stderr?.on('data', (d) => this.serverLog.push(String(d)));
    const stdout = /** @type {import('node:stream').Readable} */ (server.stdout);
    let out = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}\n${this.serverLog.join('')}`)), 30_000);
      server.on('exit', (code) => reject(new Error(`server exited (${code}):\n${out}\n${this.serverLog.join('')}`)));
      stdout.on('data', (d) => {
        out += String(d);
        const url = /Haven is running at (http:\/\/[\d.]+:\d+)/.exec(out);
        const key = /API key[^\n]*\n\s+(\S+)/.exec(out);
        if (url && (key || this.programs.length > 0)) {
          clearTimeout(timer);
          this.base = url[1];
          if (key) this.apiKey = key[1];
          resolve(undefined);
        }
      });
    });
    const args2 = [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
    ];
    // The microphone needs a secure context: http on another address than loopback is made one.
    if (!this.base.startsWith('http://127.0.0.1:')) args2.push(`--unsafely-treat-insecure-origin-as-secure=${this.base}`);
    this.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: args2 });
    if (this.netns) {
      // Chromium inside the namespace: a wrapper that enters it (the pipes playwright talks over
      // are inherited).
      const wrapper = path.join(this.dataDir, 'chromium-in-netns');
      await writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${this.netns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
      this.nsBrowser = await chromium.launch({ executablePath: wrapper, headless: true, args: args2 });
    }
  }

  async stop() {
    await this.browser?.close().catch(() => {});
    await this.nsBrowser?.close().catch(() => {});
    if (this.server && this.server.exitCode === null) {
      const exited = new Promise((resolve) => this.server?.once('exit', resolve));
      this.server.kill('SIGTERM');
      const timer = setTimeout(() => this.server?.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (this.dataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  /**
   * Creates a meeting of the demo program over the HTTP API (waiting room on unless settings say).
   * @param {string} id
   * @param {Record<string, unknown>} [settings]
   * @param {{ apiKey?: string, body?: Record<string, unknown> }} [extra] another program's key; more fields
   */
  async createMeeting(id, settings = {}, extra = {}) {
    const res = await fetch(`${this.base}/v1/meetings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${extra.apiKey ?? this.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id, title: `Group ${id}`, settings, ...extra.body }),
    });
    if (!res.ok) throw new Error(`create meeting ${id}: ${res.status} ${await res.text()}`);
    return id;
  }

  /**
   * Mints a join token with the `haven token` command.
   * @param {string} meeting @param {string} member @param {'facilitator' | 'member' | 'observer'} role
   */
  async token(meeting, member, role) {
    if (this.programs.length > 0) return mintToken(this.programs[0], { meeting, member, role });
    const { stdout } = await run(HAVEN, [
      'token',
      '--data-dir',
      this.dataDir,
      '--meeting',
      meeting,
      '--member',
      member,
      '--role',
      role,
      '--raw',
    ], { env: serverEnv() });
    // A join link (`...#token=<jwt>`) or the bare token.
    const token = /#token=(\S+)/.exec(stdout)?.[1] ?? stdout.trim().split(/\s+/).pop();
    if (!token) throw new Error('haven token printed nothing');
    return token;
  }

  /**
   * A new browser context (its own storage, like another person's device) on a join link.
   * @param {string} meeting
   * @param {string} member
   * @param {'facilitator' | 'member' | 'observer'} role
   * @param {{ width: number, height: number }} [viewport]
   * @param {{ initScript?: () => void, locale?: string, token?: string, netns?: boolean }} [opts] initScript runs in
   *   the page before its own scripts; locale sets the browser's language; token replaces the minted
   *   one; netns opens the page in the Chromium inside the harness's network namespace
   */
  async open(meeting, member, role, viewport = { width: 1280, height: 800 }, opts = {}) {
    const token = opts.token ?? (await this.token(meeting, member, role));
    const browser = /** @type {Browser} */ (opts.netns ? this.nsBrowser : this.browser);
    const context = await browser.newContext({ viewport, reducedMotion: 'reduce', locale: opts.locale ?? 'en-US' });
    this.contexts.push(context);
    if (opts.initScript) await context.addInitScript(opts.initScript);
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => this.pageErrors.push(`${member}: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') this.pageErrors.push(`${member}: ${m.text()}`);
    });
    await page.goto(`${this.base}/#token=${token}`);
    return page;
  }

  /** Closes the contexts a test opened. */
  async closeContexts() {
    const all = this.contexts.splice(0);
    await Promise.all(all.map((c) => c.close().catch(() => {})));
  }
}

/**
 * Chooses a display name on the name screen and joins.
 * @param {Page} page @param {string} name
 */
export async function joinAs(page, name) {
  // The name screen follows the pre-join check; a refusal or a check still loading after the
  // first page load on a busy machine is said plainly rather than as a hidden input.
  const refused = page.locator('#screen-refused');
  await page.locator('#screen-name:visible, #screen-refused:visible').first().waitFor({ timeout: 3 * TIMEOUT });
  if (await refused.isVisible()) {
    throw new Error(`the join page refused the link: ${await refused.innerText()}`);
  }
  await page.getByLabel('Display name').fill(name);
  await page.getByRole('button', { name: 'Join the meeting' }).click();
}

/** @param {Page} page */
export async function waitForMeeting(page) {
  await page.locator('#screen-meeting').waitFor({ state: 'visible' });
}

/** @param {Page} page */
export async function waitForWaitingRoom(page) {
  await page.getByRole('heading', { name: "You're in the waiting room" }).waitFor({ state: 'visible' });
}

/**
 * Names in the speaking queue, top first, as the page shows them.
 * @param {Page} page
 */
export function queueNames(page) {
  return page.locator('#queue-list li .name').allTextContents();
}

/**
 * Waits until `read()` satisfies `ok` (polling the DOM, like Playwright's expect), and returns it.
 * @template T
 * @param {() => Promise<T>} read
 * @param {(value: T) => boolean} ok
 * @param {string} what described in the failure
 * @param {number} [timeout]
 */
export async function eventually(read, ok, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  /** @type {T | undefined} */
  let last;
  for (;;) {
    last = await read();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The row of a person in the facilitator's "People here" list.
 * @param {Page} page @param {string} name
 */
export function personRow(page, name) {
  return page.locator('#people-list li').filter({ has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });
}

/**
 * A facilitator admits a waiting person through the waiting-room list.
 * @param {Page} fac @param {string} name
 */
export async function admit(fac, name) {
  await fac.getByRole('button', { name: `Admit ${name}`, exact: true }).click();
}

/**
 * Opens a facilitator page and members, each choosing a name; members are admitted via the UI.
 * @param {Harness} t
 * @param {string} meeting
 * @param {string[]} members display names
 */
export async function meetingWith(t, meeting, members) {
  await t.createMeeting(meeting);
  const fac = await t.open(meeting, `${meeting}-fac`, 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  /** @type {Page[]} */
  const pages = [];
  for (const name of members) {
    const page = await t.open(meeting, `${meeting}-${name.toLowerCase()}`, 'member');
    await joinAs(page, name);
    await waitForWaitingRoom(page);
    await admit(fac, name);
    await waitForMeeting(page);
    pages.push(page);
  }
  return { fac, members: pages };
}

// Media. The page's RTCPeerConnection is read through the page's own instance of media.js
// (`import('/media.js')` in the page returns the module app.js already loaded), so the client
// exposes nothing on `window` for the tests.

/** The module path, in a variable so the type checker does not try to resolve it. */
export const MEDIA_MODULE = '/media.js';

/**
 * The participant id of a person, from a page's "People here" list.
 * @param {Page} page @param {string} name
 */
export async function participantId(page, name) {
  const pid = await personRow(page, name).getAttribute('data-pid');
  if (!pid) throw new Error(`no participant id for ${name}`);
  return pid;
}

/**
 * The media layer's status on a page ('connecting', 'connected', 'failed', ...).
 * @param {Page} page
 * @returns {Promise<string>}
 */
export function mediaStatus(page) {
  return page.evaluate(async (mod) => (await import(mod)).media.status, MEDIA_MODULE);
}

/**
 * RTP packets a page received from one sender: `inbound-rtp` entries of the page's
 * RTCPeerConnection `getStats()` of `kind`, for the tracks whose stream id (the remote SDP's
 * `a=msid`) is the sender's participant id, summed. Null while no such track is negotiated.
 * @param {Page} page @param {string} senderId @param {'audio' | 'video'} [kind]
 * @returns {Promise<number | null>}
 */
export function packetsReceivedFrom(page, senderId, kind = 'audio') {
  return page.evaluate(
    async ({ mod, senderId, kind }) => {
      /** @type {RTCPeerConnection | null} */
      const pc = (await import(mod)).media.peerConnection;
      const sdp = pc?.currentRemoteDescription?.sdp;
      if (!pc || !sdp) return null;
      /** @type {Set<string>} */
      const mids = new Set();
      for (const section of sdp.split(/\r\nm=/).slice(1)) {
        const mid = /\r\na=mid:(\S+)/.exec(section)?.[1];
        const stream = /\r\na=msid:(\S+)/.exec(section)?.[1];
        const rejected = /^\S+ 0 /.test(section);
        if (section.startsWith(kind) && mid && stream === senderId && !rejected) mids.add(mid);
      }
      if (mids.size === 0) return null;
      // The mid of each receiving track, for stats entries that do not carry `mid` themselves.
      /** @type {Map<string, string>} */
      const midOfTrack = new Map();
      for (const t of pc.getTransceivers()) if (t.mid) midOfTrack.set(t.receiver.track.id, t.mid);
      let total = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== kind) return;
        const mid = s.mid ?? midOfTrack.get(s.trackIdentifier);
        if (mid && mids.has(mid)) total += s.packetsReceived ?? 0;
      });
      return total;
    },
    { mod: MEDIA_MODULE, senderId, kind },
  );
}

/**
 * RTP packets a page sent (`outbound-rtp` `packetsSent` of `kind`, from `getStats()`).
 * @param {Page} page @param {'audio' | 'video'} [kind]
 * @returns {Promise<number>}
 */
export function packetsSent(page, kind = 'audio') {
  return page.evaluate(
    async ({ mod, kind }) => {
      /** @type {RTCPeerConnection | null} */
      const pc = (await import(mod)).media.peerConnection;
      if (!pc) return 0;
      let total = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === kind) total += s.packetsSent ?? 0;
      });
      return total;
    },
    { mod: MEDIA_MODULE, kind },
  );
}

/**
 * Waits until a page has sent `more` packets beyond what it had sent when called.
 * @param {Page} page @param {number} more @param {string} what
 */
export async function untilSent(page, more, what) {
  const start = await packetsSent(page);
  return eventually(() => packetsSent(page), (n) => n >= start + more, `${what}: ${more} more packets sent (from ${start})`);
}

/**
 * ICE and candidate-pair details of a page's connection, for failure messages.
 * @param {Page} page
 */
export function iceReport(page) {
  return page.evaluate(async (mod) => {
    /** @type {RTCPeerConnection | null} */
    const pc = (await import(mod)).media.peerConnection;
    if (!pc) return { pc: null };
    /** @type {unknown[]} */
    const pairs = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'candidate-pair') pairs.push({ state: s.state, nominated: s.nominated, sent: s.packetsSent, received: s.packetsReceived });
    });
    return { ice: pc.iceConnectionState, connection: pc.connectionState, signaling: pc.signalingState, pairs };
  }, MEDIA_MODULE);
}

/**
 * Waits until a page's media session is connected (with the ICE details on failure).
 * @param {Page} page @param {string} who
 */
export async function mediaConnected(page, who) {
  try {
    await eventually(() => mediaStatus(page), (s) => s === 'connected', `${who}'s media connected`);
  } catch (e) {
    throw new Error(`${/** @type {Error} */ (e).message}\nICE: ${JSON.stringify(await iceReport(page))}`);
  }
}

/**
 * A harness for one test file: the server and browser start before its first test and stop after
 * its last; after each test its pages close, and any page error or console error fails that test
 * (CSP violations among them).
 * @param {ConstructorParameters<typeof Harness>[0]} [options]
 */
export function useHarness(options) {
  const t = new Harness(options);
  before(async () => {
    await t.start();
  });
  afterEach(async () => {
    await t.closeContexts();
    assert.deepEqual(t.pageErrors.splice(0), [], 'no page errors or console errors');
  });
  after(async () => {
    await t.stop();
  });
  return t;
}
