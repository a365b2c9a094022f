"use strict";
// AudioWorklet processor for the page's record button: copies the microphone's samples (channels averaged
// to mono) and posts them to the page in blocks of about 0.1 s; on "stop" it posts what is left and ends.
// A file of its own because the page's CSP allows scripts from 'self' only (no blob: or inline modules).
class DanluRecorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.blocks = [];
    this.frames = 0;
    this.stopped = false;
    this.port.onmessage = (e) => { if (e.data === "stop") this.stopped = true; };
  }

  flush() {
    if (!this.frames) return;
    const out = new Float32Array(this.frames);
    let at = 0;
    for (const b of this.blocks) { out.set(b, at); at += b.length; }
    this.port.postMessage(out, [out.buffer]);
    this.blocks = [];
    this.frames = 0;
  }

  process(inputs) {
    const channels = inputs[0] || [];
    if (channels.length) {
      const mono = new Float32Array(channels[0].length);
      for (const ch of channels) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / channels.length;
      this.blocks.push(mono);
      this.frames += mono.length;
      if (this.frames >= sampleRate / 10) this.flush();
    }
    if (this.stopped) {
      this.flush();
      this.port.postMessage("done");
      return false;
    }
    return true;
  }
}

registerProcessor("danlu-recorder", DanluRecorder);
