// Display-name rules, mirrored from the server (src/room/names.rs) for instant feedback.
// The server stays the authority: its `invalid_name` and `name_taken` errors are shown by code.

/** Longest display name, in characters, after normalisation (MAX_NAME_CHARS on the server). */
export const MAX_NAME_CHARS = 32;

/**
 * The server's NameError texts, for reference; the page shows the catalog's words for each
 * problem (`name.problem.*` in src/locales/).
 */
export const NAME_MESSAGES = {
  empty: 'a display name cannot be empty',
  too_long: `a display name can be at most ${MAX_NAME_CHARS} characters`,
  invisible: 'a display name cannot contain invisible, control or text-direction characters',
  email: 'a display name cannot contain an email address; choose a name that does not identify you',
  phone: 'a display name cannot contain a phone number; choose a name that does not identify you',
  url: 'a display name cannot contain a web address',
  handle: 'a display name cannot contain an @handle; choose a name that does not identify you',
};

/** @typedef {keyof typeof NAME_MESSAGES} NameProblem */

/**
 * Control characters, and invisible or direction-changing ones (is_forbidden_char on the server).
 * @param {number} c a code point
 */
function isForbidden(c) {
  return (
    c <= 0x1f ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0x00ad ||
    c === 0x034f ||
    c === 0x061c ||
    c === 0x115f ||
    c === 0x1160 ||
    c === 0x3164 ||
    c === 0xffa0 ||
    c === 0x180e ||
    (c >= 0x200b && c <= 0x200f) ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x206f) ||
    c === 0xfeff ||
    (c >= 0xfff9 && c <= 0xfffb) ||
    (c >= 0xe0000 && c <= 0xe007f) ||
    (c >= 0xfe00 && c <= 0xfe0f)
  );
}

/** @param {string} s */
function hasForbidden(s) {
  for (const ch of s) {
    if (isForbidden(/** @type {number} */ (ch.codePointAt(0)))) return true;
  }
  return false;
}

const EMAIL = /[^\s@]+@[^\s@]+\.[a-z]{2,}/iu;
const URL_LIKE =
  /(\b[a-z][a-z0-9+.-]*:\/\/|\bwww\.|\b[a-z0-9-]+\.(com|org|net|io|me|co|uk|de|fr|us|ca|au|info|biz|app|dev|ly|gg|tv|xyz|link|site|online)\b)/iu;
const HANDLE = /(^|[\s(\[])@[\p{L}\p{N}_.]{2,}/u;

/** Seven or more digits, possibly separated by spaces, dots, dashes, brackets, + or /. @param {string} s */
function looksLikePhone(s) {
  let digits = 0;
  for (const ch of s) {
    if (ch >= '0' && ch <= '9') {
      digits += 1;
      if (digits >= 7) return true;
    } else if (!' .-()+/'.includes(ch)) {
      digits = 0;
    }
  }
  return false;
}

/**
 * Normalises and checks a name as the server will.
 * @param {string} raw what the person typed
 * @returns {{ ok: true, name: string } | { ok: false, problem: NameProblem, message: string }}
 */
export function checkName(raw) {
  /** @param {NameProblem} problem */
  const fail = (problem) => /** @type {const} */ ({ ok: false, problem, message: NAME_MESSAGES[problem] });
  if (hasForbidden(raw)) return fail('invisible');
  const nfkc = raw.normalize('NFKC');
  if (hasForbidden(nfkc)) return fail('invisible');
  const name = nfkc.split(/\s+/u).filter(Boolean).join(' ');
  const count = [...name].length;
  if (count === 0) return fail('empty');
  if (count > MAX_NAME_CHARS) return fail('too_long');
  if (EMAIL.test(name)) return fail('email');
  if (URL_LIKE.test(name)) return fail('url');
  if (HANDLE.test(name)) return fail('handle');
  if (looksLikePhone(name)) return fail('phone');
  return { ok: true, name };
}

/** Characters a name has after normalisation (for a "12/32" counter). @param {string} raw */
export function nameLength(raw) {
  return [...raw.normalize('NFKC').split(/\s+/u).filter(Boolean).join(' ')].length;
}
