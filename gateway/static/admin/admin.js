// The admin console: plain JavaScript over the gateway's /v1 HTTP API (no build step, no CDN).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = {
  token: sessionStorage.getItem("token"), codesPage: "", usersPage: "", usersEmail: "", loads: {},
};

// A list's load: a later load of the same list supersedes one still in flight, so two loads
// racing (a route and a hashchange, say) never both append their rows.
function ticket(name) {
  const n = (state.loads[name] || 0) + 1;
  state.loads[name] = n;
  return () => state.loads[name] === n;
}

// ---- messages, each next to the control that caused it ----------------------

// The message box of a control: inside a form (its last child), right after anything else.
// With no control: under the visible page's title.
function messageBox(near) {
  const anchor = near || $("main > section:not([hidden]) h1") || $("#sign-in");
  if (anchor.matches("form")) {
    let box = $(":scope > output.msg", anchor);
    if (!box) { box = document.createElement("output"); anchor.append(box); }
    return box;
  }
  let box = anchor.nextElementSibling;
  if (!box || !box.matches("output.msg")) { box = document.createElement("output"); anchor.after(box); }
  return box;
}

function say(text, kind = "ok", near = null) {
  const box = messageBox(near);
  box.className = `msg ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.textContent = text;
  return box;
}

// A message with an Undo button in it; `undo` does the undoing and says so itself.
function sayWithUndo(text, near, undo) {
  const box = say(`${text} `, "ok", near);
  const undoButton = button("Undo", async () => {
    undoButton.disabled = true;
    try { await undo(); } catch (error) { handle(error, near); }
  }, "undo secondary");
  box.append(undoButton);
  return box;
}

function clearMessages() {
  for (const box of document.querySelectorAll("output.msg")) { box.textContent = ""; box.className = "msg"; }
}

// A real in-page dialog (not window.confirm): resolves true when confirmed.
function confirmAction(text, confirmLabel = "Confirm") {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-yes").textContent = confirmLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

// ---- the session: the access token renewed with the refresh token --------------

function tokenTimes(token) {
  try {
    const c = claims(token);
    return { exp: c.exp * 1000, life: (c.exp - (c.iat || c.exp)) * 1000 };
  } catch { return { exp: 0, life: 0 }; }
}

// Renew a little before expiry: a fifth of the token's life, at most a minute.
const renewAt = (token) => { const t = tokenTimes(token); return t.exp - Math.min(60000, t.life / 5); };

function keepTokens(tokens) {
  state.token = tokens.accessToken;
  sessionStorage.setItem("token", tokens.accessToken);
  sessionStorage.setItem("refresh", tokens.refreshToken);
  scheduleRenewal();
}

function scheduleRenewal() {
  clearTimeout(state.renewTimer);
  if (!state.token) return;
  const wait = Math.max(0, renewAt(state.token) - Date.now());
  state.renewTimer = setTimeout(() => renewSession().catch(sessionLost), wait);
}

function sessionEnded() {
  const error = new Error("Your session ended; sign in again.");
  error.status = 401;
  error.sessionEnded = true;
  return error;
}

// One renewal at a time (a refresh token is used once: two at once would end the session).
function renewSession() {
  if (!state.renewing) {
    state.renewing = (async () => {
      const refreshToken = sessionStorage.getItem("refresh");
      if (!refreshToken) throw sessionEnded();
      const response = await fetch("/v1/auth/refresh", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refreshToken }),
      }).catch(() => null);
      if (!response || !response.ok) throw sessionEnded();
      keepTokens(await response.json());
    })().finally(() => { state.renewing = null; });
  }
  return state.renewing;
}

function sessionLost() {
  if (!state.token) return;
  signOut(false);
  say("Your session ended; sign in again.", "error", $("#sign-in"));
}

async function fetchOnce(method, path, body, contentType) {
  const headers = { "Content-Type": contentType };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  return fetch(path, { method, headers, body });
}

async function send(method, path, body, contentType = "application/json") {
  const signedIn = Boolean(state.token) && !path.startsWith("/v1/auth/");
  if (signedIn && Date.now() >= renewAt(state.token)) await renewSession();
  let response = await fetchOnce(method, path, body, contentType);
  if (response.status === 401 && signedIn) {  // once: renew, then the same call again
    await renewSession();
    response = await fetchOnce(method, path, body, contentType);
  }
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    const info = (data.details || []).find((d) => d.reason);
    const error = new Error(`${data.message || response.statusText}${info ? ` (${info.reason})` : ""}`);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function api(method, path, body) {
  const response = await send(method, path, body ? JSON.stringify(body) : undefined);
  return response.json().catch(() => ({}));
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

// Money: kopecks as integers (BigInt), never floats.
function minorText(amountMinor, group = "") {
  const k = BigInt(amountMinor || 0);
  const a = k < 0n ? -k : k;
  const whole = (a / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, group);
  return `${k < 0n ? "-" : ""}${whole}.${(a % 100n).toString().padStart(2, "0")}`;
}

const rubles = (money) => (money ? `${minorText(money.amountMinor)} ${money.currency}` : "");
// Roubles as the console shows them: "500 000.00 ₽".
const roubles = (money) => (money ? `${minorText(money.amountMinor, " ")} ₽` : "");

// "500 000", "1234.50", "1234,5" → kopecks as a string, exactly (the text parsed, no floats).
function kopecks(text, field) {
  const clean = String(text).replace(/[\s\u00a0\u202f']/g, "").replace(/(₽|руб\.?|RUB)$/i, "");
  const match = /^(\d{1,15})(?:[.,](\d{1,2}))?$/.exec(clean);
  if (!match) throw new Error(`${field}: enter roubles, e.g. 500 000 or 1234.50`);
  return (BigInt(match[1]) * 100n + BigInt((match[2] || "").padEnd(2, "0"))).toString();
}

const money = (text, field) => ({ amountMinor: kopecks(text, field), currency: "RUB" });

// ---- people: shown by email, the id in the tooltip ------------------------------

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const people = new Map();  // user id → email ("" for a deleted account)

function person(id) {
  const span = document.createElement("span");
  span.className = "person";
  span.dataset.userId = id;
  span.title = id;
  span.textContent = id;
  return span;
}

// Fills in the emails of the people shown under `root` (LookupUsers, 500 ids a call).
async function showPeople(root) {
  const spans = [...root.querySelectorAll("span.person:not(.named)")];
  const wanted = [...new Set(spans.map((s) => s.dataset.userId))].filter((id) => UUID_RE.test(id) && !people.has(id));
  for (let i = 0; i < wanted.length; i += 500) {
    const batch = wanted.slice(i, i + 500);
    const answer = await api("POST", "/v1/admin/users:lookup", { userIds: batch });
    for (const u of answer.users || []) people.set(u.userId, u.email || "");
  }
  for (const span of spans) {
    const email = people.get(span.dataset.userId);
    if (email === undefined) continue;  // not a user (a service account, "migration")
    span.classList.add("named");
    span.textContent = email || "(deleted account)";
  }
}

const named = (root) => showPeople(root).catch(() => {});  // ids stay when the look-up fails

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

function lines(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

function cell(row, value, className) {
  const td = row.insertCell();
  if (value instanceof Node) td.append(value); else td.textContent = value ?? "";
  if (className) td.className = className;
  return td;
}

function badge(text) {
  const span = document.createElement("span");
  span.className = `badge ${text}`;
  span.textContent = text;
  return span;
}

function button(text, onClick, className = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

const statusName = (value, prefix) => String(value || "").replace(prefix, "");

function discountText(spec) {
  if (spec.percentOff) return `${spec.percentOff}% off`;
  if (spec.amountOff) return `${roubles(spec.amountOff)} off`;
  if (spec.fixedPrice) return `price ${roubles(spec.fixedPrice)}`;
  return "";
}

// ---- views -----------------------------------------------------------------

function show(view) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = true;
  $(`#${view}-view`).hidden = false;
}

async function route() {
  clearMessages();
  if (!state.token) { $("#nav").hidden = true; show("sign-in"); return; }
  $("#nav").hidden = false;
  const [view, arg] = location.hash.slice(1).split("/");
  try {
    if (view === "code" && arg) await openCode(decodeURIComponent(arg));
    else if (view === "campaign" && arg) await openCampaign(decodeURIComponent(arg));
    else if (view === "new-campaign") showNewCampaign();
    else if (view === "codes") { show("codes"); await loadCodes(true); }
    else if (view === "users") { show("users"); await loadUsers(true); }
    else if (view === "groups") { show("groups"); await loadGroups(); }
    else if (view === "apply") show("apply");
    else if (view === "referrals") { show("referrals"); await loadReferrals(); }
    else if (view === "audit") { show("audit"); await loadAudit(true); }
    else { show("campaigns"); await loadCampaigns(true); }
  } catch (error) { handle(error); }
}

// An error shown next to the control that caused it; a session that cannot be renewed
// signs out (the only way a session ends besides Sign out).
function handle(error, near = null) {
  if (error.status === 401) { sessionLost(); return; }
  say(error.message, "error", near);
}

// ---- sign in / out -----------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const tokens = await api("POST", "/v1/auth/login", { email: form.email.value, password: form.password.value });
    if (claims(tokens.accessToken).role !== "admin") {
      say("This account is not an administrator.", "error", form);
      return;
    }
    keepTokens(tokens);
    form.reset();
    // Route once: setting a new hash routes (hashchange); an unchanged one does not, so
    // route here only then. (Doing both loaded the list twice: every row shown twice.)
    if (!location.hash || location.hash === "#") location.hash = "#campaigns";
    else await route();
  } catch (error) { say(`Sign-in failed: ${error.message}`, "error", form); }
}

function signOut(tellServer = true) {
  const refresh = sessionStorage.getItem("refresh");
  if (tellServer && refresh) api("POST", "/v1/auth/logout", { refreshToken: refresh }).catch(() => {});
  clearTimeout(state.renewTimer);
  state.token = null;
  sessionStorage.clear();
  route();
  say("Signed out.", "ok", $("#sign-in"));
}

// ---- promo codes ---------------------------------------------------------------

async function loadCodes(reset) {
  const form = $("#code-search");
  const current = ticket("codes");
  if (reset) state.codesPage = "";
  const params = new URLSearchParams({ pageSize: "25", query: form.query.value });
  if (form.status.value) params.set("status", `PROMO_CODE_STATUS_${form.status.value}`);
  if (state.codesPage) params.set("pageToken", state.codesPage);
  const page = await api("GET", `/v1/admin/promocodes?${params}`);
  if (!current()) return;
  const body = $("#codes-table tbody");
  if (reset) body.textContent = "";
  for (const code of page.promoCodes) {
    const row = body.insertRow();
    const link = document.createElement("a");
    link.href = `#code/${encodeURIComponent(code.code)}`;
    link.textContent = code.code;
    cell(row, link);
    cell(row, badge(statusName(code.status, "PROMO_CODE_STATUS_")));
    cell(row, discountText(code.spec));
    cell(row, code.usesTaken);
    cell(row, code.usesLeft ?? "unlimited");
    const actions = cell(row, "");
    if (!code.deactivated) actions.append(button("Deactivate", (e) => deactivate(code.code, e.target), "secondary"));
  }
  state.codesPage = page.nextPageToken;
  $("#codes-more").hidden = !page.nextPageToken;
}

function specFrom(form) {
  const spec = {
    maxUses: Number(form.maxUses.value || 0),
    perUserLimit: Number(form.perUserLimit.value || 0),
    tariffIds: lines(form.tariffIds.value),
    allUsers: form.allUsers.checked,
    userIds: lines(form.userIds.value),
    groupIds: lines(form.groupIds.value),
    description: form.description.value,
  };
  spec[form.kind.value] = form.kind.value === "percentOff" ? Number(form.value.value || 0) : money(form.value.value, "Value");
  if (form.startsAt.value) spec.startsAt = new Date(form.startsAt.value).toISOString();
  if (form.endsAt.value) spec.endsAt = new Date(form.endsAt.value).toISOString();
  return { ...spec, ...campaignRules(form) };
}

function campaignRules(form) {
  const rules = {
    duration: form.duration.value,
    durationPeriods: Number(form.durationPeriods.value || 0),
    firstPurchaseOnly: form.firstPurchaseOnly.checked,
  };
  const labels = { maxDiscount: "Percent cap", budget: "Budget", minPrice: "Minimum tariff price" };
  for (const name of ["maxDiscount", "budget", "minPrice"]) {
    if (form[name] && form[name].value.trim() !== "") rules[name] = money(form[name].value, labels[name]);
  }
  return rules;
}

function durationText(spec) {
  const name = statusName(spec.duration, "DURATION_");
  if (name === "REPEATING") return `${spec.durationPeriods} periods`;
  return name === "FOREVER" ? "forever" : "once";
}

async function exportCodes() {
  const form = $("#code-search");
  const params = new URLSearchParams({ query: form.query.value });
  if (form.status.value) params.set("status", `PROMO_CODE_STATUS_${form.status.value}`);
  try {
    const response = await send("GET", `/v1/admin/promocodes:export?${params}`);
    download(await response.blob(), "promo-codes-export.csv");
    say("Exported the codes found.", "ok", $("#export-codes"));
  } catch (error) { handle(error, $("#export-codes")); }
}

async function importCodes() {
  const file = $("#import-file").files[0];
  if (!file) { say("Choose a CSV file first.", "error", $("#import-codes")); return; }
  try {
    const response = await send("POST", "/v1/admin/promocodes:import", await file.text(), "text/csv");
    showImport(await response.json());
    await loadCodes(true);
  } catch (error) { handle(error, $("#import-codes")); }
}

function showImport(answer) {
  const table = $("#import-table");
  const body = $("#import-table tbody");
  body.textContent = "";
  for (const r of answer.results) {
    const row = body.insertRow();
    row.dataset.row = r.row;
    cell(row, r.row);
    cell(row, r.code);
    if (r.created) cell(row, "created", "ok");
    else cell(row, `failed: ${r.reason} ${r.message}`, "failed");
  }
  table.hidden = !answer.results.length;
  $("#import-summary").textContent = `Imported ${answer.created || 0}, failed ${answer.failed || 0}.`;
}

async function createCode(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const created = await api("POST", "/v1/admin/promocodes", { ...specFrom(form), code: form.code.value });
    say(`Created ${created.code}.`, "ok", form);
    await loadCodes(true);
  } catch (error) { handle(error, form); }
}

async function generate() {
  const form = $("#create-code");
  try {
    const made = await api("POST", "/v1/admin/promocodes:generate", {
      spec: specFrom(form), count: Number(form.count.value || 0), prefix: form.prefix.value,
    });
    const csv = "code\n" + made.codes.join("\n") + "\n";
    download(new Blob([csv], { type: "text/csv" }), `promo-codes-${made.codes.length}.csv`);
    say(`Generated ${made.codes.length} codes.`, "ok", form);
    await loadCodes(true);
  } catch (error) { handle(error, form); }
}

const codePath = (code) => `/v1/admin/promocodes/${encodeURIComponent(code)}`;

// Deactivate after a confirmation; the message beside `near` offers Undo (reactivate).
// `after(promo)` redraws what shows the code.
async function deactivate(code, near, after = () => route()) {
  if (!await confirmAction(`Deactivate ${code}? It stops working at once; you can reactivate it.`, "Deactivate")) return;
  try {
    await api("POST", `${codePath(code)}/deactivate`, {});
    const place = (await after(await api("GET", codePath(code)))) || near;
    sayWithUndo(`Deactivated ${code}.`, place, async () => {
      const promo = await api("POST", `${codePath(code)}:reactivate`, {});
      say(`Reactivated ${code}.`, "ok", (await after(promo)) || place);
    });
  } catch (error) { handle(error, near); }
}

// ---- one code's page -------------------------------------------------------------

function cards(root, entries) {
  root.textContent = "";
  for (const [label, value] of entries) {
    const card = document.createElement("div");
    card.className = "card";
    const b = document.createElement("b");
    b.textContent = value;
    card.append(b, document.createTextNode(label));
    root.append(card);
  }
}

async function openCode(code) {
  show("code");
  const path = `/v1/admin/promocodes/${encodeURIComponent(code)}`;
  const [promo, report, rejected] = await Promise.all([
    api("GET", path), api("GET", `${path}/report`),
    api("GET", `/v1/admin/rejections?${new URLSearchParams({ code, pageSize: "50" })}`),
  ]);
  $("#code-title").textContent = promo.code;
  const spec = promo.spec;
  cards($("#code-settings"), [
    ["status", statusName(promo.status, "PROMO_CODE_STATUS_")], ["discount", discountText(spec)],
    ["uses taken", report.usesTaken], ["uses left", report.usesLeft ?? "unlimited"],
    ["per-user limit", spec.perUserLimit || "unlimited"], ["tariffs", spec.tariffIds.join(", ") || "all"],
    ["audience", spec.allUsers ? "all users" : `${spec.userIds.length} users, ${spec.groupIds.length} groups`],
    ["starts", spec.startsAt || "—"], ["ends", spec.endsAt || "—"],
    ["discount lasts", durationText(spec)], ["percent cap", rubles(spec.maxDiscount) || "none"],
    ["minimum price", rubles(spec.minPrice) || "none"], ["first purchase only", spec.firstPurchaseOnly ? "yes" : "no"],
  ]);
  budgetBar(report);
  dailyChart(report.daily || [], $("#daily-chart"));
  $("#deactivate").hidden = promo.deactivated;
  $("#deactivate").onclick = () => deactivate(promo.code, $("#deactivate"));
  const byStatus = Object.entries(report.purchasesByStatus || {});
  cards($("#purchases-by-status"), byStatus);
  if (!byStatus.length) $("#purchases-by-status").textContent = "No purchases yet.";
  const chart = $("#rejections-chart");
  chart.textContent = "";
  const reasons = Object.entries(report.rejectionsByReason || {}).sort((a, b) => Number(b[1]) - Number(a[1]));
  const most = Math.max(1, ...reasons.map(([, n]) => Number(n)));
  if (!reasons.length) chart.textContent = "No rejected attempts.";
  for (const [reason, count] of reasons) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.reason = reason;
    const label = document.createElement("span"); label.textContent = reason;
    const track = document.createElement("span");
    const fill = document.createElement("span"); fill.className = "fill";
    fill.style.width = `${(Number(count) / most) * 100}%`;
    track.append(fill);
    const number = document.createElement("span"); number.className = "count"; number.textContent = count;
    bar.append(label, track, number);
    chart.append(bar);
  }
  const body = $("#rejections-table tbody");
  body.textContent = "";
  for (const r of rejected.rejections) {
    const row = body.insertRow();
    cell(row, new Date(r.occurredAt).toLocaleString());
    cell(row, person(r.userId));
    cell(row, r.tariffId);
    cell(row, r.reason);
  }
  named(body);
}

function budgetBar(report) {
  const bar = $("#budget-bar");
  const granted = Number(report.discountGranted?.amountMinor || 0);
  const budget = report.budget ? Number(report.budget.amountMinor) : 0;
  const share = budget ? Math.min(granted / budget, 1) : 0;
  $(".fill", bar).style.width = `${share * 100}%`;
  bar.classList.toggle("full", budget > 0 && granted >= budget);
  bar.hidden = !budget;
  bar.setAttribute("aria-valuemax", String(budget));
  bar.setAttribute("aria-valuenow", String(granted));
  $("#budget-text").textContent = budget
    ? `${rubles(report.discountGranted)} of ${rubles(report.budget)} granted (${Math.round(share * 100)}%)`
    : `No budget; ${rubles(report.discountGranted) || "0.00 RUB"} granted.`;
}

const SERIES = ["uses", "confirms", "cancels", "rejections"];
const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  parent.append(node);
  return node;
}

// Grouped bars per UTC day, built as SVG nodes (no inline script or style: CSP-safe).
function dailyChart(days, root) {
  root.textContent = "";
  if (!days.length) { root.textContent = "No activity yet."; return; }
  const slot = 60, height = 160, bar = 11;
  const most = Math.max(1, ...days.flatMap((d) => SERIES.map((s) => Number(d[s] || 0))));
  // At least 12 days wide, so a few days keep their bars narrow and their labels small.
  const width = Math.max(days.length, 12) * slot + 10;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 34}`, role: "img", preserveAspectRatio: "xMinYMid meet" }, root);
  svg("title", {}, chart).textContent = "Uses, confirms, cancels and rejections per UTC day";
  days.forEach((day, index) => {
    const group = svg("g", { class: "day", "data-date": day.date }, chart);
    SERIES.forEach((series, n) => {
      const value = Number(day[series] || 0);
      const tall = (value / most) * height;
      const rect = svg("rect", {
        class: series, "data-value": value, x: index * slot + 8 + n * bar, y: height - tall, width: bar - 2, height: tall,
      }, group);
      svg("title", {}, rect).textContent = `${day.date} ${series}: ${value}`;
    });
    const label = svg("text", { x: index * slot + 8, y: height + 14 }, group);
    label.textContent = day.date.slice(5);
    const granted = svg("text", { class: "granted", x: index * slot + 8, y: height + 28 }, group);
    granted.textContent = rubles(day.discountGranted).replace(" RUB", " ₽");
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const series of SERIES) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.className = series;
    item.append(swatch, document.createTextNode(series));
    legend.append(item);
  }
  root.append(legend);
}

// ---- users and groups -------------------------------------------------------------

async function loadUsers(reset) {
  const current = ticket("users");
  if (reset) state.usersPage = "";
  const params = new URLSearchParams({ pageSize: "50" });
  if (state.usersEmail) params.set("email", state.usersEmail);
  if (state.usersPage) params.set("pageToken", state.usersPage);
  const page = await api("GET", `/v1/admin/users?${params}`);
  if (!current()) return;
  if (reset) $("#users-table tbody").textContent = "";
  renderUsers(page.users);
  state.usersPage = page.nextPageToken;
  $("#users-more").hidden = !page.nextPageToken;
}

function renderUsers(users) {
  const body = $("#users-table tbody");
  for (const user of users) {
    const row = body.insertRow();
    row.dataset.userId = user.userId;
    const status = statusName(user.status, "USER_STATUS_");
    cell(row, user.email);
    cell(row, user.userId);
    cell(row, statusName(user.role, "ROLE_").toLowerCase());
    cell(row, badge(status), "status");
    const next = status === "BLOCKED" ? "ACTIVE" : "BLOCKED";
    cell(row, status === "DELETED" ? "" : button(status === "BLOCKED" ? "Unblock" : "Block", (e) => setStatus(user.userId, next, e.target), "secondary"));
  }
}

// By id (exactly), or by email: the accounts whose email starts with what was typed.
async function findUser(event) {
  event.preventDefault();
  const form = event.target;
  const who = form.who.value.trim();
  try {
    if (UUID_RE.test(who)) {
      const user = await api("GET", `/v1/admin/users/${encodeURIComponent(who)}`);
      ticket("users");
      $("#users-table tbody").textContent = "";
      $("#users-more").hidden = true;
      renderUsers([user]);
      say("Found 1 user.", "ok", form);
      return;
    }
    state.usersEmail = who;
    await loadUsers(true);
    const count = $("#users-table tbody").rows.length;
    say(count ? `Found ${count}${$("#users-more").hidden ? "" : "+"} users whose email starts with ${who}.` : `No user's email starts with ${who}.`, count ? "ok" : "error", form);
  } catch (error) { handle(error, form); }
}

async function setStatus(userId, status, near) {
  try {
    await api("POST", `/v1/admin/users/${userId}/status`, { status: `USER_STATUS_${status}`, reason: "admin console" });
    const row = $(`#users-table tr[data-user-id="${userId}"]`);
    const user = await api("GET", `/v1/admin/users/${userId}`);
    renderUsers([user]);  // appended last: put it in place of the old row
    const added = $("#users-table tbody").lastElementChild;
    if (row) row.replaceWith(added);
    say(`User ${status === "BLOCKED" ? "blocked" : "unblocked"}.`, "ok", $("button", added) || near);
  } catch (error) { handle(error, near); }
}

async function loadGroups() {
  const page = await api("GET", "/v1/admin/groups?pageSize=100");
  const body = $("#groups-table tbody");
  body.textContent = "";
  for (const group of page.groups) {
    const row = body.insertRow();
    cell(row, group.name);
    cell(row, group.groupId);
    cell(row, group.memberCount);
  }
}

async function createGroup(event) {
  event.preventDefault();
  try {
    const group = await api("POST", "/v1/admin/groups", { name: event.target.name.value });
    say(`Created group ${group.name}.`, "ok", event.target);
    await loadGroups();
  } catch (error) { handle(error, event.target); }
}

async function changeMembers(add) {
  const form = $("#members");
  const groupId = form.groupId.value.trim();
  try {
    const group = await api("POST", `/v1/admin/groups/${groupId}/members:${add ? "add" : "remove"}`, { userIds: lines(form.userIds.value) });
    say(`${group.name} has ${group.memberCount} members.`, "ok", form);
    await loadGroups();
  } catch (error) { handle(error, form); }
}

// ---- bulk apply ---------------------------------------------------------------------

async function bulkApply(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const result = await api("POST", `/v1/admin/promocodes/${encodeURIComponent(form.code.value.trim())}/apply`, {
      tariffId: form.tariffId.value, userIds: lines(form.userIds.value), groupIds: lines(form.groupIds.value),
    });
    const body = $("#apply-table tbody");
    body.textContent = "";
    let applied = 0;
    for (const r of result.results) {
      const row = body.insertRow();
      row.dataset.userId = r.userId;
      cell(row, person(r.userId));
      if (r.purchase) { applied += 1; cell(row, `applied: purchase ${r.purchase.purchaseId}`, "ok"); }
      else cell(row, `failed: ${r.reason}`, "failed");
    }
    const total = result.results.length;
    $("#apply-summary").textContent = applied === total ? `Applied for all ${total} users.` : `Partial success: applied for ${applied} of ${total} users.`;
    named(body);
  } catch (error) { handle(error, form); }
}

// ---- referral program ----------------------------------------------------------------

function bars(root, counts, emptyText) {
  root.textContent = "";
  const entries = Object.entries(counts || {}).sort((a, b) => Number(b[1]) - Number(a[1]));
  const most = Math.max(1, ...entries.map(([, n]) => Number(n)));
  if (!entries.length) root.textContent = emptyText;
  for (const [reason, count] of entries) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.reason = reason;
    const label = document.createElement("span"); label.textContent = reason;
    const track = document.createElement("span");
    const fill = document.createElement("span"); fill.className = "fill";
    fill.style.width = `${(Number(count) / most) * 100}%`;
    track.append(fill);
    const number = document.createElement("span"); number.className = "count"; number.textContent = count;
    bar.append(label, track, number);
    root.append(bar);
  }
}

const DISCOUNT_KINDS = ["percentOff", "amountOff", "fixedPrice"];

function discountInput(kind, value, field) {
  return kind === "percentOff" ? { percentOff: Number(value) } : { [kind]: money(value, field) };
}

function showDiscount(form, prefix, discount) {
  const kind = DISCOUNT_KINDS.find((k) => discount && discount[k] !== undefined) || "percentOff";
  form[`${prefix}Kind`].value = kind;
  const value = discount ? discount[kind] : 0;
  form[`${prefix}Value`].value = kind === "percentOff" ? value : minorText(value.amountMinor);
}

async function loadReferrals() {
  const [program, report] = await Promise.all([
    api("GET", "/v1/admin/referral-program"), api("GET", "/v1/admin/referral-report"),
  ]);
  const form = $("#referral-program");
  form.enabled.checked = Boolean(program.enabled);
  showDiscount(form, "referee", program.referee);
  showDiscount(form, "reward", program.reward);
  form.rewardValidDays.value = program.rewardValidDays;
  form.maxRewardsPerReferrer.value = program.maxRewardsPerReferrer || 0;
  form.maxRewardsPerReferrerPerDay.value = program.maxRewardsPerReferrerPerDay || 0;
  form.rewardHoldSeconds.value = program.rewardHoldSeconds || 0;
  cards($("#referral-totals"), [
    ["started", report.referralsStarted || 0], ["completed", report.referralsCompleted || 0],
    ["given back", report.referralsGivenBack || 0], ["rewards issued", report.rewardsIssued || 0],
  ]);
  bars($("#reward-states-chart"), report.rewardsByState, "No confirmed referrals yet.");
  bars($("#withheld-chart"), report.rewardsWithheldByReason, "No reward withheld.");
  bars($("#referral-rejections-chart"), report.rejectionsByReason, "No refused referral uses.");
  const body = $("#top-referrers tbody");
  body.textContent = "";
  for (const t of report.topReferrers || []) {
    const row = body.insertRow();
    row.dataset.userId = t.userId;
    cell(row, person(t.userId)); cell(row, t.code); cell(row, t.referredCount || 0); cell(row, t.rewardsIssued || 0);
  }
  if (!(report.topReferrers || []).length) cell(body.insertRow(), "No referrals yet.");
  named(body);
  await loadHeldReferrals();
}

const SIGNALS = { REFERRAL_SIGNAL_SAME_ADDRESS: "same address", REFERRAL_SIGNAL_MUTUAL_REFERRAL: "mutual referral" };

async function loadHeldReferrals() {
  const page = await api("GET", "/v1/admin/referrals:held?pageSize=100");
  const body = $("#held-referrals tbody");
  body.textContent = "";
  for (const r of page.referrals || []) {
    const row = body.insertRow();
    row.dataset.referralId = r.referralId;
    cell(row, r.createdAt || ""); cell(row, SIGNALS[r.signal] || r.signal || "");
    cell(row, person(r.referrerId)); cell(row, person(r.refereeId)); cell(row, r.code);
    const actions = row.insertCell();
    for (const [label, approve] of [["Approve", true], ["Reject", false]]) {
      actions.append(button(label, (e) => reviewReferral(r.referralId, approve, e.target)));
    }
  }
  if (!(page.referrals || []).length) cell(body.insertRow(), "No referral is held for review.");
  named(body);
}

async function reviewReferral(referralId, approve, near) {
  const what = approve ? "Approve this referral and release its reward now?" : "Reject this referral? Its referrer gets no reward.";
  if (!await confirmAction(what, approve ? "Approve" : "Reject")) return;
  try {
    const done = await api("POST", `/v1/admin/referrals/${encodeURIComponent(referralId)}:review`, { approve });
    const state = String(done.state || "").replace("REFERRAL_REWARD_STATE_", "");
    await loadReferrals();
    say(approve ? `Referral approved: ${state}.` : `Referral rejected: ${state}.`, "ok", $("#held-referrals"));
  } catch (error) { handle(error, near); }
}

async function saveReferralProgram(event) {
  event.preventDefault();
  const form = event.target;
  try {
    await api("PUT", "/v1/admin/referral-program", {
      enabled: form.enabled.checked,
      referee: discountInput(form.refereeKind.value, form.refereeValue.value, "New user's discount"),
      reward: discountInput(form.rewardKind.value, form.rewardValue.value, "Referrer's reward"),
      rewardValidDays: Number(form.rewardValidDays.value),
      maxRewardsPerReferrer: Number(form.maxRewardsPerReferrer.value),
      maxRewardsPerReferrerPerDay: Number(form.maxRewardsPerReferrerPerDay.value),
      rewardHoldSeconds: String(Number(form.rewardHoldSeconds.value)),
    });
    await loadReferrals();
    say("Referral program saved.", "ok", form);
  } catch (error) { handle(error, form); }
}

// ---- wiring ---------------------------------------------------------------------------

$("#sign-in").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", signOut);
$("#code-search").addEventListener("submit", (e) => { e.preventDefault(); loadCodes(true).catch((error) => handle(error, e.target)); });
$("#codes-more").addEventListener("click", (e) => loadCodes(false).catch((error) => handle(error, e.target)));
$("#create-code").addEventListener("submit", createCode);
$("#generate").addEventListener("click", generate);
$("#export-codes").addEventListener("click", exportCodes);
$("#import-codes").addEventListener("click", importCodes);
$("#users-more").addEventListener("click", (e) => loadUsers(false).catch((error) => handle(error, e.target)));
$("#user-find").addEventListener("submit", findUser);
$("#users-all").addEventListener("click", () => {
  $("#user-find").reset();
  state.usersEmail = "";
  loadUsers(true).catch((error) => handle(error, $("#user-find")));
});
$("#create-group").addEventListener("submit", createGroup);
$("#members").addEventListener("submit", (e) => { e.preventDefault(); changeMembers(true); });
$("#remove-members").addEventListener("click", () => changeMembers(false));
$("#bulk-apply").addEventListener("submit", bulkApply);
$("#referral-program").addEventListener("submit", saveReferralProgram);
window.addEventListener("hashchange", () => route());
// After every script of the page (campaigns.js, audit.js) has defined its part.
document.addEventListener("DOMContentLoaded", () => { scheduleRenewal(); route(); });
