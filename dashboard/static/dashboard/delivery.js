/* Delivery: DORA's metrics with their levels, weekly trends and a per-service table. */
"use strict";
(() => {
  const { el, fmt, plotTime } = Monoenv;
  const table = document.getElementById("per-service");
  const levelKind = { elite: "ok", high: "ok", medium: "warn", low: "bad" };
  const pct = (rate) => (rate === null || rate === undefined ? null : rate * 100);

  function tile(label, value, level, note) {
    return el("div", { class: "tile" }, el("div", { class: "label" }, label),
      el("div", { class: "value" }, value),
      level ? el("span", { class: "badge " + (levelKind[level] || "") }, level) : null,
      note ? el("div", { class: "muted small" }, note) : null);
  }

  function renderTiles(m) {
    document.getElementById("levels").replaceChildren(
      tile("Deploys per day", fmt.count(m.deployment_frequency.deploys) + " · " + m.deployment_frequency.per_day.toFixed(2),
        m.deployment_frequency.level, m.deployment_frequency.per_week.toFixed(1) + " a week"),
      tile("Lead time (median)", fmt.duration(m.lead_time.median_seconds), m.lead_time.level,
        `p90 ${fmt.duration(m.lead_time.p90_seconds)} · ${m.lead_time.deploys_without_commit_time} without commit time`),
      tile("Change fail rate", fmt.pct(pct(m.change_fail_rate.rate)), m.change_fail_rate.level,
        `${m.change_fail_rate.failed} of ${m.change_fail_rate.deploys}`),
      tile("Recovery (median)", fmt.duration(m.recovery_time.median_seconds), m.recovery_time.level,
        `p90 ${fmt.duration(m.recovery_time.p90_seconds)} · ${m.recovery_time.recoveries} recoveries`),
      tile("Rework rate", fmt.pct(pct(m.rework_rate.rate)), null, `${m.rework_rate.rework} of ${m.rework_rate.deploys}`));
  }

  function renderCharts(weekly) {
    const x = weekly.map((w) => plotTime(w.start));
    const layout = (unit) => Monoenv.layout(unit, { hovermode: "x unified", xaxis: { type: "date" } });
    Plotly.react("chart-deploys", [
      { name: "deploys", type: "bar", x, y: weekly.map((w) => w.deploys) },
      { name: "failed", type: "bar", x, y: weekly.map((w) => w.failed), marker: { color: "#b42318" } },
      { name: "rework", type: "bar", x, y: weekly.map((w) => w.rework), marker: { color: "#d48a00" } },
    ], layout("deploys"), Monoenv.plotConfig);
    Plotly.react("chart-fail", [{ name: "change fail rate", type: "scatter", mode: "lines+markers", x,
      y: weekly.map((w) => pct(w.change_fail_rate)) }], layout("%"), Monoenv.plotConfig);
    Plotly.react("chart-times", [
      { name: "lead time", type: "scatter", mode: "lines+markers", x, y: weekly.map((w) => w.lead_time_median_seconds === null ? null : w.lead_time_median_seconds / 3600) },
      { name: "recovery", type: "scatter", mode: "lines+markers", x, y: weekly.map((w) => w.recovery_median_seconds === null ? null : w.recovery_median_seconds / 3600) },
    ], layout("hours"), Monoenv.plotConfig);
  }

  function render(data) {
    renderTiles(data.metrics);
    renderCharts(data.metrics.weekly);
    Monoenv.replaceRows(table.querySelector("tbody"), data.services, (row) => el("tr", {},
      el("td", { class: "name" }, row.service),
      el("td", { class: "num" }, fmt.count(row.deployment_frequency.deploys)),
      el("td", { class: "num" }, row.deployment_frequency.per_day.toFixed(2)),
      el("td", { class: "num" }, fmt.duration(row.lead_time.median_seconds)),
      el("td", { class: "num" }, fmt.pct(pct(row.change_fail_rate.rate))),
      el("td", { class: "num" }, fmt.duration(row.recovery_time.median_seconds)),
      el("td", { class: "num" }, fmt.pct(pct(row.rework_rate.rate)))), "No deploys in this period.", 7);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(table.dataset.url, render, 60000);
  });
})();
