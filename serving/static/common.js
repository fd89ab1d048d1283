// Shared by the calculator and the model-card page: fetch JSON from our own origin, with the
// API key (when the service asks for one) kept in sessionStorage for this tab only.
"use strict";
const pv = {
  key() { return sessionStorage.getItem("pverisk-api-key") || ""; },
  async get(path) {
    const headers = {};
    if (pv.key()) headers["X-API-Key"] = pv.key();
    return fetch(path, {headers});
  },
  async post(path, body) {
    const headers = {"content-type": "application/json"};
    if (pv.key()) headers["X-API-Key"] = pv.key();
    return fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
  },
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v; else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) e.append(c);
    return e;
  },
  // the served model's own notice (it names simulated data) replaces the generic one
  notice(text) {
    const n = document.querySelector(".notice");
    n.replaceChildren(pv.el("strong", {text: text}));
  },
  pct(p) { return (100 * p).toFixed(1) + "%"; },
  // a field's human label: its contract description without the unit and the allowed values
  label(schema) {
    const d = (schema.description || schema.title || "").split(". Allowed:")[0];
    return d.replace(/\s*\[[^\]]*\]\s*$/, "").replace(/\.$/, "");
  },
};
