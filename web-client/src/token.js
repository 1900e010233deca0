// The join token: read from the URL fragment (never sent to the server in an HTTP request, so it
// stays out of server and proxy logs), kept in this tab's sessionStorage for reconnects and
// reloads, and removed from the visible URL (so it is not copied, bookmarked or screen-shared).

const JOIN_KEY = 'haven.join';
const RESUME_KEY = 'haven.resume';
const NAME_KEY = 'haven.name';

/** @returns {Storage | null} */
function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: the tab still works, only a reload loses the seat
  }
}

/**
 * Takes the join token from `#token=...` (then hides it) or from this tab's storage.
 * A new link replaces whatever an earlier link in this tab left behind.
 * @returns {string | null}
 */
export function takeJoinToken() {
  const s = storage();
  const hash = window.location.hash.startsWith('#') ? window.location.hash.slice(1) : '';
  const fromLink = new URLSearchParams(hash).get('token');
  if (fromLink) {
    if (s && s.getItem(JOIN_KEY) !== fromLink) {
      s.removeItem(RESUME_KEY);
      s.removeItem(NAME_KEY);
    }
    s?.setItem(JOIN_KEY, fromLink);
    history.replaceState(null, '', window.location.pathname + window.location.search);
    return fromLink;
  }
  return s?.getItem(JOIN_KEY) ?? null;
}

/** What a reload needs to come back to the same seat. */
export const saved = {
  /** @returns {string | null} */
  resumeToken: () => storage()?.getItem(RESUME_KEY) ?? null,
  /** @param {string | null} token */
  setResumeToken(token) {
    const s = storage();
    if (!s) return;
    if (token) s.setItem(RESUME_KEY, token);
    else s.removeItem(RESUME_KEY);
  },
  /** @returns {string | null} */
  displayName: () => storage()?.getItem(NAME_KEY) ?? null,
  /** @param {string | null} name */
  setDisplayName(name) {
    const s = storage();
    if (!s) return;
    if (name) s.setItem(NAME_KEY, name);
    else s.removeItem(NAME_KEY);
  },
  /** Forget the seat (after leaving, removal, the end of the meeting). The join token stays. */
  clearSeat() {
    storage()?.removeItem(RESUME_KEY);
  },
};
