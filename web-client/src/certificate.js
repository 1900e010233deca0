// One's attendance certificate after the meeting: a short-lived connection opened with
// `certificate=1` that asks `certificate_request` and gets `certificate` (or an error).

/** @typedef {import('./protocol').ServerMessage} ServerMessage */

/**
 * @typedef {{ ok: true, certificate: string, minutes: number } | { ok: false, code: string }} CertificateResult
 */

/**
 * Asks the server for this member's certificate of the meeting that just ended.
 * @param {string} joinToken
 * @returns {Promise<CertificateResult>}
 */
export function requestCertificate(joinToken) {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${window.location.host}/v1/signal?certificate=1&token=${encodeURIComponent(joinToken)}`;
  return new Promise((resolve) => {
    let done = false;
    /** @param {CertificateResult} r */
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
      resolve(r);
    };
    const ws = new WebSocket(url);
    const timer = setTimeout(() => finish({ ok: false, code: 'timeout' }), 15_000);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'certificate_request', id: 'cert' }));
    ws.onmessage = (ev) => {
      /** @type {ServerMessage} */
      let msg;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (msg.type === 'certificate') finish({ ok: true, certificate: msg.certificate, minutes: msg.minutes_present });
      else if (msg.type === 'error') finish({ ok: false, code: msg.code });
    };
    ws.onclose = () => finish({ ok: false, code: 'unreachable' });
  });
}

/**
 * A link that saves the certificate as a file (a compact JWS; verifiable with
 * `POST /v1/certificates/verify`).
 * @param {HTMLAnchorElement} link @param {string} certificate @param {string} filename
 */
export function certificateLink(link, certificate, filename) {
  if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([certificate + '\n'], { type: 'application/jwt' }));
  link.download = filename;
}
