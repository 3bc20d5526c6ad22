/* On-call budgets: every SLO sorted by burn, refreshed in place. */
"use strict";
(() => {
  const { el, fmt, link, badge } = Monoenv;
  const table = document.getElementById("slos");

  function burnCell(value, extraClass) {
    const level = value >= 6 ? "bad" : value >= 1 ? "warn" : "";
    return el("td", { class: `num ${level} ${extraClass || ""}` }, fmt.multiple(value));
  }

  function render(data) {
    Monoenv.replaceRows(table.querySelector("tbody"), data.slos, (slo) => el("tr", {},
      el("td", { class: "name" }, link(slo.url, slo.name),
        slo.route ? el("div", { class: "muted small" }, slo.route) : null),
      el("td", { class: "name" }, link(slo.service_url, slo.service)),
      el("td", { class: "num" }, fmt.pct(slo.sli_pct, 3), el("div", { class: "muted small" },
        `objective ${fmt.pct(slo.objective, 2)} over ${slo.window}`)),
      el("td", { class: "num " + slo.level }, fmt.pct(slo.budget_remaining_pct, 1)),
      burnCell(slo.burn_rates["1h"]),
      burnCell(slo.burn_rates["6h"], "hide-phone"),
      burnCell(slo.burn_rates["1d"], "hide-phone"),
      el("td", { class: "num" }, slo.budget_remaining_pct <= 0 ? "exhausted"
        : slo.time_to_exhaustion_s === null ? "not burning" : fmt.duration(slo.time_to_exhaustion_s)),
      el("td", {}, ...(slo.alerts.length ? slo.alerts.map((a) => badge(a.severity, a.severity))
        : [el("span", { class: "muted" }, "none")]))),
    "No SLOs yet. Create one with POST /api/v1/slos or manage.py openslo import.", 9);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(table.dataset.url, render, 30000);
  });
})();
