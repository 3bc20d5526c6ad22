/* SLO page: SLI and burndown charts with deploys marked, burn rates, alert history. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl, plotTime, plotText } = Monoenv;

  function deployMarks(deploys, yValue) {
    return {
      name: "deploys", type: "scatter", mode: "markers", showlegend: false,
      x: deploys.map((d) => plotTime(d.started_at)), y: deploys.map(yValue),
      customdata: deploys.map((d) => d.url),
      text: deploys.map((d) => plotText(`${d.version} (${d.verdict}): ` +
        (d.budget_consumed_pct === null ? "no data" : `${d.budget_consumed_pct.toFixed(2)} % of budget`))),
      hovertemplate: "deploy %{text}<extra></extra>",
      marker: { symbol: "triangle-down", size: 12, color: deploys.map((d) => Monoenv.colorFor(d.verdict)) },
    };
  }

  function onDeployClick(node) {
    if (node.dataset.clicks) return;
    node.dataset.clicks = "1";
    node.on("plotly_click", (event) => {
      const point = event.points.find((p) => p.data.name === "deploys");
      if (point) window.location.href = point.customdata;
    });
  }

  function remainingAt(history, iso) {
    let value = 100;
    for (const point of history) {
      if (point.at > iso) break;
      value = point.remaining_pct;
    }
    return value;
  }

  function renderCharts(data) {
    const range = [plotTime(data.window_start), plotTime(data.window_end)];
    const sli = document.getElementById("chart-sli");
    const sliValues = data.sli_series.map((p) => p.sli_pct);
    const low = Math.min(data.objective, ...sliValues.filter((v) => v !== null));
    Plotly.react(sli, [
      { name: "SLI", x: data.sli_series.map((p) => plotTime(p.t)), y: sliValues, type: "scatter",
        mode: sliValues.length < 50 ? "lines+markers" : "lines", line: { color: "#2f5bd3", width: 1.6 }, hovertemplate: "%{y:.3f} %" },
      { name: "objective", x: range, y: [data.objective, data.objective], type: "scatter", mode: "lines",
        line: { color: "#b42318", dash: "dash", width: 1.2 }, hovertemplate: "%{y:.3f} %" },
    ], Monoenv.layout("%", { xaxis: { type: "date", range },
      yaxis: { title: { text: "%" }, range: [Math.max(0, low - (100 - low) * 0.5), 100.02] } }),
    Monoenv.plotConfig);

    const burndown = document.getElementById("chart-burndown");
    const traces = [{ name: "budget left", x: data.history.map((p) => plotTime(p.at)),
      y: data.history.map((p) => p.remaining_pct), type: "scatter", mode: "lines", fill: "tozeroy",
      line: { color: "#1a7f43", width: 1.6 }, fillcolor: "rgba(26,127,67,.1)", hovertemplate: "%{y:.2f} %" }];
    if (data.deploys.length) {
      traces.push(deployMarks(data.deploys, (d) => remainingAt(data.history, d.started_at)));
    }
    Plotly.react(burndown, traces, Monoenv.layout("% of budget left", {
      xaxis: { type: "date", range }, yaxis: { title: { text: "% left" }, gridcolor: "#eef0f3" },
    }), Monoenv.plotConfig);
    onDeployClick(burndown);
  }

  function renderTables(data) {
    Monoenv.replaceRows(document.querySelector("#burn tbody"), data.burn_table, (row) => el("tr", {},
      el("td", {}, row.window),
      el("td", { class: "num " + (row.threshold && row.burn_rate >= row.threshold ? "bad" : "") },
        fmt.multiple(row.burn_rate)),
      el("td", { class: "num" }, row.threshold === null ? Monoenv.dash : fmt.multiple(row.threshold)),
      el("td", {}, row.severity ? badge(row.severity, row.severity) : "")), "", 4);
    Monoenv.replaceRows(document.querySelector("#deploys tbody"), data.deploys, (row) => el("tr", {},
      el("td", {}, timeEl(row.started_at)),
      el("td", { class: "name" }, link(row.url, row.version)),
      el("td", {}, badge(row.verdict)),
      el("td", { class: "num" }, fmt.pct(row.budget_consumed_pct))), "No deploys in this window.", 4);
    Monoenv.replaceRows(document.querySelector("#alerts tbody"), data.alert_history, (row) => el("tr", {},
      el("td", {}, badge(row.severity, row.severity)),
      el("td", {}, row.windows),
      el("td", { class: "num" }, `${fmt.multiple(row.long_burn_rate)} / ${fmt.multiple(row.short_burn_rate)}`),
      el("td", { class: "num" }, fmt.multiple(row.threshold)),
      el("td", { class: "num" }, fmt.pct(row.budget_consumed_pct)),
      el("td", {}, timeEl(row.fired_at)),
      el("td", {}, row.resolved_at ? timeEl(row.resolved_at) : badge("firing", "firing"))),
    "No alerts have fired.", 7);
  }

  function render(data) {
    document.getElementById("tile-sli").textContent = fmt.pct(data.sli_pct, 3);
    const budget = document.getElementById("tile-budget");
    budget.textContent = fmt.pct(data.budget_remaining_pct, 1);
    budget.className = "value num " + data.level;
    document.getElementById("tile-consumed").textContent =
      `${fmt.count(data.budget_consumed)} of ${fmt.count(Math.round(data.budget_total))} ${data.unit}`;
    document.getElementById("tile-tte").textContent = data.budget_remaining_pct <= 0 ? "exhausted"
      : data.time_to_exhaustion_s === null ? "not burning" : fmt.duration(data.time_to_exhaustion_s);
    document.getElementById("alert-banner").replaceChildren(...data.alerts.map((alert) =>
      el("p", { class: "banner " + (alert.severity === "page" ? "bad" : "warn"), role: "alert" },
        alert.text + " since ", timeEl(alert.fired_at))));
    renderTables(data);
    renderCharts(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(document.getElementById("tiles").dataset.url, render, 30000);
  });
})();
