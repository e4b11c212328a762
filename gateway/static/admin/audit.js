"use strict";
// The Audit page: both services' trails (GET /v1/admin/audit, /v1/admin/promo-audit), newest
// first, filtered by actor, target and time, a page at a time. Uses admin.js's helpers.

const auditState = { page: "" };

function auditParams() {
  const form = $("#audit-filter");
  const params = new URLSearchParams({ pageSize: "50" });
  for (const name of ["actorId", "target"]) {
    const value = form[name].value.trim();
    if (value) params.set(name, value);
  }
  for (const name of ["from", "to"]) {
    if (form[name].value) params.set(name, new Date(form[name].value).toISOString());
  }
  if (auditState.page) params.set("pageToken", auditState.page);
  return params;
}

function renderAudit(events) {
  const body = $("#audit-table tbody");
  for (const event of events) {
    const row = body.insertRow();
    cell(row, new Date(event.at).toLocaleString());
    cell(row, event.actorId ? person(event.actorId) : "(no valid token)");
    cell(row, event.method.split("/").pop());
    cell(row, UUID_RE.test(event.target || "") ? person(event.target) : event.target);
    cell(row, badge(event.outcome), "status");
    cell(row, event.clientAddress);
  }
  named(body);
}

async function loadAudit(reset) {
  const current = ticket("audit");
  if (reset) auditState.page = "";
  const page = await api("GET", `${$("#audit-filter").trail.value}?${auditParams()}`);
  if (!current()) return;
  if (reset) $("#audit-table tbody").textContent = "";
  renderAudit(page.events);
  auditState.page = page.nextPageToken;
  $("#audit-more").hidden = !page.nextPageToken;
}

$("#audit-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadAudit(true).catch((error) => handle(error, event.target));
});
$("#audit-more").addEventListener("click", (e) => loadAudit(false).catch((error) => handle(error, e.target)));
