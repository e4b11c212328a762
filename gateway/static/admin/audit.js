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
    cell(row, event.actorId || "(no valid token)");
    cell(row, event.method.split("/").pop());
    cell(row, event.target);
    cell(row, badge(event.outcome), "status");
    cell(row, event.clientAddress);
  }
}

async function loadAudit(reset) {
  if (reset) { auditState.page = ""; $("#audit-table tbody").textContent = ""; }
  const page = await api("GET", `${$("#audit-filter").trail.value}?${auditParams()}`);
  renderAudit(page.events);
  auditState.page = page.nextPageToken;
  $("#audit-more").hidden = !page.nextPageToken;
}

$("#audit-filter").addEventListener("submit", (event) => { event.preventDefault(); loadAudit(true).catch(handle); });
$("#audit-more").addEventListener("click", () => loadAudit(false).catch(handle));
