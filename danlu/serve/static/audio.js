"use strict";
// The input for audio runs: a sound file dropped or chosen, or a recording from the microphone. A recording
// is taken with the Web Audio API (an AudioWorklet collects the samples; recorder-worklet.js) and sent as a
// 16-bit PCM WAV (wav.js), the same upload as a dropped file. Uses predict, fail, refusedAsTooBig, topK and $ from app.js.

const MAX_RECORD_S = 30;  // the server refuses uploads over 60 s; a model hears audio.seconds of it anyway
const MAX_EXPLAIN_CLIPS = 2;  // /v1/explain's limit for sound: each clip costs 257 runs of the model

function audioUpload(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  form.append("top_k", String(topK()));
  return form;
}

function setUpAudio(card) {
  $("audio-input").hidden = false;
  const drop = $("audio-drop");
  const audio = (card.input || {}).audio || {};
  const limitMb = (card.limits || {}).max_body_mb;
  if (audio.seconds) $("audio-hint").textContent = `The model hears ${audio.seconds} s at ${audio.sample_rate} Hz.`;
  let last = null;

  const send = (files) => {
    if (!files.length || refusedAsTooBig(files, card, "Choose a shorter clip.")) return;
    last = files;
    const player = $("playback");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(files[0]);
    player.hidden = false;
    $("audio-name").textContent = files.length === 1 ? files[0].name : `${files[0].name} and ${files.length - 1} more`;
    // "Why?": the time-frequency occlusion map of the first clips, sent again as data URLs
    predict({ body: audioUpload(files) }, files.map((f) => f.name),
      () => Promise.all(files.slice(0, MAX_EXPLAIN_CLIPS).map(readAsDataUrl)));
  };

  $("audio-file").addEventListener("change", (e) => send([...e.target.files]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const dropped = [...e.dataTransfer.files];
    const sounds = dropped.filter((f) => f.type.startsWith("audio/") || f.type === "video/ogg" || !f.type);
    if (dropped.length && !sounds.length) {
      fail(`${dropped[0].name} is not a sound file.`, "Drop a WAV, FLAC, OGG or MP3 file.");
      return;
    }
    send(sounds);
  });
  $("top-k").addEventListener("change", () => { if (last) send(last); });
  setUpRecorder(send, limitMb);
}

// The record button: click to start, click again (or wait MAX_RECORD_S) to stop and predict.
function setUpRecorder(send, limitMb) {
  const button = $("record");
  const clock = $("record-time");
  let session = null;

  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
    button.disabled = true;
    button.title = window.isSecureContext ? "This browser cannot record audio here." :
      "The microphone needs https or localhost; open the page there to record.";
    clock.textContent = window.isSecureContext ? "no recording in this browser" : "recording needs https or localhost";
    return;
  }

  async function start() {
    button.disabled = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false,
        noiseSuppression: false, autoGainControl: false } });
    } catch (error) {
      button.disabled = false;
      fail("The microphone could not be opened.", `${error.name}: ${error.message}`);
      return;
    }
    const context = new AudioContext();
    try {
      await context.audioWorklet.addModule("static/recorder-worklet.js");
    } catch (error) {
      stream.getTracks().forEach((t) => t.stop());
      context.close();
      button.disabled = false;
      fail("The recorder could not start.", String(error));
      return;
    }
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "danlu-recorder", { numberOfOutputs: 1, outputChannelCount: [1] });
    const blocks = [];
    const rate = context.sampleRate;
    // the body limit, less room for the form around the file, caps a recording too
    const maxS = Math.min(MAX_RECORD_S, limitMb ? (limitMb * 1024 * 1024 - 4096) / (2 * rate) : MAX_RECORD_S);
    let frames = 0;
    const done = new Promise((resolve) => {
      node.port.onmessage = (e) => {
        if (e.data === "done") { resolve(); return; }
        blocks.push(e.data);
        frames += e.data.length;
        clock.textContent = `${(frames / rate).toFixed(1)} s`;
        if (frames / rate >= maxS) stop();
      };
    });
    source.connect(node);
    node.connect(context.destination);  // silent: pulls the node through the graph
    await context.resume();
    session = { stream, context, node, blocks, rate, done };
    button.textContent = "■ Stop";
    button.classList.add("recording");
    button.setAttribute("aria-pressed", "true");
    clock.textContent = "0.0 s";
    button.disabled = false;
  }

  async function stop() {
    if (!session) return;
    const { stream, context, node, blocks, rate, done } = session;
    session = null;
    button.disabled = true;
    node.port.postMessage("stop");
    await done;
    stream.getTracks().forEach((t) => t.stop());
    await context.close();
    button.textContent = "● Record";
    button.classList.remove("recording");
    button.setAttribute("aria-pressed", "false");
    button.disabled = false;
    if (!blocks.length) {
      fail("The recording is empty.", "Check that the microphone is on, then record again.");
      return;
    }
    const wav = danluWav(blocks, rate);
    send([new File([wav], "recording.wav", { type: "audio/wav" })]);
  }

  button.addEventListener("click", () => { if (session) stop(); else start(); });
}
