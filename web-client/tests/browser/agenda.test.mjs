// Browser tests of the agenda (issue 15): a meeting that runs a format shows its segments, the
// current one and the time left to everyone, and "Next segment" to facilitators only.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, useHarness, joinAs, waitForMeeting } from './harness.mjs';

const t = useHarness();

/** @param {string} id */
async function createFormat(id) {
  const res = await fetch(`${t.base}/v1/formats`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      id,
      name: 'Open share',
      segments: [
        { title: 'Welcome', planned_minutes: 5 },
        { title: 'Readings', planned_minutes: 10, rules: { unmute: 'facilitators', hands: false } },
        { title: 'Open sharing', planned_minutes: 40, rules: { unmute: 'floor_holder', share_seconds: 300 } },
      ],
    }),
  });
  if (!res.ok) throw new Error(`create format ${id}: ${res.status} ${await res.text()}`);
}

/** @param {import('playwright-core').Page} page */
const current = (page) => page.locator('#agenda-list li[aria-current="step"]');

test('the agenda shows the current segment on a member page and moves when the facilitator advances it', async () => {
  await createFormat('open-share');
  await t.createMeeting('agenda', { waiting_room: false }, { body: { format: 'open-share' } });
  const fac = await t.open('agenda', 'agenda-fac', 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);
  const member = await t.open('agenda', 'agenda-alex', 'member');
  await joinAs(member, 'Alex');
  await waitForMeeting(member);

  // Everyone sees the agenda, the current segment and its time left.
  await member.locator('#agenda-now', { hasText: 'Now: Welcome' }).waitFor();
  assert.deepEqual(await member.locator('#agenda-list li').allTextContents(), [
    'Welcome · 5 min',
    'Readings · 10 min',
    'Open sharing · 40 min',
  ]);
  assert.equal(await current(member).textContent(), 'Welcome · 5 min');
  assert.match((await member.locator('#agenda-left').textContent()) ?? '', /^[45]:\d\d left$/);
  // Only the facilitator has the control.
  assert.equal(await member.getByRole('button', { name: 'Next segment' }).count(), 0);
  const next = fac.getByRole('button', { name: 'Next segment' });
  assert.equal(await fac.getByRole('button', { name: 'Previous segment' }).isDisabled(), true);

  // The facilitator moves on; the member's page follows, and says why they cannot unmute.
  await next.click();
  await member.locator('#agenda-now', { hasText: 'Now: Readings' }).waitFor();
  assert.equal(await current(member).textContent(), 'Readings · 10 min');
  await current(fac).filter({ hasText: 'Readings' }).waitFor();
  await member.locator('#mic-reason', { hasText: 'Only facilitators speak during “Readings”' }).waitFor();
  assert.equal(await member.getByRole('button', { name: 'Raise hand' }).count(), 0, 'no hands during the readings');
  // For review (not compared): the agenda on both pages.
  await member.screenshot({ path: path.join(ARTIFACTS, 'agenda-member.png'), fullPage: true });
  await fac.screenshot({ path: path.join(ARTIFACTS, 'agenda-facilitator.png'), fullPage: true });
  // A question during the readings: the facilitator allows hands for this segment only.
  await fac.getByRole('button', { name: 'Allow raised hands' }).click();
  await member.getByRole('button', { name: 'Raise hand' }).click();
  await member.getByRole('button', { name: 'Lower hand' }).click();
  await fac.getByRole('button', { name: 'Pause raised hands' }).click();
  await member.getByText('Raised hands are paused for now.').first().waitFor();
  await member.locator('#hand-btn').waitFor({ state: 'hidden' });

  await next.click();
  await member.locator('#agenda-now', { hasText: 'Now: Open sharing' }).waitFor();
  await member.getByRole('button', { name: 'Raise hand' }).waitFor();
  assert.equal(await next.isDisabled(), true, 'the last segment has no next');
});

test("a series link between the series' meetings says to come back at the meeting time", async () => {
  const later = new Date(Date.now() + 2 * 3600_000).toISOString().slice(0, 16) + ':00';
  const res = await fetch(`${t.base}/v1/series`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      id: 'later',
      title: 'Thursday group',
      time_zone: 'UTC',
      dtstart: later,
      rrule: 'FREQ=WEEKLY',
      duration_minutes: 60,
    }),
  });
  assert.equal(res.status, 201, await res.text());
  const page = await t.open('series:later', 'later-alex', 'member');
  await page.locator('#refused-h', { hasText: "This meeting hasn't started yet" }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Check again' }).isVisible(), true);
});
