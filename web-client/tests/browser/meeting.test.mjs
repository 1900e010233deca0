// Browser tests of the web client against a real server: several people, each in their own
// browser context, acting through the UI. Every wait is on DOM state, never a fixed sleep.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import {
  ARTIFACTS,
  useHarness,
  admit,
  eventually,
  joinAs,
  meetingWith,
  personRow,
  queueNames,
  waitForMeeting,
  waitForWaitingRoom,
} from './harness.mjs';

const t = useHarness();

test('the server serves the client with its security headers', async () => {
  const res = await fetch(`${t.base}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
  const js = await fetch(`${t.base}/app.js`);
  assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
});

test('members wait, the facilitator admits them, and all three see the same queue order', async () => {
  await t.createMeeting('queue');
  const fac = await t.open('queue', 'queue-fac', 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);

  const alex = await t.open('queue', 'queue-alex', 'member');
  await joinAs(alex, 'Alex');
  await waitForWaitingRoom(alex);
  const blair = await t.open('queue', 'queue-blair', 'member');
  await joinAs(blair, 'Blair');
  await waitForWaitingRoom(blair);
  assert.equal(await alex.locator('#waiting-name').textContent(), 'Alex');

  // The facilitator sees both in the waiting room and admits them from the UI.
  await fac.locator('#waiting-list li', { hasText: 'Blair' }).waitFor();
  await admit(fac, 'Alex');
  await waitForMeeting(alex);
  await admit(fac, 'Blair');
  await waitForMeeting(blair);
  await fac.locator('#fac-waiting').waitFor({ state: 'hidden' });

  // Hands go up in a known order: Alex first, then Blair.
  await alex.getByRole('button', { name: 'Raise hand' }).click();
  await eventually(() => queueNames(fac), (q) => q.length === 1, 'Alex in the queue');
  await blair.getByRole('button', { name: 'Raise hand' }).click();

  for (const page of [fac, alex, blair]) {
    const names = await eventually(() => queueNames(page), (q) => q.length === 2, 'two hands in the queue');
    assert.deepEqual(names, ['Alex', 'Blair']);
  }
  assert.equal(await blair.locator('#queue-summary').textContent(), '2 hands raised. You are 2nd.');
  assert.equal(await alex.getByRole('button', { name: 'Lower hand' }).getAttribute('aria-pressed'), 'true');

  // The facilitator gives the floor to the head of the queue; everyone sees who holds it.
  await fac.getByRole('button', { name: 'Next speaker' }).click();
  await alex.locator('#floor-status', { hasText: 'You have the floor.' }).waitFor();
  await blair.locator('#floor-status', { hasText: 'Alex has the floor.' }).waitFor();
  for (const page of [fac, alex, blair]) {
    assert.deepEqual(await eventually(() => queueNames(page), (q) => q.length === 1, 'queue after next speaker'), [
      'Blair',
    ]);
  }
});

test('a support request reaches the facilitator and no other member', async () => {
  const { fac, members } = await meetingWith(t, 'support', ['Casey', 'Devon']);
  const [casey, devon] = members;

  await casey.getByRole('button', { name: 'I need support' }).click();
  await casey.getByLabel('Tell the facilitators privately (optional)').fill('rough day, need a minute');
  await casey.getByRole('button', { name: 'Send privately' }).click();
  await casey.locator('#support-status', { hasText: 'sent privately' }).waitFor();

  const request = fac.locator('#support-list li', { hasText: 'Casey' });
  await request.waitFor();
  assert.match((await request.textContent()) ?? '', /rough day, need a minute/);

  // A chat message sent after the request is a barrier: Devon's connection delivers in order, so
  // once Devon shows the chat, a leaked request would already be on Devon's page.
  await fac.getByLabel('Message to everyone').fill('barrier after support');
  await fac.getByRole('button', { name: 'Send' }).click();
  await devon.locator('#chat-log li', { hasText: 'barrier after support' }).waitFor();
  assert.equal(await devon.locator('#fac-support').isVisible(), false);
  assert.doesNotMatch((await devon.locator('body').textContent()) ?? '', /rough day/);
  assert.equal(await devon.getByText('asked for support').count(), 0);

  // The facilitator acknowledges; the member who asked is told.
  await fac.getByRole('button', { name: "Acknowledge Casey's request" }).click();
  await casey.locator('#support-status', { hasText: 'A facilitator saw your request' }).waitFor();
  await fac.locator('#fac-support').waitFor({ state: 'hidden' });
});

test('a member muted by the facilitator cannot unmute until allowed', async () => {
  const { fac, members } = await meetingWith(t, 'mute', ['Emery']);
  const [emery] = members;
  const mic = emery.locator('#mic-btn');

  // Unmuting is up to the member at first.
  await mic.click();
  await emery.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  await personRow(fac, 'Emery').locator('.meta', { hasText: 'unmuted' }).waitFor();

  // The facilitator mutes Emery from the people list.
  const row = personRow(fac, 'Emery');
  await row.getByText('Manage').click();
  await row.getByRole('button', { name: 'Mute Emery' }).click();
  await emery.locator('#mic-btn[aria-disabled="true"]').waitFor();
  assert.equal(await mic.textContent(), 'Unmute');
  assert.match((await emery.locator('#mic-reason').textContent()) ?? '', /A facilitator muted you/);
  // The explanation is tied to the control for screen readers.
  assert.equal(await mic.getAttribute('aria-describedby'), 'mic-reason');

  // Pressing it anyway (Playwright would refuse an aria-disabled button) sends nothing.
  await mic.click({ force: true });
  await emery.locator('#mic-reason.flash').waitFor();
  await personRow(fac, 'Emery').locator('.meta', { hasText: 'muted by facilitator' }).waitFor();
  assert.equal(await mic.getAttribute('aria-disabled'), 'true');

  // The facilitator allows unmuting; Emery is still muted until choosing to unmute.
  await row.getByRole('button', { name: 'Allow to unmute Emery' }).click();
  await emery.locator('#mic-btn[aria-disabled="false"]').waitFor();
  assert.equal(await mic.textContent(), 'Unmute');
  assert.match((await emery.locator('#mic-reason').textContent()) ?? '', /You are muted/);
  await mic.click();
  await emery.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  await personRow(fac, 'Emery').locator('.meta', { hasText: /(^| )unmuted/ }).waitFor();
});

test('name rules give instant feedback; a taken name offers the server suggestion in one click', async () => {
  await t.createMeeting('names');
  const fac = await t.open('names', 'names-fac', 'facilitator');
  await joinAs(fac, 'Sam');
  await waitForMeeting(fac);

  // Record every frame the page sends (wrapping WebSocket.send), to see what reaches the server.
  const page = await t.open('names', 'names-m', 'member', undefined, {
    initScript: () => {
      const w = /** @type {any} */ (window);
      w.__sent = [];
      const original = WebSocket.prototype.send;
      WebSocket.prototype.send = function (data) {
        w.__sent.push(String(data));
        return original.call(this, data);
      };
    },
  });
  /** The types of the frames the page sent so far. @returns {Promise<string[]>} */
  const sentTypes = () => page.evaluate(() => /** @type {any} */ (window).__sent.map((/** @type {string} */ m) => JSON.parse(m).type));
  const input = page.getByLabel('Display name');
  await input.fill('sam@example.org');
  await page.locator('#name-feedback', { hasText: 'email address' }).waitFor();
  assert.equal(await input.getAttribute('aria-invalid'), 'true');
  await input.fill('Sam 555-123-4567');
  await page.locator('#name-feedback', { hasText: 'phone number' }).waitFor();
  await input.fill('@sammy');
  await page.locator('#name-feedback', { hasText: '@handle' }).waitFor();
  await input.fill('Sa\u200Bm');
  await page.locator('#name-feedback', { hasText: 'invisible' }).waitFor();
  // A refused name is not sent: pressing Join says why again, and no join frame leaves the page.
  await page.getByRole('button', { name: 'Join the meeting' }).click();
  assert.equal(await page.locator('#screen-name').isVisible(), true);
  assert.equal(await input.getAttribute('aria-invalid'), 'true');
  assert.deepEqual(await sentTypes(), [], 'nothing was sent for a refused name');

  // "SAM" collides with "Sam" on the server, which suggests a free variant. The same button sends
  // a valid name (the recorder sees it: the check above could have seen one).
  await input.fill('SAM');
  await page.locator('#name-feedback', { hasText: 'Looks good' }).waitFor();
  await page.getByRole('button', { name: 'Join the meeting' }).click();
  await eventually(sentTypes, (types) => types.includes('join'), 'the join frame of a valid name');
  // Whatever the timing, the only join that ever left the page is the valid one.
  const joins = await page.evaluate(() =>
    /** @type {any} */ (window).__sent.map((/** @type {string} */ m) => JSON.parse(m)).filter((/** @type {any} */ m) => m.type === 'join'),
  );
  assert.deepEqual(joins.map((/** @type {any} */ m) => m.display_name), ['SAM'], 'only the valid name was sent');
  await page.locator('#name-feedback', { hasText: 'already uses that name' }).waitFor();
  const suggestion = page.locator('#use-suggestion');
  await suggestion.waitFor();
  assert.match((await suggestion.textContent()) ?? '', /SAM 2/);
  await suggestion.click();
  await waitForWaitingRoom(page);
  assert.equal(await page.locator('#waiting-name').textContent(), 'SAM 2');

  // Without a name the server picks a pseudonym.
  const other = await t.open('names', 'names-p', 'member');
  await other.getByRole('button', { name: 'Join with a name picked for me' }).click();
  await waitForWaitingRoom(other);
  assert.match((await other.locator('#waiting-name').textContent()) ?? '', /^\S+ \S+/);
});

test('a dropped connection comes back by itself with the resume token and keeps the place', async () => {
  const { fac, members } = await meetingWith(t, 'resume', ['Frankie']);
  const [frankie] = members;
  await frankie.getByRole('button', { name: 'Raise hand' }).click();
  await eventually(() => queueNames(fac), (q) => q.join() === 'Frankie', 'Frankie in the queue');

  // Route Frankie's next connection through the test, so the test can cut it.
  /** @type {import('playwright-core').WebSocketRoute[]} */
  const routes = [];
  /** @type {string[]} */
  const sent = [];
  await frankie.routeWebSocket(/\/v1\/signal/, (ws) => {
    routes.push(ws);
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      sent.push(String(m));
      server.send(m);
    });
  });
  // Reload the page: the tab comes back to its seat from sessionStorage (resume, not a new join).
  await frankie.reload();
  await waitForMeeting(frankie);
  await eventually(async () => routes.length, (n) => n >= 1, 'a routed connection');
  assert.ok(sent.some((m) => JSON.parse(m).type === 'resume'), 'the reload resumed');
  await eventually(() => queueNames(frankie), (q) => q.join() === 'Frankie', 'the hand kept after reload');

  // Now cut the connection; the page says so and reconnects by itself.
  const before = sent.length;
  await routes[routes.length - 1].close({ code: 4008, reason: 'slow_consumer' });
  await frankie.locator('#conn-banner', { hasText: /Reconnect/ }).waitFor();
  await frankie.locator('#conn-banner', { hasText: 'Reconnected' }).waitFor();
  const resume = sent.slice(before).map((m) => JSON.parse(m)).find((m) => m.type === 'resume');
  assert.ok(resume, 'reconnected with a resume message');
  assert.ok(resume.last_seq > 0, 'resume carries the last seq seen');
  await eventually(() => queueNames(fac), (q) => q.join() === 'Frankie', 'the hand kept after the drop');
  await personRow(fac, 'Frankie').locator('.meta', { hasText: 'reconnecting' }).waitFor({ state: 'detached' });

  // Still a working connection: lowering the hand reaches everyone.
  await frankie.getByRole('button', { name: 'Lower hand' }).click();
  await eventually(() => queueNames(fac), (q) => q.length === 0, 'the hand lowered');
});

test('after a resume the server could not replay, a fresh welcome resets the seq baseline', async () => {
  const { fac, members } = await meetingWith(t, 'rebase', ['Quinn']);
  const [quinn] = members;
  // Quinn's next connection shows every server frame 1000 higher than sent, so the client's
  // last seq runs far ahead of the server's numbering; the one after shows it below that.
  /** @type {import('playwright-core').WebSocketRoute[]} */
  const routes = [];
  /** @type {string[]} */
  const toServer = [];
  await quinn.routeWebSocket(/\/v1\/signal/, (ws) => {
    const first = routes.length === 0;
    routes.push(ws);
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      toServer.push(String(m));
      server.send(m);
    });
    server.onMessage((m) => {
      const frame = JSON.parse(String(m));
      // The second connection: whatever the server continues from, show it below the client's.
      if (first && frame.seq > 0) frame.seq += 1000;
      else if (frame.seq > 1000) frame.seq -= 1000;
      ws.send(JSON.stringify(frame));
    });
  });
  await quinn.reload();
  await waitForMeeting(quinn);
  await fac.getByLabel('Message to everyone').fill('before the drop');
  await fac.getByRole('button', { name: 'Send' }).click();
  await quinn.locator('#chat-log li', { hasText: 'before the drop' }).waitFor();

  // The drop: Quinn resumes with a last seq the server never reached, so it cannot replay and
  // sends a fresh welcome numbered below what the client saw.
  await routes[0].close({ code: 4008, reason: 'slow_consumer' });
  await quinn.locator('#conn-banner', { hasText: 'Reconnected' }).waitFor();
  const resume = toServer.map((m) => JSON.parse(m)).filter((m) => m.type === 'resume').pop();
  assert.ok(resume && resume.last_seq > 1000, 'the resume carried the inflated last seq');

  // Events after the reconnect reach Quinn's page (they would be dropped as old without the reset).
  await fac.getByLabel('Message to everyone').fill('after the drop');
  await fac.getByRole('button', { name: 'Send' }).click();
  await quinn.locator('#chat-log li', { hasText: 'after the drop' }).waitFor();
  await quinn.getByRole('button', { name: 'Raise hand' }).click();
  await eventually(() => queueNames(quinn), (q) => q.join() === 'Quinn', "Quinn's own hand on Quinn's page");
});

test('facilitator controls: turn away with a message, lock, a go-around with a pass, end the meeting', async () => {
  const { fac, members } = await meetingWith(t, 'controls', ['Kai', 'Lee']);
  const [kai, lee] = members;

  // Turned away with a kind message, which the member reads.
  const moss = await t.open('controls', 'controls-moss', 'member');
  await joinAs(moss, 'Moss');
  await waitForWaitingRoom(moss);
  await fac.getByRole('button', { name: 'Turn away… Moss' }).click();
  await fac.getByLabel('Message to them (optional)').fill('This group is full tonight; see you Thursday.');
  await fac.getByRole('button', { name: 'Turn away', exact: true }).click();
  await moss.getByRole('heading', { name: "The facilitator didn't let you in this time" }).waitFor();
  await moss.getByText('see you Thursday').waitFor();

  // Lock and unlock: everyone's client follows the meeting state.
  await fac.getByRole('button', { name: 'Lock meeting' }).click();
  await fac.getByRole('button', { name: 'Unlock meeting' }).waitFor();
  await fac.getByRole('button', { name: 'Unlock meeting' }).click();
  await fac.getByRole('button', { name: 'Lock meeting' }).waitFor();

  // A go-around: the first member has the floor and passes; the next one has it.
  await fac.getByRole('button', { name: 'Start go-around' }).click();
  await kai.locator('#goaround-status', { hasText: 'Go-around' }).waitFor();
  await fac.locator('#floor-status', { hasText: 'has the floor' }).waitFor();
  const first = (await fac.locator('#floor-status').textContent())?.startsWith('Kai') ? kai : lee;
  const second = first === kai ? lee : kai;
  await first.getByRole('button', { name: 'Pass my turn' }).click();
  await second.locator('#floor-status', { hasText: 'You have the floor' }).waitFor();
  await second.getByRole('button', { name: "I'm done sharing" }).click();
  await fac.getByRole('button', { name: 'Start go-around' }).waitFor();

  // Chat off: members cannot type; a deleted message disappears for everyone.
  await kai.getByLabel('Message to everyone').fill('a message to delete');
  await kai.getByRole('button', { name: 'Send' }).click();
  await fac.getByRole('button', { name: 'Delete message from Kai' }).click();
  await lee.locator('#chat-log li', { hasText: 'a message to delete' }).waitFor({ state: 'detached' });
  await fac.getByRole('button', { name: 'Turn chat off' }).click();
  await lee.locator('#chat-off').waitFor();
  assert.equal(await lee.getByLabel('Message to everyone').isDisabled(), true);

  // Ending the meeting asks first, then everyone sees the end.
  await fac.getByRole('button', { name: 'End meeting for everyone' }).click();
  await fac.getByRole('dialog').getByRole('button', { name: 'End meeting' }).click();
  for (const page of [fac, kai, lee]) {
    await page.getByRole('heading', { name: 'The meeting has ended' }).waitFor();
  }
});

test('screenshots of the member and facilitator views on a phone and a desktop', async () => {
  const { fac, members } = await meetingWith(t, 'shots', ['Gray', 'Harper', 'Indigo']);
  const [gray, harper, indigo] = members;
  await fac.locator('#share-length').selectOption('300');
  await gray.getByRole('button', { name: 'Raise hand' }).click();
  await eventually(() => queueNames(fac), (q) => q.length === 1, 'Gray in the queue');
  await harper.getByRole('button', { name: 'Raise hand' }).click();
  await eventually(() => queueNames(fac), (q) => q.length === 2, 'Harper in the queue');
  await indigo.getByRole('button', { name: 'Raise hand' }).click();
  await eventually(() => queueNames(fac), (q) => q.length === 3, 'Indigo in the queue');
  await fac.getByRole('button', { name: 'Next speaker' }).click();
  await gray.locator('#floor-timer', { hasText: 'left' }).waitFor();
  await harper.getByLabel('Message to everyone').fill('Welcome, everyone. Glad to be here tonight.');
  await harper.getByRole('button', { name: 'Send' }).click();
  await fac.getByLabel('Message to everyone').fill('Welcome! Raise your hand when you would like to share.');
  await fac.getByRole('button', { name: 'Send' }).click();
  await indigo.getByRole('button', { name: 'I need support' }).click();
  await indigo.getByRole('button', { name: 'Send privately' }).click();
  await fac.locator('#support-list li', { hasText: 'Indigo' }).waitFor();
  const late = await t.open('shots', 'shots-jordan', 'member', { width: 390, height: 844 });
  await late.getByLabel('Display name').fill('jordan@example.org');
  await late.locator('#name-feedback', { hasText: 'email address' }).waitFor();
  await late.screenshot({ path: path.join(ARTIFACTS, 'name-phone.png'), fullPage: true });
  await joinAs(late, 'Jordan');
  await waitForWaitingRoom(late);
  await fac.locator('#waiting-list li', { hasText: 'Jordan' }).waitFor();
  await harper.locator('#chat-log li', { hasText: 'Raise your hand' }).waitFor();

  const sizes = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } };
  for (const [size, viewport] of Object.entries(sizes)) {
    for (const [who, page] of /** @type {const} */ ([['member', harper], ['facilitator', fac], ['waiting', late]])) {
      await page.setViewportSize(viewport);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: path.join(ARTIFACTS, `${who}-${size}.png`), fullPage: true });
    }
  }
  // The phone layout has no horizontal scrolling.
  await harper.setViewportSize(sizes.phone);
  const overflow = await harper.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling on a phone (overflow ${overflow}px)`);
  await admit(fac, 'Jordan');
  await waitForMeeting(late);
});
