/* The listening page: two edits over one transport (Web Audio), keyboard-first, talking to the REST API.
 *
 * A third player, Original, plays the unedited passage both edits were cut from, at the same
 * musical moment.  It is optional, so it is fetched only when first asked for: the server records
 * that fetch, and the judgement says whether the original was heard.
 *
 * Page keys act wherever focus is, except the keys a focused control answers
 * itself (a text box takes every key; a button or summary Space and Enter; a
 * radio those and the arrows), so Tab-only users keep the platform's keys.
 * A pointer click leaves no focus behind on the controls it pressed: a clicked
 * answer would otherwise take the arrows and change itself.
 * The next comparison is assigned and its audio fetched and decoded while the
 * current one is judged, so a submit shows it at once.
 *
 * The playhead mapping lives in static/js/beatmap.js, the twin of annotations/playhead.py
 * (tests/annotations/test_playhead.py runs it against the Python one).
 */
"use strict";

// The playhead mapping is BeatMap (static/js/beatmap.js, loaded first), shared with the retarget page.
const mapPlayhead = BeatMap.mapPlayhead;

/* ---------- the page ---------- */

(function page() {
  if (typeof document === "undefined") return;
  const root = document.getElementById("annotate");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const SIDES = ["left", "right"];
  const OTHER = { left: "right", right: "left" };
  const LABEL = { left: "A", right: "B", original: "Original" };
  const ORIGINAL = "original";  // played like a side; its beat map and buffer arrive on first use
  const SEEK_SECONDS = 2;
  const TOAST_MS = 1500;
  // Clips shorter than the site's minimum listen loop by themselves: one press, heard over and over.
  const SITE_MIN_LISTEN = Number(root.dataset.minListenSeconds);
  // Focusable controls; a focused one keeps the keys it answers itself (ownsKey).
  const CONTROLS = "button, input, select, textarea, summary, a[href], [contenteditable]";
  // Controls that typing goes into: every key is theirs.
  const TEXT_FIELDS = "textarea, select, [contenteditable], input:not([type=radio]):not([type=checkbox])"
    + ":not([type=button]):not([type=submit]):not([type=reset])";
  // Controls a pointer click leaves unfocused (the skip form keeps focus: Enter there confirms the skip).
  const RELEASED_AFTER_CLICK = "button, input[type=radio], input[type=checkbox], summary";
  const ONBOARDED_KEY = `annotate-onboarded:${root.dataset.user}`;

  let ctx = null;
  let shown = null;            // the comparison from the API, as shown
  let buffers = {};            // side -> AudioBuffer
  let peaks = {};              // side -> Float32Array of per-pixel peaks
  let current = "left", playing = false, offset = 0, startedAt = 0, node = null;
  let looping = false, heard = { left: 0, right: 0, original: 0 }, lastTick = 0, switches = 0, shownAt = 0;
  let lastEdit = "left";       // the edit (left or right) heard last: switches count A <-> B only
  let busy = false, everPlayed = false, submittedAt = null;
  let upcoming = null;         // the next comparison, already assigned
  const prepared = new Map();  // comparison id -> Promise of {left, right} AudioBuffers
  const originals = new Map(); // comparison id -> Promise of {map, buffer}: the original, once asked for

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

  // Writes only on change: live regions re-announce text that is merely rewritten.
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

  function say(text, isError = false) {
    setText($("status"), text);
    $("status").classList.toggle("error", isError);
  }

  let toastTimer = null;
  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, TOAST_MS);
  }

  // Decoding needs a context but no sound: it is made on load and resumed only by a key or a press.
  function decoderContext() {
    if (!ctx) ctx = new (window.AudioContext || window.webkitAudioContext)();
    return ctx;
  }

  function audioContext() {
    const c = decoderContext();
    if (c.state === "suspended") c.resume();
    return c;
  }

  const isTouch = window.matchMedia && window.matchMedia("(hover: none), (pointer: coarse)").matches;
  root.classList.toggle("touch", Boolean(isTouch));

  /* --- transport --- */

  function region(side) {
    const r = shown && shown[`difference_${side}`];
    return r && r[1] > r[0] ? r : null;
  }

  function autoLoops(side) { return buffers[side] && buffers[side].duration < SITE_MIN_LISTEN; }

  function position() {
    if (!playing) return offset;
    const raw = offset + (ctx.currentTime - startedAt);
    const duration = buffers[current].duration;
    const r = looping ? region(current) : (autoLoops(current) ? [0, duration] : null);
    if (r && raw >= r[1]) return r[0] + ((raw - r[1]) % (r[1] - r[0]));
    return Math.min(raw, duration);
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
    const duration = source.buffer.duration;
    const r = looping ? region(current) : (autoLoops(current) ? [0, duration] : null);
    if (r) { source.loop = true; source.loopStart = r[0]; source.loopEnd = r[1]; }
    if (offset >= duration - 0.01) offset = r ? r[0] : 0;
    source.onended = () => {
      if (node !== source) return;
      account();
      playing = false; offset = buffers[current].duration; node = null;
      render();
    };
    node = source;
    startedAt = c.currentTime; lastTick = c.currentTime;
    source.start(0, offset);
    playing = true; everPlayed = true;
  }

  function stop() {
    account();
    offset = position();
    playing = false;
    if (node) { const n = node; node = null; n.stop(); }
  }

  function pauseResume() {
    if (!shown) return;
    if (playing) stop(); else start();
    render();
  }

  // Play one side; from the other side, at the same musical moment.  Pressing the side playing pauses it.
  function playSide(side) {
    if (!shown) return;
    if (side === current && playing) { stop(); render(); return; }
    const was = playing;
    if (was) stop();
    if (side !== current) {
      if (everPlayed) offset = mapPlayhead(shown[current], shown[side], offset);
      current = side;
      countSwitch(side);
    }
    start();
    render();
  }

  function countSwitch(side) {
    if (side === ORIGINAL || side === lastEdit) return;
    lastEdit = side;
    switches += 1;
  }

  // The original's beat map (from the API) and audio, fetched and decoded on first use only.
  function loadOriginal(comparison) {
    if (!originals.has(comparison.id)) {
      const ready = api(root.dataset.originalUrlTemplate.replace("{id}", comparison.id)).then(async (map) => {
        const response = await fetch(map.audio_url, { credentials: "same-origin" });
        if (!response.ok) throw new Error(`audio could not be fetched (${response.status} ${response.statusText})`);
        return { map, buffer: await decoderContext().decodeAudioData(await response.arrayBuffer()) };
      });
      ready.catch(() => originals.delete(comparison.id));
      originals.set(comparison.id, ready);
    }
    return originals.get(comparison.id);
  }

  // Play the original at the same musical moment as the edit playing (loaded first, the first time).
  async function playOriginal() {
    if (!shown) return;
    if (!buffers[ORIGINAL]) {
      const comparison = shown;
      $("play-original").setAttribute("aria-busy", "true");
      let loaded;
      try {
        loaded = await loadOriginal(comparison);
      } catch (err) {
        say(`The original could not be played: ${err.message}`, true);
        return;
      } finally {
        $("play-original").removeAttribute("aria-busy");
      }
      if (shown !== comparison) return;  // submitted or skipped meanwhile
      shown[ORIGINAL] = loaded.map;
      buffers[ORIGINAL] = loaded.buffer;
    }
    playSide(ORIGINAL);
  }

  function seekTo(side, seconds) {
    const was = playing;
    stop();
    if (side !== current) { current = side; countSwitch(side); }
    offset = Math.min(Math.max(seconds, 0), buffers[current].duration - 0.01);
    if (was) start();
    render();
  }

  function seekBy(delta) { if (shown) seekTo(current, position() + delta); }

  function toggleLoop() {
    if (!shown || !shown.loop_useful || !region(current)) return;
    const was = playing;
    stop();
    looping = !looping;
    if (looping) offset = region(current)[0];
    $("loop").setAttribute("aria-pressed", String(looping));
    if (was || looping) start();
    render();
  }

  /* --- waveforms on one time axis --- */

  function longest() { return Math.max(buffers.left.duration, buffers.right.duration); }

  // Each canvas is as wide as its edit is long, on the scale of the longer one.
  function layout() {
    const total = longest();
    for (const side of SIDES) {
      const canvas = $(`wave-${side}`);
      canvas.style.width = `${(100 * buffers[side].duration / total).toFixed(3)}%`;
      const seams = shown[side].seam_seconds;
      const where = seams.length ? ` at ${seams.map((t) => `${t.toFixed(1)} s`).join(", ")}` : "";
      canvas.setAttribute("aria-label", `Waveform of ${LABEL[side]}: ${buffers[side].duration.toFixed(1)} s long, `
        + `${seams.length} seam${seams.length === 1 ? "" : "s"}${where}`);
      setText($(`duration-${side}`), `${buffers[side].duration.toFixed(1)} s · ${seams.length} seam${seams.length === 1 ? "" : "s"}`);
    }
    $("axis").setAttribute("aria-label", `Time axis, 0 to ${total.toFixed(1)} s, shared by A and B`);
    peaks = {};
  }

  // Sizes the canvas's pixels to its CSS box at the screen's density; returns [width, height, density].
  function fit(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(20, Math.floor(canvas.clientWidth * dpr)), height = Math.max(10, Math.floor(canvas.clientHeight * dpr));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    return [width, height, dpr];
  }

  function draw(side) {
    const canvas = $(`wave-${side}`), buffer = buffers[side];
    const [width, height, dpr] = fit(canvas);
    if (!peaks[side] || peaks[side].length !== width) peaks[side] = Waveform.peaks(buffer, width);
    const g = canvas.getContext("2d"), x = (t) => (t / buffer.duration) * width;
    g.clearRect(0, 0, width, height);
    const r = region(side);
    if (r) { g.fillStyle = looping ? "rgba(255,190,0,.40)" : "rgba(255,190,0,.18)"; g.fillRect(x(r[0]), 0, x(r[1]) - x(r[0]), height); }
    let max = 1e-6;
    for (const v of peaks[side]) if (v > max) max = v;
    g.fillStyle = side === current ? "#2f6fde" : "#8d9bb3";
    for (let i = 0; i < width; i++) {
      const h = (peaks[side][i] / max) * (height / 2 - 2);
      g.fillRect(i, height / 2 - h, 1, Math.max(1, 2 * h));
    }
    g.fillStyle = "#d0312d";
    const seamWidth = Math.max(2, Math.round(2 * dpr));
    for (const seam of shown[side].seam_seconds) g.fillRect(Math.round(x(seam)) - seamWidth / 2, 0, seamWidth, height);
    const here = side === current ? position() : mapPlayhead(shown[current], shown[side], position());
    g.fillStyle = side === current ? "#111" : "rgba(0,0,0,.35)";
    g.fillRect(Math.min(Math.round(x(here)), width - seamWidth), 0, seamWidth, height);
  }

  // Seconds between labelled ticks: the finest step that leaves each label about 60 CSS pixels.
  function tickStep(total, cssWidth) {
    const most = Math.max(1, Math.floor(cssWidth / 60));
    for (const step of [0.5, 1, 2, 5, 10, 15, 30, 60]) if (total / step <= most) return step;
    return 120;
  }

  function drawAxis() {
    const canvas = $("axis"), [width, height, dpr] = fit(canvas);
    const g = canvas.getContext("2d"), total = longest(), step = tickStep(total, width / dpr), scale = width / total;
    g.clearRect(0, 0, width, height);
    g.fillStyle = "#666";
    g.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
    g.textBaseline = "bottom";
    for (let t = 0; t <= total + 1e-6; t += step) {
      const px = Math.min(Math.round(t * scale), width - 1);
      g.fillRect(px, 0, Math.max(1, Math.round(dpr)), Math.round(6 * dpr));
      const text = `${Number(t.toFixed(1))} s`;
      const w = g.measureText(text).width;
      g.fillText(text, Math.min(Math.max(px - w / 2, 0), width - w), height);
    }
  }

  /* --- state shown on the page --- */

  function stillToHear(side) { return Math.max(0, shown[side].min_listen_seconds - heard[side]); }

  function chosen(name) {
    const input = document.querySelector(`#judge input[name="${name}"]:checked`);
    return input ? input.value : null;
  }

  // Why a submit would be refused now, naming the side that is short; "" when it would go through.
  function refusal() {
    const short = SIDES.filter((side) => stillToHear(side) > 0);
    if (short.length) {
      const parts = short.map((side) => `${LABEL[side]} for ${stillToHear(side).toFixed(1)} s more`);
      return `Listen to ${parts.join(" and to ")} first.`;
    }
    if (!chosen("choice")) return "Choose A, B or tie.";
    if (!chosen("confidence")) return "Say how sure you are, 1 to 5.";
    return "";
  }

  function render() {
    if (!shown) return;
    for (const side of SIDES) {
      $(`side-${side}`).classList.toggle("active", side === current);
      const left = stillToHear(side), el = $(`to-hear-${side}`);
      setText(el, left > 0 ? `${left.toFixed(1)} s left to hear` : "heard ✓");
      el.classList.toggle("enough", left <= 0);
      $(`play-${side}`).classList.toggle("on", playing && side === current);
      draw(side);
    }
    $("play-original").classList.toggle("on", playing && current === ORIGINAL);
    drawAxis();
    setText($("now-playing"), playing ? `Playing ${LABEL[current]}` : (everPlayed ? `Paused on ${LABEL[current]}` : "Paused"));
    $("play").firstChild.textContent = playing ? "Pause" : (everPlayed ? "Resume" : "Play");
    setText($("clock"), `${position().toFixed(1)} / ${buffers[current].duration.toFixed(1)} s`);
    const why = refusal();
    $("submit").setAttribute("aria-disabled", String(Boolean(why) || busy));
    const hint = $("submit-hint");
    if (!hint.classList.contains("error") || !why) {
      hint.classList.remove("error");
      setText(hint, why || "Ready to submit.");
    }
    root.dataset.comparison = String(shown.id);
    root.dataset.leftEdit = String(shown.left.edit_id);
    root.dataset.heardLeft = heard.left.toFixed(2);
    root.dataset.heardRight = heard.right.toFixed(2);
    root.dataset.heardOriginal = heard.original.toFixed(2);
    root.dataset.switches = String(switches);
    root.dataset.playing = String(playing);
    root.dataset.current = current;
    root.dataset.position = position().toFixed(2);
  }

  function tick() { if (shown) { account(); render(); } }

  /* --- loading: the next pair is fetched and decoded ahead --- */

  async function decode(side) {
    const response = await fetch(side.audio_url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`audio could not be fetched (${response.status} ${response.statusText})`);
    return decoderContext().decodeAudioData(await response.arrayBuffer());
  }

  function prepare(comparison) {
    if (!prepared.has(comparison.id)) {
      const ready = Promise.all([decode(comparison.left), decode(comparison.right)])
        .then(([left, right]) => ({ left, right }));
      ready.catch(() => prepared.delete(comparison.id));
      prepared.set(comparison.id, ready);
    }
    return prepared.get(comparison.id);
  }

  function showProgress(p) {
    $("done-today").textContent = p.done_today;
    $("done-total").textContent = p.done_total;
    $("left-in-queue").textContent = p.left_in_queue;
  }

  function show(next, decoded) {
    buffers = { ...decoded };  // the original joins it when first played
    shown = next;
    current = "left"; lastEdit = "left"; offset = 0; playing = false; looping = false; node = null; everPlayed = false;
    heard = { left: 0, right: 0, original: 0 }; switches = 0; shownAt = performance.now();
    for (const id of prepared.keys()) if (id !== next.id && (!upcoming || id !== upcoming.id)) prepared.delete(id);
    for (const id of originals.keys()) if (id !== next.id) originals.delete(id);
    $("loop").setAttribute("aria-pressed", "false");
    $("loop").hidden = !(next.loop_useful && region("left"));
    $("judge").reset(); $("comment-box").open = false; closeSkip();
    $("submit-hint").classList.remove("error");
    $("empty").hidden = true;
    $("work").hidden = !$("onboarding").hidden;
    layout();
    say("Listen to A and B, then choose.");
    render();
    if (submittedAt !== null) {
      root.dataset.playableMs = (performance.now() - submittedAt).toFixed(0);
      submittedAt = null;
    }
    root.dataset.ready = "true";
  }

  function showNothingLeft() {
    shown = null; buffers = {};
    $("work").hidden = true; $("empty").hidden = false; say("");
    root.dataset.comparison = ""; root.dataset.ready = "true";
  }

  // Asks the server for the comparison to judge and the one after it; shows the first unless already shown.
  async function refresh() {
    const data = await api(root.dataset.nextUrl);
    showProgress(data.progress);
    upcoming = data.upcoming;
    if (upcoming) prepare(upcoming).catch(() => {});
    if (!data.comparison) { showNothingLeft(); return; }
    if (shown && shown.id === data.comparison.id) return;
    const decoded = await prepare(data.comparison);
    show(data.comparison, decoded);
  }

  // After a save: the prefetched pair at once, then the server's word on what follows it.
  async function advance() {
    const next = upcoming;
    upcoming = null;
    if (next) {
      try {
        show(next, await prepare(next));
      } catch (err) {
        say(`Could not load the next comparison's audio: ${err.message}`, true);
      }
    }
    await refresh();
  }

  /* --- submitting and skipping --- */

  function clearPair(text) {
    if (playing) stop();
    shown = null;
    root.dataset.ready = "false";
    $("work").hidden = true;
    say(text);
  }

  async function submit() {
    if (!shown || busy) return;
    account();
    const why = refusal();
    if (why) {
      const hint = $("submit-hint");
      hint.textContent = `Not yet: ${why}`;
      hint.classList.add("error");
      hint.setAttribute("role", "alert");
      return;
    }
    const old = { shown, buffers, heard: { ...heard }, current, lastEdit };
    const body = {
      comparison: shown.id,
      choice: chosen("choice") === "tie" ? "tie" : shown[chosen("choice")].choice,
      confidence: Number(chosen("confidence")),
      left_edit: shown.left.edit_id,
      seconds_a: shown.left.choice === "a" ? heard.left : heard.right,
      seconds_b: shown.left.choice === "a" ? heard.right : heard.left,
      switches, decision_seconds: (performance.now() - shownAt) / 1000,
      comment: $("comment").value,
    };
    busy = true;
    submittedAt = performance.now();
    clearPair("Saving…");
    try {
      await api(root.dataset.submitUrl, { method: "POST", body: JSON.stringify(body) });
    } catch (err) {
      // Nothing was stored: put the pair back as it was, answer included.
      busy = false; submittedAt = null;
      shown = old.shown; buffers = old.buffers; heard = old.heard; current = old.current; lastEdit = old.lastEdit;
      $("work").hidden = false; root.dataset.ready = "true";
      say(`Not saved: ${err.message}`, true);
      render();
      return;
    }
    busy = false;
    root.dataset.saveMs = (performance.now() - submittedAt).toFixed(0);
    toast("Saved");
    // Counted here at once; the server's figures follow with the next refresh.
    for (const id of ["done-today", "done-total"]) $(id).textContent = String(Number($(id).textContent) + 1);
    try {
      await advance();
    } catch (err) {
      say(`Could not load the next comparison: ${err.message}`, true);
    }
  }

  function openSkip() {
    if (!shown) return;
    $("skip-form").hidden = false;
    $("skip-form").querySelector("input[name=reason_choice]").focus();
  }

  function closeSkip() {
    $("skip-form").hidden = true;
    $("skip-form").reset();
    $("skip-hint").textContent = "";
  }

  async function skip(event) {
    event.preventDefault();
    const picked = $("skip-form").querySelector("input[name=reason_choice]:checked");
    const reason = $("skip-reason").value.trim();
    if (!picked) { $("skip-hint").textContent = "Pick a reason to skip."; return; }
    if (picked.value === "other" && !reason) {
      $("skip-hint").textContent = "Say in a few words why you skip.";
      $("skip-reason").focus();
      return;
    }
    const id = shown.id;
    clearPair("Skipping…");
    try {
      await api(root.dataset.skipUrlTemplate.replace("{id}", id), {
        method: "POST", body: JSON.stringify({ reason_choice: picked.value, reason }),
      });
    } catch (err) {
      say(`Not skipped: ${err.message}`, true);
      await refresh().catch(() => {});
      return;
    }
    toast("Skipped");
    await advance().catch((err) => say(`Could not load the next comparison: ${err.message}`, true));
  }

  function pick(name, value) {
    const input = document.querySelector(`#judge input[name="${name}"][value="${value}"]`);
    if (input) { input.checked = true; render(); }
  }

  function showKeys() {
    const sheet = $("keys");
    sheet.open = true;
    sheet.scrollIntoView({ block: "nearest" });
    sheet.querySelector("summary").focus();
  }

  /* --- keys: every action has one, and none overrides a focused control's own keys --- */

  // Whether `control`, focused, answers `event`'s key itself (the platform's keys for it).
  function ownsKey(control, event) {
    if (control.matches(TEXT_FIELDS)) return true;
    if (event.key === " " || event.key === "Enter") return true;
    return control.matches("input[type=radio]") && event.key.startsWith("Arrow");
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const control = target && target.closest && target.closest(CONTROLS);
    if (event.key === "Escape") {
      if (!$("skip-form").hidden) { closeSkip(); $("skip").focus(); return; }
      if (control && control.closest("#keys")) { $("keys").open = false; }
      if (control) target.blur();
      return;
    }
    if ((control && ownsKey(control, event)) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!$("onboarding").hidden) return;
    if (event.key === "?") { event.preventDefault(); showKeys(); return; }
    // While the skip form is open its keys are its own: Enter confirms the skip, never a judgement.
    if (!shown || !$("skip-form").hidden) return;
    const digit = /^Digit([1-5])$/.exec(event.code);
    let action = null;
    if (digit && event.shiftKey) action = () => pick("confidence", digit[1]);
    else if (event.code === "Digit1") action = () => playSide("left");
    else if (event.code === "Digit2") action = () => playSide("right");
    else {
      const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
      action = {
        " ": pauseResume, "l": toggleLoop, "ArrowLeft": () => seekBy(-SEEK_SECONDS),
        "ArrowRight": () => seekBy(SEEK_SECONDS), "a": () => pick("choice", "left"), "b": () => pick("choice", "right"),
        "t": () => pick("choice", "tie"), "o": playOriginal, "Enter": submit, "k": openSkip,
        "c": () => { $("comment-box").open = true; $("comment").focus(); },
      }[key];
    }
    if (!action) return;
    event.preventDefault();
    audioContext();
    action();
  });

  // Set by a press of a pointer, cleared by any key: tells a click by mouse or touch from a keyboard one.
  let pointerPressed = false;
  document.addEventListener("pointerdown", () => { pointerPressed = true; }, true);
  document.addEventListener("keydown", () => { pointerPressed = false; }, true);
  root.addEventListener("click", (event) => {
    const control = event.target.closest && event.target.closest(RELEASED_AFTER_CLICK);
    // Only the control the click focused: a handler that moved focus on purpose (Skip…) keeps it there.
    if (pointerPressed && control && control === document.activeElement && !control.closest("#skip-form")) {
      control.blur();
    }
  });
  $("keys-link").addEventListener("click", (event) => { event.preventDefault(); showKeys(); });

  $("play-left").addEventListener("click", () => playSide("left"));
  $("play-right").addEventListener("click", () => playSide("right"));
  $("play-original").addEventListener("click", playOriginal);
  $("play").addEventListener("click", pauseResume);
  $("back").addEventListener("click", () => seekBy(-SEEK_SECONDS));
  $("forward").addEventListener("click", () => seekBy(SEEK_SECONDS));
  $("loop").addEventListener("click", toggleLoop);
  $("skip").addEventListener("click", openSkip);
  $("skip-cancel").addEventListener("click", () => { closeSkip(); $("skip").focus(); });
  $("skip-form").addEventListener("submit", skip);
  $("judge").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("judge").addEventListener("change", () => { $("submit-hint").removeAttribute("role"); render(); });
  for (const side of SIDES) {
    $(`wave-${side}`).addEventListener("click", (event) => {
      if (!buffers[side]) return;
      const box = event.currentTarget.getBoundingClientRect();
      seekTo(side, ((event.clientX - box.left) / box.width) * buffers[side].duration);
    });
  }
  window.addEventListener("resize", () => { peaks = {}; render(); });
  setInterval(tick, 100);

  /* --- first visit: the rubric and practice items with explained answers --- */

  const practice = {
    items: null, index: 0, node: null,
  };

  // A 4-bar groove (kick, snare, hi-hat, bass, a closing chord on bar 4), 120 BPM, made here: no download.
  function grooveSamples(rate) {
    const beat = 0.5, n = Math.round(16 * beat * rate), out = new Float32Array(n);
    let seed = 7;
    const noise = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x3fffffff - 1; };
    const add = (at, seconds, fn) => {
      const first = Math.round(at * rate), count = Math.round(seconds * rate);
      for (let i = 0; i < count && first + i < n; i++) out[first + i] += fn(i / rate);
    };
    const roots = [110, 87.31, 130.81, 98];
    for (let b = 0; b < 16; b++) {
      const t0 = b * beat, bar = Math.floor(b / 4), inBar = b % 4;
      if (inBar === 0 || inBar === 2) add(t0, 0.3, (t) => 0.8 * Math.exp(-t * 12) * Math.sin(2 * Math.PI * (50 + 70 * Math.exp(-t * 30)) * t));
      if (inBar === 1 || inBar === 3) add(t0, 0.2, (t) => 0.35 * Math.exp(-t * 18) * noise());
      for (const half of [0, beat / 2]) add(t0 + half, 0.05, (t) => 0.12 * Math.exp(-t * 80) * noise());
      if (b < 12) add(t0, beat, (t) => 0.25 * Math.exp(-t * 3) * Math.sin(2 * Math.PI * roots[bar] * t));
    }
    for (const f of [196, 246.94, 293.66, 98]) add(12 * beat, 4 * beat, (t) => 0.14 * Math.exp(-t * 0.9) * Math.sin(2 * Math.PI * f * t));
    return out;
  }

  // Joins [from, to) beat ranges of the groove; `fade` smooths each seam (10 ms), without it a seam clicks.
  function spliced(groove, rate, ranges, fade) {
    const beat = 0.5, parts = ranges.map(([a, b]) => groove.subarray(Math.round(a * beat * rate), Math.round(b * beat * rate)));
    const out = new Float32Array(parts.reduce((sum, p) => sum + p.length, 0));
    let at = 0;
    const ramp = Math.round(0.01 * rate);
    parts.forEach((p, k) => {
      const copy = Float32Array.from(p);
      if (fade) {
        for (let i = 0; i < ramp && i < copy.length; i++) {
          if (k > 0) copy[i] *= i / ramp;
          if (k < parts.length - 1) copy[copy.length - 1 - i] *= i / ramp;
        }
      }
      out.set(copy, at); at += copy.length;
    });
    return out;
  }

  function practiceItems() {
    const c = decoderContext(), rate = c.sampleRate, groove = grooveSamples(rate);
    const buffer = (samples) => { const b = c.createBuffer(1, samples.length, rate); b.copyToChannel(samples, 0); return b; };
    return [
      {
        prompt: "A and B both leave out the third bar. Which one would you rather hear?",
        a: buffer(spliced(groove, rate, [[0, 8], [12, 16]], true)),
        b: buffer(spliced(groove, rate, [[0, 5.5], [12.25, 16]], false)),
        answer: "a",
        why: "A cuts on a bar line, so the beat carries on evenly. B jumps in the middle of a beat: you hear a click "
          + "at the seam and the groove stumbles. Seams and groove decide this one.",
      },
      {
        prompt: "Now a question of phrasing and length. Which one is better?",
        a: buffer(spliced(groove, rate, [[0, 13.5]], true)),
        b: buffer(spliced(groove, rate, [[0, 4], [8, 16]], true)),
        answer: "b",
        why: "A stops in the middle of the last bar and never reaches the closing chord; it sounds cut off. B drops a "
          + "whole bar at a bar line and ends where the music ends. It is shorter, and it is still the better edit: "
          + "judge how it sounds, not how long it is.",
      },
    ];
  }

  function stopPractice() {
    if (practice.node) { const n = practice.node; practice.node = null; n.stop(); }
  }

  function playPractice(side) {
    stopPractice();
    const c = audioContext(), source = c.createBufferSource();
    source.buffer = practice.items[practice.index][side];
    source.connect(c.destination);
    source.onended = () => { if (practice.node === source) { practice.node = null; root.dataset.practicePlaying = ""; } };
    source.start();
    practice.node = source;
    root.dataset.practicePlaying = side;
  }

  function showPractice() {
    const item = practice.items[practice.index];
    setText($("practice-number"), String(practice.index + 1));
    setText($("practice-total"), String(practice.items.length));
    setText($("practice-prompt"), item.prompt);
    setText($("practice-feedback"), "");
    $("practice-feedback").classList.remove("right", "wrong");
    $("practice-next").hidden = true;
    root.dataset.practiceItem = String(practice.index + 1);
  }

  function answerPractice(answer) {
    const item = practice.items[practice.index];
    const right = answer === item.answer;
    const feedback = $("practice-feedback");
    feedback.textContent = `${right ? "Yes" : "Not quite"}: the expected answer is ${item.answer.toUpperCase()}. ${item.why}`;
    feedback.classList.toggle("right", right);
    feedback.classList.toggle("wrong", !right);
    const last = practice.index === practice.items.length - 1;
    $("practice-next").textContent = last ? "Start judging" : "Next practice item";
    $("practice-next").hidden = false;
  }

  function openOnboarding() {
    if (playing) { stop(); render(); }
    practice.items = practice.items || practiceItems();
    practice.index = 0;
    showPractice();
    $("onboarding").hidden = false;
    $("work").hidden = true;
    $("onboarding-title").setAttribute("tabindex", "-1");
    $("onboarding-title").focus();
  }

  function closeOnboarding() {
    stopPractice();
    try { localStorage.setItem(ONBOARDED_KEY, "1"); } catch (err) { /* private mode: ask again next visit */ }
    $("onboarding").hidden = true;
    $("work").hidden = !shown;
    if (shown) render();
    $("play-left").focus();
  }

  $("practice-play-a").addEventListener("click", () => playPractice("a"));
  $("practice-play-b").addEventListener("click", () => playPractice("b"));
  $("practice-stop").addEventListener("click", stopPractice);
  for (const button of document.querySelectorAll("#practice [data-answer]")) {
    button.addEventListener("click", () => answerPractice(button.dataset.answer));
  }
  $("practice-next").addEventListener("click", () => {
    stopPractice();
    if (practice.index === practice.items.length - 1) { closeOnboarding(); return; }
    practice.index += 1;
    showPractice();
    $("practice-play-a").focus();
  });
  $("onboarding-done").addEventListener("click", closeOnboarding);
  $("show-rubric").addEventListener("click", openOnboarding);

  let onboarded = false;
  try { onboarded = localStorage.getItem(ONBOARDED_KEY) === "1"; } catch (err) { onboarded = false; }
  if (!onboarded) openOnboarding();
  refresh().catch((err) => say(`Could not load a comparison: ${err.message}`, true));
})();
