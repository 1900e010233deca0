// Issue 14: a member on a network that drops UDP still hears the meeting.
//
// The test makes a network namespace (`ip netns`) joined to this host by a veth pair on private
// test addresses (10.77.0.1 here, 10.77.0.2 inside), and drops every UDP packet inside it with
// nftables. The server listens on 10.77.0.1; a facilitator's Chromium runs here as usual, a
// member's Chromium runs inside the namespace. The member's page must receive the facilitator's
// audio (`getStats()` counters), over ICE-TCP or the server's TURN relay over TCP/TLS, and say so.
// It needs root (to make the namespace) and `ip`/`nft` (iproute2, nftables: `scripts/test`
// installs them); without them it is skipped with the reason.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import {
  Harness,
  MEDIA_MODULE,
  eventually,
  joinAs,
  mediaConnected,
  packetsReceivedFrom,
  participantId,
  personRow,
  waitForMeeting,
} from './harness.mjs';

const run = promisify(execFile);
const MEDIA_TIMEOUT = 30_000;
const NS = `haven-udpless-${process.pid}`;
const HOST_IF = `hvu${process.pid % 100000}`;
const HOST_IP = '10.77.0.1';
const NS_IP = '10.77.0.2';

/** Why this machine cannot run the test, or null. */
function missing() {
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace';
  for (const tool of ['/usr/sbin/ip', '/usr/sbin/nft']) {
    if (!existsSync(tool) && !existsSync(tool.replace('/usr/sbin', '/sbin'))) return `needs ${tool} (iproute2, nftables)`;
  }
  return null;
}

/** @param {string[]} args */
const ip = (...args) => run('ip', args);

async function makeNamespace() {
  await ip('netns', 'add', NS);
  await ip('link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', `${HOST_IF}n`);
  await ip('link', 'set', `${HOST_IF}n`, 'netns', NS);
  await ip('addr', 'add', `${HOST_IP}/30`, 'dev', HOST_IF);
  await ip('link', 'set', HOST_IF, 'up');
  await ip('netns', 'exec', NS, 'ip', 'addr', 'add', `${NS_IP}/30`, 'dev', `${HOST_IF}n`);
  await ip('netns', 'exec', NS, 'ip', 'link', 'set', `${HOST_IF}n`, 'up');
  await ip('netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up');
  // Every UDP packet in or out of the namespace is dropped (media, TURN over UDP, DNS alike).
  const rules = [
    'table inet udpless {',
    '  chain out { type filter hook output priority 0; policy accept; meta l4proto udp counter drop; }',
    '  chain in { type filter hook input priority 0; policy accept; meta l4proto udp counter drop; }',
    '}',
  ].join('\n');
  await run('ip', ['netns', 'exec', NS, 'sh', '-c', `printf '%s\\n' "$1" | nft -f -`, 'sh', rules]);
}

async function removeNamespace() {
  await ip('link', 'del', HOST_IF).catch(() => {});
  await ip('netns', 'del', NS).catch(() => {});
}

/** UDP packets the namespace's firewall dropped so far. */
async function udpDropped() {
  const { stdout } = await ip('netns', 'exec', NS, 'nft', 'list', 'table', 'inet', 'udpless');
  return [...stdout.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

/**
 * The selected ICE path of a page's connection: the local candidate's type and protocol, and
 * the relay's protocol when relayed.
 * @param {import('playwright-core').Page} page
 */
function selectedPath(page) {
  return page.evaluate(async (mod) => {
    /** @type {RTCPeerConnection | null} */
    const pc = (await import(mod)).media.peerConnection;
    if (!pc) return null;
    const stats = await pc.getStats();
    /** @type {any} */
    let found = null;
    stats.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        const pair = stats.get(r.selectedCandidatePairId);
        const local = pair && stats.get(pair.localCandidateId);
        if (local) found = { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol ?? null };
      }
    });
    return found;
  }, MEDIA_MODULE);
}

const why = missing();
const t = new Harness({ listen: `${HOST_IP}:0`, netns: NS });

before(async () => {
  if (why) return;
  await removeNamespace();
  await makeNamespace();
  await t.start();
});

after(async () => {
  if (why) return;
  await t.closeContexts();
  await t.stop();
  await removeNamespace();
});

test('with UDP dropped, a member hears the meeting over TCP or the relay, and is told', { skip: why ?? false }, async () => {
  await t.createMeeting('udpless', { waiting_room: false });
  const fac = await t.open('udpless', 'udpless-fac', 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  const member = await t.open('udpless', 'udpless-member', 'member', undefined, { netns: true });
  await joinAs(member, 'Remy');
  await waitForMeeting(member);
  await mediaConnected(fac, 'Facil');
  await mediaConnected(member, 'Remy (UDP blocked)');
  const facId = await participantId(member, 'Facil');

  // The facilitator speaks; the member's page receives it.
  await fac.locator('#mic-btn[aria-disabled="false"]').waitFor();
  await fac.locator('#mic-btn').click();
  await fac.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  const first = await eventually(() => packetsReceivedFrom(member, facId), (n) => (n ?? 0) > 0, 'Remy receives Facil', MEDIA_TIMEOUT);
  await eventually(() => packetsReceivedFrom(member, facId), (n) => (n ?? 0) >= (first ?? 0) + 50, 'Remy keeps receiving Facil', MEDIA_TIMEOUT);

  // Not over UDP: ICE over TCP to the server, or the server's relay over TCP or TLS.
  const path = await selectedPath(member);
  assert.ok(path, 'a selected candidate pair');
  console.log(`the member's path: ${JSON.stringify(path)}`);
  const overTcp = path.protocol === 'tcp' || (path.type === 'relay' && path.relayProtocol !== 'udp');
  assert.ok(overTcp, `the member's path avoids UDP: ${JSON.stringify(path)}`);
  assert.ok((await udpDropped()) > 0, 'the namespace really dropped UDP (the browser tried it first)');
  // The member is told, plainly, that audio may lag.
  await member.locator('#media-status', { hasText: /may lag a little/ }).waitFor();
});

test('with no way through at all, the facilitator sees who cannot hear the meeting', { skip: why ?? false }, async () => {
  // Now TCP is dropped too, except to the web port: the page loads, media has no path.
  const port = new URL(t.base).port;
  await ip('netns', 'exec', NS, 'nft', 'add', 'rule', 'inet', 'udpless', 'out', 'tcp', 'dport', '!=', port, 'counter', 'drop');
  await t.createMeeting('nopath', { waiting_room: false });
  const fac = await t.open('nopath', 'nopath-fac', 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  const member = await t.open('nopath', 'nopath-member', 'member', undefined, { netns: true });
  await joinAs(member, 'Nell');
  await waitForMeeting(member);
  // The server gives a session 20 s to connect, then tells the facilitators (not other members).
  await personRow(fac, 'Nell').locator('.meta', { hasText: "can't hear the meeting" }).waitFor({ timeout: 40_000 });
});
