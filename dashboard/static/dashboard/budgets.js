/* On-call budgets: every SLO sorted by burn, refreshed in place. */
"use strict";
(() => {
  const { el, fmt, link, badge } = Monoenv;
  const table = document.getElementById("slos");

  function burnCell(value, extraClass) {
    const level = value >= 6 ? "bad" : value >= 1 ? "warn" : "";
    return el("td", { class: `num ${level} ${extraClass || ""}` }, fmt.multiple(value));
  }

  function budgetCell(slo) {
    const cell = el("td", { class: "num " + slo.level }, fmt.pct(slo.budget_remaining_pct, 1),
      el("div", { class: "muted small" },
        `${fmt.count(slo.budget_consumed)} of ${fmt.count(Math.round(slo.budget_total))} ${slo.unit}`));
    if (slo.learning) cell.append(el("div", {}, badge("learning", "info")));
    return cell;
  }

  function alertCell(slo) {
    if (!slo.alert) return el("td", {}, el("span", { class: "muted" }, "none"));
    return el("td", { title: slo.alert.text }, badge(slo.alert.severity, slo.alert.severity),
      el("div", { class: "muted small" }, `${fmt.multiple(slo.alert.burn_rate)} over ${slo.alert.windows}`));
  }

  function causeCell(slo) {
    if (!slo.cause) return el("td", { class: "hide-phone muted" }, slo.alert ? "no suspect" : "");
    return el("td", { class: "hide-phone name", title: slo.cause.evidence },
      link(slo.cause.url, `${slo.cause.service} ${slo.cause.version}`), " ", badge(slo.cause.verdict));
  }

  function render(data) {
    Monoenv.replaceRows(table.querySelector("tbody"), data.slos, (slo) => el("tr", {},
      /* The SLO's cell names its service (linked) and route: no column of its own,
       * so every column fits a 1366 px laptop. */
      el("td", { class: "name" }, link(slo.url, slo.name), slo.demo ? Monoenv.demoBadge() : null,
        el("div", { class: "muted small" }, link(slo.service_url, slo.service),
          slo.route ? " " + slo.route : "")),
      el("td", { class: "num hide-phone" }, fmt.pct(slo.sli_pct, 3), el("div", { class: "muted small" },
        `objective ${fmt.pct(slo.objective, 2)} over ${slo.window}`)),
      budgetCell(slo),
      burnCell(slo.burn_rates["1h"]),
      burnCell(slo.burn_rates["6h"], "hide-phone"),
      burnCell(slo.burn_rates["1d"], "hide-phone"),
      el("td", { class: "num hide-phone" }, slo.budget_remaining_pct <= 0 ? "exhausted"
        : slo.time_to_exhaustion_s === null ? "not burning" : fmt.duration(slo.time_to_exhaustion_s)),
      alertCell(slo),
      causeCell(slo)),
    "No SLOs yet. Create one with POST /api/v1/slos or manage.py openslo import.", 9);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(table.dataset.url, render, 30000);
  });
})();
