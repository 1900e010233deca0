// Browser tests of what keeps members safe and informed: support requests a facilitator cannot
// miss, crisis resources, refusals explained before a name is typed, floor-control wording, the
// end screens. The server runs with two configured programs: one with crisis resources, one
// without (tokens are minted here with each program's HS256 secret).

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, useHarness, eventually, joinAs, mintToken, personRow, waitForMeeting } from './harness.mjs';

/** @type {import('./harness.mjs').TestProgram} */
const RIVERSIDE = {
  id: 'riverside',
  secret: 'riverside-test-secret-0123456789abcdef',
  apiKey: 'hvk_riverside_test_key_0123456789',
  crisis: [
    { name: '988 Suicide & Crisis Lifeline', contact: 'tel:988', note: 'call or text, 24/7' },
    { name: 'Crisis Text Line', contact: 'sms:741741' },
  ],
};
/** A program that configured no crisis resources. @type {import('./harness.mjs').TestProgram} */
const PLAIN = { id: 'plain', secret: 'plain-test-secret-0123456789abcdef', apiKey: 'hvk_plain_test_key_0123456789' };

const t = useHarness({ programs: [RIVERSIDE, PLAIN] });
const PHONE = { width: 390, height: 844 };

/**
 * A meeting without a waiting room: the facilitator and members join by name.
 * @param {string} id @param {string[]} names
 * @param {{ settings?: Record<string, unknown>, program?: import('./harness.mjs').TestProgram,
 *   body?: Record<string, unknown>, facViewport?: { width: number, height: number } }} [opts]
 */
async function openMeeting(id, names, opts = {}) {
  const program = opts.program ?? RIVERSIDE;
  await t.createMeeting(id, { waiting_room: false, ...opts.settings }, { apiKey: program.apiKey, body: opts.body });
  const token = (/** @type {string} */ member, /** @type {string} */ role) => mintToken(program, { meeting: id, member, role });
  const fac = await t.open(id, `${id}-fac`, 'facilitator', opts.facViewport, { token: token(`${id}-fac`, 'facilitator') });
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  /** @type {import('playwright-core').Page[]} */
  const members = [];
  for (const name of names) {
    const member = `${id}-${name.toLowerCase()}`;
    const page = await t.open(id, member, 'member', undefined, { token: token(member, 'member') });
    await joinAs(page, name);
    await waitForMeeting(page);
    members.push(page);
  }
  return { fac, members, token };
}

/**
 * Where an element is relative to the viewport: fully inside it or not.
 * @param {import('playwright-core').Page} page @param {string} selector
 */
async function inViewport(page, selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    if (!el) return { inside: false, why: 'missing' };
    const r = el.getBoundingClientRect();
    const inside = r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
    return { inside, top: r.top, bottom: r.bottom, height: window.innerHeight, scrollY: window.scrollY };
  }, selector);
}

/** @param {import('playwright-core').Page} page @param {string} text */
async function sendSupport(page, text) {
  await page.getByRole('button', { name: 'I need support' }).click();
  await page.getByLabel('Tell the facilitators privately (optional)').fill(text);
  await page.getByRole('button', { name: 'Send privately' }).click();
  await page.locator('#support-status', { hasText: 'sent privately' }).waitFor();
}

test('a support request stays in view on a scrolled phone page and in the title until acknowledged', async () => {
  const { fac, members } = await openMeeting('alert', ['Casey', 'Robin'], { facViewport: PHONE });
  const [casey, robin] = members;

  // Robin becomes a co-facilitator: every facilitator sees the request.
  const row = personRow(fac, 'Robin');
  await row.getByText('Manage').click();
  await row.getByRole('button', { name: 'Make co-facilitator Robin' }).click();
  await robin.locator('#fac-meeting').waitFor();

  // A chat makes the facilitator's page longer; the facilitator reads at the bottom. (Five
  // messages: the server allows five in a burst.)
  for (let i = 1; i <= 5; i++) {
    await fac.getByLabel('Message to everyone').fill(`Welcome note ${i}: take your time, there is no rush tonight.`);
    await fac.getByRole('button', { name: 'Send' }).click();
    await fac.locator('#chat-log li', { hasText: `Welcome note ${i}:` }).waitFor();
  }
  await fac.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  const scrolled = await fac.evaluate(() => window.scrollY);
  assert.ok(scrolled > 400, `the phone page is scrolled down (scrollY ${scrolled})`);
  // The card at the top of the page is out of view: only something that follows the scroll can be seen.
  assert.equal(await fac.title(), 'Group alert · Haven');

  await sendSupport(casey, 'I am not doing well');

  await fac.locator('#support-alert', { hasText: 'Casey asked for support' }).waitFor();
  const box = await inViewport(fac, '#support-alert');
  assert.ok(box.inside, `the support banner is inside the phone viewport: ${JSON.stringify(box)}`);
  assert.ok((await fac.evaluate(() => window.scrollY)) > 400, 'the page stayed scrolled (nothing jumped)');
  const cardBox = await inViewport(fac, '#fac-support');
  assert.equal(cardBox.inside, false, 'the support card itself is scrolled out of view');
  await eventually(() => fac.title(), (v) => v.startsWith('(1) Support request · '), 'the count in the title');
  await robin.locator('#support-alert', { hasText: 'Casey asked for support' }).waitFor();
  await eventually(() => robin.title(), (v) => v.startsWith('(1) '), "the count in the co-facilitator's title");
  // Members never see it.
  assert.equal(await casey.locator('#support-alert').isVisible(), false);
  await fac.screenshot({ path: path.join(ARTIFACTS, 'support-alert-phone.png') });
  await robin.screenshot({ path: path.join(ARTIFACTS, 'support-alert-desktop.png') });

  // It stays until someone acknowledges (here from the banner itself).
  await fac.getByRole('button', { name: 'Acknowledge Casey', exact: true }).click();
  await fac.locator('#support-alert').waitFor({ state: 'hidden' });
  await robin.locator('#support-alert').waitFor({ state: 'hidden' });
  await eventually(() => fac.title(), (v) => v === 'Group alert · Haven', 'the title without a count');
  await eventually(() => robin.title(), (v) => !v.startsWith('('), "the co-facilitator's title without a count");
  await casey.locator('#support-status', { hasText: 'A facilitator saw your request' }).waitFor();
});

test('the soft sound for support requests is off until the facilitator turns it on', async () => {
  // Count the notes the page starts (WebAudio oscillators): the sound is generated, not a file.
  const countNotes = () => {
    const w = /** @type {any} */ (window);
    w.__notes = 0;
    const original = AudioContext.prototype.createOscillator;
    AudioContext.prototype.createOscillator = function () {
      w.__notes += 1;
      return original.call(this);
    };
  };
  await t.createMeeting('sound', { waiting_room: false }, { apiKey: RIVERSIDE.apiKey });
  const fac = await t.open('sound', 'sound-fac', 'facilitator', undefined, {
    initScript: countNotes,
    token: mintToken(RIVERSIDE, { meeting: 'sound', member: 'sound-fac', role: 'facilitator' }),
  });
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  const dana = await t.open('sound', 'sound-dana', 'member', undefined, {
    token: mintToken(RIVERSIDE, { meeting: 'sound', member: 'sound-dana', role: 'member' }),
  });
  await joinAs(dana, 'Dana');
  await waitForMeeting(dana);
  const notes = () => fac.evaluate(() => /** @type {any} */ (window).__notes);

  // Off by default: the banner shows, no sound is made.
  const toggle = fac.getByRole('button', { name: 'Sound for support requests: off' });
  assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
  await sendSupport(dana, 'first');
  await fac.locator('#support-alert', { hasText: 'Dana asked for support' }).waitFor();
  assert.equal(await notes(), 0, 'no sound while it is off');
  await fac.getByRole('button', { name: 'Acknowledge Dana', exact: true }).click();
  await fac.locator('#support-alert').waitFor({ state: 'hidden' });

  // Turned on: a preview, then a sound for the next request.
  await toggle.click();
  await fac.getByRole('button', { name: 'Sound for support requests: on' }).waitFor();
  const preview = await eventually(notes, (n) => n > 0, 'the preview sound');
  await sendSupport(dana, 'second');
  await fac.locator('#support-alert', { hasText: 'Dana asked for support' }).waitFor();
  await eventually(notes, (n) => n > preview, 'a sound for the new request');
  // The choice is remembered on this device.
  assert.equal(await fac.evaluate(() => localStorage.getItem('haven.supportSound')), 'on');
});

test('crisis resources: on the join page, after asking for support and on the end screen; none when the program has none', async () => {
  // Riverside configured two resources.
  await t.createMeeting('crisis', { waiting_room: false }, { apiKey: RIVERSIDE.apiKey });
  const fac = await t.open('crisis', 'crisis-fac', 'facilitator', undefined, {
    token: mintToken(RIVERSIDE, { meeting: 'crisis', member: 'crisis-fac', role: 'facilitator' }),
  });
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  const ellis = await t.open('crisis', 'crisis-ellis', 'member', PHONE, {
    token: mintToken(RIVERSIDE, { meeting: 'crisis', member: 'crisis-ellis', role: 'member' }),
  });
  const joinBox = ellis.locator('#name-crisis');
  await joinBox.getByRole('heading', { name: 'If you need help now' }).waitFor();
  assert.equal(await joinBox.getByRole('link', { name: 'Call 988' }).getAttribute('href'), 'tel:988');
  assert.equal(await joinBox.getByRole('link', { name: 'Text 741741' }).getAttribute('href'), 'sms:741741');
  await ellis.screenshot({ path: path.join(ARTIFACTS, 'crisis-join-phone.png'), fullPage: true });
  await joinAs(ellis, 'Ellis');
  await waitForMeeting(ellis);
  // Not shown in the meeting until support is asked for.
  assert.equal(await ellis.locator('#support-crisis').isVisible(), false);
  await sendSupport(ellis, 'panicking a bit');
  await ellis.locator('#support-crisis').getByRole('link', { name: 'Call 988' }).waitFor();

  await fac.getByRole('button', { name: 'End meeting for everyone' }).click();
  await fac.getByRole('dialog').getByRole('button', { name: 'End meeting' }).click();
  await ellis.getByRole('heading', { name: 'The meeting has ended' }).waitFor();
  await ellis.locator('#over-crisis').getByRole('link', { name: 'Call 988' }).waitFor();
  assert.equal(await ellis.locator('#conn-pill').isVisible(), false, 'the end screen does not say "Connected"');
  await ellis.screenshot({ path: path.join(ARTIFACTS, 'ended-phone.png'), fullPage: true });

  // The same path for a program without resources shows none anywhere.
  await t.createMeeting('nocrisis', { waiting_room: false }, { apiKey: PLAIN.apiKey });
  const pfac = await t.open('nocrisis', 'nc-fac', 'facilitator', undefined, {
    token: mintToken(PLAIN, { meeting: 'nocrisis', member: 'nc-fac', role: 'facilitator' }),
  });
  await joinAs(pfac, 'Facil');
  await waitForMeeting(pfac);
  const finn = await t.open('nocrisis', 'nc-finn', 'member', PHONE, {
    token: mintToken(PLAIN, { meeting: 'nocrisis', member: 'nc-finn', role: 'member' }),
  });
  await finn.getByLabel('Display name').waitFor();
  assert.equal(await finn.locator('#name-crisis').isVisible(), false);
  await joinAs(finn, 'Finn');
  await waitForMeeting(finn);
  await sendSupport(finn, 'hard day');
  assert.equal(await finn.locator('#support-crisis').isVisible(), false);
  await pfac.getByRole('button', { name: 'End meeting for everyone' }).click();
  await pfac.getByRole('dialog').getByRole('button', { name: 'End meeting' }).click();
  await finn.getByRole('heading', { name: 'The meeting has ended' }).waitFor();
  assert.equal(await finn.locator('#over-crisis').isVisible(), false);
  assert.equal(await finn.getByText('If you need help now').count(), 0);
});

test('a refused link is explained before any name is typed: ended, locked, expired', async () => {
  const { fac } = await openMeeting('refuse', []);
  const link = (/** @type {string} */ member, exp = 3600) => mintToken(RIVERSIDE, { meeting: 'refuse', member, role: 'member', exp });

  // Expired: the person reads why and what to do; there is no name field to fill.
  const late = await t.open('refuse', 'refuse-late', 'member', PHONE, { token: link('refuse-late', -3600) });
  await late.getByRole('heading', { name: 'This link has expired' }).waitFor();
  await late.getByText('Ask the facilitator or your program for a new link.').waitFor();
  assert.equal(await late.getByLabel('Display name').isVisible(), false);
  await late.locator('#refused-crisis').getByRole('link', { name: 'Call 988' }).waitFor();
  await late.screenshot({ path: path.join(ARTIFACTS, 'refused-expired-phone.png'), fullPage: true });

  // Locked: explained, and "Check again" lets them in once the facilitator unlocks.
  await fac.getByRole('button', { name: 'Lock meeting' }).click();
  await fac.getByRole('button', { name: 'Unlock meeting' }).waitFor();
  const gale = await t.open('refuse', 'refuse-gale', 'member', undefined, { token: link('refuse-gale') });
  await gale.getByRole('heading', { name: 'This meeting is locked' }).waitFor();
  await gale.getByText('Ask the facilitator to unlock it').waitFor();
  assert.equal(await gale.getByLabel('Display name').isVisible(), false);
  await gale.screenshot({ path: path.join(ARTIFACTS, 'refused-locked-desktop.png'), fullPage: true });
  await fac.getByRole('button', { name: 'Unlock meeting' }).click();
  await fac.getByRole('button', { name: 'Lock meeting' }).waitFor();
  await gale.getByRole('button', { name: 'Check again' }).click();
  await joinAs(gale, 'Gale');
  await waitForMeeting(gale);

  // Ended.
  await fac.getByRole('button', { name: 'End meeting for everyone' }).click();
  await fac.getByRole('dialog').getByRole('button', { name: 'End meeting' }).click();
  await gale.getByRole('heading', { name: 'The meeting has ended' }).waitFor();
  const after = await t.open('refuse', 'refuse-after', 'member', undefined, { token: link('refuse-after') });
  await after.getByRole('heading', { name: 'This meeting has ended' }).waitFor();
  assert.equal(await after.getByLabel('Display name').isVisible(), false);
  assert.equal(await after.getByRole('button', { name: 'Check again' }).isVisible(), false);
});

test('full, banned and invalid links are explained before any name is typed too', async () => {
  const { fac, members } = await openMeeting('refuse2', ['Kit'], { body: { capacity: 2 } });
  const [kit] = members;
  const link = (/** @type {string} */ member) => mintToken(RIVERSIDE, { meeting: 'refuse2', member, role: 'member' });

  // Full: the facilitator and Kit fill both places.
  const third = await t.open('refuse2', 'refuse2-third', 'member', undefined, { token: link('refuse2-third') });
  await third.getByRole('heading', { name: 'This meeting is full' }).waitFor();
  assert.equal(await third.getByLabel('Display name').isVisible(), false);
  await third.getByRole('button', { name: 'Check again' }).waitFor();

  // Banned: Kit's link no longer gets in, and the page says so before the name.
  const row = personRow(fac, 'Kit');
  await row.getByText('Manage').click();
  await row.getByRole('button', { name: 'Ban… Kit' }).click();
  await fac.getByRole('dialog').getByRole('button', { name: 'Ban', exact: true }).click();
  await kit.getByRole('heading', { name: "You can't rejoin this meeting" }).waitFor();
  const again = await t.open('refuse2', 'refuse2-kit', 'member', undefined, { token: link('refuse2-kit') });
  await again.getByRole('heading', { name: "You can't join this meeting" }).waitFor();
  assert.equal(await again.getByLabel('Display name').isVisible(), false);

  // A damaged link (its signature altered).
  const good = link('refuse2-odd');
  const bad = `${good.slice(0, -4)}${good.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
  const odd = await t.open('refuse2', 'refuse2-odd', 'member', undefined, { token: bad });
  await odd.getByRole('heading', { name: 'This link is not valid' }).waitFor();
  await odd.getByText('Copy the whole link again').waitFor();
  assert.equal(await odd.getByLabel('Display name').isVisible(), false);
});

test('floor control: a facilitator-muted speaker is not told to unmute, and the button says "Allow to unmute"', async () => {
  const { fac, members } = await openMeeting('floorctl', ['Harley'], { settings: { floor_control: true } });
  const [harley] = members;
  const mic = harley.locator('#mic-btn');
  const status = harley.locator('#floor-status');

  // Without the floor: the reason says how to get it.
  await harley.locator('#mic-reason', { hasText: 'only the person sharing can unmute' }).waitFor();
  assert.equal(await mic.getAttribute('aria-disabled'), 'true');

  // Given the floor: may unmute, and is told so.
  const row = personRow(fac, 'Harley');
  await row.getByText('Manage').click();
  await row.getByRole('button', { name: 'Give the floor to Harley' }).click();
  await status.filter({ hasText: 'You have the floor. Unmute when you are ready' }).waitFor();
  await harley.locator('#mic-btn[aria-disabled="false"]').waitFor();
  // The facilitator's button on someone who may unmute mutes them.
  await row.getByRole('button', { name: 'Mute Harley', exact: true }).click();

  // Muted by the facilitator while holding the floor: the words agree with the disabled button.
  await harley.locator('#mic-btn[aria-disabled="true"]').waitFor();
  await status.filter({ hasText: 'a facilitator muted you' }).waitFor();
  assert.doesNotMatch((await status.textContent()) ?? '', /Unmute when you are ready/);
  assert.match((await harley.locator('#mic-reason').textContent()) ?? '', /A facilitator muted you/);
  await personRow(fac, 'Harley').locator('.meta', { hasText: 'muted by facilitator' }).waitFor();

  // The facilitator's button says what it does, and does it.
  const allow = row.getByRole('button', { name: 'Allow to unmute Harley' });
  await allow.waitFor();
  assert.equal(await row.getByRole('button', { name: 'Mute Harley', exact: true }).count(), 0);
  await allow.click();
  await harley.locator('#mic-btn[aria-disabled="false"]').waitFor();
  await status.filter({ hasText: 'Unmute when you are ready' }).waitFor();
  await mic.click();
  await status.filter({ hasText: 'Others can hear you' }).waitFor();
  await row.getByRole('button', { name: 'Mute Harley', exact: true }).waitFor();
});

test('removed: the member reads that they can join again, as the facilitator was told', async () => {
  const { fac, members } = await openMeeting('removal', ['Indy']);
  const [indy] = members;
  const row = personRow(fac, 'Indy');
  await row.getByText('Manage').click();
  await row.getByRole('button', { name: 'Remove… Indy' }).click();
  await fac.getByRole('dialog').getByText('They can join again with their link.').waitFor();
  await fac.getByRole('dialog').getByRole('button', { name: 'Remove', exact: true }).click();
  await indy.getByRole('heading', { name: 'A facilitator removed you from the meeting' }).waitFor();
  await indy.getByText('You can join again with your link while the meeting is on.').waitFor();
  assert.equal(await indy.locator('#conn-pill').isVisible(), false, 'the removed screen does not say "Connected"');
  await indy.locator('#over-crisis').getByRole('link', { name: 'Call 988' }).waitFor();
  // And they can: the button joins again.
  await indy.getByRole('button', { name: 'Join again' }).click();
  await waitForMeeting(indy);
  await personRow(fac, 'Indy').waitFor();
});

test('the ended screen says attendance was recorded and offers the certificate when the meeting gave credit', async () => {
  const { fac, members } = await openMeeting('credit', ['Jules'], { body: { credit_policy: { min_minutes: 0 } } });
  const [jules] = members;
  await fac.getByRole('button', { name: 'End meeting for everyone' }).click();
  await fac.getByRole('dialog').getByRole('button', { name: 'End meeting' }).click();
  await jules.getByRole('heading', { name: 'The meeting has ended' }).waitFor();
  await jules.getByText('Your attendance was recorded.').waitFor();
  assert.equal(await jules.locator('#conn-pill').isVisible(), false, 'the ended screen does not say "Connected"');
  const link = jules.getByRole('link', { name: 'Download my attendance certificate' });
  await link.waitFor();
  const [download] = await Promise.all([jules.waitForEvent('download'), link.click()]);
  const file = await readFile(/** @type {string} */ (await download.path()), 'utf8');
  // A compact JWS the server verifies.
  const res = await fetch(`${t.base}/v1/certificates/verify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ certificate: file.trim() }),
  });
  const verdict = await res.json();
  assert.equal(verdict.valid, true, JSON.stringify(verdict));
  await jules.screenshot({ path: path.join(ARTIFACTS, 'ended-certificate-desktop.png'), fullPage: true });
});

test('a 15-second share length reads "15 seconds", not "0 minutes"', async () => {
  const { fac } = await openMeeting('short', [], { settings: { share_seconds: 15, share_warning_seconds: 5 } });
  const selected = fac.locator('#share-length option:checked');
  await eventually(() => selected.textContent(), (v) => v === '15 seconds', 'the share length in words');
  assert.deepEqual(await fac.locator('#share-length option').allTextContents(), [
    'Untimed',
    '2 minutes',
    '3 minutes',
    '5 minutes',
    '7 minutes',
    '10 minutes',
    '15 seconds',
  ]);
});
