"use strict";
// 16-bit PCM WAV in the page: the server reads WAV with libsndfile, which cannot read the WebM/Opus that
// Chrome's MediaRecorder makes, so the microphone's Float32 samples are written out as a RIFF/WAVE file.

// Float32 blocks (mono, -1..1) → the bytes of a 16-bit PCM mono WAV file at `rate` Hz.
function danluWav(blocks, rate) {
  const frames = blocks.reduce((n, b) => n + b.length, 0);
  const buffer = new ArrayBuffer(44 + frames * 2);
  const view = new DataView(buffer);
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF");
  view.setUint32(4, 36 + frames * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);         // fmt chunk size
  view.setUint16(20, 1, true);          // PCM
  view.setUint16(22, 1, true);          // mono
  view.setUint32(24, rate, true);       // sample rate
  view.setUint32(28, rate * 2, true);   // bytes per second
  view.setUint16(32, 2, true);          // bytes per frame
  view.setUint16(34, 16, true);         // bits per sample
  text(36, "data");
  view.setUint32(40, frames * 2, true);
  let at = 44;
  for (const block of blocks) {
    for (let i = 0; i < block.length; i++, at += 2) {
      const s = Math.max(-1, Math.min(1, block[i]));  // clip, then scale asymmetrically onto int16
      view.setInt16(at, s < 0 ? Math.round(s * 32768) : Math.round(s * 32767), true);
    }
  }
  return buffer;
}
