// Renders /openapi.json as a list of routes; a file, so the page needs no inline script (CSP).
"use strict";
function resolve(doc, schema, depth) {
  if (!schema || depth > 4) return schema;
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve(doc, doc.components.schemas[name], depth + 1);
  }
  if (schema.type === "object" && schema.properties) {
    const out = {};
    for (const [key, value] of Object.entries(schema.properties)) out[key] = resolve(doc, value, depth + 1);
    return out;
  }
  if (schema.type === "array") return [resolve(doc, schema.items, depth + 1)];
  if (schema.enum) return schema.enum.join(" | ");
  return schema.format ? `${schema.type} (${schema.format})` : schema.type;
}
function section(title, value) {
  const h = document.createElement("h3"); h.textContent = title;
  const pre = document.createElement("pre"); pre.textContent = JSON.stringify(value, null, 2);
  return [h, pre];
}
fetch("/openapi.json").then(r => r.json()).then(doc => {
  const root = document.getElementById("routes"); root.textContent = "";
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [verb, op] of Object.entries(ops)) {
      const d = document.createElement("details");
      const s = document.createElement("summary");
      const v = document.createElement("span"); v.className = "verb " + verb.toUpperCase(); v.textContent = verb.toUpperCase();
      const p = document.createElement("code"); p.textContent = path;
      const o = document.createElement("span"); o.className = "op"; o.textContent = op.operationId;
      s.append(v, p, o); d.append(s);
      if (op.parameters && op.parameters.length) d.append(...section("Parameters", op.parameters.map(x => `${x.name} (${x.in})`)));
      if (op.requestBody) d.append(...section("Request body", resolve(doc, op.requestBody.content["application/json"].schema, 0)));
      const ok = op.responses["200"];
      if (ok && ok.content) d.append(...section("Response", resolve(doc, ok.content["application/json"].schema, 0)));
      root.append(d);
    }
  }
});
