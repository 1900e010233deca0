// The name screen: instant feedback on the name rules, the server's verdict, one-click suggestion.

import { byId, setText, show } from './dom.js';
import { t } from './i18n.js';
import { checkName, MAX_NAME_CHARS, nameLength } from './names.js';

/** What the feedback line shows now, so a language switch can say it again. @type {{ kind: 'none' } | { kind: 'input', submitted: boolean } | { kind: 'text', text: () => string }} */
let current = { kind: 'none' };

/**
 * Wires the name form. `join(name)` is called with a checked name, or null for a pseudonym.
 * @param {(name: string | null) => void} join
 */
export function bindJoin(join) {
  const form = byId('name-form', HTMLFormElement);
  const input = byId('name-input', HTMLInputElement);
  const pseudonym = byId('pseudonym-btn', HTMLButtonElement);
  const suggestion = byId('use-suggestion', HTMLButtonElement);

  input.addEventListener('input', () => {
    hideSuggestion();
    feedback(input.value, false);
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const check = checkName(input.value);
    if (!check.ok) {
      feedback(input.value, true);
      input.focus();
      return;
    }
    busy(true);
    join(check.name);
  });
  pseudonym.addEventListener('click', () => {
    hideSuggestion();
    current = { kind: 'none' };
    setFeedback('', 'neutral');
    busy(true);
    join(null);
  });
  suggestion.addEventListener('click', () => {
    const name = suggestion.dataset.name ?? '';
    input.value = name;
    hideSuggestion();
    feedback(name, false);
    busy(true);
    join(name);
  });
}

/** Says the current feedback again (after a language switch). */
export function refreshJoin() {
  const input = byId('name-input', HTMLInputElement);
  busy(byId('join-btn', HTMLButtonElement).disabled);
  if (current.kind === 'input') feedback(input.value, current.submitted);
  else if (current.kind === 'text') byId('name-feedback').textContent = current.text();
  const button = byId('use-suggestion', HTMLButtonElement);
  if (button.dataset.name) setText(button, t('name.useSuggestion', { name: button.dataset.name }));
  feedbackCounter(input.value);
}

/** @param {string} raw */
function feedbackCounter(raw) {
  const n = nameLength(raw);
  const counter = byId('name-count');
  setText(counter, `${n}/${MAX_NAME_CHARS}`);
  counter.classList.toggle('over', n > MAX_NAME_CHARS);
}

/** @param {string} raw @param {boolean} submitted */
function feedback(raw, submitted) {
  const input = byId('name-input', HTMLInputElement);
  feedbackCounter(raw);
  current = { kind: 'input', submitted };
  if (!raw.trim() && !submitted) {
    input.setAttribute('aria-invalid', 'false');
    setFeedback('', 'neutral');
    return;
  }
  const check = checkName(raw);
  if (check.ok) {
    input.setAttribute('aria-invalid', 'false');
    setFeedback(check.name === raw ? t('name.ok') : t('name.normalised', { name: check.name }), 'ok');
  } else {
    input.setAttribute('aria-invalid', 'true');
    setFeedback(check.problem === 'empty' ? t('name.empty') : t(`name.problem.${check.problem}`), 'bad');
  }
}

/** @param {string} text @param {'ok' | 'bad' | 'neutral'} tone */
function setFeedback(text, tone) {
  const el = byId('name-feedback');
  setText(el, text);
  el.dataset.tone = tone;
}

function hideSuggestion() {
  const button = byId('use-suggestion', HTMLButtonElement);
  delete button.dataset.name;
  show(byId('name-suggestion'), false);
}

/** @param {boolean} on */
export function busy(on) {
  const join = byId('join-btn', HTMLButtonElement);
  join.disabled = on;
  byId('pseudonym-btn', HTMLButtonElement).disabled = on;
  setText(join, on ? t('name.joiningBusy') : t('name.join'));
}

/**
 * Shows the server's refusal of a name (`invalid_name`, `name_taken` with its suggestion, ...).
 * @param {string} code
 * @param {string | null} suggestion
 * @param {string} text what to say for other codes (already translated)
 */
export function showJoinRefusal(code, suggestion, text) {
  busy(false);
  const input = byId('name-input', HTMLInputElement);
  if (code === 'name_taken' || code === 'invalid_name') input.setAttribute('aria-invalid', 'true');
  const say =
    code === 'name_taken' ? () => t('name.taken') : code === 'invalid_name' ? () => t('name.invalid') : () => text;
  current = { kind: 'text', text: say };
  setFeedback(say(), 'bad');
  const button = byId('use-suggestion', HTMLButtonElement);
  if (suggestion) {
    button.dataset.name = suggestion;
    setText(button, t('name.useSuggestion', { name: suggestion }));
    show(byId('name-suggestion'), true);
  } else {
    hideSuggestion();
  }
  input.focus();
}

/** The first connection failed and the pre-join check could not say why. */
export function showUnreachable() {
  busy(false);
  current = { kind: 'text', text: () => t('name.unreachable') };
  setFeedback(t('name.unreachable'), 'bad');
}
