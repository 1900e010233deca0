// Audio and video: the extension point for the SFU.
//
// The server already decides who may be heard (`muted`, `can_unmute`, the floor) and will push
// those rules to an SFU, which does not exist yet. Until it does, this client sends and receives
// no media: the microphone button changes the signaling state only, which is what the server
// enforces. When the SFU arrives, implement this interface with WebRTC (an RTCPeerConnection to
// the SFU, negotiated over new signaling messages), and `app.js` needs no other change:
//
// - `start()` after `welcome`: ask for the microphone, connect to the SFU.
// - `setMicEnabled(on)` whenever this participant's own `muted` changes (the server is the
//   authority; a muted track is also disabled locally so nothing is sent).
// - `stop()` on leaving, removal, the end of the meeting.

/**
 * @typedef {object} Media
 * @property {() => Promise<void>} start
 * @property {(enabled: boolean) => void} setMicEnabled
 * @property {() => void} stop
 * @property {boolean} available whether this build sends and receives audio
 */

/** @type {Media} */
export const media = {
  available: false,
  async start() {},
  setMicEnabled(enabled) {
    void enabled;
  },
  stop() {},
};
