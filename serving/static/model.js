// The served version's model card for a person: the same JSON as GET /v1/model, laid out.
"use strict";
(function () {
  const main = document.getElementById("card");
  const f = (x, nd = 3) => x === null || x === undefined ? "-" : typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(nd)) : String(x);

  function section(title, ...children) {
    return pv.el("section", {}, pv.el("h2", {text: title}), ...children);
  }
  function kv(rows) {
    const t = pv.el("table", {});
    for (const [k, v] of rows) t.append(pv.el("tr", {}, pv.el("th", {scope: "row", text: k}), pv.el("td", {text: f(v)})));
    return t;
  }
  function list(items) {
    const ul = pv.el("ul", {});
    for (const i of items || []) ul.append(pv.el("li", {text: typeof i === "string" ? i : JSON.stringify(i)}));
    return ul;
  }
  function interval(m, name) {
    const lo = m[`${name}_ci_low`], hi = m[`${name}_ci_high`];
    return lo === undefined ? f(m[name]) : `${f(m[name])} (95% CI ${f(lo)} to ${f(hi)})`;
  }

  function render(info) {
    const card = info.model_card || {}, m = info.model, d = card.model_details || {};
    const metrics = (card.evaluation || {}).metrics || info.metrics || {};
    pv.notice(info.notice);
    main.replaceChildren(
      section(`${m.name} version ${m.version}`,
        kv([["alias", m.alias], ["data kind", info.data_kind], ["model", d.type], ["calibration", info.calibration],
            ["feature contract", info.feature_contract_version], ["imported", info.imported_at],
            ["gate", info.gate_reason]]),
        ...(info.question_note ? [pv.el("p", {class: "errors", text: info.question_note})] : []),
        pv.el("p", {}, "Machine-readable: ", pv.el("a", {href: "/v1/model", text: "GET /v1/model"}))),
      section("Intended use", kv([["purpose", (card.intended_use || {}).purpose], ["users", (card.intended_use || {}).users],
        ["notice", (card.intended_use || {}).notice]]), pv.el("h3", {text: "Out of scope"}), list(card.out_of_scope)),
      section("Performance", pv.el("p", {class: "muted", text: (card.evaluation || {}).design || ""}),
        kv([["AUROC", interval(metrics, "auroc")], ["average precision", interval(metrics, "average_precision")],
            ["Brier score", metrics.brier], ["calibration intercept", metrics.calibration_intercept],
            ["calibration slope", metrics.calibration_slope]])),
      section("Calibration and decision curve", pv.el("div", {class: "plots"},
        ...Object.entries(info.plots || {}).map(([name, src]) =>
          pv.el("figure", {}, pv.el("img", {class: "plot", src, alt: `${name.replace(/_/g, " ")} plot of the held-out evaluation`}),
            pv.el("figcaption", {class: "muted", text: name.replace(/_/g, " ")})))),
        ...(Object.keys(info.plots || {}).length ? [] : [pv.el("p", {class: "muted", text: "No plots were imported with this model."})])),
      section("Study design", kv([["population", (card.study_design || {}).population],
        ["intended question", (card.study_design || {}).intended_question],
        ["outcome", (card.outcome || {}).definition], ["horizon", (card.outcome || {}).horizon],
        ["prediction time", (card.outcome || {}).prediction_time],
        ["data", (card.data || {}).note], ["patients", (card.data || {}).patients], ["events", (card.data || {}).events]])),
      section("Predictors", predictors(card.predictors || []),
        pv.el("p", {class: "muted", text: card.missing_data || ""})),
      section("Limitations", list(card.limitations)));
  }

  function predictors(rows) {
    const t = pv.el("table", {}, pv.el("tr", {}, ...["name", "unit", "allowed", "required", "missing in training"]
      .map(h => pv.el("th", {scope: "col", text: h}))));
    for (const p of rows) t.append(pv.el("tr", {}, pv.el("td", {text: p.name}), pv.el("td", {text: p.unit || "-"}),
      pv.el("td", {text: p.allowed}), pv.el("td", {text: p.required ? "yes" : "no"}),
      pv.el("td", {text: p.missing_share === null || p.missing_share === undefined ? "-" : pv.pct(p.missing_share)})));
    return t;
  }

  (async function () {
    const r = await pv.get("/v1/model");
    if (r.ok) { render(await r.json()); main.dataset.ready = "true"; }
    else main.append(pv.el("p", {class: "errors", text: r.status === 401
      ? "This service requires an API key: enter it on the calculator page first."
      : `The service answered ${r.status}; retry when it is ready.`}));
  })();
})();
