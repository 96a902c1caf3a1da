/* The live cycle page: polls the cycle's status while it runs, then reloads once so the
   server renders the report card of the finished cycle. */
(function () {
  "use strict";
  const page = document.getElementById("cycle-page");
  const url = page.dataset.statusUrl;
  const initial = JSON.parse(document.getElementById("cycle-initial").textContent);

  function text(id, value) { document.getElementById(id).textContent = value; }

  function show(s) {
    text("cycle-status", s.status_display);
    document.getElementById("cycle-progress").value = s.progress;
    text("cycle-percent", Math.round(100 * s.progress) + " %");
    text("cycle-rm", s.reward_model_version || "–");
    text("cycle-policy", s.policy_version || "–");
    text("cycle-error", s.error || "–");
    text("cycle-log", s.log);
    text("cycle-metrics", JSON.stringify(s.metrics, null, 2));
    text("cycle-parameters", JSON.stringify(s.parameters, null, 2));
  }

  async function poll() {
    let s = null;
    try {
      const response = await fetch(url, {headers: {"Accept": "application/json"}});
      if (response.ok) { s = await response.json(); }
    } catch (e) { s = null; }
    if (s === null) { setTimeout(poll, 5000); return; }
    show(s);
    if (s.is_running) { setTimeout(poll, 2000); } else { window.location.reload(); }
  }

  show(initial);
  if (initial.is_running) { setTimeout(poll, 2000); }
})();
