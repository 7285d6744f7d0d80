/*
 * Herald voice studio: record the microphone in the browser as a 16-bit PCM WAV file and put it into an
 * ordinary <input type=file>, so the surrounding form uploads it like any chosen file.
 *
 * Markup: <div class="herald-recorder" data-input="ID_OF_FILE_INPUT" data-max-seconds="120"></div>
 *
 * Why WAV encoded here: MediaRecorder gives webm/opus, which soundfile cannot read without ffmpeg on the
 * server. Raw samples are taken with an AudioWorklet (a ScriptProcessor where worklets are missing) at the
 * AudioContext's rate; the server resamples to 32 kHz. No framework, no build step.
 *
 * The element's data-state says where it is (idle, starting, recording, done, error) and data-seconds how
 * long the last recording is, for people's scripts and the browser test alike.
 *
 * Words shown to staff come from data-text-* attributes the page fills in its language (data-text-record,
 * data-text-stop, data-text-cannot-record, data-text-recorded with "{seconds}", data-text-no-input with "{id}");
 * without them the English below is shown.
 */
(function () {
  "use strict";

  var WORKLET = [
    "class HeraldTap extends AudioWorkletProcessor {",
    "  process(inputs) {",
    "    var channel = inputs[0] && inputs[0][0];",
    "    if (channel) this.port.postMessage(channel.slice(0));",
    "    return true;",
    "  }",
    "}",
    "registerProcessor('herald-tap', HeraldTap);",
  ].join("\n");

  // Mono float samples in [-1, 1] -> a WAV file (RIFF, PCM, 16-bit, little-endian).
  function encodeWav(chunks, sampleRate) {
    var length = 0;
    chunks.forEach(function (c) { length += c.length; });
    var view = new DataView(new ArrayBuffer(44 + 2 * length));
    function text(at, s) { for (var i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); }
    text(0, "RIFF");
    view.setUint32(4, 36 + 2 * length, true);
    text(8, "WAVE");
    text(12, "fmt ");
    view.setUint32(16, 16, true);            // fmt chunk size
    view.setUint16(20, 1, true);             // PCM
    view.setUint16(22, 1, true);             // mono
    view.setUint32(24, sampleRate, true);
    view.setUint32(28, sampleRate * 2, true); // byte rate
    view.setUint16(32, 2, true);             // block align
    view.setUint16(34, 16, true);            // bits per sample
    text(36, "data");
    view.setUint32(40, 2 * length, true);
    var at = 44;
    chunks.forEach(function (c) {
      for (var i = 0; i < c.length; i++, at += 2) {
        var s = Math.max(-1, Math.min(1, c[i]));
        view.setInt16(at, s < 0 ? s * 0x8000 : s * 0x7fff, true);
      }
    });
    return new Blob([view], { type: "audio/wav" });
  }

  function formatTime(seconds) {
    var m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function attach(root) {
    var input = document.getElementById(root.dataset.input);
    var maxSeconds = parseFloat(root.dataset.maxSeconds || "120");
    function say(key, fallback) { return root.dataset[key] || fallback; }
    if (!input) {
      root.textContent = say("textNoInput", "Recorder: no file input with id {id}").replace("{id}", root.dataset.input);
      return;
    }
    root.innerHTML =
      '<button type="button" class="herald-record">Record</button> ' +
      '<button type="button" class="herald-stop" disabled>Stop</button> ' +
      '<span class="herald-time">0:00</span> ' +
      '<span class="herald-meter" style="display:inline-block;width:120px;height:10px;background:#ddd;' +
      'vertical-align:middle"><span class="herald-level" style="display:block;height:100%;width:0;' +
      'background:#3a3"></span></span> ' +
      '<span class="herald-status" role="status"></span>' +
      '<div><audio class="herald-preview" controls hidden></audio></div>';
    var recordButton = root.querySelector(".herald-record");
    var stopButton = root.querySelector(".herald-stop");
    recordButton.textContent = say("textRecord", "Record");
    stopButton.textContent = say("textStop", "Stop");
    var time = root.querySelector(".herald-time");
    var level = root.querySelector(".herald-level");
    var status = root.querySelector(".herald-status");
    var preview = root.querySelector(".herald-preview");
    var session = null;
    root.dataset.state = "idle";

    function onSamples(session, samples) {
      if (session.stopped) return;
      session.chunks.push(samples);
      session.count += samples.length;
      var sum = 0;
      for (var i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
      var db = 10 * Math.log10(sum / Math.max(1, samples.length) + 1e-12);
      // -60 dBFS empty .. 0 dBFS full; smoothed so the bar does not flicker at 375 updates a second.
      session.level = Math.max(0.8 * session.level, Math.min(1, Math.max(0, (db + 60) / 60)));
      var seconds = session.count / session.rate;
      if (seconds >= maxSeconds) stop();
    }

    function tick() {
      if (!session || session.stopped) return;
      time.textContent = formatTime(session.count / session.rate);
      level.style.width = Math.round(100 * session.level) + "%";
      requestAnimationFrame(tick);
    }

    async function start() {
      recordButton.disabled = true;
      status.textContent = "";
      root.dataset.state = "starting";
      try {
        var stream = await navigator.mediaDevices.getUserMedia({
          // The training wants the voice as the microphone hears it, not as a call processes it.
          audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        });
        var context = new (window.AudioContext || window.webkitAudioContext)();
        var current = { stream: stream, context: context, chunks: [], count: 0, rate: context.sampleRate,
                        level: 0, stopped: false, node: null };
        var source = context.createMediaStreamSource(stream);
        if (context.audioWorklet && window.AudioWorkletNode) {
          var url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
          await context.audioWorklet.addModule(url);
          URL.revokeObjectURL(url);
          current.node = new AudioWorkletNode(context, "herald-tap", { numberOfInputs: 1, numberOfOutputs: 1 });
          current.node.port.onmessage = function (e) { onSamples(current, e.data); };
        } else {
          current.node = context.createScriptProcessor(4096, 1, 1);
          current.node.onaudioprocess = function (e) {
            onSamples(current, new Float32Array(e.inputBuffer.getChannelData(0)));
          };
        }
        source.connect(current.node);
        // Connected to the output (silently: the node writes nothing) so the graph keeps pulling samples.
        current.node.connect(context.destination);
        if (context.state === "suspended") await context.resume();
        session = current;
        stopButton.disabled = false;
        root.dataset.state = "recording";
        tick();
      } catch (err) {
        recordButton.disabled = false;
        root.dataset.state = "error";
        status.textContent = say("textCannotRecord", "Cannot record:") + " " + (err && err.message ? err.message : err);
      }
    }

    function stop() {
      if (!session || session.stopped) return;
      var current = session;
      current.stopped = true;
      current.node.disconnect();
      current.stream.getTracks().forEach(function (t) { t.stop(); });
      current.context.close();
      var blob = encodeWav(current.chunks, current.rate);
      var name = "recording-" + new Date().toISOString().replace(/[:.]/g, "-") + ".wav";
      var file = new File([blob], name, { type: "audio/wav" });
      var transfer = new DataTransfer();
      transfer.items.add(file);
      input.files = transfer.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
      if (preview.src) URL.revokeObjectURL(preview.src);
      preview.src = URL.createObjectURL(blob);
      preview.hidden = false;
      var seconds = current.count / current.rate;
      time.textContent = formatTime(seconds);
      level.style.width = "0";
      status.textContent = say("textRecorded", "Recorded {seconds} s; it will be sent with the form.")
        .replace("{seconds}", seconds.toFixed(1));
      root.dataset.seconds = seconds.toFixed(3);
      root.dataset.state = "done";
      recordButton.disabled = false;
      stopButton.disabled = true;
    }

    recordButton.addEventListener("click", start);
    stopButton.addEventListener("click", stop);
  }

  function attachAll() {
    document.querySelectorAll(".herald-recorder").forEach(attach);
  }

  window.HeraldRecorder = { attach: attach, encodeWav: encodeWav };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", attachAll);
  else attachAll();
})();
