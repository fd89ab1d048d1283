// The calculator: the form is generated from the served model's request schema (GET /docs.json,
// the same schema the API validates with); nothing here lists features by hand.
"use strict";
(function () {
  const form = document.getElementById("calc");
  const box = document.getElementById("fields");
  const out = document.getElementById("result");
  let schema = null, info = null;

  function kindOf(s) {
    const t = s.type ? s : (s.anyOf || []).find(x => x.type && x.type !== "null") || {};
    if (t.enum) return {kind: "category", values: t.enum};
    return {kind: t.type || "string"};
  }

  // The API's own messages (feature_store/record.py), so the page and the API say the same thing.
  function check(name, s, input, required) {
    const raw = input.value.trim();
    if (raw === "") return required ? "Field required" : null;
    const k = kindOf(s).kind, allowed = s["x-allowed"];
    if (k === "number" || k === "integer") {
      const v = Number(raw);
      if (!Number.isFinite(v)) return `not a number; allowed ${allowed}`;
      if (k === "integer" && !Number.isInteger(v)) return `not a whole number; allowed ${allowed}`;
      if (v < s.minimum || v > s.maximum) return `outside the allowed range ${allowed}`;
    }
    return null;
  }

  function value(s, input) {
    const raw = input.value.trim();
    if (raw === "") return undefined;
    const k = kindOf(s).kind;
    if (k === "number" || k === "integer") return Number(raw);
    if (k === "boolean") return raw === "true";
    return raw;
  }

  function build() {
    const props = schema.properties, required = new Set(schema.required || []);
    for (const [name, s] of Object.entries(props)) {
      const role = s["x-role"];
      if (role === "not used") continue;  // accepted by the API, ignored by this model
      const req = required.has(name);
      const orFine = s["x-required-or"];
      const {kind, values} = kindOf(s);
      const id = "f-" + name, hint = "h-" + name, err = "e-" + name;
      let input;
      if (kind === "boolean" || kind === "category") {
        input = pv.el("select", {id, name, "aria-describedby": `${hint} ${err}`});
        input.append(pv.el("option", {value: "", text: req ? "choose" : "not known"}));
        for (const v of (kind === "boolean" ? ["true", "false"] : values))
          input.append(pv.el("option", {value: String(v), text: kind === "boolean" ? (v === "true" ? "yes" : "no") : String(v).replace(/_/g, " ")}));
      } else {
        input = pv.el("input", {id, name, type: "text", inputmode: kind === "integer" ? "numeric" : "decimal",
          autocomplete: "off", "aria-describedby": `${hint} ${err}`, "aria-required": req ? "true" : null});
      }
      const tag = req ? pv.el("span", {class: "tag req", text: "required"})
        : pv.el("span", {class: "tag opt", text: orFine ? `required unless ${orFine.join(", ")} is given` : "optional"});
      const unit = s["x-unit"] ? ` (${s["x-unit"]})` : "";
      const label = pv.el("label", {for: id}, pv.label(s) + unit, tag);
      const note = role === "input" ? "" : ` ${role[0].toUpperCase()}${role.slice(1)}.`;
      const row = pv.el("div", {class: "field", "data-field": name}, label, input,
        pv.el("span", {class: "hint", id: hint, text: `Allowed: ${s["x-allowed"]}.${note}`}),
        pv.el("span", {class: "err", id: err, role: "status"}));
      row._schema = s; row._required = req;
      box.append(row);
    }
  }

  function fill(record) {
    form.reset();
    for (const [k, v] of Object.entries(record || {})) {
      const input = document.getElementById("f-" + k);
      if (input && v !== null && v !== undefined) input.value = String(v);
    }
  }

  function showErrors(byField, general) {
    for (const row of box.querySelectorAll(".field")) {
      const name = row.dataset.field, msg = byField[name] || "";
      row.querySelector(".err").textContent = msg;
      row.querySelector("input,select").setAttribute("aria-invalid", msg ? "true" : "false");
    }
    document.getElementById("form-errors").textContent = general || "";
    const first = box.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  }

  function bars(factors) {
    const max = Math.max(0.01, ...factors.map(f => Math.abs(f.contribution_log_odds)));
    const list = pv.el("ul", {class: "bars", "aria-label": "Top factors, in log-odds"});
    for (const f of factors) {
      const w = (50 * Math.abs(f.contribution_log_odds) / max).toFixed(1) + "%";
      const span = pv.el("span", {class: f.contribution_log_odds >= 0 ? "up" : "down", style: `width:${w}`});
      const label = `${f.feature.replace(/_/g, " ")} = ${f.value === null ? "missing" : f.value}`;
      list.append(pv.el("li", {}, pv.el("span", {text: label}),
        pv.el("span", {class: "track", role: "img",
          "aria-label": `${f.direction}, ${f.contribution_log_odds.toFixed(2)} log-odds`}, span)));
    }
    return list;
  }

  function render(r) {
    out.replaceChildren();
    const b = r.band_thresholds;
    out.append(
      pv.el("p", {class: "risk", id: "probability", "data-probability": String(r.probability), text: pv.pct(r.probability)}),
      pv.el("p", {}, "Risk band: ", pv.el("span", {class: `band band-${r.risk_band}`, id: "band", text: r.risk_band}),
        ` (low below ${pv.pct(b.low_below)}, high from ${pv.pct(b.high_from)}; an assumption around the base rate, not validated cut-offs)`),
      pv.el("p", {class: "muted", text: "Calibrated probability of liver progression between PVE and the planned resection."}),
      pv.el("h2", {text: "Top factors"}),
      pv.el("p", {class: "muted", text: "Red raises the risk, green lowers it (XGBoost contributions in log-odds)."}),
      bars(r.top_factors));
    const notes = (info && info.clinical_score_notes) || {};
    const t = pv.el("table", {}, pv.el("caption", {class: "muted", text: "Clinical scores, for comparison"}),
      pv.el("tr", {}, pv.el("th", {scope: "col", text: "score"}), pv.el("th", {scope: "col", text: "value"}),
        pv.el("th", {scope: "col", text: "built for"})));
    for (const [name, note] of Object.entries(notes)) {
      const v = r.clinical_scores[name];
      const extra = name === "game_score" && r.clinical_scores.game_group ? ` (${r.clinical_scores.game_group})` : "";
      t.append(pv.el("tr", {}, pv.el("td", {text: note.name}),
        pv.el("td", {text: v === null || v === undefined ? "not computable (inputs missing)" : `${v}${extra}`}),
        pv.el("td", {text: note.built_for})));
    }
    out.append(pv.el("h2", {text: "Clinical scores"}), t);
    out.append(pv.el("h2", {text: "Missing inputs"}),
      pv.el("p", {id: "missing", text: r.missing_inputs.length ? r.missing_inputs.join(", ") : "none"}),
      pv.el("p", {class: "muted", text: `How the model handles them: ${r.missing_handling}.`}));
    if (r.question_note) out.append(pv.el("p", {class: "errors", text: r.question_note}));
    const m = r.model;
    out.append(pv.el("h2", {text: "Model"}),
      pv.el("p", {}, `${m.name} version ${m.version} (${m.alias}), trained on ${r.data_kind} data. `,
        pv.el("a", {href: "/model", text: "Model card"})),
      pv.el("p", {class: "notice", text: r.notice}));
  }

  async function submit(ev) {
    ev.preventDefault();
    const body = {}, errs = {};
    for (const row of box.querySelectorAll(".field")) {
      const input = row.querySelector("input,select"), name = row.dataset.field;
      const msg = check(name, row._schema, input, row._required);
      if (msg) errs[name] = msg;
      const v = value(row._schema, input);
      if (v !== undefined) body[name] = v;
    }
    if (Object.keys(errs).length) {  // nothing is sent while a field is invalid
      showErrors(errs, "Please correct the marked fields.");
      return;
    }
    showErrors({}, "");
    const r = await pv.post("/v1/predict", body);
    const payload = await r.json().catch(() => ({}));
    if (r.status === 200) {
      render(payload);
      // on a phone the result is below the form: bring it to the top and move keyboard focus to it
      document.getElementById("result-box").scrollIntoView({block: "start"});
      document.getElementById("result-title").focus({preventScroll: true});
      return;
    }
    if (r.status === 401) { document.getElementById("apikey-box").hidden = false; }
    const byField = {};
    for (const d of payload.detail || []) {
      const name = d.field || (d.loc || []).slice(-1)[0];
      byField[name] = d.problem || d.msg;
    }
    showErrors(byField, payload.error || `the service answered ${r.status}`);
  }

  async function start() {
    document.getElementById("apikey").addEventListener("change", e => sessionStorage.setItem("pverisk-api-key", e.target.value));
    const spec = await (await fetch("/docs.json")).json();
    schema = spec.paths["/v1/predict"].post.requestBody.content["application/json"].schema;
    build();
    const r = await pv.get("/v1/model");
    if (r.status === 401) document.getElementById("apikey-box").hidden = false;
    if (r.ok) {
      info = await r.json();
      document.getElementById("model-line").textContent =
        `Model ${info.model.name} version ${info.model.version} (${info.model.alias}), trained on ${info.data_kind} data.`;
      pv.notice(info.notice);
    }
    document.getElementById("example").addEventListener("click", () => fill(schema.example));
    form.addEventListener("submit", submit);
    form.addEventListener("reset", () => setTimeout(() => showErrors({}, ""), 0));
    // A CDS card opens #prefill=<token>: the inputs are fetched once from the server, never in the URL.
    const token = new URLSearchParams(location.hash.slice(1)).get("prefill");
    if (token) {
      history.replaceState(null, "", location.pathname);
      const p = await pv.post("/v1/prefill", {token});  // POST: the token stays out of access logs
      if (p.ok) { fill((await p.json()).inputs); form.requestSubmit(); }
      else document.getElementById("form-errors").textContent = "The link from the EHR has expired or was already used; enter the values by hand.";
    }
    form.dataset.ready = "true";
  }
  document.getElementById("result-title").tabIndex = -1;
  start();
})();
