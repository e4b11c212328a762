"use strict";
// Campaigns: the list (search, status, creation dates, sorting), the "New campaign" form, and a
// campaign's page (settings, pause/resume/end with confirmation and undo, budget bar, report
// for a date range with its daily chart and reasons, codes paged with deactivate/undo, the
// "Add codes" form, CSV downloads and the history). Uses admin.js's helpers.

const campaignState = { page: "", rows: [], current: null, codesPage: "" };
const campaignPath = (id) => `/v1/admin/campaigns/${encodeURIComponent(id)}`;
const campaignStatus = (c) => statusName(c.status, "CAMPAIGN_STATUS_");
const day = (timestamp) => (timestamp ? timestamp.slice(0, 10) : "—");

// ---- the list --------------------------------------------------------------------

function campaignParams() {
  const form = $("#campaign-search");
  const params = new URLSearchParams({ pageSize: "50" });
  if (form.query.value.trim()) params.set("query", form.query.value.trim());
  if (form.status.value) params.set("status", form.status.value);
  if (form.from.value) params.set("createdFrom", `${form.from.value}T00:00:00Z`);
  if (form.to.value) params.set("createdTo", `${form.to.value}T23:59:59.999Z`);
  if (campaignState.page) params.set("pageToken", campaignState.page);
  return params;
}

async function loadCampaigns(reset) {
  const current = ticket("campaigns");
  if (reset) campaignState.page = "";
  const page = await api("GET", `/v1/admin/campaigns?${campaignParams()}`);
  if (!current()) return;
  campaignState.rows = reset ? page.campaigns : [...campaignState.rows, ...page.campaigns];
  campaignState.page = page.nextPageToken;
  $("#campaigns-more").hidden = !page.nextPageToken;
  renderCampaigns();
}

const SORTS = {
  newest: (a, b) => (b.createdAt || "").localeCompare(a.createdAt || ""),
  name: (a, b) => a.name.localeCompare(b.name, undefined, { sensitivity: "base" }),
  // Campaigns without a start (or an end) come last.
  start: (a, b) => (a.rules?.startsAt || "~").localeCompare(b.rules?.startsAt || "~"),
  end: (a, b) => (a.rules?.endsAt || "~").localeCompare(b.rules?.endsAt || "~"),
};

function budgetUsed(campaign) {
  if (!campaign.budget) return document.createTextNode(`${roubles(campaign.budgetSpent) || "0.00 ₽"} (no budget)`);
  const box = document.createElement("span");
  box.className = "budget-used";
  const meter = document.createElement("span");
  meter.className = "meter small";
  const fill = document.createElement("span");
  fill.className = "fill";
  const spent = BigInt(campaign.budgetSpent?.amountMinor || 0);
  const budget = BigInt(campaign.budget.amountMinor);
  fill.style.width = `${budget > 0n ? Number((spent * 1000n) / budget) / 10 : 0}%`;
  meter.append(fill);
  box.append(meter, document.createTextNode(`${roubles(campaign.budgetSpent) || "0.00 ₽"} of ${roubles(campaign.budget)}`));
  return box;
}

function renderCampaigns() {
  const body = $("#campaigns-table tbody");
  body.textContent = "";
  const rows = [...campaignState.rows].sort(SORTS[$("#campaign-search").sort.value] || SORTS.newest);
  for (const campaign of rows) {
    const row = body.insertRow();
    row.dataset.campaignId = campaign.campaignId;
    const link = document.createElement("a");
    link.href = `#campaign/${campaign.campaignId}`;
    link.textContent = campaign.name;
    cell(row, link, "name");
    cell(row, badge(campaignStatus(campaign)), "status");
    cell(row, discountText(campaign.rules || {}));
    cell(row, day(campaign.rules?.startsAt), "starts");
    cell(row, day(campaign.rules?.endsAt), "ends");
    cell(row, campaign.codeCount || "0", "codes");
    cell(row, campaign.maxUses ? `${campaign.usesTaken || 0} of ${campaign.maxUses}` : campaign.usesTaken || "0", "uses");
    cell(row, budgetUsed(campaign), "budget");
    cell(row, day(campaign.createdAt));
  }
  if (!rows.length) cell(body.insertRow(), "No campaign found.");
}

// ---- a new campaign ------------------------------------------------------------------

function showNewCampaign() {
  show("new-campaign");
  $("#new-campaign [name=name]").focus();
}

function campaignSpec(form) {
  const rules = {
    tariffIds: lines(form.tariffIds.value),
    perUserLimit: Number(form.perUserLimit.value || 0),
    allUsers: form.allUsers.checked,
    groupIds: lines(form.groupIds.value),
    ...campaignRules(form),
  };
  delete rules.budget;  // the campaign's, below
  rules[form.kind.value] = form.kind.value === "percentOff" ? Number(form.value.value || 0) : money(form.value.value, "Value");
  if (form.startsAt.value) rules.startsAt = new Date(form.startsAt.value).toISOString();
  if (form.endsAt.value) rules.endsAt = new Date(form.endsAt.value).toISOString();
  const spec = { name: form.name.value.trim(), description: form.description.value, rules, maxUses: Number(form.maxUses.value || 0) };
  if (form.budget.value.trim()) spec.budget = money(form.budget.value, "Budget");
  return spec;
}

async function createCampaign(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const campaign = await api("POST", "/v1/admin/campaigns", campaignSpec(form));
    form.reset();  // the next campaign starts from an empty form
    campaignState.flash = `Created ${campaign.name}. Add its codes below.`;
    location.hash = `#campaign/${campaign.campaignId}`;
  } catch (error) { handle(error, form); }
}

// ---- a campaign's page ---------------------------------------------------------------------

function utcDay(offsetDays) {
  return new Date(Date.now() + offsetDays * 86400000).toISOString().slice(0, 10);
}

async function openCampaign(id) {
  show("campaign");
  if (campaignState.current?.campaignId !== id) {
    $("#add-codes").reset();  // never what another campaign's form held
    const range = $("#campaign-range");
    range.from.value = utcDay(-29);
    range.to.value = utcDay(0);
  }
  const [campaign] = await Promise.all([api("GET", campaignPath(id)), loadCampaignCodes(id, true)]);
  showCampaign(campaign);
  await Promise.all([loadCampaignReport(), loadCampaignAudit()]);
  if (campaignState.flash) { say(campaignState.flash, "ok", $("#add-codes")); campaignState.flash = ""; }
}

function showCampaign(campaign) {
  campaignState.current = campaign;
  const status = campaignStatus(campaign);
  $("#campaign-title").textContent = campaign.name;
  const rules = campaign.rules || {};
  cards($("#campaign-settings"), [
    ["status", status], ["discount", discountText(rules)], ["discount lasts", durationText(rules)],
    ["codes", campaign.codeCount || "0"], ["uses taken", campaign.usesTaken || "0"],
    ["uses left", campaign.usesLeft ?? "unlimited"], ["per-user limit", rules.perUserLimit || "unlimited"],
    ["tariffs", (rules.tariffIds || []).join(", ") || "all"], ["starts", day(rules.startsAt)], ["ends", day(rules.endsAt)],
    ["percent cap", roubles(rules.maxDiscount) || "none"], ["minimum price", roubles(rules.minPrice) || "none"],
    ["first purchase only", rules.firstPurchaseOnly ? "yes" : "no"], ["created", day(campaign.createdAt)],
  ]);
  const by = document.createElement("div");
  by.className = "card";
  const who = document.createElement("b");
  who.append(campaign.createdBy ? person(campaign.createdBy) : "—");
  by.append(who, document.createTextNode("created by"));
  $("#campaign-settings").append(by);
  named($("#campaign-settings"));
  $("#campaign-pause").hidden = status !== "ACTIVE";
  $("#campaign-resume").hidden = status !== "PAUSED";
  $("#campaign-end").hidden = status === "ENDED";
  $("#add-codes").hidden = status === "ENDED";
  campaignBudget(campaign);
}

function campaignBudget(campaign) {
  const bar = $("#campaign-budget-bar");
  const spent = BigInt(campaign.budgetSpent?.amountMinor || 0);
  const budget = campaign.budget ? BigInt(campaign.budget.amountMinor) : 0n;
  const permille = budget > 0n ? Number(((spent > budget ? budget : spent) * 1000n) / budget) : 0;
  $(".fill", bar).style.width = `${permille / 10}%`;
  bar.classList.toggle("full", budget > 0n && spent >= budget);
  bar.hidden = budget === 0n;
  bar.setAttribute("aria-valuemax", budget.toString());
  bar.setAttribute("aria-valuenow", spent.toString());
  $("#campaign-budget-text").textContent = budget
    ? `${roubles(campaign.budgetSpent) || "0.00 ₽"} of ${roubles(campaign.budget)} spent (${Math.round(permille / 10)}%); ${roubles({ amountMinor: (budget > spent ? budget - spent : 0n).toString() })} left`
    : `No budget; ${roubles(campaign.budgetSpent) || "0.00 ₽"} spent.`;
}

async function loadCampaignReport() {
  const id = campaignState.current.campaignId;
  const range = $("#campaign-range");
  const params = new URLSearchParams();
  if (range.from.value) params.set("from", range.from.value);
  if (range.to.value) params.set("to", range.to.value);
  const report = await api("GET", `${campaignPath(id)}/report?${params}`);
  range.from.value = report.from;
  range.to.value = report.to;
  cards($("#campaign-totals"), [
    ["uses", report.uses || "0"], ["confirms", report.confirms || "0"], ["cancels", report.cancels || "0"],
    ["refunds", report.refunds || "0"], ["discount granted", roubles(report.discountGranted) || "0.00 ₽"],
  ]);
  dailyChart(report.daily || [], $("#campaign-chart"));
  bars($("#campaign-reasons"), report.rejectionsByReason, "No rejected attempts in this range.");
}

function renderCampaignCode(row, code) {
  row.textContent = "";
  row.dataset.code = code.code;
  const link = document.createElement("a");
  link.href = `#code/${encodeURIComponent(code.code)}`;
  link.textContent = code.code;
  cell(row, link);
  cell(row, badge(statusName(code.status, "PROMO_CODE_STATUS_")), "status");
  cell(row, code.usesTaken || "0");
  cell(row, code.usesLeft ?? "unlimited");
  const actions = cell(row, "", "actions");
  const ended = campaignStatus(campaignState.current || {}) === "ENDED";
  if (!code.deactivated) {
    actions.append(button("Deactivate", (e) => deactivate(code.code, e.target, async (promo) => {
      renderCampaignCode(row, promo);
      return $("button", row);
    }), "secondary"));
  } else if (!ended) {
    actions.append(button("Reactivate", (e) => reactivate(code.code, row, e.target), "secondary"));
  }
}

async function reactivate(code, row, near) {
  try {
    renderCampaignCode(row, await api("POST", `${codePath(code)}:reactivate`, {}));
    say(`Reactivated ${code}.`, "ok", $("button", row));
  } catch (error) { handle(error, near); }
}

async function loadCampaignCodes(id, reset) {
  const current = ticket("campaign-codes");
  if (reset) campaignState.codesPage = "";
  const params = new URLSearchParams({ pageSize: "25" });
  if (campaignState.codesPage) params.set("pageToken", campaignState.codesPage);
  const page = await api("GET", `${campaignPath(id)}/codes?${params}`);
  if (!current()) return;
  const body = $("#campaign-codes tbody");
  if (reset) body.textContent = "";
  for (const code of page.promoCodes) renderCampaignCode(body.insertRow(), code);
  if (reset && !page.promoCodes.length) cell(body.insertRow(), "No codes yet: add them below.");
  campaignState.codesPage = page.nextPageToken;
  $("#campaign-codes-more").hidden = !page.nextPageToken;
}

async function loadCampaignAudit() {
  const id = campaignState.current.campaignId;
  const page = await api("GET", `${campaignPath(id)}/audit?pageSize=200`);
  const body = $("#campaign-audit tbody");
  body.textContent = "";
  for (const entry of [...page.entries].reverse()) {  // newest first
    const row = body.insertRow();
    cell(row, new Date(entry.at).toLocaleString());
    cell(row, entry.action, "action");
    cell(row, entry.code);
    cell(row, entry.detail);
    cell(row, person(entry.actorId), "who");
  }
  named(body);
}

async function refreshCampaign() {
  const id = campaignState.current.campaignId;
  showCampaign(await api("GET", campaignPath(id)));
  await loadCampaignAudit();
}

async function changeCampaign(action, near) {
  const campaign = campaignState.current;
  const codes = `${campaign.codeCount || 0} code${campaign.codeCount === "1" ? "" : "s"}`;
  const questions = {
    pause: [`Pause ${campaign.name}? Its ${codes} stop working until you resume it.`, "Pause"],
    end: [`End ${campaign.name}? Its ${codes} stop working at once, for good: an ended campaign cannot be resumed. This cannot be undone.`, "End for good"],
  };
  if (questions[action] && !await confirmAction(...questions[action])) return;
  const where = $("#campaign-actions");
  try {
    await api("POST", `${campaignPath(campaign.campaignId)}:${action}`, {});
    await refreshCampaign();
    if (action === "pause") {
      sayWithUndo(`Paused ${campaign.name}.`, where, async () => {
        await api("POST", `${campaignPath(campaign.campaignId)}:resume`, {});
        await refreshCampaign();
        say(`Resumed ${campaign.name}.`, "ok", where);
      });
    } else say(action === "end" ? `Ended ${campaign.name}.` : `Resumed ${campaign.name}.`, "ok", where);
  } catch (error) { handle(error, near); }
}

function addCodesRequest(form) {
  const request = { maxUsesPerCode: Number(form.maxUsesPerCode.value || 0) };
  if (form.mode.value === "one") {
    const code = form.code.value.trim();
    if (!code) throw new Error("Code: enter the code's text (or choose Generate a batch).");
    request.codes = [code];
  } else {
    const count = Number(form.count.value || 0);
    if (!Number.isInteger(count) || count < 1 || count > 100000) throw new Error("How many: a whole number from 1 to 100 000.");
    request.generate = { count, prefix: form.prefix.value.trim(), length: Number(form.length.value || 0) };
  }
  return request;
}

async function addCodes(event) {
  event.preventDefault();
  const form = event.target;
  const id = campaignState.current.campaignId;
  try {
    const made = await api("POST", `${campaignPath(id)}/codes`, addCodesRequest(form));
    form.reset();  // the next batch starts from an empty form
    await Promise.all([refreshCampaign(), loadCampaignCodes(id, true)]);
    const box = say(`Added ${made.codes.length} code${made.codes.length === 1 ? "" : "s"}. `, "ok", form);
    box.append(button("Download them (CSV)", () => {
      download(new Blob([`code\n${made.codes.join("\n")}\n`], { type: "text/csv" }), `codes-${made.codes.length}.csv`);
    }, "secondary"));
  } catch (error) { handle(error, form); }
}

async function downloadCsv(path, name, near) {
  try {
    const response = await send("GET", path);
    download(await response.blob(), name);
    say("Downloaded.", "ok", near);
  } catch (error) { handle(error, near); }
}

function syncAddCodesMode() {
  const form = $("#add-codes");
  const one = form.mode.value === "one";
  form.code.disabled = !one;
  for (const name of ["count", "prefix", "length"]) form[name].disabled = one;
}

// ---- wiring ---------------------------------------------------------------------------------

$("#campaign-search").addEventListener("submit", (e) => {
  e.preventDefault();
  loadCampaigns(true).catch((error) => handle(error, e.target));
});
$("#campaign-search").sort.addEventListener("change", renderCampaigns);
$("#campaigns-more").addEventListener("click", (e) => loadCampaigns(false).catch((error) => handle(error, e.target)));
$("#new-campaign").addEventListener("submit", createCampaign);
$("#campaign-pause").addEventListener("click", (e) => changeCampaign("pause", e.target));
$("#campaign-resume").addEventListener("click", (e) => changeCampaign("resume", e.target));
$("#campaign-end").addEventListener("click", (e) => changeCampaign("end", e.target));
$("#campaign-range").addEventListener("submit", (e) => {
  e.preventDefault();
  loadCampaignReport().catch((error) => handle(error, e.target));
});
$("#campaign-report-csv").addEventListener("click", (e) => {
  const range = $("#campaign-range");
  const params = new URLSearchParams({ from: range.from.value, to: range.to.value });
  downloadCsv(`${campaignPath(campaignState.current.campaignId)}/report:export?${params}`, "campaign-report.csv", e.target);
});
$("#campaign-codes-csv").addEventListener("click", (e) => {
  downloadCsv(`${campaignPath(campaignState.current.campaignId)}/codes:export`, "campaign-codes.csv", e.target);
});
$("#campaign-codes-more").addEventListener("click", (e) => {
  loadCampaignCodes(campaignState.current.campaignId, false).catch((error) => handle(error, e.target));
});
$("#add-codes").addEventListener("submit", addCodes);
$("#add-codes").addEventListener("change", syncAddCodesMode);
$("#add-codes").addEventListener("reset", () => setTimeout(syncAddCodesMode));
syncAddCodesMode();
