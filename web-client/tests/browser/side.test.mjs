// Browser tests of side rooms (issue 17): a facilitator steps out with a member from their support
// request; the member's page shows the private room; another member's page shows both as away and
// nothing more. Every wait is on DOM state.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, useHarness, eventually, joinAs, personRow, waitForMeeting } from './harness.mjs';

const t = useHarness();

/** @param {import('playwright-core').Page} page @param {string} name */
async function join(page, name) {
  await joinAs(page, name);
  await waitForMeeting(page);
}

/**
 * A meeting `id` without a waiting room, its facilitator "Facil" and these members joined; the
 * members' pages in the same order.
 * @param {string} id @param {string[]} members
 */
async function meetingWith(id, members) {
  await t.createMeeting(id, { waiting_room: false });
  const fac = await t.open(id, `${id}-fac`, 'facilitator');
  await join(fac, 'Facil');
  const pages = [];
  for (const name of members) {
    const page = await t.open(id, `${id}-${name.toLowerCase()}`, 'member');
    await join(page, name);
    pages.push(page);
  }
  return { fac, pages };
}

/**
 * Sets the breakout form to "by hand": each facilitator choice (by its label), then each
 * person's place (by name).
 * @param {import('playwright-core').Page} fac
 * @param {Record<string, string>} facilitators @param {Record<string, string>} places
 */
async function byHand(fac, facilitators, places) {
  await fac.getByLabel('Who goes where').selectOption('manual');
  const people = fac.locator('#breakout-people');
  await people.waitFor();
  for (const [label, name] of Object.entries(facilitators)) await fac.getByLabel(label).selectOption({ label: name });
  for (const [name, place] of Object.entries(places)) {
    await people.getByLabel(name, { exact: true }).selectOption({ label: place });
  }
}

test('a facilitator steps out with a member from their support request; the others see both as away and nothing more', async () => {
  const { fac, pages: [alex, robin] } = await meetingWith('side', ['Alex', 'Robin']);

  // Alex asks for support; the facilitator steps out with them from the request.
  await alex.getByRole('button', { name: 'I need support' }).click();
  await alex.getByLabel('Tell the facilitators privately (optional)').fill('I am struggling tonight');
  await alex.getByRole('button', { name: 'Send privately' }).click();
  await fac.locator('#support-list li', { hasText: 'Alex' }).waitFor();
  await fac.getByRole('button', { name: 'Step out with them Alex', exact: true }).click();
  // The only facilitator is told first that the group's queue and floor will wait.
  await fac.locator('#confirm-dialog', { hasText: 'You are the only facilitator here' }).waitFor();
  await fac.getByRole('button', { name: 'Step out anyway' }).click();

  // Alex is asked, privately, and says yes.
  await alex.locator('#step-out-invite', { hasText: 'Facil asks you to step out with them, privately.' }).waitFor();
  assert.equal(await robin.locator('#step-out-invite').isVisible(), false, 'nobody else is asked');
  await alex.getByRole('button', { name: 'Step out', exact: true }).click();

  // Alex's page: the private room, plainly, with the way back.
  await alex.locator('#side-room-text', { hasText: "You and Facil, privately. The group can't hear you." }).waitFor();
  await alex.getByRole('button', { name: 'Return to the group' }).waitFor();
  await alex.locator('#people-count', { hasText: '(2)' }).waitFor();
  await fac.locator('#side-room-text', { hasText: "You and Alex, privately. The group can't hear you." }).waitFor();

  // Robin's page: both away, and nothing more.
  for (const name of ['Alex', 'Facil']) {
    await eventually(() => personRow(robin, name).locator('.meta').textContent(), (v) => v === 'away', `${name} shown as away`);
  }
  await robin.locator('#paused-note', { hasText: 'The facilitators are away for a moment.' }).waitFor();
  assert.equal(await robin.locator('#side-room').isVisible(), false);
  // What is said in the side room stays there.
  await alex.getByLabel('Message to everyone').fill('Thank you for stepping out with me');
  await alex.getByRole('button', { name: 'Send' }).click();
  await fac.locator('#chat-log li', { hasText: 'Thank you for stepping out' }).waitFor();
  await robin.getByLabel('Message to everyone').fill('Robin here, holding the space');
  await robin.getByRole('button', { name: 'Send' }).click();
  await robin.locator('#chat-log li', { hasText: 'holding the space' }).waitFor();
  const robinText = (await robin.locator('body').innerText()).toLowerCase();
  for (const word of ['asked for support', 'privately', 'struggling', 'thank you for stepping', 'side room', 'step out']) {
    assert.ok(!robinText.includes(word), `Robin's page says "${word}"`);
  }
  assert.equal(await alex.locator('#chat-log li', { hasText: 'holding the space' }).count(), 0, 'the group chat stays in the group');
  await robin.screenshot({ path: path.join(ARTIFACTS, 'side-room-others.png') });
  await alex.screenshot({ path: path.join(ARTIFACTS, 'side-room-member.png') });

  // Back together: the group sees them again.
  await alex.getByRole('button', { name: 'Return to the group' }).click();
  await alex.locator('#side-room').waitFor({ state: 'hidden' });
  for (const name of ['Alex', 'Facil']) {
    await eventually(() => personRow(robin, name).locator('.meta').textContent(), (v) => !v?.includes('away'), `${name} back`);
  }
  await robin.locator('#paused-note').waitFor({ state: 'hidden' });
});

test('breakout groups: members choose a group, see it with its timer, and everyone returns', async () => {
  const { fac, pages: [sam, lee] } = await meetingWith('groups', ['Sam', 'Lee']);

  await fac.getByLabel('Groups', { exact: true }).fill('2');
  await fac.getByLabel('Minutes').fill('5');
  await fac.getByLabel('Who goes where').selectOption('choose');
  await fac.getByRole('button', { name: 'Open breakout groups' }).click();
  await fac.locator('#breakout-status', { hasText: '2 breakout groups · back in' }).waitFor();

  for (const page of [sam, lee]) {
    await page.getByRole('button', { name: 'Join group 1' }).click();
  }
  await sam.locator('#side-room-text', { hasText: "Breakout group 1: you and Lee. The main room can't hear you." }).waitFor();
  await sam.locator('#side-room-timer', { hasText: /^Back in [45]:\d\d$/ }).waitFor();
  await eventually(() => personRow(fac, 'Sam').locator('.meta').textContent(), (v) => v === 'away', 'Sam away for the facilitator');

  await fac.getByRole('button', { name: 'Return everyone' }).click();
  for (const page of [sam, lee]) {
    await page.locator('#side-room').waitFor({ state: 'hidden' });
  }
  await eventually(() => personRow(fac, 'Sam').locator('.meta').textContent(), (v) => !v?.includes('away'), 'Sam back');
});

test('breakout groups by hand: the facilitator puts each person in a group and names a co-facilitator for one; each page shows its group and the co-facilitator runs theirs', async () => {
  const { fac, pages: [kim, alex, bo, cy] } = await meetingWith('byhand', ['Kim', 'Alex', 'Bo', 'Cy']);

  // Kim becomes a co-facilitator.
  const kimRow = personRow(fac, 'Kim');
  await kimRow.getByText('Manage').click();
  await kimRow.getByRole('button', { name: 'Make co-facilitator Kim' }).click();
  await kim.locator('#my-role', { hasText: 'co-facilitator' }).waitFor();

  // The facilitator sets two groups by hand: Kim runs group 1 with Bo; Alex and Cy are group 2.
  // (Each choice differs from the even split the form starts from, so the hand shows.)
  await fac.getByLabel('Groups', { exact: true }).fill('2');
  await fac.getByLabel('Minutes').fill('5');
  await byHand(fac, { 'Facilitator for group 1': 'Kim' }, { Bo: 'Group 1', Alex: 'Group 2', Cy: 'Group 2' });
  assert.equal(await fac.getByLabel('Facilitator for group 2').inputValue(), '', 'group 2 has no facilitator');
  await fac.screenshot({ path: path.join(ARTIFACTS, 'breakouts-by-hand.png') });
  await fac.setViewportSize({ width: 390, height: 844 });
  await fac.locator('#fac-breakouts').screenshot({ path: path.join(ARTIFACTS, 'breakouts-by-hand-phone.png') });
  await fac.setViewportSize({ width: 1280, height: 800 });
  await fac.getByRole('button', { name: 'Open breakout groups' }).click();

  // Each member's page shows the group they were put in.
  await bo.locator('#side-room-text', { hasText: "Breakout group 1: you and Kim. The main room can't hear you." }).waitFor();
  await bo.locator('#side-room-runs', { hasText: 'Facilitating this group: Kim' }).waitFor();
  await alex.locator('#side-room-text', { hasText: "Breakout group 2: you and Cy. The main room can't hear you." }).waitFor();
  await cy.locator('#side-room-text', { hasText: "Breakout group 2: you and Alex. The main room can't hear you." }).waitFor();
  assert.equal(await alex.locator('#side-room-runs').isVisible(), false, 'nobody was named for group 2');
  await kim.locator('#side-room-text', { hasText: "Breakout group 1: you and Bo. The main room can't hear you." }).waitFor();
  await kim.locator('#side-room-runs', { hasText: 'You facilitate this group.' }).waitFor();
  for (const page of [bo, kim]) await page.locator('#people-count', { hasText: '(2)' }).waitFor();

  // The facilitator sees the groups and their time; nobody stayed in the main room but them.
  await fac.locator('#breakout-status', { hasText: /^2 breakout groups · back in [45]:\d\d$/ }).waitFor();
  await fac.locator('#breakout-list li[data-group="1"]', { hasText: 'Kim (co-facilitator), Bo' }).waitFor();
  await fac.locator('#breakout-list li[data-group="2"]', { hasText: 'Alex, Cy' }).waitFor();
  for (const name of ['Kim', 'Alex', 'Bo', 'Cy']) {
    await eventually(() => personRow(fac, name).locator('.meta').textContent(), (v) => v === 'away', `${name} away for the facilitator`);
  }

  // Kim runs group 1: the facilitator's controls, for that group only.
  await kim.locator('#fac-floor').getByRole('button', { name: 'Next speaker' }).waitFor();
  const boRow = personRow(kim, 'Bo');
  await boRow.getByText('Manage').click();
  await boRow.getByRole('button', { name: 'Give the floor to Bo' }).click();
  await bo.locator('#floor-status', { hasText: /^You have the floor/ }).waitFor();
  await kim.locator('#floor-status', { hasText: 'Bo has the floor.' }).waitFor();
  for (const page of [alex, fac]) {
    assert.equal(await page.locator('#floor-status').textContent(), 'Nobody has the floor.', 'the floor is the group\'s own');
  }
  await kim.screenshot({ path: path.join(ARTIFACTS, 'breakout-co-facilitator.png') });

  // Inside the group, Kim steps out with Bo; "Return to the group" brings them back to group 1.
  await boRow.getByRole('button', { name: 'Step out with them Bo' }).click();
  await bo.locator('#step-out-invite', { hasText: 'Kim asks you to step out with them, privately.' }).waitFor();
  await bo.getByRole('button', { name: 'Step out', exact: true }).click();
  await bo.locator('#side-room-text', { hasText: "You and Kim, privately. The group can't hear you." }).waitFor();
  await bo.getByRole('button', { name: 'Return to the group' }).click();
  await bo.locator('#side-room-text', { hasText: "Breakout group 1: you and Kim. The main room can't hear you." }).waitFor();
  await kim.locator('#side-room-runs', { hasText: 'You facilitate this group.' }).waitFor();

  // The facilitator visits group 2. As the main room's only facilitator they are asked first;
  // group 2 then has them, group 1 does not hear them, and they come back to the main room.
  await fac.locator('#breakout-list li[data-group="2"]').getByRole('button', { name: 'Join group 2' }).click();
  await fac.getByRole('dialog').getByRole('button', { name: 'Join anyway' }).click();
  await fac.locator('#side-room-text', { hasText: /^Breakout group 2: you and .*The main room can't hear you\.$/ }).waitFor();
  for (const name of ['Alex', 'Cy']) assert.ok((await fac.locator('#side-room-text').textContent())?.includes(name));
  for (const page of [alex, cy]) await page.locator('#people-count', { hasText: '(3)' }).waitFor();
  await personRow(alex, 'Facil').waitFor();
  assert.equal(await personRow(bo, 'Facil').count(), 0, 'group 1 does not have the visitor');
  await bo.locator('#people-count', { hasText: '(2)' }).waitFor();
  assert.equal(await fac.locator('#breakout-list li[data-group="2"] .visit').isVisible(), false, 'no button for the group one is in');
  await fac.getByRole('button', { name: 'Return to the main room' }).click();
  await fac.locator('#side-room').waitFor({ state: 'hidden' });
  for (const page of [alex, cy]) await page.locator('#people-count', { hasText: '(2)' }).waitFor();

  // Return everyone.
  await fac.getByRole('button', { name: 'Return everyone' }).click();
  for (const page of [kim, alex, bo, cy]) await page.locator('#side-room').waitFor({ state: 'hidden' });
  await fac.locator('#breakout-form').waitFor();
});

test('placing the only facilitator in a group asks first; the member left in the main room is told the queue waits', async () => {
  const { fac, pages: [sam, lee] } = await meetingWith('alone', ['Sam', 'Lee']);

  await fac.getByLabel('Groups', { exact: true }).fill('2');
  await byHand(fac, { 'Facilitator for group 1': 'Facil (you)' }, { Sam: 'Group 1', Lee: 'Main room' });
  await fac.getByRole('button', { name: 'Open breakout groups' }).click();
  const dialog = fac.getByRole('dialog');
  await dialog.getByText("Every facilitator would be in a group. The main room's speaking queue and floor pause until one is back.").waitFor();
  await dialog.getByRole('button', { name: 'Open anyway' }).click();

  await fac.locator('#side-room-text', { hasText: "Breakout group 1: you and Sam. The main room can't hear you." }).waitFor();
  await lee.locator('#paused-note', { hasText: 'The facilitators are away for a moment. The speaking queue waits until one is back.' }).waitFor();
  await fac.getByRole('button', { name: 'Return everyone' }).click();
  await lee.locator('#paused-note').waitFor({ state: 'hidden' });
});
