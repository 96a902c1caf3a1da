/* The retarget page: choose a source and a duration, start a job through the API, poll it, then hear
 * its results over one transport with beat-mapped A/B switching (BeatMap, static/js/beatmap.js),
 * see each waveform with its seams on a shared time axis, download them, send the pair to annotators.
 */
"use strict";

(function page() {
  const root = document.getElementById("retarget");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const SEEK_SECONDS = 2;
  const POLL_MS = 700;
  const BOUNDS_DELAY_MS = 250;   // typing a beat number asks the server once it pauses
  const LABELS = ["A", "B", "C", "D"];

  let ctx = null;
  let job = null;              // the job from the API
  let sides = [];              // per result: {result, buffer, peaks, el, canvas}
  let current = 0, playing = false, offset = 0, startedAt = 0, node = null;
  let polling = null;
  // The durations the server accepts for the chosen track and beat range (GET /api/retarget/bounds/,
  // editing.retarget.duration_bounds): the slider offers these and nothing else.  null: no slider.
  let bounds = null;
  let boundsAsked = 0;         // the latest bounds request; an older answer arriving later is dropped
  let boundsTimer = null;

  /* ---------- talking to the API ---------- */

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  // The API's refusals: {"detail": ..., "code": ...} or a serializer's {"field": ["reason", ...]}.
  function errorText(data, response) {
    if (!data) return `${response.status} ${response.statusText}`;
    if (data.detail) return String(data.detail);
    return Object.entries(data).map(([field, reasons]) => {
      const text = Array.isArray(reasons) ? reasons.join(" ") : String(reasons);
      return field === "non_field_errors" ? text : `${field}: ${text}`;
    }).join("; ");
  }

  async function api(url, { method = "GET", json, form } = {}) {
    const headers = { "Accept": "application/json", "X-CSRFToken": csrfToken() };
    let body;
    if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
    if (form !== undefined) body = form;     // the browser sets the multipart boundary
    const response = await fetch(url, { method, headers, body, credentials: "same-origin" });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const err = new Error(errorText(data, response));
      err.code = data && data.code;
      throw err;
    }
    return data;
  }

  function audioContext() {
    if (!ctx) ctx = new (window.AudioContext || window.webkitAudioContext)();
    if (ctx.state === "suspended") ctx.resume();
    return ctx;
  }

  /* ---------- the form: source, duration (typed or dragged), passage ---------- */

  // The twin of editing.retarget.parse_duration: "150", "150.5", "2:30", "1:02:30" -> seconds, else null.
  function parseDuration(text) {
    const m = /^\s*(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)\s*s?\s*$/.exec(text);
    if (!m) return null;
    const [, first, second, last] = m;
    if (second !== undefined) return Number(first) * 3600 + Number(second) * 60 + Number(last);
    if (first !== undefined) return Number(first) * 60 + Number(last);
    return Number(last);
  }

  function formatDuration(seconds) {
    const minutes = Math.floor(seconds / 60);
    const rest = Math.round((seconds - minutes * 60) * 10) / 10;
    const whole = Number.isInteger(rest) ? String(rest).padStart(2, "0") : rest.toFixed(1).padStart(4, "0");
    return `${minutes}:${whole}`;
  }

  function chosenTrack() {
    const option = $("track").selectedOptions[0];
    return option && option.value ? option : null;
  }

  // The chosen track and beat range as the bounds API's query (empty beat fields: the track's start and end).
  function boundsQuery(option) {
    const query = new URLSearchParams({ track: option.value });
    if ($("from-beat").value !== "") query.set("from_beat", $("from-beat").value);
    if ($("to-beat").value !== "") query.set("to_beat", $("to-beat").value);
    return query.toString();
  }

  // Typing moves the slider when the typed duration is one it offers.
  function followTyped() {
    if (!bounds) return;
    const slider = $("duration-slider"), typed = parseDuration($("duration").value);
    const lowest = bounds.lowest_seconds, highest = bounds.highest_seconds;
    if (typed !== null && typed >= lowest && typed <= highest) slider.value = String(typed);
    else if (typed === null) {
      slider.value = String(Math.min(Math.max(Math.round(bounds.passage_seconds * 10) / 10, lowest), highest));
    }
  }

  function showBounds(data, query) {
    const slider = $("duration-slider");
    bounds = data;
    if (!data) {
      slider.disabled = true;
      delete root.dataset.bounds;
      return;
    }
    slider.min = String(data.lowest_seconds);
    slider.max = String(data.highest_seconds);
    slider.disabled = false;
    followTyped();
    $("duration-bounds").textContent = `${formatDuration(data.lowest_seconds)} to ${formatDuration(data.highest_seconds)}`
      + ` (the passage lasts ${formatDuration(data.passage_seconds)})`;
    root.dataset.bounds = query;
  }

  // Ask the server which durations the chosen track and beat range allow; an upload has none yet.
  async function refreshBounds() {
    clearTimeout(boundsTimer);
    const asked = ++boundsAsked, option = chosenTrack();
    showBounds(null);
    if (!option) {
      $("duration-bounds").textContent = $("file").files.length
        ? "Type a duration: the allowed range is known once the file is analysed (a duration outside it is refused with the range)."
        : "Choose a track to drag the duration.";
      return;
    }
    const query = boundsQuery(option);
    $("duration-bounds").textContent = "Reading the durations this passage allows…";
    try {
      const data = await api(`${root.dataset.boundsUrl}?${query}`);
      if (asked === boundsAsked) showBounds(data, query);
    } catch (err) {
      if (asked === boundsAsked) $("duration-bounds").textContent = `No duration to drag: ${err.message}`;
    }
  }

  // The last range's bounds go at once (the slider must not offer them for the new range meanwhile).
  function rangeTyped() {
    clearTimeout(boundsTimer);
    boundsAsked++;
    showBounds(null);
    if (chosenTrack()) $("duration-bounds").textContent = "Reading the durations this passage allows…";
    boundsTimer = setTimeout(refreshBounds, BOUNDS_DELAY_MS);
  }

  function sourceInfo() {
    const option = chosenTrack();
    if (option) return `${option.dataset.beats} beats, ${formatDuration(Number(option.dataset.seconds))}`;
    if ($("file").files.length) return `${$("file").files[0].name}: analysed when the job runs`;
    return "";
  }

  function sourceChanged() {
    $("source-info").textContent = sourceInfo();
    refreshBounds();
  }

  $("track").addEventListener("change", () => {
    if (chosenTrack()) $("file").value = "";
    sourceChanged();
  });

  $("file").addEventListener("change", () => {
    if ($("file").files.length) $("track").value = "";
    sourceChanged();
  });

  $("duration-slider").addEventListener("input", () => {
    $("duration").value = formatDuration(Number($("duration-slider").value));
  });
  $("duration").addEventListener("input", followTyped);
  $("from-beat").addEventListener("input", rangeTyped);
  $("to-beat").addEventListener("input", rangeTyped);

  function showError(text, { offerHeuristic = false } = {}) {
    $("form-error-text").textContent = text;
    $("heuristic-only").hidden = !offerHeuristic;
    $("form-error").hidden = false;
    root.dataset.error = text;
  }

  function clearError() {
    $("form-error").hidden = true;
    $("form-error-text").textContent = "";
    delete root.dataset.error;
  }

  function methods() { return root.dataset.methods.split(" ").filter(Boolean); }

  async function startJob(methodList) {
    clearError();
    const option = chosenTrack(), file = $("file").files[0];
    const duration = $("duration").value.trim();
    if (!option && !file) { showError("Choose a track or upload an audio file."); return; }
    if (!duration) { showError("Give a duration: seconds (150) or minutes and seconds (2:30)."); return; }
    const passage = {};
    if ($("from-beat").value !== "") passage.from_beat = Number($("from-beat").value);
    if ($("to-beat").value !== "") passage.to_beat = Number($("to-beat").value);
    const request = { method: "POST" };
    if (file) {
      const form = new FormData();
      form.append("file", file);
      form.append("duration", duration);
      for (const [k, v] of Object.entries(passage)) form.append(k, String(v));
      for (const m of methodList) form.append("methods", m);
      request.form = form;
    } else {
      request.json = { track: Number(option.value), duration, methods: methodList, ...passage };
    }
    stopPlayback();
    $("results").hidden = true;
    $("start").disabled = true;
    showJob({ status: "queued", progress: 0, message: "sending" });
    try {
      follow(await api(root.dataset.startUrl, request));
    } catch (err) {
      $("job").hidden = true;
      showError(err.message, { offerHeuristic: /no active policy/i.test(err.message) });
    } finally {
      $("start").disabled = false;
    }
  }

  $("retarget-form").addEventListener("submit", (event) => { event.preventDefault(); startJob(methods()); });
  $("heuristic-only").addEventListener("click", () => startJob(["heuristic"]));

  /* ---------- a job: progress, then results ---------- */

  function showJob(data) {
    $("job").hidden = false;
    $("job-progress").value = data.progress || 0;
    const text = { queued: "Queued: waiting for a worker…", done: "Done.", failed: "Failed." }[data.status];
    $("job-message").textContent = data.status === "running" ? `Running: ${data.message || "editing"}…` : text;
    root.dataset.jobStatus = data.status;
  }

  function follow(data) {
    if (!job || job.id !== data.id) {   // another job: the last one's results go
      stopPlayback();
      sides = [];
      $("results").hidden = true;
      delete root.dataset.results;
    }
    job = data;
    root.dataset.job = String(data.id);
    showJob(data);
    if (polling) { clearTimeout(polling); polling = null; }
    if (data.status === "failed") { showError(data.error || "The job failed."); return; }
    if (data.status === "done") { showResults(data).catch((err) => showError(`Could not load the results: ${err.message}`)); return; }
    polling = setTimeout(async () => {
      try { follow(await api(data.url)); } catch (err) { showError(`Lost the job: ${err.message}`); }
    }, POLL_MS);
  }

  for (const button of document.querySelectorAll(".open-job")) {
    button.addEventListener("click", async () => {
      clearError();
      try { follow(await api(button.dataset.url)); } catch (err) { showError(err.message); }
    });
  }

  // Where a best-of-N winner came from (rlhf.learning.policy.BEST_OF_N_SOURCES).
  const CHOSEN = { heuristic: "heuristic's edit", learned: "learned planner's edit",
                   departure: "learned planner's alternative", policy: "policy's edit" };

  function describe(method) {
    if (method === "heuristic") return "Heuristic: the retargeting dynamic program";
    if (method === "policy") return "Policy: its most probable edit";
    const n = /^best-of-(\d+)$/.exec(method);
    if (n) return `Best of ${n[1]} policy edits, the heuristic's and the learned planner's, by the reward model`;
    return method;
  }

  async function decode(result) {
    const response = await fetch(result.audio_url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`audio of ${result.method}: ${response.status}`);
    return audioContext().decodeAudioData(await response.arrayBuffer());
  }

  async function showResults(data) {
    stopPlayback();
    const buffers = await Promise.all(data.results.map(decode));
    const box = $("sides");
    box.replaceChildren();
    sides = data.results.map((result, i) => {
      const el = $("side-template").content.firstElementChild.cloneNode(true);
      const label = `${LABELS[i]} · ${describe(result.method)}`;
      el.dataset.method = result.method;
      el.querySelector(".side-title").textContent = label;
      const reward = result.reward === null || result.reward === undefined ? "" : `, reward ${result.reward.toFixed(2)}`;
      const chosen = result.chosen_from ? `, chosen: the ${CHOSEN[result.chosen_from] || result.chosen_from}` : "";
      const seams = result.seam_seconds.length;
      el.querySelector(".side-figures").textContent =
        `${result.duration_seconds.toFixed(1)} s, ${seams} seam${seams === 1 ? "" : "s"}${reward}${chosen}`;
      const canvas = el.querySelector("canvas");
      canvas.setAttribute("aria-label", `waveform of ${label}, ${seams} seam${seams === 1 ? "" : "s"} marked in red`);
      el.querySelector("a.wav").href = result.audio_url;
      el.querySelector("a.flac").href = result.flac_url;
      box.appendChild(el);
      canvas.addEventListener("click", (event) => {
        const rect = canvas.getBoundingClientRect();
        seekTo(i, ((event.clientX - rect.left) / rect.width) * axisSeconds());
      });
      return { result, buffer: buffers[i], peaks: null, el, canvas };
    });
    current = 0; offset = 0;
    $("switch").disabled = sides.length < 2;
    const sent = data.comparison !== null && data.comparison !== undefined;
    $("send").disabled = sent || sides.length < 2;
    $("send-status").textContent = sent ? `Sent: comparison ${data.comparison}.`
      : (sides.length < 2 ? "A comparison needs two results: the policy's and the heuristic's." : "");
    if (sent) root.dataset.comparison = String(data.comparison);
    else delete root.dataset.comparison;
    $("results").hidden = false;
    root.dataset.results = String(sides.length);
    render();
  }

  /* ---------- one transport over the results ---------- */

  function axisSeconds() { return Math.max(...sides.map((s) => s.buffer.duration), 1e-6); }

  function position() {
    if (!playing) return offset;
    return Math.min(offset + (ctx.currentTime - startedAt), sides[current].buffer.duration);
  }

  function start() {
    const c = audioContext();
    const source = c.createBufferSource();
    source.buffer = sides[current].buffer;
    source.connect(c.destination);
    if (offset >= source.buffer.duration - 0.01) offset = 0;
    source.onended = () => {
      if (node !== source) return;
      playing = false; offset = sides[current].buffer.duration; node = null;
      render();
    };
    node = source;
    startedAt = c.currentTime;
    source.start(0, offset);
    playing = true;
  }

  function stop() {
    offset = position();
    playing = false;
    if (node) { const n = node; node = null; n.stop(); }
  }

  function stopPlayback() { if (playing) stop(); }

  function playPause() {
    if (!sides.length) return;
    if (playing) stop(); else start();
    render();
  }

  // The other result at the same musical moment: output beat -> track beat -> the other's output beat.
  function switchSide() {
    if (sides.length < 2) return;
    const was = playing;
    stop();
    const next = (current + 1) % sides.length;
    offset = BeatMap.mapPlayhead(sides[current].result, sides[next].result, offset);
    current = next;
    root.dataset.switches = String(Number(root.dataset.switches || 0) + 1);
    if (was) start();
    render();
  }

  function seekTo(index, seconds) {
    const was = playing;
    stop();
    current = index;
    offset = Math.min(Math.max(seconds, 0), sides[current].buffer.duration - 0.01);
    if (was) start();
    render();
  }

  function seekBy(delta) { if (sides.length) seekTo(current, position() + delta); }

  /* ---------- waveforms on one time axis, seams and playhead ---------- */

  function draw(index) {
    const side = sides[index], canvas = side.canvas;
    const width = canvas.width = Math.max(200, Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1)));
    const height = canvas.height, axis = axisSeconds();
    // Peaks over this result's own span of the shared axis: a shorter edit ends before the right edge.
    const span = Math.max(1, Math.round(width * side.buffer.duration / axis));
    if (!side.peaks || side.peaks.length !== span) side.peaks = Waveform.peaks(side.buffer, span);
    const g = canvas.getContext("2d"), x = (t) => (t / axis) * width;
    g.clearRect(0, 0, width, height);
    g.fillStyle = "#f1f3f7";
    g.fillRect(0, 0, span, height);
    let max = 1e-6;
    for (const p of side.peaks) if (p > max) max = p;
    g.fillStyle = index === current ? "#2f6fde" : "#9aa7bd";
    for (let i = 0; i < span; i++) {
      const h = (side.peaks[i] / max) * (height / 2 - 2);
      g.fillRect(i, height / 2 - h, 1, Math.max(1, 2 * h));
    }
    g.fillStyle = "#d0312d";
    for (const seam of side.result.seam_seconds) g.fillRect(Math.round(x(seam)) - 1, 0, 2, height);
    const here = index === current ? position()
      : BeatMap.mapPlayhead(sides[current].result, side.result, position());
    g.fillStyle = index === current ? "#111" : "rgba(0,0,0,.35)";
    g.fillRect(Math.round(x(here)), 0, 2, height);
  }

  function render() {
    if (!sides.length) return;
    sides.forEach((side, i) => { side.el.classList.toggle("active", i === current); draw(i); });
    $("now-playing").textContent = `${playing ? "▶" : "❚❚"} ${LABELS[current]}`;
    $("play").textContent = playing ? "Pause" : "Play";
    $("clock").textContent = `${position().toFixed(1)} / ${sides[current].buffer.duration.toFixed(1)} s`;
    root.dataset.current = String(current);
    root.dataset.playing = String(playing);
    root.dataset.position = position().toFixed(3);
  }

  $("play").addEventListener("click", () => { audioContext(); playPause(); });
  $("switch").addEventListener("click", switchSide);
  $("back").addEventListener("click", () => seekBy(-SEEK_SECONDS));
  $("forward").addEventListener("click", () => seekBy(SEEK_SECONDS));
  window.addEventListener("resize", () => { for (const s of sides) s.peaks = null; render(); });
  setInterval(() => { if (playing) render(); }, 100);

  /* ---------- send the pair to the annotators ---------- */

  $("send").addEventListener("click", async () => {
    if (!job) return;
    $("send").disabled = true;
    try {
      const data = await api(`${job.url}send/`, { method: "POST" });
      job.comparison = data.comparison;
      root.dataset.comparison = String(data.comparison);
      $("send-status").textContent = `Sent: comparison ${data.comparison} is in the annotators' queue.`;
    } catch (err) {
      $("send").disabled = false;
      $("send-status").textContent = `Not sent: ${err.message}`;
    }
  });

  sourceChanged();
})();
