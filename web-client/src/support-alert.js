// Facilitators must not miss a support request: while one is open, a banner stays in view
// wherever the page is scrolled (it sits in the sticky top bar), the page title counts them, and
// an optional soft sound (off by default; WebAudio, no file) repeats until someone acknowledges.

import { byId, setText, show } from './dom.js';
import { t } from './i18n.js';

/** @typedef {import('./protocol').SupportView} SupportView */

const SOUND_KEY = 'haven.supportSound';
/** The sound repeats this often while a request is open. */
const REPEAT_MS = 20_000;

/** @type {AudioContext | null} */
let audio = null;
/** @type {ReturnType<typeof setInterval> | null} */
let repeat = null;
let lastCount = 0;

export function soundOn() {
  try {
    return window.localStorage.getItem(SOUND_KEY) === 'on';
  } catch {
    return false;
  }
}

/**
 * Turns the sound on or off (from a click, so the browser lets the audio start) and plays it once
 * so the facilitator hears what it sounds like.
 * @param {boolean} on
 */
export function setSound(on) {
  try {
    window.localStorage.setItem(SOUND_KEY, on ? 'on' : 'off');
  } catch {
    // storage disabled: the choice lasts for this page
  }
  if (on) chime();
  else stopRepeat();
}

function stopRepeat() {
  if (repeat !== null) clearInterval(repeat);
  repeat = null;
}

/** Two soft sine notes. */
function chime() {
  try {
    audio ??= new AudioContext();
    if (audio.state === 'suspended') void audio.resume();
    const now = audio.currentTime;
    for (const [i, freq] of [659.25, 880].entries()) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      const start = now + i * 0.22;
      gain.gain.setValueAtTime(0, start);
      gain.gain.linearRampToValueAtTime(0.07, start + 0.03);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.6);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(start + 0.65);
    }
  } catch {
    // no audio here: the banner and the title still show the request
  }
}

/**
 * Shows or hides the banner and keeps the sound going while requests are open.
 * @param {SupportView[]} open open requests (empty for members, or when none)
 * @param {(requestId: number) => void} acknowledge
 */
export function renderSupportAlert(open, acknowledge) {
  const banner = byId('support-alert');
  show(banner, open.length > 0);
  const first = open[0];
  if (first) {
    setText(
      byId('support-alert-text'),
      open.length === 1 ? t('support.alert.one', { name: first.display_name }) : t('support.alert.many', { n: open.length, name: first.display_name }),
    );
    const ack = byId('support-alert-ack', HTMLButtonElement);
    setText(ack, t('support.alert.ack', { name: first.display_name }));
    ack.onclick = () => acknowledge(first.request_id);
  }
  if (open.length > lastCount && soundOn()) chime();
  lastCount = open.length;
  if (open.length > 0 && soundOn()) {
    repeat ??= setInterval(chime, REPEAT_MS);
  } else {
    stopRepeat();
  }
}

/** The count for the page title ("(2) " when two requests are open), else ''. @param {number} n */
export function titlePrefix(n) {
  return n > 0 ? `(${n}) ${t('support.titleCount', { n })} · ` : '';
}
