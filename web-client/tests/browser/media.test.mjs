// Browser tests of audio and video through the server's SFU: real Chromium peer connections
// (a fake microphone and camera: --use-fake-device-for-media-stream) to a real server on
// 127.0.0.1. Every check reads RTP counters from the pages' `getStats()` and waits on them with a
// deadline; none sleeps for a fixed time.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import {
  ARTIFACTS,
  useHarness,
  eventually,
  joinAs,
  mediaConnected,
  packetsReceivedFrom,
  packetsSent,
  participantId,
  personRow,
  untilSent,
  waitForMeeting,
} from './harness.mjs';

/** Media takes longer than DOM updates: ICE, DTLS and the first packets. */
const MEDIA_TIMEOUT = 20_000;

const t = useHarness();

/**
 * A facilitator and members in a meeting without a waiting room, every page's media connected.
 * @param {string} meeting @param {string[]} names @param {Record<string, unknown>} [settings]
 * @param {{ initScript?: () => void }} [memberOpts]
 */
async function openMeeting(meeting, names, settings = {}, memberOpts = {}) {
  await t.createMeeting(meeting, { waiting_room: false, ...settings });
  const fac = await t.open(meeting, `${meeting}-fac`, 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  /** @type {import('playwright-core').Page[]} */
  const members = [];
  for (const name of names) {
    const page = await t.open(meeting, `${meeting}-${name.toLowerCase()}`, 'member', undefined, memberOpts);
    await joinAs(page, name);
    await waitForMeeting(page);
    members.push(page);
  }
  for (const [i, page] of [fac, ...members].entries()) await mediaConnected(page, ['Facil', ...names][i]);
  return { fac, members };
}

test('the floor holder is heard once unmuted, and no longer once the facilitator mutes them', async () => {
  const { fac, members } = await openMeeting('audio', ['Ash', 'Bo'], { floor_control: true });
  const [ash, bo] = members;
  const ashId = await participantId(fac, 'Ash');
  const listeners = /** @type {const} */ ([['Facil', fac], ['Bo', bo]]);

  // Everyone's client has negotiated a track for Ash's microphone (the stream id is Ash's id).
  for (const [who, page] of listeners) {
    await eventually(() => packetsReceivedFrom(page, ashId), (n) => n !== null, `${who} has a track from Ash`, MEDIA_TIMEOUT);
  }
  // In a floor-control meeting Ash, muted and without the floor, is not forwarded: Ash's browser
  // sends (a disabled track sends silence) and nothing of it arrives.
  await untilSent(ash, 50, 'Ash, muted');
  for (const [who, page] of listeners) assert.equal(await packetsReceivedFrom(page, ashId), 0, `${who} hears nothing of Ash yet`);
  // Members cannot share video in this meeting (video: facilitators_only): no camera button.
  assert.equal(await ash.locator('#camera-btn').isVisible(), false);
  assert.equal(await fac.locator('#camera-btn').isVisible(), true);

  // The facilitator gives Ash the floor; the server unmutes no one, so Ash unmutes from the page.
  await ash.getByRole('button', { name: 'Raise hand' }).click();
  await fac.getByRole('button', { name: 'Give the floor to Ash' }).first().click();
  await ash.locator('#floor-status', { hasText: 'You have the floor.' }).waitFor();
  await ash.locator('#mic-btn[aria-disabled="false"]').waitFor();
  await ash.locator('#mic-btn').click();
  await ash.getByRole('button', { name: 'Mute', exact: true }).waitFor();

  // Both other pages receive Ash's audio, and keep receiving it.
  for (const [who, page] of listeners) {
    const first = await eventually(() => packetsReceivedFrom(page, ashId), (n) => (n ?? 0) > 0, `${who} receives Ash`, MEDIA_TIMEOUT);
    await eventually(() => packetsReceivedFrom(page, ashId), (n) => (n ?? 0) >= (first ?? 0) + 50, `${who} keeps receiving Ash`, MEDIA_TIMEOUT);
  }
  // One <audio> per person heard, keyed by their participant id (none for oneself).
  const facId = await participantId(bo, 'Facil');
  const sinks = await bo.locator('#media-sinks audio').evaluateAll((els) => els.map((el) => el.getAttribute('data-pid')).sort());
  assert.deepEqual(sinks, [ashId, facId].sort());
  // The fake microphone beeps: the server names Ash as the active speaker, and the rows show it.
  await personRow(bo, 'Ash').and(bo.locator('.speaking')).waitFor({ timeout: MEDIA_TIMEOUT });

  // The facilitator mutes Ash from the people list.
  const row = personRow(fac, 'Ash');
  await row.getByText('Manage').click();
  await row.getByRole('button', { name: 'Mute Ash' }).click();
  await ash.locator('#mic-btn[aria-disabled="true"]').waitFor();
  await personRow(bo, 'Ash').locator('.meta', { hasText: /(^| )muted/ }).waitFor();

  // Packets stop arriving while Ash's browser keeps sending: a reading now, one after Ash has
  // sent 50 more packets (what was in flight has landed), one after 50 more again.
  /** @param {string} what */
  const readings = async (what) => {
    /** @type {Record<string, number | null>} */
    const r = {};
    for (const [who, page] of listeners) r[who] = await packetsReceivedFrom(page, ashId);
    return { what, sent: await packetsSent(ash), received: r };
  };
  const r1 = await readings('right after the mute');
  await untilSent(ash, 50, 'Ash after the mute');
  const r2 = await readings('after 50 more sent');
  await untilSent(ash, 50, 'Ash after the mute, again');
  const r3 = await readings('after 50 more sent again');
  assert.ok(r2.sent >= r1.sent + 50 && r3.sent >= r2.sent + 50, `Ash keeps sending: ${JSON.stringify([r1, r2, r3])}`);
  for (const [who] of listeners) {
    assert.equal(r3.received[who], r2.received[who], `${who} receives nothing more from Ash: ${JSON.stringify([r1, r2, r3])}`);
  }
});

test("cameras follow the meeting's video setting: members to the facilitators only", async () => {
  const { fac, members } = await openMeeting('video', ['Cy', 'Dee'], { video: 'members_to_facilitators' });
  const [cy, dee] = members;
  const cyId = await participantId(fac, 'Cy');
  const facId = await participantId(dee, 'Facil');

  // A facilitator's camera goes to everyone. This is also the positive control for the check
  // below: Dee's page receives and shows video when the rules send it some.
  await fac.getByRole('button', { name: 'Turn camera on' }).click();
  await mediaConnected(fac, 'Facil with camera');
  for (const [who, page] of /** @type {const} */ ([['Cy', cy], ['Dee', dee]])) {
    const v = personRow(page, 'Facil').locator('video.tile');
    await v.waitFor({ timeout: MEDIA_TIMEOUT });
    await eventually(() => v.evaluate((el) => /** @type {HTMLVideoElement} */ (el).videoWidth), (w) => w > 0, `frames of Facil at ${who}`, MEDIA_TIMEOUT);
  }

  // Members may send video to the facilitators here: the button says where it goes.
  await cy.locator('#camera-note', { hasText: 'facilitators only' }).waitFor();
  await cy.getByRole('button', { name: 'Turn camera on' }).click();
  await cy.getByRole('button', { name: 'Turn camera off' }).waitFor();
  // Turning the camera on starts a fresh session (a new offer with audio and video).
  await mediaConnected(cy, 'Cy with camera');
  await personRow(cy, 'Cy').locator('video[aria-label="Your camera"]').waitFor();

  // The facilitator sees Cy's camera in Cy's row, with real frames.
  const tile = personRow(fac, 'Cy').locator('video.tile');
  await tile.waitFor({ timeout: MEDIA_TIMEOUT });
  assert.equal(await tile.getAttribute('aria-label'), "Cy's camera");
  await eventually(() => tile.evaluate((v) => /** @type {HTMLVideoElement} */ (v).videoWidth), (w) => w > 0, 'frames of Cy at the facilitator', MEDIA_TIMEOUT);
  // Dee, another member, gets none of it: while the facilitator receives 100 more packets of
  // Cy's video and Dee receives more of the facilitator's video (Dee's video path works), no
  // packet of Cy's video reaches Dee.
  const facVideo = await eventually(() => packetsReceivedFrom(fac, cyId, 'video'), (n) => (n ?? 0) > 0, 'video at the facilitator', MEDIA_TIMEOUT);
  const deeFromFac = (await packetsReceivedFrom(dee, facId, 'video')) ?? 0;
  await eventually(() => packetsReceivedFrom(fac, cyId, 'video'), (n) => (n ?? 0) >= (facVideo ?? 0) + 100, 'more video at the facilitator', MEDIA_TIMEOUT);
  await eventually(() => packetsReceivedFrom(dee, facId, 'video'), (n) => (n ?? 0) > deeFromFac, "more of the facilitator's video at Dee", MEDIA_TIMEOUT);
  assert.ok(((await packetsReceivedFrom(dee, cyId, 'video')) ?? 0) === 0, 'Dee receives no video from Cy');
  assert.equal(await personRow(dee, 'Cy').locator('video').count(), 0);
  // Cy's audio still reaches the others after the new session (muted: a track, no packets).
  await eventually(() => packetsReceivedFrom(dee, cyId), (n) => n !== null, 'Dee has a track from Cy', MEDIA_TIMEOUT);

  for (const [who, page] of /** @type {const} */ ([['facilitator', fac], ['member', cy]])) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(ARTIFACTS, `video-${who}-desktop.png`), fullPage: true });
  }

  // Turning it off removes the tile everywhere.
  await fac.getByRole('button', { name: 'Turn camera off' }).click();
  await personRow(dee, 'Facil').locator('video').waitFor({ state: 'detached', timeout: MEDIA_TIMEOUT });
});

test('a member whose microphone is blocked is told so, and still hears the meeting', async () => {
  // This member's browser refuses the microphone (as when the person clicks "Block").
  const blockMic = () => {
    const devices = navigator.mediaDevices;
    const real = devices.getUserMedia.bind(devices);
    devices.getUserMedia = async (constraints) => {
      if (constraints?.audio) throw new DOMException('Permission denied', 'NotAllowedError');
      return real(constraints);
    };
  };
  const { fac, members } = await openMeeting('nomic', ['Eli'], {}, { initScript: blockMic });
  const [eli] = members;
  await eli.locator('#media-status', { hasText: 'blocked the microphone' }).waitFor();
  await eli.getByRole('button', { name: 'Try audio again' }).waitFor();
  await eli.screenshot({ path: path.join(ARTIFACTS, 'mic-blocked-desktop.png'), fullPage: true });

  // The facilitator speaks (unmuted): Eli receives it.
  const facId = await participantId(eli, 'Facil');
  await fac.locator('#mic-btn').click();
  await fac.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  const first = await eventually(() => packetsReceivedFrom(eli, facId), (n) => (n ?? 0) > 0, 'Eli receives the facilitator', MEDIA_TIMEOUT);
  await eventually(() => packetsReceivedFrom(eli, facId), (n) => (n ?? 0) >= (first ?? 0) + 50, 'Eli keeps receiving', MEDIA_TIMEOUT);
  assert.equal(await packetsSent(eli), 0, 'Eli sends no audio');
});

test('after a dropped connection the client starts a fresh media session and is heard again', async () => {
  const { fac, members } = await openMeeting('rejoin', ['Fin']);
  const [fin] = members;
  const finId = await participantId(fac, 'Fin');
  await fin.locator('#mic-btn').click();
  await fin.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  await eventually(() => packetsReceivedFrom(fac, finId), (n) => (n ?? 0) > 0, 'the facilitator hears Fin', MEDIA_TIMEOUT);
  // Mark the current connection, to tell a fresh one from it later.
  const mark = () =>
    fin.evaluate(async () => {
      const mod = '/media.js';
      const pc = (await import(mod)).media.peerConnection;
      if (pc && !pc.__mark) pc.__mark = Math.random();
      return pc?.__mark ?? null;
    });
  // Reload (the tab resumes its seat), then cut Fin's signaling connection (the page resumes by
  // itself): each time the client offers a new session on a new RTCPeerConnection.
  /** @type {import('playwright-core').WebSocketRoute[]} */
  const routes = [];
  await fin.routeWebSocket(/\/v1\/signal/, (ws) => {
    routes.push(ws);
    ws.connectToServer();
  });
  const beforeReload = await mark();
  await fin.reload();
  await waitForMeeting(fin);
  await eventually(mark, (m) => m !== null && m !== beforeReload, 'a new RTCPeerConnection after the reload', MEDIA_TIMEOUT);
  await mediaConnected(fin, 'Fin after the reload');
  await eventually(async () => routes.length, (n) => n >= 1, 'a routed connection');
  const afterReload = await mark();
  await routes[routes.length - 1].close({ code: 4008, reason: 'slow_consumer' });
  await fin.locator('#conn-banner', { hasText: 'Reconnected' }).waitFor();
  await eventually(mark, (m) => m !== null && m !== afterReload, 'a new RTCPeerConnection after the reconnect', MEDIA_TIMEOUT);
  await mediaConnected(fin, 'Fin after the reconnect');
  // Still unmuted (the seat was kept): the facilitator hears Fin through the new session.
  await fin.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  await eventually(() => packetsSent(fin), (n) => n >= 50, 'Fin sends on the new connection', MEDIA_TIMEOUT);
  const now = await eventually(() => packetsReceivedFrom(fac, finId), (n) => n !== null, 'a track from Fin', MEDIA_TIMEOUT);
  await eventually(() => packetsReceivedFrom(fac, finId), (n) => (n ?? 0) >= (now ?? 0) + 25, 'the facilitator hears Fin again', MEDIA_TIMEOUT);
  // One <audio> per person heard, keyed by participant id.
  assert.equal(await fac.locator(`#media-sinks audio[data-pid="${finId}"]`).count(), 1);
});

test('when the browser blocks autoplay, "Enable sound" plays the meeting', async () => {
  // As Chrome's autoplay policy can (e.g. after a reload, without a click): play() is refused
  // until the person presses something on the page, here the "Enable sound" button.
  const blockAutoplay = () => {
    let allowed = false;
    document.addEventListener(
      'click',
      (ev) => {
        if (ev.target instanceof Element && ev.target.closest('#sound-btn')) allowed = true;
      },
      true,
    );
    const play = HTMLMediaElement.prototype.play;
    HTMLMediaElement.prototype.play = function () {
      if (this instanceof HTMLAudioElement && !allowed) {
        return Promise.reject(new DOMException("play() failed because the user didn't interact with the document first.", 'NotAllowedError'));
      }
      return play.call(this);
    };
  };
  const { members } = await openMeeting('autoplay', ['Gus'], {}, { initScript: blockAutoplay });
  const [gus] = members;
  const enable = gus.getByRole('button', { name: 'Enable sound' });
  await enable.waitFor({ timeout: MEDIA_TIMEOUT });
  await enable.click();
  await enable.waitFor({ state: 'hidden' });
  const paused = await gus.locator('#media-sinks audio').evaluateAll((els) => els.map((el) => /** @type {HTMLAudioElement} */ (el).paused));
  assert.deepEqual(paused, [false], "the facilitator's audio plays");
});
