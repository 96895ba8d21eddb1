/* HemoVision browser UI: a small single-page app in plain JS (no framework, no CDN).
   Routes live in the URL hash (#/upload, #/result/<id>, ...); e-mail links land on
   /verify-email, /reset-password and /accept-invitation with ?token=. */
"use strict";

/* The platform's label set, for the class filter (/ui/classes.js, from hemovision_contracts).
   A prediction's own classes are the keys of its probabilities; counts name every class. */
const CLASSES = window.HV_CLASS_NAMES || [];
const COLORS = ["#6b4fbb", "#d9822b", "#b3263a", "#2a9d8f", "#1a5fd1", "#8a6d3b", "#4a8f2a", "#7d7d7d"];
const main = document.getElementById("main");

/* ---------- utilities ---------- */
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const pct = (x) => (100 * (x || 0)).toFixed(1) + "%";
const nice = (s) => String(s || "").replace(/_/g, " ");
const fmtDate = (s) => (s ? new Date(s).toLocaleString() : "");
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function toast(msg) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.classList.add("show");
  clearTimeout(toast._t);
  toast._t = setTimeout(() => t.classList.remove("show"), 4000);
}

/* The access token lives in this page's memory only (never in localStorage). The refresh token is
   an HttpOnly cookie the page cannot read (the gateway sets it for `X-HV-Session: cookie`), so a
   script injected into the page cannot carry the session away; a reload restores the session by
   refreshing with that cookie. Refresh and logout send the readable CSRF cookie back as X-CSRF-Token. */
const COOKIE_SESSION = { "X-HV-Session": "cookie" };
const session = {
  access: null,
  set(tokens) { session.access = tokens.access_token; },
  clear() { session.access = null; session.me = null; },
  me: null,
  claims() {
    try { return JSON.parse(atob(session.access.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); } catch { return {}; }
  },
  get role() { return (session.me && session.me.role) || session.claims().role || ""; },
};

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

/* The CSRF cookie's value (not HttpOnly; "__Host-" prefixed over HTTPS). Its presence also says
   that a session cookie was set. */
function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)(?:__Host-)?hv_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

/* One refresh at a time (refresh tokens rotate: two refreshes with one token would end the
   session), across tabs too where the browser has Web Locks. */
let refreshing = null;
function refreshTokens() {
  if (!refreshing) {
    const run = async () => {
      const csrf = csrfToken();
      if (!csrf) return false;
      const r = await fetch("/api/v1/auth/refresh", { method: "POST", credentials: "same-origin",
        headers: { ...COOKIE_SESSION, "X-CSRF-Token": csrf } });
      if (!r.ok) return false;
      session.set(await r.json());
      return true;
    };
    const once = navigator.locks ? () => navigator.locks.request("hv-refresh", run) : run;
    refreshing = once().catch(() => false).finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function signIn(email, password) {
  session.set(await api("/api/v1/auth/login", { method: "POST", json: { email, password }, headers: COOKIE_SESSION, retry: false }));
  session.me = null;
}

/* fetch with the bearer token, one refresh on 401, JSON errors -> ApiError.
   csrf: a cookie-session call (logout): sends X-HV-Session and the current X-CSRF-Token. */
async function api(path, { method = "GET", json, body, headers = {}, raw = false, retry = true, csrf = false } = {}) {
  const h = { ...headers };
  if (session.access) h.Authorization = "Bearer " + session.access;
  if (csrf) Object.assign(h, COOKIE_SESSION, { "X-CSRF-Token": csrfToken() });
  if (json !== undefined) { h["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  const r = await fetch(path, { method, headers: h, body, credentials: "same-origin" });
  if (r.status === 401 && retry && await refreshTokens()) {
    return api(path, { method, json, body: json === undefined ? body : undefined, headers, raw, retry: false, csrf });
  }
  if (!r.ok) {
    let code = "http_" + r.status, message = r.statusText || "request failed";
    try { const e = (await r.json()).error; code = e.code; message = e.message; } catch { /* not JSON */ }
    if (r.status === 401 && !path.startsWith("/api/v1/auth/")) { session.clear(); location.hash = "#/login"; }
    throw new ApiError(r.status, code, message);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

async function blobUrl(path) {
  const r = await api(path, { raw: true });
  return URL.createObjectURL(await r.blob());
}

async function download(path, filename) {
  try {
    const url = await blobUrl(path);
    const a = document.createElement("a");
    a.href = url; a.download = filename; document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) { toast(e.message); }
}

async function openPdf(path) {
  try { window.open(await blobUrl(path), "_blank", "noopener"); } catch (e) { toast(e.message); }
}

/* Server-sent events over fetch (EventSource cannot send an Authorization header). */
async function streamEvents(path, onEvent, signal) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + session.access }, signal });
  if (!r.ok) { let m = "stream failed"; try { m = (await r.json()).error.message; } catch { } throw new Error(m); }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(event, JSON.parse(data));
    }
  }
}

function xhrUpload(path, form, onProgress, headers = {}) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("POST", path);
    x.setRequestHeader("Authorization", "Bearer " + session.access);
    for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
    x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    x.onload = () => {
      let body = null; try { body = JSON.parse(x.responseText); } catch { }
      if (x.status >= 200 && x.status < 300) resolve(body);
      else reject(new ApiError(x.status, body?.error?.code || "error", body?.error?.message || "upload failed"));
    };
    x.onerror = () => reject(new ApiError(0, "network", "network error during upload"));
    x.send(form);
  });
}

function render(html, title) {
  main.innerHTML = html;
  document.title = (title ? title + " · " : "") + "HemoVision";
  const h1 = $("h1", main);
  if (h1) { h1.setAttribute("tabindex", "-1"); h1.focus(); }
}

function formError(form, e) {
  let el = $(".error", form);
  if (!el) { el = document.createElement("p"); el.className = "error"; el.setAttribute("role", "alert"); form.appendChild(el); }
  el.textContent = e.message || String(e);
}

function onSubmit(form, fn) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = $("button[type=submit]", form);
    if (btn) btn.disabled = true;
    try { await fn(new FormData(form)); } catch (e) { formError(form, e); } finally { if (btn) btn.disabled = false; }
  });
}

const labelOptions = (classes, selected = "", blank = "Any class") =>
  `<option value="">${esc(blank)}</option>` + classes.map((c) => `<option value="${c}" ${c === selected ? "selected" : ""}>${nice(c)}</option>`).join("");

/* ---------- navigation ---------- */
function navLinks() {
  const signedIn = !!session.access;
  const role = session.role;
  const links = signedIn
    ? [["#/upload", "Upload"], ["#/history", "History"], ["#/review", "Review"], ["#/batches", "Batches"],
       ["#/dashboard", "Dashboard"], ["#/profile", "Profile"]]
    : [["#/login", "Sign in"], ["#/signup", "Sign up"]];
  if (signedIn && ["org_admin", "platform_admin", "ml_engineer"].includes(role)) links.push(["#/admin", "Admin"]);
  const cur = "#/" + (location.hash.slice(2).split("/")[0] || "");
  $("#nav-list").innerHTML = links.map(([h, t]) => `<li><a href="${h}" ${cur === h ? 'aria-current="page"' : ""}>${t}</a></li>`).join("")
    + (signedIn ? `<li><button class="linklike" id="signout">Sign out</button></li>` : "");
  const so = $("#signout");
  if (so) so.onclick = signOut;
}

async function signOut() {
  try { await api("/api/v1/auth/logout", { method: "POST", csrf: true }); } catch { }
  session.clear();
  location.hash = "#/login";
}

// The skip link must not change the hash (the hash is the router's).
$(".skip").addEventListener("click", (e) => { e.preventDefault(); const h = $("h1", main); (h || main).focus(); });

$("#menu-toggle").addEventListener("click", () => {
  const nav = $("#nav"); const open = !nav.classList.contains("open");
  nav.classList.toggle("open", open); $("#menu-toggle").setAttribute("aria-expanded", String(open));
});

/* ---------- pages: accounts ---------- */
function pageLogin() {
  render(`<section class="card narrow"><h1>Sign in</h1>
    <form id="f" novalidate>
      <label for="email">E-mail</label><input id="email" name="email" type="email" autocomplete="username" required>
      <label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
      <p><button type="submit">Sign in</button></p>
    </form>
    <p><a href="#/forgot">Forgot your password?</a> · <a href="#/signup">Create an account</a></p></section>`, "Sign in");
  onSubmit($("#f"), async (fd) => {
    await signIn(fd.get("email"), fd.get("password"));
    location.hash = "#/upload";
  });
}

function pageSignup() {
  render(`<section class="card narrow"><h1>Create an account</h1>
    <p class="muted">Registering creates a new organization with you as its administrator. No patient data is asked for.</p>
    <form id="f" novalidate>
      <label for="email">E-mail</label><input id="email" name="email" type="email" autocomplete="email" required>
      <label for="password">Password <span class="muted">(at least 10 characters)</span></label>
      <input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required>
      <label for="organization">Organization (lab) name</label><input id="organization" name="organization" type="text" required>
      <p><button type="submit">Sign up</button></p>
    </form></section>`, "Sign up");
  onSubmit($("#f"), async (fd) => {
    const body = { email: fd.get("email"), password: fd.get("password"), organization: fd.get("organization") };
    await api("/api/v1/auth/register", { method: "POST", json: body });
    await signIn(body.email, body.password);
    toast("Welcome! If e-mail verification is on, check your inbox.");
    location.hash = "#/upload";
  });
}

function pageForgot() {
  render(`<section class="card narrow"><h1>Forgotten password</h1>
    <form id="f"><label for="email">E-mail</label><input id="email" name="email" type="email" required>
    <p><button type="submit">Send reset link</button></p></form><p id="done" role="status"></p></section>`, "Forgotten password");
  onSubmit($("#f"), async (fd) => {
    await api("/api/v1/auth/password-reset/request", { method: "POST", json: { email: fd.get("email") } });
    $("#done").textContent = "If that address has an account, a reset link is on its way.";
  });
}

function tokenFromUrl() { return new URLSearchParams(location.search).get("token") || new URLSearchParams(location.hash.split("?")[1] || "").get("token") || ""; }

function pageReset() {
  render(`<section class="card narrow"><h1>Choose a new password</h1>
    <form id="f"><input type="hidden" name="token" value="${esc(tokenFromUrl())}">
    <label for="pw">New password</label><input id="pw" name="new_password" type="password" autocomplete="new-password" minlength="10" required>
    <p><button type="submit">Set password</button></p></form></section>`, "Reset password");
  onSubmit($("#f"), async (fd) => {
    await api("/api/v1/auth/password-reset", { method: "POST", json: { token: fd.get("token"), new_password: fd.get("new_password") } });
    toast("Password changed. Please sign in."); history.replaceState(null, "", "/#/login"); route();
  });
}

async function pageVerify() {
  render(`<section class="card narrow"><h1>E-mail verification</h1><p id="msg" role="status">Verifying…</p></section>`, "Verify e-mail");
  try {
    await api("/api/v1/auth/verify-email", { method: "POST", json: { token: tokenFromUrl() } });
    $("#msg").innerHTML = `Your e-mail address is verified. <a href="/#/${session.access ? "upload" : "login"}">Continue</a>`;
    if (session.access) await refreshTokens();
  } catch (e) { $("#msg").innerHTML = `<span class="error">${esc(e.message)}</span>`; }
}

function pageAccept() {
  render(`<section class="card narrow"><h1>Join your team</h1>
    <form id="f"><input type="hidden" name="token" value="${esc(tokenFromUrl())}">
    <label for="pw">Choose a password</label><input id="pw" name="password" type="password" autocomplete="new-password" minlength="10" required>
    <p><button type="submit">Create my account</button></p></form></section>`, "Accept invitation");
  onSubmit($("#f"), async (fd) => {
    const u = await api("/api/v1/invitations/accept", { method: "POST", json: { token: fd.get("token"), password: fd.get("password") } });
    await signIn(u.email, fd.get("password"));
    history.replaceState(null, "", "/#/upload"); route();
  });
}

/* ---------- upload ---------- */
function pageUpload() {
  render(`<h1>Classify cells</h1>
  <section class="card">
    <form id="f">
      <div id="drop" class="drop" role="button" tabindex="0" aria-describedby="drop-help">
        <strong>Drop cell images or a ZIP here</strong><br><span id="drop-help" class="muted">or press Enter to choose files — JPEG, PNG, BMP, TIFF, WebP, DICOM; up to 10 MB each</span>
      </div>
      <label for="files" class="visually-hidden">Choose images</label>
      <input id="files" name="files" type="file" multiple accept="image/*,.dcm,.zip,application/zip" hidden>
      <div class="previews" id="previews" aria-live="polite"></div>
      <div class="row">
        <div><label for="sample_id">Sample id <span class="muted">(optional)</span></label><input id="sample_id" name="sample_id" type="text" maxlength="100"></div>
        <div><label for="slide_id">Slide id <span class="muted">(optional)</span></label><input id="slide_id" name="slide_id" type="text" maxlength="100"></div>
      </div>
      <label for="note">Note <span class="muted">(optional, no personal data)</span></label><textarea id="note" name="note" rows="2" maxlength="2000"></textarea>
      <p><button type="submit" id="go" disabled>Upload and classify</button></p>
      <label for="prog">Upload progress</label><progress id="prog" max="1" value="0"></progress>
      <p id="status" role="status" class="muted"></p>
    </form>
  </section>`, "Upload");
  let files = [];
  const input = $("#files"), drop = $("#drop");
  const show = () => {
    $("#previews").innerHTML = "";
    for (const f of files) {
      const fig = document.createElement("figure");
      if (/\.zip$/i.test(f.name) || f.type === "application/zip") fig.innerHTML = `<div class="zipicon" aria-hidden="true">ZIP</div>`;
      else { const img = document.createElement("img"); img.alt = "preview of " + f.name; img.src = URL.createObjectURL(f); fig.appendChild(img); }
      const cap = document.createElement("figcaption"); cap.textContent = f.name; fig.appendChild(cap);
      $("#previews").appendChild(fig);
    }
    $("#go").disabled = files.length === 0;
    $("#status").textContent = files.length ? `${files.length} file(s) selected` : "";
  };
  drop.onclick = () => input.click();
  drop.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } };
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); files = Array.from(e.dataTransfer.files); show(); };
  input.onchange = () => { files = Array.from(input.files); show(); };
  onSubmit($("#f"), async (fd) => {
    const single = files.length === 1 && !/\.zip$/i.test(files[0].name);
    const form = new FormData();
    for (const k of ["sample_id", "slide_id", "note"]) if (fd.get(k)) form.append(k, fd.get(k));
    const key = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[^A-Za-z0-9-]/g, "");
    const prog = (p) => { $("#prog").value = p; $("#status").textContent = p < 1 ? `Uploading… ${Math.round(p * 100)}%` : "Classifying…"; };
    if (single) {
      form.append("file", files[0]);
      const res = await xhrUpload("/api/v1/predictions", form, prog, { "Idempotency-Key": key });
      location.hash = "#/result/" + res.id;
    } else {
      for (const f of files) form.append("files", f);
      const res = await xhrUpload("/api/v1/batches", form, prog, { "Idempotency-Key": key });
      location.hash = "#/batch/" + res.id;
    }
  });
}

/* ---------- result ---------- */
function probBars(probs, top) {
  return `<div class="bars" role="list" aria-label="Class probabilities">` + Object.keys(probs).map((c) => {
    const p = probs[c] || 0;
    return `<span role="listitem" id="pl-${c}">${nice(c)}</span>
      <div class="bar ${c === top ? "top" : ""}" role="meter" aria-labelledby="pl-${c}" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${(100 * p).toFixed(1)}"><span data-width="${(100 * p).toFixed(2)}"></span></div>
      <span>${pct(p)}</span>`;
  }).join("") + `</div>`;
}

async function pageResult(id) {
  render(`<h1>Result</h1><p role="status">Loading…</p>`, "Result");
  let p;
  try { p = await api("/api/v1/predictions/" + encodeURIComponent(id)); } catch (e) { return render(`<h1>Result</h1><p class="error">${esc(e.message)}</p>`); }
  const reviewed = p.review ? `<p><span class="badge ${p.review.agrees ? "ok" : "bad"}">reviewed: ${nice(p.review.label)}</span> <span class="muted">${fmtDate(p.review.reviewed_at)}</span></p>` : "";
  render(`<h1>Result: ${esc(nice(p.label))}</h1>
  <div class="grid">
    <section class="card" aria-labelledby="img-h"><h2 id="img-h">Cell and Grad-CAM</h2>
      <div class="overlay" id="overlay"><img id="cell" alt="the classified cell at model input size"><img id="heat" alt="Grad-CAM heatmap: where the model looked" hidden></div>
      <div class="row">
        <div><label><input type="checkbox" id="toggle" ${p.has_heatmap ? "checked" : "disabled"}> Show heatmap</label></div>
        <div><label for="opacity">Heatmap opacity</label><input type="range" id="opacity" min="0" max="100" value="55" ${p.has_heatmap ? "" : "disabled"}></div>
      </div>
      ${p.has_heatmap ? "" : `<p class="muted">No heatmap stored for this prediction.</p>`}
    </section>
    <section class="card" aria-labelledby="cls-h"><h2 id="cls-h">Classification</h2>
      <p class="kpi">${esc(nice(p.label))} <span class="muted">${pct(p.confidence)}</span></p>
      <p>${p.needs_review ? `<span class="badge review">needs review</span> <span class="muted">${esc(p.review_reasons.map(nice).join(", "))}</span>` : `<span class="badge ok">no review flag</span>`}</p>
      ${p.confidence_holds === false ? `<p class="error" role="alert">This cell is unlike the cells the model learned from, so the ${pct(p.confidence)} confidence does not hold for it. <a href="#rf">Review it below</a> and set the correct label.</p>` : ""}
      ${reviewed}
      <p class="muted">Model ${esc(p.model.name)} v${esc(p.model.version)} · ${fmtDate(p.created_at)}${p.sample_id ? " · sample " + esc(p.sample_id) : ""}${p.slide_id ? " · slide " + esc(p.slide_id) : ""}</p>
      ${probBars(p.probabilities, p.label)}
      <p><button id="pdf">Open PDF report</button> <button class="secondary" id="pdf-dl">Download PDF</button></p>
    </section>
  </div>
  <section class="card"><h2>Review</h2>
    <form id="rf" class="row"><div><label for="rl">Reviewer's label</label><select id="rl" name="label">${labelOptions(Object.keys(p.probabilities), p.review ? p.review.label : p.label, "—")}</select></div>
    <div><label for="rc">Comment</label><input id="rc" name="comment" type="text" maxlength="2000"></div>
    <div><button type="submit">Save review</button></div></form>
  </section>
  <p><a href="#/history">Back to history</a> · <a href="#/upload">Classify another</a></p>`, "Result");
  // widths set through the CSSOM: the CSP allows no inline style attributes
  $$(".bar > span[data-width]", main).forEach((s) => { s.style.width = s.dataset.width + "%"; });
  const heat = $("#heat");
  const setOpacity = () => { heat.style.opacity = $("#opacity").value / 100; };
  setOpacity();
  $("#opacity").oninput = setOpacity;
  $("#toggle").onchange = () => { heat.hidden = !$("#toggle").checked; };
  if (p.has_image) blobUrl(p.links.image).then((u) => { $("#cell").src = u; }).catch(() => { });
  if (p.has_heatmap) blobUrl(p.links.heatmap).then((u) => { heat.src = u; heat.hidden = !$("#toggle").checked; }).catch(() => { });
  $("#pdf").onclick = () => openPdf(p.links.report);
  $("#pdf-dl").onclick = () => download(p.links.report, `hemovision-${p.id}.pdf`);
  onSubmit($("#rf"), async (fd) => {
    if (!fd.get("label")) throw new Error("choose a label");
    await api(`/api/v1/predictions/${p.id}/review`, { method: "POST", json: { label: fd.get("label"), comment: fd.get("comment") || "" } });
    toast("Review saved"); pageResult(p.id);
  });
}

/* ---------- history ---------- */
async function pageHistory() {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const yesno = (name, v) => `<select id="${name}" name="${name}"><option value="">Either</option><option value="true" ${v === "true" ? "selected" : ""}>Yes</option><option value="false" ${v === "false" ? "selected" : ""}>No</option></select>`;
  render(`<h1>History</h1>
  <section class="card"><form id="ff">
    <div class="row">
      <div><label for="label">Class</label><select id="label" name="label">${labelOptions(CLASSES, q.get("label") || "")}</select></div>
      <div><label for="from">From</label><input id="from" name="from" type="date" value="${esc(q.get("from") || "")}"></div>
      <div><label for="to">To</label><input id="to" name="to" type="date" value="${esc(q.get("to") || "")}"></div>
      <div><label for="needs_review">Needs review</label>${yesno("needs_review", q.get("needs_review"))}</div>
      <div><label for="reviewed">Reviewed</label>${yesno("reviewed", q.get("reviewed"))}</div>
      <div><label for="model_version">Model version</label><input id="model_version" name="model_version" type="number" min="1" value="${esc(q.get("model_version") || "")}"></div>
      <div><label for="sample_id">Sample id</label><input id="sample_id" name="sample_id" type="text" value="${esc(q.get("sample_id") || "")}"></div>
    </div>
    <p><button type="submit">Apply filters</button> <button type="button" class="secondary" id="csv">Export CSV</button></p>
  </form></section>
  <div class="table-wrap"><table><caption class="visually-hidden">Predictions</caption>
    <thead><tr><th scope="col">Cell</th><th scope="col">Class</th><th scope="col">Confidence</th><th scope="col">Flag</th><th scope="col">Review</th><th scope="col">Model</th><th scope="col">Sample</th><th scope="col">When</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody id="rows"><tr><td colspan="9">Loading…</td></tr></tbody></table></div>
  <p class="row"><button class="secondary" id="prev" disabled>Previous page</button> <button class="secondary" id="next" disabled>Next page</button></p>`, "History");
  const filters = new URLSearchParams();
  for (const [k, v] of q) if (v && k !== "cursor") filters.set(k, v);
  onSubmit($("#ff"), async (fd) => {
    const p = new URLSearchParams(); for (const [k, v] of fd) if (v) p.set(k, v);
    location.hash = "#/history?" + p.toString();
  });
  $("#csv").onclick = () => download("/api/v1/predictions/export.csv?" + filters.toString(), "hemovision-predictions.csv");
  const cursors = [""];
  const load = async (cursor) => {
    const p = new URLSearchParams(filters); p.set("limit", "25"); if (cursor) p.set("cursor", cursor);
    let page;
    try { page = await api("/api/v1/predictions?" + p.toString()); } catch (e) { $("#rows").innerHTML = `<tr><td colspan="9" class="error">${esc(e.message)}</td></tr>`; return; }
    $("#rows").innerHTML = page.items.length ? page.items.map((x) => `<tr data-id="${esc(x.id)}">
      <td>${x.has_image ? `<img class="thumb" alt="cell ${esc(x.id.slice(0, 8))}" data-src="${esc(x.links.image)}">` : ""}</td>
      <td><a href="#/result/${esc(x.id)}">${esc(nice(x.label))}</a></td><td>${pct(x.confidence)}</td>
      <td>${x.needs_review ? '<span class="badge review">needs review</span>' : ""}</td>
      <td>${x.review ? `<span class="badge ${x.review.agrees ? "ok" : "bad"}">${esc(nice(x.review.label))}</span>` : ""}</td>
      <td>v${esc(x.model.version)}</td><td>${esc(x.sample_id)}</td><td>${fmtDate(x.created_at)}</td>
      <td><button class="danger del" aria-label="Delete prediction ${esc(x.id.slice(0, 8))}">Delete</button></td></tr>`).join("")
      : `<tr><td colspan="9">No predictions match.</td></tr>`;
    $$("img[data-src]", main).forEach((img) => blobUrl(img.dataset.src).then((u) => { img.src = u; }).catch(() => { }));
    $$(".del", main).forEach((b) => b.onclick = async () => {
      const id = b.closest("tr").dataset.id;
      if (!confirm("Delete this prediction with its stored image and heatmap?")) return;
      try { await api("/api/v1/predictions/" + id, { method: "DELETE" }); toast("Deleted"); load(cursors[cursors.length - 1]); } catch (e) { toast(e.message); }
    });
    $("#next").disabled = !page.next_cursor;
    $("#next").onclick = () => { cursors.push(page.next_cursor); load(page.next_cursor); };
    $("#prev").disabled = cursors.length <= 1;
    $("#prev").onclick = () => { cursors.pop(); load(cursors[cursors.length - 1]); };
  };
  load("");
}

/* ---------- review queue ---------- */
async function pageReview() {
  render(`<h1>Review queue</h1><p class="muted">Flagged cells first, then the least confident. Confirm or correct each label.</p>
    <div id="queue" aria-live="polite">Loading…</div>`, "Review");
  let page;
  try { page = await api("/api/v1/review-queue?limit=30"); } catch (e) { $("#queue").innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
  if (!page.items.length) { $("#queue").innerHTML = "<p>Nothing to review. 🎉</p>"; return; }
  $("#queue").innerHTML = page.items.map((x) => `<section class="card row" data-id="${esc(x.id)}" aria-label="cell ${esc(x.id.slice(0, 8))}">
    <div class="thumb-cell">${x.has_image ? `<img class="thumb large" alt="cell" data-src="${esc(x.links.image)}">` : ""}</div>
    <div><strong>${esc(nice(x.label))}</strong> ${pct(x.confidence)} ${x.needs_review ? '<span class="badge review">needs review</span>' : ""}<br><a href="#/result/${esc(x.id)}">details</a></div>
    <div><label for="l-${esc(x.id)}">Reviewer's label</label><select id="l-${esc(x.id)}">${labelOptions(Object.keys(x.probabilities), x.label, "—")}</select></div>
    <div><button class="save">Save</button></div></section>`).join("");
  $$("img[data-src]", main).forEach((img) => blobUrl(img.dataset.src).then((u) => { img.src = u; }).catch(() => { }));
  $$(".save", main).forEach((b) => b.onclick = async () => {
    const card = b.closest("section"); const id = card.dataset.id;
    try { await api(`/api/v1/predictions/${id}/review`, { method: "POST", json: { label: $("select", card).value } }); card.remove(); toast("Review saved"); } catch (e) { toast(e.message); }
  });
}

/* ---------- dashboard (inline SVG charts) ---------- */
function barChart(data, { width = 520, height = 220, label = "" } = {}) {
  const max = Math.max(1, ...data.map((d) => d.value));
  const bw = (width - 40) / Math.max(1, data.length);
  const top = 20;  // room above the tallest bar for its value
  return `<svg viewBox="0 0 ${width} ${height + 60}" role="img" aria-label="${esc(label)}" width="100%">` + data.map((d, i) => {
    const h = (d.value / max) * height; const x = 30 + i * bw;
    return `<rect x="${x + 4}" y="${top + height - h}" width="${bw - 8}" height="${h}" fill="${COLORS[i % COLORS.length]}"><title>${esc(d.label)}: ${d.value}</title></rect>
      <text x="${x + bw / 2}" y="${top + height + 16}" text-anchor="middle">${esc(d.short || d.label)}</text>
      <text x="${x + bw / 2}" y="${top + height - h - 4}" text-anchor="middle">${d.value}</text>`;
  }).join("") + `</svg>`;
}

function lineChart(points, { width = 520, height = 200, label = "" } = {}) {
  if (!points.length) return `<p class="muted">No data yet.</p>`;
  const max = Math.max(1, ...points.map((p) => p.value));
  const step = points.length > 1 ? (width - 60) / (points.length - 1) : 0;
  const x0 = points.length > 1 ? 40 : width / 2;
  const xy = points.map((p, i) => [x0 + i * step, 10 + height - (p.value / max) * height]);
  return `<svg viewBox="0 0 ${width} ${height + 40}" role="img" aria-label="${esc(label)}" width="100%">
    <polyline fill="none" stroke="#1a5fd1" stroke-width="2" points="${xy.map((p) => p.join(",")).join(" ")}"/>` +
    xy.map(([x, y], i) => `<circle cx="${x}" cy="${y}" r="3" fill="#1a5fd1"><title>${esc(points[i].label)}: ${points[i].value}</title></circle>`).join("") +
    (points.length > 1 ? `<text x="40" y="${height + 30}">${esc(points[0].label)}</text><text x="${width - 20}" y="${height + 30}" text-anchor="end">${esc(points[points.length - 1].label)}</text>`
      : `<text x="${x0}" y="${height + 30}" text-anchor="middle">${esc(points[0].label)}</text>`) +
    `<text x="4" y="16">${max}</text></svg>`;
}

async function pageDashboard() {
  render(`<h1>Dashboard</h1><div id="drift-panel"></div><div id="dash">Loading…</div>`, "Dashboard");
  driftPanel();  // drift.js
  let s;
  try { s = await api("/api/v1/stats"); } catch (e) { $("#dash").innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
  const classData = Object.entries(s.label_counts).map(([c, n]) => ({ label: nice(c), short: c.slice(0, 4), value: n }));
  $("#dash").innerHTML = `<div class="grid">
      <section class="card"><h2>Predictions</h2><p class="kpi">${s.total}</p></section>
      <section class="card"><h2>Mean confidence</h2><p class="kpi">${pct(s.mean_confidence)}</p></section>
      <section class="card"><h2>Flagged for review</h2><p class="kpi">${pct(s.review_rate)}</p></section>
      <section class="card"><h2>Reviewed</h2><p class="kpi">${s.reviewed}</p></section>
    </div>
    <div class="grid">
      <section class="card"><h2>Class mix</h2>${barChart(classData, { label: "Predictions per class" })}</section>
      <section class="card"><h2>Per day</h2>${lineChart(s.daily.map((d) => ({ label: d.day, value: d.count })), { label: "Predictions per day" })}</section>
    </div>
    <div class="grid">
      <section class="card"><h2>Per model version</h2><div class="table-wrap"><table><thead><tr><th scope="col">Model</th><th scope="col">Predictions</th><th scope="col">Mean confidence</th></tr></thead><tbody>
        ${s.by_model.map((m) => `<tr><td>${esc(m.model.name)} v${esc(m.model.version)}</td><td>${m.count}</td><td>${pct(m.mean_confidence)}</td></tr>`).join("") || "<tr><td colspan=3>—</td></tr>"}</tbody></table></div></section>
      <section class="card"><h2>Reviewer agreement per class</h2><div class="table-wrap"><table><thead><tr><th scope="col">Class</th><th scope="col">Reviewed</th><th scope="col">Agreed</th><th scope="col">Rate</th></tr></thead><tbody>
        ${s.agreement.map((a) => `<tr><td>${esc(nice(a.label))}</td><td>${a.reviewed}</td><td>${a.agreed}</td><td>${a.rate == null ? "—" : pct(a.rate)}</td></tr>`).join("") || "<tr><td colspan=4>No reviews yet.</td></tr>"}</tbody></table></div>
        <p><button class="secondary" id="ds">Download reviewed data set (ZIP)</button></p></section>
    </div>`;
  $("#ds").onclick = () => download("/api/v1/datasets/reviewed.zip", "hemovision-reviewed.zip");
}

/* ---------- batches ---------- */
async function pageBatches() {
  render(`<h1>Batches</h1><p><a class="btn" href="#/upload">New batch</a></p><div class="table-wrap"><table><thead><tr><th scope="col">Batch</th><th scope="col">Status</th><th scope="col">Progress</th><th scope="col">Sample</th><th scope="col">Created</th></tr></thead><tbody id="rows"><tr><td colspan="5">Loading…</td></tr></tbody></table></div>`, "Batches");
  try {
    const page = await api("/api/v1/batches?limit=50");
    $("#rows").innerHTML = page.items.map((b) => `<tr><td><a href="#/batch/${esc(b.id)}">${esc(b.id.slice(0, 8))}</a></td><td>${esc(b.status)}</td><td>${b.done}/${b.total}${b.failed ? ` (${b.failed} failed)` : ""}</td><td>${esc(b.sample_id)}</td><td>${fmtDate(b.created_at)}</td></tr>`).join("") || `<tr><td colspan="5">No batches yet.</td></tr>`;
  } catch (e) { $("#rows").innerHTML = `<tr><td colspan="5" class="error">${esc(e.message)}</td></tr>`; }
}

let batchAbort = null;
async function pageBatch(id) {
  render(`<h1>Batch ${esc(id.slice(0, 8))}</h1>
    <section class="card"><label for="bp">Progress</label><progress id="bp" max="1" value="0"></progress>
      <p id="bstat" role="status" aria-live="polite">Loading…</p>
      <p><button id="bpdf">Open batch PDF report</button></p></section>
    <div class="grid"><section class="card"><h2>WBC differential</h2><div id="diff"></div></section>
      <section class="card"><h2>Flagged cells</h2><div id="flagged" class="previews"></div></section></div>
    <h2>Items</h2><div class="table-wrap"><table><thead><tr><th scope="col">#</th><th scope="col">File</th><th scope="col">Status</th><th scope="col">Class</th><th scope="col">Confidence</th><th scope="col">Flag / reason</th></tr></thead><tbody id="items"></tbody></table></div>`, "Batch");
  $("#bpdf").onclick = () => openPdf(`/api/v1/batches/${id}/report.pdf`);
  const paint = (b) => {
    $("#bp").value = b.progress;
    $("#bstat").textContent = `${b.status}: ${b.done} of ${b.total} done (${b.succeeded} classified, ${b.failed} failed, ${b.needs_review} flagged)`;
    $("#diff").innerHTML = `<div class="table-wrap"><table><thead><tr><th scope="col">Class</th><th scope="col">Count</th><th scope="col">Percent</th></tr></thead><tbody>` +
      Object.keys(b.label_counts).map((c) => `<tr><td>${nice(c)}</td><td>${b.label_counts[c] || 0}</td><td>${(b.differential_percent[c] || 0).toFixed(1)}%</td></tr>`).join("") + `</tbody></table></div>`;
  };
  const full = async () => {
    const b = await api(`/api/v1/batches/${id}`);
    paint(b);
    $("#items").innerHTML = b.items.map((i) => `<tr><td>${i.index + 1}</td><td>${esc(i.filename)}</td><td>${esc(i.status)}</td>
      <td>${i.prediction ? `<a href="#/result/${esc(i.prediction.id)}">${esc(nice(i.prediction.label))}</a>` : i.prediction_id ? `<a href="#/result/${esc(i.prediction_id)}">view</a>` : ""}</td>
      <td>${i.prediction ? pct(i.prediction.confidence) : ""}</td>
      <td>${i.error ? `<span class="error">${esc(i.error)}</span>` : i.prediction && i.prediction.needs_review ? '<span class="badge review">needs review</span>' : ""}</td></tr>`).join("");
    const flagged = b.items.filter((i) => i.prediction && i.prediction.needs_review);
    $("#flagged").innerHTML = flagged.length ? flagged.map((i) => `<figure><a href="#/result/${esc(i.prediction.id)}"><img alt="flagged cell ${i.index + 1}" data-src="${esc(i.prediction.links.image || "")}"></a><figcaption>${esc(nice(i.prediction.label))}</figcaption></figure>`).join("") : `<p class="muted">None.</p>`;
    $$("img[data-src]", $("#flagged")).forEach((img) => img.dataset.src && blobUrl(img.dataset.src).then((u) => { img.src = u; }).catch(() => { }));
    return b;
  };
  try { await full(); } catch (e) { $("#bstat").innerHTML = `<span class="error">${esc(e.message)}</span>`; return; }
  if (batchAbort) batchAbort.abort();
  batchAbort = new AbortController();
  let last = 0;
  streamEvents(`/api/v1/batches/${id}/events`, (ev, b) => {
    if (ev === "progress") { paint(b); if (Date.now() - last > 1500) { last = Date.now(); full().catch(() => { }); } }
    if (ev === "done") full().catch(() => { });
  }, batchAbort.signal).catch(() => { });
}

/* ---------- profile ---------- */
async function pageProfile() {
  render(`<h1>Profile</h1><section class="card" id="me">Loading…</section>
    <section class="card"><h2>Change password</h2><form id="pf">
      <label for="cur">Current password</label><input id="cur" name="current_password" type="password" autocomplete="current-password" required>
      <label for="new">New password</label><input id="new" name="new_password" type="password" autocomplete="new-password" minlength="10" required>
      <p><button type="submit">Change password</button></p></form></section>
    <section class="card"><h2>API keys</h2><p class="muted">Use a key as <code>Authorization: Bearer hv_…</code>. The secret is shown once.</p>
      <form id="kf" class="row"><div><label for="kn">Key name</label><input id="kn" name="name" type="text" maxlength="100" required></div><div><button type="submit">Create key</button></div></form>
      <div id="secret" aria-live="polite"></div>
      <div class="table-wrap"><table><thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody id="keys"></tbody></table></div></section>
    <section class="card" aria-labelledby="sess-h"><h2 id="sess-h">Sessions</h2>
      <p class="muted">Every sign-in is a session, until it signs out or is ended here. End one you do not recognise, or all of them.</p>
      <div class="table-wrap"><table><caption class="visually-hidden">Your sessions</caption><thead><tr><th scope="col">Signed in</th><th scope="col">Last active</th><th scope="col">From</th><th scope="col">Browser</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody id="sessions"></tbody></table></div>
      <p><button class="danger" id="everywhere">Sign out everywhere</button></p></section>`, "Profile");
  try {
    const me = session.me = await api("/api/v1/me");
    $("#me").innerHTML = `<h2>${esc(me.email)}</h2><p>${esc(nice(me.role))} at <strong>${esc(me.organization)}</strong></p>
      <p>${me.email_verified ? '<span class="badge ok">e-mail verified</span>' : '<span class="badge review">e-mail not verified</span> <button class="secondary" id="rv">Send verification e-mail</button>'}</p>`;
    if ($("#rv")) $("#rv").onclick = async () => { try { await api("/api/v1/auth/verify-email/request", { method: "POST" }); toast("Verification e-mail sent"); } catch (e) { toast(e.message); } };
  } catch (e) { $("#me").innerHTML = `<p class="error">${esc(e.message)}</p>`; }
  onSubmit($("#pf"), async (fd) => {
    await api("/api/v1/me/password", { method: "POST", json: { current_password: fd.get("current_password"), new_password: fd.get("new_password") } });
    toast("Password changed"); $("#pf").reset();
  });
  const loadKeys = async () => {
    const ks = (await api("/api/v1/api-keys")).items;
    $("#keys").innerHTML = ks.map((k) => `<tr data-id="${esc(k.id)}"><td>${esc(k.name)}</td><td><code>${esc(k.prefix)}…</code></td><td>${fmtDate(k.created_at)}</td><td>${fmtDate(k.last_used_at) || "never"}</td>
      <td>${k.revoked_at ? "revoked" : `<button class="danger rev" aria-label="Revoke key ${esc(k.name)}">Revoke</button>`}</td></tr>`).join("") || `<tr><td colspan="5">No keys.</td></tr>`;
    $$(".rev", main).forEach((b) => b.onclick = async () => { try { await api("/api/v1/api-keys/" + b.closest("tr").dataset.id, { method: "DELETE" }); loadKeys(); } catch (e) { toast(e.message); } });
  };
  onSubmit($("#kf"), async (fd) => {
    const k = await api("/api/v1/api-keys", { method: "POST", json: { name: fd.get("name") } });
    $("#secret").innerHTML = `<p>Copy this key now — it will not be shown again:</p><p class="secret">${esc(k.secret)}</p>`;
    $("#kf").reset(); loadKeys();
  });
  loadKeys().catch((e) => { $("#keys").innerHTML = `<tr><td colspan="5" class="error">${esc(e.message)}</td></tr>`; });
  const loadSessions = async () => {
    const ss = (await api("/api/v1/auth/sessions")).items;
    $("#sessions").innerHTML = ss.map((x) => `<tr data-id="${esc(x.id)}"><td>${fmtDate(x.created_at)}</td><td>${fmtDate(x.last_used_at)}</td>
      <td>${esc(x.client_ip) || "—"}</td><td class="ua">${esc(x.user_agent) || "—"}</td>
      <td>${x.current ? '<span class="badge ok">this session</span>' : `<button class="secondary end" aria-label="Sign out the session from ${esc(x.client_ip || "an unknown address")}, signed in ${esc(fmtDate(x.created_at))}">Sign out</button>`}</td></tr>`).join("")
      || `<tr><td colspan="5">No sessions.</td></tr>`;
    $$(".end", $("#sessions")).forEach((b) => b.onclick = async () => {
      try { await api("/api/v1/auth/sessions/" + encodeURIComponent(b.closest("tr").dataset.id), { method: "DELETE" }); toast("Session ended"); loadSessions(); } catch (e) { toast(e.message); }
    });
  };
  $("#everywhere").onclick = async () => {
    if (!confirm("Sign out of every session, this one included?")) return;
    try {
      const r = await api("/api/v1/auth/sign-out-everywhere", { method: "POST" });
      session.clear(); toast(`Signed out of ${r.sessions_ended} session(s)`); location.hash = "#/login";
    } catch (e) { toast(e.message); }
  };
  loadSessions().catch((e) => { $("#sessions").innerHTML = `<tr><td colspan="5" class="error">${esc(e.message)}</td></tr>`; });
}

/* ---------- admin ---------- */
let jobAbort = null;
async function pageAdmin() {
  const role = session.role;
  if (!["org_admin", "platform_admin", "ml_engineer"].includes(role)) {
    render(`<h1>Admin</h1><p class="error" role="alert">You do not have access to this page.</p>`, "Admin"); return;
  }
  const users = ["org_admin", "platform_admin"].includes(role);
  const models = ["ml_engineer", "platform_admin"].includes(role);
  const adapt = ADAPT_ROLES.includes(role);  // adapt.js
  render(`<h1>Administration</h1>
    ${users ? `<section class="card"><h2>Users</h2>
      <form id="inv" class="row"><div><label for="ie">Invite by e-mail</label><input id="ie" name="email" type="email" required></div>
      <div><label for="ir">Role</label><select id="ir" name="role"><option value="lab_user">lab user</option><option value="org_admin">org admin</option></select></div>
      <div><button type="submit">Send invitation</button></div></form>
      <div class="table-wrap"><table><thead><tr><th scope="col">E-mail</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody id="users"></tbody></table></div></section>
      <section class="card"><h2>Organizations</h2><div class="table-wrap"><table><thead><tr><th scope="col">Name</th><th scope="col">Users</th><th scope="col">Created</th></tr></thead><tbody id="orgs"></tbody></table></div></section>` : ""}
    ${adapt ? adaptPanelHtml() : ""}
    <section class="card"><h2>Model versions</h2><div class="table-wrap"><table><thead id="mhead"></thead><tbody id="models"></tbody></table></div></section>
    ${models ? rolloutPanelHtml() : ""}
    ${models ? `<section class="card"><h2>Training jobs</h2>
      <form id="tf" class="row"><div><label for="td">Data set folder <span class="muted">(training host)</span></label><input id="td" name="data_dir" type="text" maxlength="500" placeholder="/data/pbc_128" title="an ImageFolder tree with splits.csv, as the training service sees it" required></div>
      <div><label for="te">Epochs</label><input id="te" name="epochs" type="number" min="1" max="200" value="5"></div>
      <div><label for="tl">Images per class (0 = all)</label><input id="tl" name="limit_per_class" type="number" min="0" value="0"></div>
      <div><label><input type="checkbox" name="auto_activate"> Activate automatically if it passes the quality gate</label></div>
      <div><button type="submit">Start training</button></div></form>
      <div id="watch" aria-live="polite"></div>
      <div class="table-wrap"><table><thead><tr><th scope="col">Job</th><th scope="col">Status</th><th scope="col">Epoch</th><th scope="col">Metrics</th><th scope="col">Version</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody id="jobs"></tbody></table></div></section>` : ""}`, "Admin");
  const roleOpts = (cur) => ["lab_user", "org_admin", ...(role === "platform_admin" ? ["ml_engineer", "platform_admin"] : [])]
    .map((r) => `<option value="${r}" ${r === cur ? "selected" : ""}>${nice(r)}</option>`).join("");
  const loadUsers = async () => {
    const us = (await api("/api/v1/admin/users?limit=200")).items;
    const locked = (u) => u.locked_until && new Date(u.locked_until) > new Date();
    $("#users").innerHTML = us.map((u) => `<tr data-id="${esc(u.id)}"><td>${esc(u.email)}</td>
      <td><label class="visually-hidden" for="r-${esc(u.id)}">Role of ${esc(u.email)}</label><select id="r-${esc(u.id)}" class="role">${roleOpts(u.role)}</select></td>
      <td>${u.active ? "active" : "deactivated"}${locked(u) ? ` <span class="badge bad" title="too many failed sign-ins">locked until ${esc(fmtDate(u.locked_until))}</span>` : ""}</td>
      <td>${locked(u) ? `<button class="secondary unlock" aria-label="Unlock ${esc(u.email)}">Unlock</button> ` : ""}<button class="secondary act">${u.active ? "Deactivate" : "Reactivate"}</button> <button class="secondary endall" aria-label="Sign ${esc(u.email)} out everywhere">Sign out everywhere</button> <button class="danger del">Delete</button></td></tr>`).join("");
    $$(".unlock", main).forEach((b) => b.onclick = async () => { try { await api(`/api/v1/admin/users/${b.closest("tr").dataset.id}/unlock`, { method: "POST" }); toast("Unlocked"); loadUsers(); } catch (e) { toast(e.message); } });
    $$(".endall", main).forEach((b) => b.onclick = async () => { if (!confirm("End every session of this user?")) return; try { const r = await api(`/api/v1/admin/users/${b.closest("tr").dataset.id}/sign-out-everywhere`, { method: "POST" }); toast(`Ended ${r.sessions_ended} session(s)`); } catch (e) { toast(e.message); } });
    $$(".role", main).forEach((s) => s.onchange = async () => { try { await api(`/api/v1/admin/users/${s.closest("tr").dataset.id}/role`, { method: "POST", json: { role: s.value } }); toast("Role changed"); } catch (e) { toast(e.message); loadUsers(); } });
    $$(".act", main).forEach((b) => b.onclick = async () => { try { await api(`/api/v1/admin/users/${b.closest("tr").dataset.id}/active`, { method: "POST", json: { active: b.textContent === "Reactivate" } }); loadUsers(); } catch (e) { toast(e.message); } });
    $$(".del", main).forEach((b) => b.onclick = async () => { if (!confirm("Delete this user?")) return; try { await api(`/api/v1/admin/users/${b.closest("tr").dataset.id}`, { method: "DELETE" }); loadUsers(); } catch (e) { toast(e.message); } });
  };
  if (users) {
    loadUsers().catch((e) => toast(e.message));
    api("/api/v1/admin/organizations?limit=200").then((o) => { $("#orgs").innerHTML = o.items.map((x) => `<tr><td>${esc(x.name)}</td><td>${x.user_count}</td><td>${fmtDate(x.created_at)}</td></tr>`).join(""); }).catch(() => { });
    onSubmit($("#inv"), async (fd) => { await api("/api/v1/invitations", { method: "POST", json: { email: fd.get("email"), role: fd.get("role") } }); toast("Invitation sent"); $("#inv").reset(); });
  }
  const loadModels = async () => {
    const ms = (await api("/api/v1/models")).items;
    const HEADLINE = ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr_macro", "ece", "nll_after", "review_threshold", "temperature"];
    const present = new Set(ms.flatMap((m) => Object.keys(m.metrics)));
    let keys = HEADLINE.filter((k) => present.has(k));
    if (!keys.length) keys = Array.from(present).sort().slice(0, 8);
    $("#mhead").innerHTML = `<tr><th scope="col">Version</th><th scope="col">Status</th>${keys.map((k) => `<th scope="col">${esc(nice(k))}</th>`).join("")}<th scope="col">Created</th>${models ? '<th scope="col"><span class="visually-hidden">Actions</span></th>' : ""}</tr>`;
    // an organization's adapted version is listed (metadata, metrics) but never activated platform-wide
    const scope = (m) => (m.organization_id ? ' <span class="badge">lab-adapted</span>' : "") + (m.stale ? ' <span class="badge review">stale</span>' : "")
      + (m.deprecated ? ` <span class="badge bad" title="${esc(m.deprecation_reason)}">retired</span>` : "");
    const ids = (m) => `data-v="${esc(m.version)}" data-n="${esc(m.name)}"`;
    // retired: only Restore; the platform's active version cannot be retired (activate another first);
    // an organization's adapted version, serving or not, can (the organization goes back to the one it replaced)
    const actions = (m) => m.deprecated ? `<button class="secondary restore" ${ids(m)}>Restore v${esc(m.version)}</button>`
      : (m.status === "active" || m.organization_id ? "" : `<button class="activate" ${ids(m)}>${m.was_active ? "Roll back to" : "Activate"} v${esc(m.version)}</button> `)
        + (m.status === "active" && !m.organization_id ? "" : `<button class="secondary retire" ${ids(m)}>Retire v${esc(m.version)}</button>`);
    $("#models").innerHTML = ms.map((m) => `<tr><td>${esc(m.name)} v${esc(m.version)}${scope(m)}</td><td>${m.status === "active" ? '<span class="badge ok">active</span>' : esc(m.status)}</td>
      ${keys.map((k) => `<td>${m.metrics[k] == null ? "—" : Number(m.metrics[k]).toFixed(4)}</td>`).join("")}<td>${fmtDate(m.created_at)}</td>
      ${models ? `<td>${actions(m)}</td>` : ""}</tr>`).join("");
    $$(".activate", main).forEach((b) => b.onclick = async () => {
      if (!confirm(`Make ${b.dataset.n} v${b.dataset.v} the active model?`)) return;
      try { await api(`/api/v1/models/${b.dataset.v}/activate`, { method: "POST", json: { name: b.dataset.n, reason: "activated from the admin page" } }); toast(`v${b.dataset.v} is now active`); loadModels(); } catch (e) { toast(e.message); }
    });
    $$(".retire", main).forEach((b) => b.onclick = async () => {
      const reason = (prompt(`Why retire ${b.dataset.n} v${b.dataset.v}? It is shown and audited, and the version is not used again until restored.`) || "").trim();
      if (!reason) return;
      try { await api(`/api/v1/models/${b.dataset.v}/deprecate`, { method: "POST", json: { name: b.dataset.n, reason } }); toast(`v${b.dataset.v} is retired`); loadModels(); } catch (e) { toast(e.message); }
    });
    $$(".restore", main).forEach((b) => b.onclick = async () => {
      if (!confirm(`Restore ${b.dataset.n} v${b.dataset.v}? It can then be activated again.`)) return;
      try { await api(`/api/v1/models/${b.dataset.v}/restore`, { method: "POST", json: { name: b.dataset.n, reason: "restored from the admin page" } }); toast(`v${b.dataset.v} is restored`); loadModels(); } catch (e) { toast(e.message); }
    });
  };
  loadModels().catch((e) => { $("#models").innerHTML = `<tr><td class="error">${esc(e.message)}</td></tr>`; });
  if (models) rolloutPanel($("#rollout"), loadModels).catch((e) => toast(e.message));  // rollouts.js
  if (adapt) adaptPanel($("#adapt")).catch((e) => toast(e.message));
  if (!models) return;
  const loadJobs = async () => {
    const js = (await api("/api/v1/training-jobs?limit=20")).items;
    $("#jobs").innerHTML = js.map((j) => `<tr data-id="${esc(j.id)}">${jobCells(j)}</tr>`).join("") || `<tr><td colspan="6">No jobs yet.</td></tr>`;
    $$("#jobs tr[data-id]", main).forEach(wireJobRow);
  };
  const jobCells = (j) => `<td>${esc(j.id.slice(0, 8))}</td><td>${esc(j.status)}${j.phase && j.phase !== j.status ? " · " + esc(j.phase) : ""}</td><td>${j.epoch}/${j.total_epochs}</td>
      <td>${Object.entries(j.metrics).slice(0, 4).map(([k, v]) => `${esc(k)} ${Number(v).toFixed(3)}`).join(", ")}</td><td>${j.model_version ? "v" + j.model_version : ""}</td>
      <td><button class="secondary watch">Watch</button> ${["queued", "running"].includes(j.status) ? '<button class="danger cancel">Cancel</button>' : ""}</td>`;
  const wireJobRow = (tr) => {
    $(".watch", tr).onclick = () => watch(tr.dataset.id);
    const c = $(".cancel", tr);
    if (c) c.onclick = async () => { try { await api(`/api/v1/training-jobs/${tr.dataset.id}/cancel`, { method: "POST" }); loadJobs(); } catch (e) { toast(e.message); } };
  };
  const watch = (jid) => {
    if (jobAbort) jobAbort.abort();
    jobAbort = new AbortController();
    $("#watch").innerHTML = `<label for="jp">Job ${esc(jid.slice(0, 8))}</label><progress id="jp" max="1" value="0"></progress><p id="js" role="status"></p>`;
    streamEvents(`/api/v1/training-jobs/${jid}/events`, (ev, j) => {
      $("#jp").value = j.total_epochs ? j.epoch / j.total_epochs : 0;
      $("#js").textContent = `${j.status}${j.phase && j.phase !== j.status ? " (" + j.phase + ")" : ""}: epoch ${j.epoch} of ${j.total_epochs}` + (j.error ? ` — ${j.error}` : "");
      // the job's row in the table follows the stream too (else it says "queued" while it trains)
      const tr = $$("#jobs tr[data-id]", main).find((r) => r.dataset.id === j.id);
      if (tr && ev === "progress") { tr.innerHTML = jobCells(j); wireJobRow(tr); }
      if (ev === "done") { loadJobs(); loadModels(); }
    }, jobAbort.signal).catch(() => { });
  };
  onSubmit($("#tf"), async (fd) => {
    const j = await api("/api/v1/training-jobs", { method: "POST", json: { data_dir: String(fd.get("data_dir") || "").trim(), epochs: Number(fd.get("epochs")) || 0, limit_per_class: Number(fd.get("limit_per_class")) || 0, auto_activate: fd.get("auto_activate") === "on" } });
    toast("Training job started"); loadJobs(); watch(j.id);
  });
  loadJobs().catch((e) => toast(e.message));
}

/* ---------- router ---------- */
const PUBLIC = { login: pageLogin, signup: pageSignup, forgot: pageForgot, reset: pageReset, verify: pageVerify, accept: pageAccept };
const PRIVATE = { upload: pageUpload, result: pageResult, history: pageHistory, review: pageReview, dashboard: pageDashboard,
  batches: pageBatches, batch: pageBatch, profile: pageProfile, admin: pageAdmin };

function route() {
  const path = location.pathname;
  if (path === "/verify-email") return (navLinks(), pageVerify());
  if (path === "/reset-password") return (navLinks(), pageReset());
  if (path === "/accept-invitation" || path === "/accept-invite") return (navLinks(), pageAccept());
  const [name, arg] = location.hash.slice(2).split("?")[0].split("/");
  navLinks();
  if (PUBLIC[name]) return PUBLIC[name](arg);
  if (!session.access) { location.hash = "#/login"; return; }
  (PRIVATE[name] || pageUpload)(arg ? decodeURIComponent(arg) : undefined);
}

window.addEventListener("hashchange", () => {
  if (["/verify-email", "/reset-password", "/accept-invitation", "/accept-invite"].includes(location.pathname)) history.replaceState(null, "", "/" + location.hash);
  $("#nav").classList.remove("open");
  route();
});
/* A reload or a new tab: the access token went with the old page; the session cookie brings it back. */
async function start() {
  if (!session.access && csrfToken()) await refreshTokens();
  route();
}
start();
