/* Safe rollouts: the admin page's "Rollout" panel beside the model versions (ml_engineer and
   platform_admin). Starts a canary (a share of the requests answered by the candidate) or a shadow
   (the candidate runs beside, answers only compared), shows live requests, p50/p95 latency per
   version and the shadow agreement (polling GET /api/v1/rollouts/current while it runs), and
   promotes (through the quality gate) or aborts.
   Loaded before app.js and only defines functions: app.js's helpers (api, esc, toast, $, $$,
   fmtDate) are looked up when these run. Every server string goes through esc(). No inline
   script or style (CSP). */
"use strict";

const ROLLOUT_POLL_MS = 3000;
let rolloutTimer = null;

const rolloutMs = (x) => (x == null ? "—" : Number(x).toFixed(1) + " ms");
const rolloutPct = (x) => (x == null ? "—" : (100 * x).toFixed(1) + " %");

function rolloutPanelHtml() {
  return `<section class="card" id="rollout" aria-labelledby="rollout-h"><h2 id="rollout-h">Safe rollout</h2>
    <p class="muted">Try a registered version beside the active one before activating it. <strong>Canary</strong>:
    a share of the requests is answered by the candidate. <strong>Shadow</strong>: every answer still comes from
    the active version; the candidate runs on the same images in the background and its agreement is recorded.
    Organizations with their own adapted version are not affected.</p>
    <div id="rollout-current" aria-live="polite">Loading…</div>
    <form id="rollout-form" class="row">
      <div><label for="rollout-version">Candidate version</label><input id="rollout-version" name="version" type="number" min="1" required></div>
      <div><label for="rollout-mode">Mode</label><select id="rollout-mode" name="mode"><option value="canary">canary</option><option value="shadow">shadow</option></select></div>
      <div id="rollout-pct-wrap"><label for="rollout-pct">Canary share (%)</label><input id="rollout-pct" name="canary_percent" type="number" min="1" max="50" value="10"></div>
      <div><label for="rollout-reason">Reason</label><input id="rollout-reason" name="reason" maxlength="500"></div>
      <div><button type="submit" id="rollout-start">Start rollout</button></div>
    </form></section>`;
}

function rolloutStatsHtml(r) {
  const st = r.stats;
  if (!st) return "";
  const rows = st.versions.map((v) => `<tr><th scope="row">${esc(v.role)} v${esc(v.version)}</th><td>${esc(v.requests)}</td>
    <td>${esc(v.cells)}</td><td>${rolloutMs(v.latency_p50_ms)}</td><td>${rolloutMs(v.latency_p95_ms)}</td></tr>`).join("");
  const agreement = r.mode === "shadow"
    ? `<p id="rollout-agreement">Agreement (same top label): <strong>${rolloutPct(st.agreement_rate)}</strong> of ${esc(st.compared_cells)} cells ·
       shadow runs dropped (busy) ${esc(st.shadow_dropped)}, skipped ${esc(st.shadow_skipped)}, failed ${esc(st.shadow_failed)}</p>`
    : "";
  return `${st.available ? "" : '<p class="error">Live statistics are unavailable right now.</p>'}
    <div class="table-wrap"><table id="rollout-stats"><caption class="visually-hidden">Live numbers per version</caption>
    <thead><tr><th scope="col">Version</th><th scope="col">Requests</th><th scope="col">Cells</th><th scope="col">p50 latency</th><th scope="col">p95 latency</th></tr></thead>
    <tbody>${rows}</tbody></table></div>${agreement}`;
}

function rolloutCurrentHtml(r) {
  if (!r) return '<p class="muted">No rollout yet.</p>';
  const how = r.mode === "canary" ? `canary, ${esc(r.canary_percent)} % of requests` : "shadow";
  const badge = r.status === "running" ? '<span class="badge ok">running</span>' : `<span class="badge">${esc(r.status)}</span>`;
  const ended = r.status === "running" ? "" : `<p class="muted">Ended ${esc(fmtDate(r.ended_at))}${r.end_reason ? ": " + esc(r.end_reason) : ""}</p>`;
  const actions = r.status === "running"
    ? `<p><button type="button" id="rollout-promote">Promote v${esc(r.candidate_version)}</button>
       <button type="button" class="danger" id="rollout-abort">Abort</button></p>` : "";
  return `<p>${badge} <strong>${esc(r.model_name)} v${esc(r.candidate_version)}</strong> (${how}) beside v${esc(r.baseline_version)},
    started ${esc(fmtDate(r.started_at))}${r.start_reason ? " — " + esc(r.start_reason) : ""}</p>${ended}${rolloutStatsHtml(r)}${actions}`;
}

// root: the panel; onChange: called after a promotion (the model table changes).
async function rolloutPanel(root, onChange) {
  const current = $("#rollout-current", root), form = $("#rollout-form", root);
  const mode = $("#rollout-mode", root), pctWrap = $("#rollout-pct-wrap", root);
  const alive = () => document.body.contains(root);
  clearTimeout(rolloutTimer);
  mode.onchange = () => { pctWrap.hidden = mode.value !== "canary"; };

  const show = (r) => {
    clearTimeout(rolloutTimer);
    current.innerHTML = rolloutCurrentHtml(r);
    form.hidden = Boolean(r && r.status === "running");
    const end = (action) => async (ev) => {
      const verb = action === "promote" ? "Activate the candidate (the quality gate applies)?" : "Stop the rollout?";
      if (!confirm(verb)) return;
      ev.target.disabled = true;
      try {
        const next = await api(`/api/v1/rollouts/current/${action}`, { method: "POST", json: { reason: `${action}d from the admin page` } });
        toast(action === "promote" ? `v${next.candidate_version} is now active` : "Rollout aborted");
        show(next);
        if (action === "promote" && onChange) onChange();
      } catch (e) { toast(e.message); ev.target.disabled = false; }
    };
    const promote = $("#rollout-promote", root), abort = $("#rollout-abort", root);
    if (promote) promote.onclick = end("promote");
    if (abort) abort.onclick = end("abort");
    if (r && r.status === "running") rolloutTimer = setTimeout(load, ROLLOUT_POLL_MS);
  };
  async function load() {
    if (!alive()) return;
    try {
      show(await api("/api/v1/rollouts/current"));
    } catch (e) {
      if (e.status === 404 || /not.?found|no rollout/i.test(e.message)) show(null);
      else current.innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  }
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const fd = new FormData(form);
    const body = { version: Number(fd.get("version")), mode: fd.get("mode"), reason: fd.get("reason") || "" };
    if (body.mode === "canary") body.canary_percent = Number(fd.get("canary_percent"));
    try {
      const r = await api("/api/v1/rollouts", { method: "POST", json: body });
      toast(`Rollout of v${r.candidate_version} started`);
      show(r);
    } catch (e) { toast(e.message); }
  };
  await load();
}
