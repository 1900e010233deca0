// The client in Spanish: the browser's language picks the catalog, the join page can switch it
// (remembered on the device), and server errors are shown by their code in the person's language.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, useHarness, admit, eventually, joinAs, queueNames, waitForMeeting } from './harness.mjs';

const t = useHarness();

/** English words that must not appear on a Spanish page. */
const ENGLISH = /Raise hand|Lower hand|Speaking queue|People here|Waiting room|Unmute|Join the meeting|Display name|Message everyone|You left/;

test('a member follows the whole path in Spanish: join, wait, admitted, hand, chat, leave', async () => {
  await t.createMeeting('es');
  const fac = await t.open('es', 'es-fac', 'facilitator');
  await joinAs(fac, 'Facil');
  await waitForMeeting(fac);

  const luz = await t.open('es', 'es-luz', 'member', { width: 390, height: 844 }, { locale: 'es-ES' });
  await luz.getByRole('heading', { name: 'Elige cómo te verán' }).waitFor();
  assert.equal(await luz.evaluate(() => document.documentElement.lang), 'es');
  assert.equal(await luz.locator('#lang-select').inputValue(), 'es');
  // The server's refusal of a taken name is said in Spanish (by its code), with its suggestion.
  await luz.getByLabel('Nombre visible').fill('Facil');
  await luz.locator('#name-feedback', { hasText: 'Está bien.' }).waitFor();
  await luz.getByRole('button', { name: 'Entrar en la reunión' }).click();
  await luz.locator('#name-feedback', { hasText: 'Alguien en esta reunión ya usa ese nombre' }).waitFor();
  await luz.getByRole('button', { name: 'Usar «Facil 2»' }).waitFor();
  await luz.screenshot({ path: path.join(ARTIFACTS, 'es-name-phone.png'), fullPage: true });
  await luz.getByLabel('Nombre visible').fill('Luz');
  await luz.getByRole('button', { name: 'Entrar en la reunión' }).click();

  await luz.getByRole('heading', { name: 'Estás en la sala de espera' }).waitFor();
  await luz.getByText('Aparecerás como').waitFor();
  await admit(fac, 'Luz');
  await waitForMeeting(luz);

  await luz.getByRole('button', { name: 'Levantar la mano' }).click();
  await luz.getByRole('button', { name: 'Bajar la mano' }).waitFor();
  await eventually(() => queueNames(fac), (q) => q.join() === 'Luz', 'Luz in the queue');
  await luz.locator('#queue-summary', { hasText: '1 mano levantada. Vas en el puesto 1.º.' }).waitFor();
  await luz.getByLabel('Mensaje para todos').fill('Hola a todos');
  await luz.getByRole('button', { name: 'Enviar', exact: true }).click();
  await fac.locator('#chat-log li', { hasText: 'Hola a todos' }).waitFor();
  await luz.locator('#chat-log li', { hasText: 'Luz (tú)' }).waitFor();
  await luz.getByRole('heading', { name: 'Cola de palabra' }).waitFor();
  await luz.getByRole('heading', { name: 'Personas aquí' }).waitFor();
  const text = await luz.evaluate(() => document.body.innerText);
  assert.doesNotMatch(text, ENGLISH, 'no English on the Spanish meeting page');
  await luz.evaluate(() => window.scrollTo(0, 0));
  await luz.screenshot({ path: path.join(ARTIFACTS, 'es-member-phone.png'), fullPage: true });
  await luz.setViewportSize({ width: 1280, height: 800 });
  await luz.evaluate(() => window.scrollTo(0, 0));
  await luz.screenshot({ path: path.join(ARTIFACTS, 'es-member-desktop.png'), fullPage: true });

  await luz.getByRole('button', { name: 'Salir', exact: true }).click();
  await luz.getByRole('dialog').getByRole('heading', { name: '¿Salir de la reunión?' }).waitFor();
  await luz.getByRole('dialog').getByRole('button', { name: 'Salir', exact: true }).click();
  await luz.getByRole('heading', { name: 'Saliste de la reunión' }).waitFor();
  await eventually(() => queueNames(fac), (q) => q.length === 0, 'Luz gone from the queue');
});

test('the join page switches the language, and the choice is remembered', async () => {
  await t.createMeeting('lang');
  // An English browser: English first.
  const page = await t.open('lang', 'lang-m', 'member', undefined, { locale: 'en-US' });
  await page.getByRole('heading', { name: 'Choose how you appear' }).waitFor();
  await page.getByLabel('Display name').fill('sam@example.org');
  await page.locator('#name-feedback', { hasText: 'email address' }).waitFor();
  // Switching translates what is on screen, the feedback to what was typed included.
  await page.getByLabel('Language').selectOption('es');
  await page.getByRole('heading', { name: 'Elige cómo te verán' }).waitFor();
  await page.locator('#name-feedback', { hasText: 'correo electrónico' }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('haven.lang')), 'es');
  // After a reload the choice holds, though the browser's language is English.
  await page.reload();
  await page.getByRole('heading', { name: 'Elige cómo te verán' }).waitFor();
  await page.getByLabel('Idioma').selectOption('en');
  await page.getByRole('heading', { name: 'Choose how you appear' }).waitFor();
});
