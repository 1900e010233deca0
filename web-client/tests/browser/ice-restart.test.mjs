// Issue 14: when the network changes, the client restarts ICE on its connection and the server
// keeps the session: same participant, same tracks, audio flowing again, no fresh session.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  MEDIA_MODULE,
  useHarness,
  eventually,
  joinAs,
  mediaConnected,
  mediaStatus,
  packetsReceivedFrom,
  participantId,
  waitForMeeting,
} from './harness.mjs';

const MEDIA_TIMEOUT = 20_000;
const t = useHarness();

/** The ICE username fragment of a page's current local description. @param {import('playwright-core').Page} page */
function localUfrag(page) {
  return page.evaluate(async (mod) => {
    const sdp = (await import(mod)).media.peerConnection?.localDescription?.sdp ?? '';
    return /a=ice-ufrag:(\S+)/.exec(sdp)?.[1] ?? null;
  }, MEDIA_MODULE);
}

/** @param {string} name */
async function metric(name) {
  const text = await (await fetch(`${t.base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

test('a network change restarts ICE on the same connection and the member keeps hearing', async () => {
  await t.createMeeting('moving', { waiting_room: false });
  const fac = await t.open('moving', 'moving-fac', 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  const member = await t.open('moving', 'moving-member', 'member');
  await joinAs(member, 'Mo');
  await waitForMeeting(member);
  await mediaConnected(fac, 'Facil');
  await mediaConnected(member, 'Mo');
  await fac.locator('#mic-btn[aria-disabled="false"]').waitFor();
  await fac.locator('#mic-btn').click();
  await fac.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  const facId = await participantId(member, 'Facil');
  const before = await eventually(() => packetsReceivedFrom(member, facId), (n) => (n ?? 0) > 0, 'Mo hears Facil', MEDIA_TIMEOUT);
  const ufrag = await localUfrag(member);
  const myId = await participantId(fac, 'Mo');

  // The browser came back online (on another network, say): the client restarts ICE.
  await member.evaluate(async (mod) => (await import(mod)).media.networkChanged(), MEDIA_MODULE);
  await eventually(() => localUfrag(member), (u) => u !== null && u !== ufrag, 'fresh ICE credentials', MEDIA_TIMEOUT);
  await eventually(() => mediaStatus(member), (s) => s === 'connected', 'Mo connected again', MEDIA_TIMEOUT);
  // The same connection keeps receiving (its counters carry on from where they were).
  await eventually(() => packetsReceivedFrom(member, facId), (n) => (n ?? 0) >= (before ?? 0) + 50, 'Mo keeps hearing Facil', MEDIA_TIMEOUT);
  assert.equal(await participantId(fac, 'Mo'), myId, 'the same participant');
  assert.equal(await metric('haven_media_ice_restarts_total'), 1, 'the server renegotiated the session');
  assert.equal(await metric('haven_media_restarts_total'), 0, 'no fresh session was needed');
});
