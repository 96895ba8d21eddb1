/* "Adapt to our lab": the admin page's panel for org_admin, ml_engineer and platform_admin.
   Shows the version serving the organization (adapted or the platform's, stale or not), starts an
   adaptation, follows it by polling GET (the API has no event stream for it), shows the
   before/after figures and the gate's reasons, cancels and rolls back.
   Loaded before app.js and only defines functions: app.js's helpers (api, esc, toast, $, $$,
   fmtDate) are looked up when these run. Every server string goes through esc(). */
"use strict";

const ADAPT_ROLES = ["org_admin", "ml_engineer", "platform_admin"];
const ADAPT_POLL_MS = 1500;
let adaptTimer = null;

const adaptPct = (x) => (x == null ? "—" : (100 * x).toFixed(1) + " %");
const adaptChange = (before, after) => {
  if (before == null || after == null) return "—";
  const d = 100 * (after - before);
  return (d > 0 ? "+" : d < 0 ? "−" : "±") + Math.abs(d).toFixed(1) + " points";
};

function adaptPanelHtml() {
  return `<section class="card" id="adapt" aria-labelledby="adapt-h"><h2 id="adapt-h">Adapt to our lab</h2>
    <p class="muted">Fine-tunes the model on your organization's reviewed cells (at least 20). Part of them is
    held back to check the result; the new version is used only if it is better on those cells and still
    good on the reference data set. Only your organization's cells are used, and only your organization
    is served by the result.</p>
    <div id="adapt-serving" aria-live="polite">Loading…</div>
    <p><button type="button" id="adapt-start">Start adaptation</button>
      <button type="button" class="secondary" id="adapt-rollback" hidden>Roll back to the previous version</button></p>
    <div id="adapt-run" aria-live="polite"></div>
    <h3>Recent adaptations</h3>
    <div class="table-wrap"><table><thead><tr><th scope="col">Started</th><th scope="col">Status</th><th scope="col">Cells</th>
      <th scope="col">Held-back accuracy</th><th scope="col">Version</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody id="adapt-list"></tbody></table></div></section>`;
}

function adaptServingHtml(m) {
  const which = m.adapted ? '<span class="badge ok">adapted to your lab</span>' : '<span class="badge">platform model</span>';
  const stale = m.stale ? `<p><span class="badge review">stale</span> The platform model has changed (now
    v${esc(m.platform_version)}) since this version was adapted. It is still used for your lab; start a new
    adaptation (re-adapt) to build on the new platform model.</p>` : "";
  return `<p>Your organization is served by <strong id="adapt-version">${esc(m.model_name)} v${esc(m.version)}</strong> ${which}</p>${stale}`;
}

function adaptFiguresHtml(a) {
  if ([a.holdout_accuracy_before, a.holdout_accuracy_after, a.pbc_val_accuracy_before, a.pbc_val_accuracy_after].every((x) => x == null)) return "";
  const row = (what, before, after) => `<tr><th scope="row">${what}</th><td>${adaptPct(before)}</td><td>${adaptPct(after)}</td><td>${adaptChange(before, after)}</td></tr>`;
  return `<div class="table-wrap"><table id="adapt-figures"><caption class="visually-hidden">Accuracy before and after</caption>
    <thead><tr><th scope="col">Accuracy on</th><th scope="col">Before (current version)</th><th scope="col">After (adapted)</th><th scope="col">Change</th></tr></thead>
    <tbody>${row(`your held-back cells (${esc(a.holdout_cells)})`, a.holdout_accuracy_before, a.holdout_accuracy_after)}
    ${row("PBC validation split (reference)", a.pbc_val_accuracy_before, a.pbc_val_accuracy_after)}</tbody></table></div>`;
}

function adaptOutcomeHtml(a) {
  switch (a.status) {
    case "succeeded":
      return `<p><span class="badge ok">passed the gate</span> ${esc(a.model_name)} v${esc(a.model_version)} now serves your organization.</p>`;
    case "rejected":
      return `<p><span class="badge bad">refused by the gate</span> Nothing changed for your organization. Why:</p>
        <ul id="adapt-reasons">${a.gate_reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>`;
    case "failed":
      return `<p class="error">Failed: ${esc(a.error || "unknown error")}. Nothing changed for your organization.</p>`;
    case "cancelled":
      return `<p class="muted">Cancelled. Nothing changed for your organization.</p>`;
    default:
      return "";
  }
}

function adaptRunHtml(a) {
  const where = a.status === "running" && a.total_epochs ? `epoch ${esc(a.epoch)} of ${esc(a.total_epochs)}` : "";
  const phase = !a.finished && a.phase && a.phase !== a.status && a.phase !== `epoch ${a.epoch}/${a.total_epochs}` ? ` (${esc(a.phase)})` : "";
  return `<h3>Adaptation ${esc(String(a.id).slice(0, 8))} · <span id="adapt-status">${esc(a.status)}</span></h3>
    ${a.finished ? "" : `<label for="adapt-progress">Progress</label><progress id="adapt-progress" max="1" value="${Number(a.progress) || 0}"></progress>`}
    <p id="adapt-phase" role="status">${esc(a.status)}${where ? ": " + where : ""}${phase} — ${esc(a.cells)} reviewed cells, ${esc(a.holdout_cells)} held back to check the result</p>
    ${a.finished ? "" : '<p><button type="button" class="danger" id="adapt-cancel">Cancel adaptation</button></p>'}
    ${adaptFiguresHtml(a)}${adaptOutcomeHtml(a)}`;
}

async function adaptPanel(root) {
  const serving = $("#adapt-serving", root), run = $("#adapt-run", root), list = $("#adapt-list", root);
  const startBtn = $("#adapt-start", root), rollbackBtn = $("#adapt-rollback", root);
  const alive = () => document.body.contains(root);
  const fail = (e) => { run.innerHTML = `<p class="error" role="alert">${esc(e.message || e)}</p>`; };
  clearTimeout(adaptTimer);

  const loadServing = async () => {
    try {
      const m = await api("/api/v1/organization/model");
      serving.innerHTML = adaptServingHtml(m);
      rollbackBtn.hidden = !m.adapted;
    } catch (e) { serving.innerHTML = `<p class="error">${esc(e.message)}</p>`; rollbackBtn.hidden = true; }
  };
  const loadList = async () => {
    const items = (await api("/api/v1/adaptations?limit=10")).items;
    list.innerHTML = items.map((a) => `<tr data-id="${esc(a.id)}"><td>${esc(fmtDate(a.created_at))}</td><td>${esc(a.status)}</td><td>${esc(a.cells)}</td>
      <td>${adaptPct(a.holdout_accuracy_before)} → ${adaptPct(a.holdout_accuracy_after)}</td><td>${a.model_version ? "v" + esc(a.model_version) + (a.status === "succeeded" ? "" : " (not served)") : "—"}</td>
      <td><button type="button" class="secondary adapt-show">Show</button></td></tr>`).join("") || `<tr><td colspan="6">No adaptations yet.</td></tr>`;
    $$(".adapt-show", list).forEach((b) => b.onclick = () => api(`/api/v1/adaptations/${encodeURIComponent(b.closest("tr").dataset.id)}`).then(follow).catch(fail));
    return items;
  };
  // Paints one run and keeps polling it while it is queued or running (and the page is open).
  const follow = (a) => {
    clearTimeout(adaptTimer);
    run.innerHTML = adaptRunHtml(a);
    startBtn.disabled = !a.finished;
    const cancel = $("#adapt-cancel", run);
    if (cancel) cancel.onclick = async () => {
      cancel.disabled = true;
      try { follow(await api(`/api/v1/adaptations/${encodeURIComponent(a.id)}/cancel`, { method: "POST" })); loadList().catch(() => { }); } catch (e) { toast(e.message); cancel.disabled = false; }
    };
    if (a.finished) return;
    adaptTimer = setTimeout(async () => {
      if (!alive()) return;
      try {
        const next = await api(`/api/v1/adaptations/${encodeURIComponent(a.id)}`);
        if (!alive()) return;
        follow(next);
        if (next.finished) { loadServing(); loadList().catch(() => { }); }
      } catch (e) { fail(e); startBtn.disabled = false; }
    }, ADAPT_POLL_MS);
  };

  startBtn.onclick = async () => {
    startBtn.disabled = true;
    try {
      const a = await api("/api/v1/adaptations", { method: "POST", json: {} });
      toast("Adaptation started");
      follow(a);
      loadList().catch(() => { });
    } catch (e) { fail(e); startBtn.disabled = false; }
  };
  rollbackBtn.onclick = async () => {
    if (!confirm("Put your organization back on the version it used before this adapted one?")) return;
    rollbackBtn.disabled = true;
    try {
      const m = await api("/api/v1/organization/model/rollback", { method: "POST", json: {} });
      toast(`Your organization is now served by v${m.version}`);
      await loadServing();
    } catch (e) { toast(e.message); } finally { rollbackBtn.disabled = false; }
  };

  await loadServing();
  try {
    const items = await loadList();
    const open = items.find((a) => !a.finished);
    if (open) follow(open);  // a run started earlier (or elsewhere) is followed live
  } catch (e) { list.innerHTML = `<tr><td colspan="6" class="error">${esc(e.message)}</td></tr>`; }
}
