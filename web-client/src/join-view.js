// The name screen: instant feedback on the name rules, the server's verdict, one-click suggestion.

import { byId, setText, show } from './dom.js';
import { checkName, MAX_NAME_CHARS, nameLength } from './names.js';

/** Server messages start in lower case and have no full stop; on screen they read as sentences. @param {string} s */
export function sentence(s) {
  const t = s.trim();
  if (!t) return t;
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

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

/** @param {string} raw @param {boolean} submitted */
function feedback(raw, submitted) {
  const input = byId('name-input', HTMLInputElement);
  const n = nameLength(raw);
  const counter = byId('name-count');
  setText(counter, `${n}/${MAX_NAME_CHARS}`);
  counter.classList.toggle('over', n > MAX_NAME_CHARS);
  if (!raw.trim() && !submitted) {
    input.setAttribute('aria-invalid', 'false');
    setFeedback('', 'neutral');
    return;
  }
  const check = checkName(raw);
  if (check.ok) {
    input.setAttribute('aria-invalid', 'false');
    setFeedback(check.name === raw ? 'Looks good.' : `Others will see: ${check.name}`, 'ok');
  } else {
    input.setAttribute('aria-invalid', 'true');
    setFeedback(
      check.problem === 'empty' ? 'Type a name, or join with a name picked for you.' : sentence(check.message),
      'bad',
    );
  }
}

/** @param {string} text @param {'ok' | 'bad' | 'neutral'} tone */
function setFeedback(text, tone) {
  const el = byId('name-feedback');
  setText(el, text);
  el.dataset.tone = tone;
}

function hideSuggestion() {
  show(byId('name-suggestion'), false);
}

/** @param {boolean} on */
export function busy(on) {
  const join = byId('join-btn', HTMLButtonElement);
  join.disabled = on;
  byId('pseudonym-btn', HTMLButtonElement).disabled = on;
  setText(join, on ? 'Joining…' : 'Join the meeting');
}

/**
 * Shows the server's refusal of a join (`invalid_name`, `name_taken` with its suggestion, ...).
 * @param {string} code
 * @param {string} message
 * @param {string | null} suggestion
 */
export function showJoinRefusal(code, message, suggestion) {
  busy(false);
  const input = byId('name-input', HTMLInputElement);
  if (code === 'name_taken' || code === 'invalid_name') input.setAttribute('aria-invalid', 'true');
  const text =
    code === 'name_taken' ? 'Someone in this meeting already uses that name (or one that looks the same).' : sentence(message);
  setFeedback(text, 'bad');
  const button = byId('use-suggestion', HTMLButtonElement);
  if (suggestion) {
    button.dataset.name = suggestion;
    setText(button, `Use “${suggestion}” instead`);
    show(byId('name-suggestion'), true);
  } else {
    show(byId('name-suggestion'), false);
  }
  input.focus();
}

/** The first connection failed before the server said anything a browser can read. */
export function showUnreachable() {
  busy(false);
  setFeedback(
    "Couldn't join. The link may have expired, or the meeting may be locked, full or over. " +
      'Try again in a moment, or ask the facilitator for a new link.',
    'bad',
  );
}
