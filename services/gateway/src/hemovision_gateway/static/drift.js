/* The dashboard's drift panel: do this organization's recent cells still look like what the model
   was trained and checked on? GET /api/v1/drift (docs/operations.md "Drift"). A member reads it in
   plain words with the details folded away; platform staff get one row per organization (scores and
   counts only: the API gives them no histograms).
   Loaded before app.js and only defines functions: app.js's helpers (api, esc, $, session) are looked up
   when these run. Every server string goes through esc(). */
"use strict";

const DRIFT_COMPONENT_WORDS = {
  ood_score: ["How the images look to the model",
    "the colour or stain, brightness, focus or framing of your images differs from the slides the model learned from"],
  confidence: ["How sure the model is",
    "the model is less sure of its answers on your cells than on the cells it was checked on"],
  class_mix: ["Mix of cell types",
    "your mix of cell types differs from the training set; this can be normal for your patients"],
};
const DRIFT_BADGE = { ok: "ok", watch: "review", drifting: "bad" };
const DRIFT_STATUS_WORDS = { ok: "as expected", watch: "a little different", drifting: "different",
  too_few_cells: "not enough cells", no_reference: "no reference" };

const driftScore = (x) => (x == null ? "—" : Number(x).toFixed(2));
const driftBadge = (status) => `<span class="badge ${DRIFT_BADGE[status] || ""}">${esc(DRIFT_STATUS_WORDS[status] || status)}</span>`;

function driftHeadline(item, report) {
  const basis = `Based on ${esc(item.cells)} cells from the last ${esc(report.window_days)} days, classified by
    ${esc(item.model_name)} v${esc(item.model_version)}.`;
  const why = item.components.filter((c) => c.status === "drifting" || c.status === "watch")
    .map((c) => `<li>${esc(DRIFT_COMPONENT_WORDS[c.component][1])}.</li>`).join("");
  switch (item.status) {
    case "ok":
      return `<p id="drift-words"><span class="badge ok">no drift</span> Your recent cells look like what the model was trained on.</p><p class="muted">${basis}</p>`;
    case "watch":
      return `<p id="drift-words"><span class="badge review">watch</span> Your recent cells differ a little from what the model was trained on:</p>
        <ul>${why}</ul><p>Keep reviewing flagged cells; if this persists, check your staining and scanner settings.</p><p class="muted">${basis}</p>`;
    case "drifting":
      return `<p id="drift-words"><span class="badge bad">drifted</span> Your cells have drifted from what the model was trained on:</p>
        <ul>${why}</ul>
        <p>The model's answers and confidence may be less reliable for your lab. Review more of your cells (not only the
        flagged ones), check your stain and scanner settings, and consider <strong>Adapt to our lab</strong> once you have
        reviewed cells.</p><p class="muted">${basis}</p>`;
    case "too_few_cells":
      return `<p id="drift-words">Not enough cells yet for a drift check: it needs at least ${esc(report.min_cells)} cells from the last
        ${esc(report.window_days)} days (you have ${esc(item.cells)} classified by ${esc(item.model_name)} v${esc(item.model_version)}).</p>`;
    default:
      return `<p id="drift-words">No drift check is available for ${esc(item.model_name)} v${esc(item.model_version)} yet (its reference is not published).</p>`;
  }
}

function driftBars(h) {
  /* live (dark) beside reference (light) share per bin, as a small inline SVG */
  const width = 520, height = 120, n = h.bins.length, bw = (width - 20) / Math.max(1, n);
  const max = Math.max(0.01, ...h.live, ...h.reference);
  const bar = (v, i, dx, fill, who) => {
    const bh = (v / max) * height;
    return `<rect x="${10 + i * bw + dx}" y="${10 + height - bh}" width="${bw / 2 - 2}" height="${bh}" fill="${fill}"><title>${esc(h.bins[i])} ${who}: ${(100 * v).toFixed(1)} %</title></rect>`;
  };
  return `<svg viewBox="0 0 ${width} ${height + 20}" role="img" width="100%"
    aria-label="${esc(DRIFT_COMPONENT_WORDS[h.component][0])}: your cells beside the reference, per bin">` +
    h.live.map((v, i) => bar(v, i, 0, "#1a5fd1", "your cells")).join("") +
    h.reference.map((v, i) => bar(v, i, bw / 2, "#9db8e8", "reference")).join("") + `</svg>`;
}

function driftDetailsHtml(item, report) {
  const rows = item.components.map((c) => `<tr><th scope="row">${esc(DRIFT_COMPONENT_WORDS[c.component][0])}</th>
    <td>${driftScore(c.status === "too_few_cells" || c.status === "no_reference" ? null : c.score)}</td><td>${driftBadge(c.status)}</td></tr>`).join("");
  const charts = item.histograms.map((h) => `<figure><figcaption>${esc(DRIFT_COMPONENT_WORDS[h.component][0])}
    (dark: your cells, light: the model's reference)</figcaption>${driftBars(h)}</figure>`).join("");
  return `<details id="drift-details"><summary>Details</summary>
    <p class="muted">Each part is compared with what the model gave on its own check set (PBC validation cells) by a
    population stability index: below ${esc(report.watch_threshold)} as expected, from ${esc(report.drifting_threshold)}
    different. Cells flagged for review in this period: ${esc((100 * item.review_rate).toFixed(1))} %.</p>
    <div class="table-wrap"><table><thead><tr><th scope="col">Part</th><th scope="col">Score</th><th scope="col">Status</th></tr></thead>
    <tbody>${rows}</tbody></table></div>${charts}</details>`;
}

function driftStaffHtml(report) {
  const rows = report.items.map((i) => `<tr><td><code>${esc(i.organization_id)}</code></td><td>${esc(i.model_name)} v${esc(i.model_version)}</td>
    <td>${esc(i.cells)}</td><td>${driftScore(i.status === "too_few_cells" || i.status === "no_reference" ? null : i.score)}</td>
    <td>${driftBadge(i.status)}</td><td>${esc((100 * i.review_rate).toFixed(1))} %</td></tr>`).join("");
  return `<p class="muted">Per organization (ids only): its last ${esc(report.window_days)} days of cells against the model
    version's reference. Scores only; no organization's cells or labels are shown.</p>
    <div class="table-wrap"><table id="drift-orgs"><thead><tr><th scope="col">Organization</th><th scope="col">Model</th>
    <th scope="col">Cells</th><th scope="col">Score</th><th scope="col">Status</th><th scope="col">Flagged</th></tr></thead>
    <tbody>${rows || `<tr><td colspan="6">No cells in the last ${esc(report.window_days)} days.</td></tr>`}</tbody></table></div>`;
}

async function driftPanel() {
  const el = $("#drift-panel");
  if (!el) return;
  const card = (body) => `<section class="card" id="drift" aria-labelledby="drift-h"><h2 id="drift-h">Do your cells still look like the training cells?</h2>${body}</section>`;
  let report;
  try { report = await api("/api/v1/drift"); } catch (e) { el.innerHTML = card(`<p class="error">${esc(e.message)}</p>`); return; }
  /* platform staff without an organization get every organization's scores (history decides) */
  const org = (session.me && session.me.organization_id) || session.claims().org || "";
  const staff = ["platform_admin", "ml_engineer"].includes(session.role) && !org;
  if (staff) { el.innerHTML = card(driftStaffHtml(report)); return; }
  if (!report.items.length) {
    el.innerHTML = card(`<p id="drift-words">No cells classified in the last ${esc(report.window_days)} days.</p>`);
    return;
  }
  const item = report.items[0];  // the version that classified most of the organization's cells
  el.innerHTML = card(driftHeadline(item, report) + (item.histograms.length ? driftDetailsHtml(item, report) : ""));
}
