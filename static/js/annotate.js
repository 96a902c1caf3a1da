/* The listening page: two edits over one transport (Web Audio), keyboard-first, talking to the REST API.
 *
 * The playhead mapping (locate / targetBeat / mapPlayhead) is the twin of
 * annotations/playhead.py; keep them in step (tests/annotations/test_playhead.py
 * runs this file's functions against the Python ones).
 */
"use strict";

/* ---------- pure playhead mapping (no DOM) ---------- */

// Output beat playing at `seconds`, the track beat it plays and the fraction elapsed in [0, 1).
function locate(map, seconds) {
  const starts = map.beat_starts_seconds, n = map.track_beats.length;
  let lo = 0, hi = starts.length;              // first index with starts[i] > seconds
  while (lo < hi) { const mid = (lo + hi) >> 1; if (starts[mid] <= seconds) lo = mid + 1; else hi = mid; }
  const i = Math.min(Math.max(lo - 1, 0), n - 1);
  const length = starts[i + 1] - starts[i];
  let fraction = length <= 0 ? 0 : Math.min(Math.max((seconds - starts[i]) / length, 0), 1);
  fraction = Math.min(fraction, 0.999);
  return { outputBeat: i, trackBeat: map.track_beats[i], fraction };
}

// Output beat of `map` to land on: the same track beat (occurrence nearest in output position),
// else the kept beat nearest in the track (ties: nearest in output position, then earlier).
function targetBeat(map, pos) {
  const beats = map.track_beats;
  let best = -1, bestKey = null;
  for (let j = 0; j < beats.length; j++) {
    const key = [Math.abs(beats[j] - pos.trackBeat), Math.abs(j - pos.outputBeat), j];
    if (best < 0 || key[0] < bestKey[0] || (key[0] === bestKey[0] && (key[1] < bestKey[1] ||
        (key[1] === bestKey[1] && key[2] < bestKey[2])))) { best = j; bestKey = key; }
  }
  return { beat: best, same: beats[best] === pos.trackBeat };
}

// Seconds in `dst` playing the same musical moment as `seconds` in `src`.
function mapPlayhead(src, dst, seconds) {
  const pos = locate(src, seconds);
  const t = targetBeat(dst, pos);
  const start = dst.beat_starts_seconds[t.beat], end = dst.beat_starts_seconds[t.beat + 1];
  return start + (t.same ? pos.fraction : 0) * (end - start);
}

if (typeof module !== "undefined") module.exports = { locate, targetBeat, mapPlayhead };

/* ---------- the page ---------- */

(function page() {
  if (typeof document === "undefined") return;
  const root = document.getElementById("annotate");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const OTHER = { left: "right", right: "left" };
  const LABEL = { left: "A", right: "B" };
  const SEEK_SECONDS = 2;

  let ctx = null;
  let shown = null;            // the comparison from the API
  let buffers = {};            // side -> AudioBuffer
  let peaks = {};              // side -> Float32Array of per-pixel peaks
  let current = "left", playing = false, offset = 0, startedAt = 0, node = null;
  let looping = false, heard = { left: 0, right: 0 }, lastTick = 0, switches = 0, shownAt = 0;
  let busy = false;

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(url, options = {}) {
    const response = await fetch(url, {
      credentials: "same-origin",
      ...options,
      headers: { "Accept": "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken(),
                 ...(options.headers || {}) },
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const detail = data && (data.detail || Object.entries(data).map(([k, v]) => `${k}: ${v}`).join("; "));
      throw new Error(detail || `${response.status} ${response.statusText}`);
    }
    return data;
  }

  function say(text, isError = false) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", isError);
  }

  function audioContext() {
    if (!ctx) ctx = new (window.AudioContext || window.webkitAudioContext)();
    if (ctx.state === "suspended") ctx.resume();
    return ctx;
  }

  /* --- transport --- */

  function region(side) {
    const r = shown && shown[`difference_${side}`];
    return r && r[1] > r[0] ? r : null;
  }

  function position() {
    if (!playing) return offset;
    const raw = offset + (ctx.currentTime - startedAt);
    const r = looping ? region(current) : null;
    if (r && raw >= r[1]) return r[0] + ((raw - r[1]) % (r[1] - r[0]));
    return Math.min(raw, buffers[current].duration);
  }

  // Adds the time heard since the last tick to the side now playing (audio clock, not wall clock).
  function account() {
    if (playing && ctx) heard[current] += Math.max(0, ctx.currentTime - lastTick);
    if (ctx) lastTick = ctx.currentTime;
  }

  function start() {
    const c = audioContext();
    const source = c.createBufferSource();
    source.buffer = buffers[current];
    source.connect(c.destination);
    const r = looping ? region(current) : null;
    if (r) { source.loop = true; source.loopStart = r[0]; source.loopEnd = r[1]; }
    if (offset >= source.buffer.duration - 0.01 && !r) offset = 0;
    source.onended = () => {
      if (node !== source) return;
      account();
      playing = false; offset = buffers[current].duration; node = null;
      render();
    };
    node = source;
    startedAt = c.currentTime; lastTick = c.currentTime;
    source.start(0, offset);
    playing = true;
  }

  function stop() {
    account();
    offset = position();
    playing = false;
    if (node) { const n = node; node = null; n.stop(); }
  }

  function playPause() {
    if (!shown) return;
    if (playing) stop(); else start();
    render();
  }

  function switchSide() {
    if (!shown) return;
    const was = playing;
    stop();
    offset = mapPlayhead(shown[current], shown[OTHER[current]], offset);
    current = OTHER[current];
    switches += 1;
    if (was) start();
    render();
  }

  function seekTo(side, seconds) {
    const was = playing;
    stop();
    if (side !== current) { current = side; switches += 1; }
    offset = Math.min(Math.max(seconds, 0), buffers[current].duration - 0.01);
    if (was) start();
    render();
  }

  function seekBy(delta) { if (shown) seekTo(current, position() + delta); }

  function toggleLoop() {
    if (!shown || !region("left")) { say("These edits play the same beats: nothing to loop."); return; }
    const was = playing;
    stop();
    looping = !looping;
    if (looping) offset = region(current)[0];
    $("loop").setAttribute("aria-pressed", String(looping));
    if (was || looping) start();
    render();
  }

  /* --- waveform --- */

  function computePeaks(buffer, width) {
    const data = buffer.getChannelData(0), out = new Float32Array(width);
    const per = Math.max(1, Math.floor(data.length / width));
    for (let x = 0; x < width; x++) {
      let peak = 0;
      for (let i = x * per, end = Math.min(data.length, (x + 1) * per); i < end; i++) {
        const v = Math.abs(data[i]); if (v > peak) peak = v;
      }
      out[x] = peak;
    }
    return out;
  }

  function draw(side) {
    const canvas = $(`wave-${side}`), buffer = buffers[side];
    if (!buffer) return;
    const width = canvas.width = Math.max(200, Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1)));
    const height = canvas.height;
    if (!peaks[side] || peaks[side].length !== width) peaks[side] = computePeaks(buffer, width);
    const g = canvas.getContext("2d"), duration = buffer.duration, x = (t) => (t / duration) * width;
    g.clearRect(0, 0, width, height);
    const r = region(side);
    if (r) { g.fillStyle = looping ? "rgba(255,200,0,.35)" : "rgba(255,200,0,.18)"; g.fillRect(x(r[0]), 0, x(r[1]) - x(r[0]), height); }
    const max = Math.max(...peaks[side], 1e-6);
    g.fillStyle = side === current ? "#2f6fde" : "#9aa7bd";
    for (let i = 0; i < width; i++) {
      const h = (peaks[side][i] / max) * (height / 2 - 2);
      g.fillRect(i, height / 2 - h, 1, Math.max(1, 2 * h));
    }
    g.fillStyle = "#d0312d";
    for (const seam of shown[side].seam_seconds) g.fillRect(Math.round(x(seam)) - 1, 0, 2, height);
    const here = side === current ? position() : mapPlayhead(shown[current], shown[side], position());
    g.fillStyle = side === current ? "#111" : "rgba(0,0,0,.35)";
    g.fillRect(Math.round(x(here)), 0, 2, height);
  }

  /* --- state shown on the page --- */

  function minimumHeard() {
    return heard.left >= shown.min_listen_seconds && heard.right >= shown.min_listen_seconds;
  }

  function chosen(name) {
    const input = document.querySelector(`input[name="${name}"]:checked`);
    return input ? input.value : null;
  }

  function render() {
    if (!shown) return;
    for (const side of ["left", "right"]) {
      $(`side-${side}`).classList.toggle("active", side === current);
      const el = $(`heard-${side}`);
      el.textContent = `heard ${heard[side].toFixed(1)} / ${shown.min_listen_seconds} s`;
      el.classList.toggle("enough", heard[side] >= shown.min_listen_seconds);
      draw(side);
    }
    $("now-playing").textContent = `${playing ? "▶" : "❚❚"} ${LABEL[current]}`;
    $("play").firstChild.textContent = playing ? "Pause " : "Play ";
    $("clock").textContent = `${position().toFixed(1)} / ${buffers[current].duration.toFixed(1)} s`;
    const ready = minimumHeard() && chosen("choice") && chosen("confidence");
    $("submit").disabled = !ready || busy;
    $("submit-hint").textContent = !minimumHeard()
      ? `Listen to both sides for at least ${shown.min_listen_seconds} s each.`
      : (!chosen("choice") ? "Choose A, B or tie." : (!chosen("confidence") ? "Give your confidence, 1–5." : "Ready."));
    root.dataset.comparison = String(shown.id);
    root.dataset.leftEdit = String(shown.left.edit_id);
    root.dataset.heardLeft = heard.left.toFixed(2);
    root.dataset.heardRight = heard.right.toFixed(2);
    root.dataset.switches = String(switches);
    root.dataset.playing = String(playing);
    root.dataset.current = current;
  }

  function tick() { account(); render(); }

  /* --- loading, submitting, skipping --- */

  async function decode(side) {
    const response = await fetch(side.audio_url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`audio of edit ${side.edit_id}: ${response.status}`);
    return audioContext().decodeAudioData(await response.arrayBuffer());
  }

  function showProgress(p) {
    $("done-today").textContent = p.done_today;
    $("done-total").textContent = p.done_total;
    $("left-in-queue").textContent = p.left_in_queue;
  }

  async function loadNext() {
    if (playing) stop();
    shown = null; buffers = {}; peaks = {};
    say("Loading the next comparison…");
    const data = await api(root.dataset.nextUrl);
    showProgress(data.progress);
    if (!data.comparison) {
      $("work").hidden = true; $("empty").hidden = false; say("");
      root.dataset.comparison = "";
      return;
    }
    const next = data.comparison;
    const [left, right] = await Promise.all([decode(next.left), decode(next.right)]);
    // Only now does the page show it: render() needs both buffers.
    buffers = { left, right };
    shown = next;
    current = "left"; offset = 0; playing = false; looping = false; node = null;
    heard = { left: 0, right: 0 }; switches = 0; shownAt = performance.now();
    $("loop").setAttribute("aria-pressed", "false");
    $("judge").reset(); $("skip-form").hidden = true;
    $("work").hidden = false; $("empty").hidden = true;
    say(`Comparison ${next.id}: listen to A and B, then choose.`);
    render();
  }

  function secondsFor(choiceValue) {
    return shown.left.choice === choiceValue ? heard.left : heard.right;
  }

  async function submit() {
    if (!shown || busy) return;
    account();
    if (!minimumHeard()) { say(`Listen to both sides for at least ${shown.min_listen_seconds} s each first.`, true); return; }
    const side = chosen("choice"), confidence = chosen("confidence");
    if (!side || !confidence) { say("Choose A, B or tie, and your confidence.", true); return; }
    const body = {
      comparison: shown.id,
      choice: side === "tie" ? "tie" : shown[side].choice,
      confidence: Number(confidence),
      left_edit: shown.left.edit_id,
      seconds_a: secondsFor("a"), seconds_b: secondsFor("b"),
      switches, decision_seconds: (performance.now() - shownAt) / 1000,
      comment: $("comment").value,
    };
    busy = true; render();
    try {
      await api(root.dataset.submitUrl, { method: "POST", body: JSON.stringify(body) });
      say("Saved.");
      await loadNext();
    } catch (err) {
      say(`Not saved: ${err.message}`, true);
    } finally {
      busy = false; render();
    }
  }

  function openSkip() {
    if (!shown) return;
    $("skip-form").hidden = false;
    $("skip-reason").focus();
  }

  async function skip(event) {
    event.preventDefault();
    const reason = $("skip-reason").value.trim();
    if (!reason) { say("A skip needs a reason.", true); return; }
    try {
      await api(root.dataset.skipUrlTemplate.replace("{id}", shown.id), { method: "POST", body: JSON.stringify({ reason }) });
      $("skip-reason").value = "";
      await loadNext();
    } catch (err) {
      say(`Not skipped: ${err.message}`, true);
    }
  }

  function pick(name, value) {
    const input = document.querySelector(`input[name="${name}"][value="${value}"]`);
    if (input) { input.checked = true; render(); }
  }

  /* --- keys: every action has one --- */

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("textarea, input[type=text], input:not([type])");
    if (event.key === "Escape") {
      if (!$("skip-form").hidden) $("skip-form").hidden = true;
      if (typing) event.target.blur();
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey || !shown) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const actions = {
      " ": playPause, "s": switchSide, "l": toggleLoop, "ArrowLeft": () => seekBy(-SEEK_SECONDS),
      "ArrowRight": () => seekBy(SEEK_SECONDS), "a": () => pick("choice", "left"), "b": () => pick("choice", "right"),
      "t": () => pick("choice", "tie"), "Enter": submit, "k": openSkip,
      "c": () => $("comment").focus(),
    };
    for (const n of "12345") actions[n] = () => pick("confidence", n);
    const action = actions[key];
    if (!action) return;
    event.preventDefault();
    audioContext();
    action();
  });

  $("play").addEventListener("click", playPause);
  $("switch").addEventListener("click", switchSide);
  $("back").addEventListener("click", () => seekBy(-SEEK_SECONDS));
  $("forward").addEventListener("click", () => seekBy(SEEK_SECONDS));
  $("loop").addEventListener("click", toggleLoop);
  $("skip").addEventListener("click", openSkip);
  $("skip-cancel").addEventListener("click", () => { $("skip-form").hidden = true; });
  $("skip-form").addEventListener("submit", skip);
  $("judge").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("judge").addEventListener("change", render);
  for (const side of ["left", "right"]) {
    $(`wave-${side}`).addEventListener("click", (event) => {
      if (!buffers[side]) return;
      const box = event.currentTarget.getBoundingClientRect();
      seekTo(side, ((event.clientX - box.left) / box.width) * buffers[side].duration);
    });
  }
  window.addEventListener("resize", () => { peaks = {}; render(); });
  setInterval(tick, 100);
  loadNext().catch((err) => say(`Could not load a comparison: ${err.message}`, true));
})();
