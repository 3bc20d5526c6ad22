/* SLO page: one banner for the worst firing tier, budget tiles, SLI and burndown with change markers. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl, plotTime } = Monoenv;
  /* One decimal, as the banner and the alerts print them (13.4×, not 13×). */
  const times = (value) => (value === null || value === undefined ? "—" : `${value.toFixed(1)}×`);

  /* The x range: where the charts' data starts to the end of their last complete step. */
  function xRange(data) {
    const start = new Date(data.chart_start), end = new Date(data.chart_end);
    /* A little room on the right, so the last point is not cut in half. */
    const padded = new Date(end.getTime() + Math.max((end - start) * 0.03, 30000));
    return [plotTime(data.chart_start), plotTime(padded.toISOString())];
  }

  function chartNote(data) {
    const step = data.chart_step_s >= 3600 ? `${data.chart_step_s / 3600} h` : `${data.chart_step_s / 60} min`;
    const note = document.getElementById("chart-note");
    note.replaceChildren(`${step} steps to `, timeEl(data.chart_end),
      data.history.length ? " (complete steps; the tiles count to now)" : ": no complete step yet");
  }

  /* Fit the budget left, so a burn of a few percent shows its slope instead of a flat
     line at the top of 0-100; an overspent budget goes below zero. */
  function burndownRange(history) {
    const low = Math.min(100, ...history.map((p) => p.remaining_pct));
    const span = Math.max(100 - low, 1);
    return [low >= 0 ? Math.max(0, low - span * 0.5) : low - span * 0.1, 100 + span * 0.05];
  }

  /* The deploys and flag changes in the charts' range, drawn as on the service charts. */
  function markers(data) {
    const inRange = (at) => at >= data.chart_start && at <= data.chart_end;
    return Monoenv.changeMarkers(data.deploys.filter((d) => inRange(d.started_at)),
      (data.flag_changes || []).filter((c) => inRange(c.at)));
  }

  function drawWithMarkers(id, traces, layout, changes) {
    const node = document.getElementById(id);
    layout.shapes = changes.shapes;
    layout.yaxis2 = { overlaying: "y", range: [0, 1.05], visible: false, fixedrange: true };
    Plotly.react(node, traces.concat(changes.traces), layout, Monoenv.plotConfig);
    Monoenv.openMarkersOnClick(node);
  }

  function renderCharts(data) {
    const range = xRange(data);
    const changes = markers(data);
    const series = data.sli_series;
    const sliValues = series.map((p) => p.sli_pct);
    const low = Math.min(data.objective, ...sliValues.filter((v) => v !== null));
    drawWithMarkers("chart-sli", [
      { name: "SLI", x: series.map((p) => plotTime(p.t)), y: sliValues, type: "scatter",
        mode: "lines+markers", line: { color: "#2f5bd3", width: 1.6 }, marker: { color: "#2f5bd3", size: 4 },
        customdata: series.map((p) => `${fmt.count(p.good)} good of ${fmt.count(p.total)}`),
        hovertemplate: "%{y:.3f} % (%{customdata})<extra></extra>" },
      { name: "objective", x: range, y: [data.objective, data.objective], type: "scatter", mode: "lines",
        line: { color: "#b42318", dash: "dash", width: 1.2 }, hovertemplate: "%{y:.3f} %" },
    ], Monoenv.layout("%", { xaxis: { range },
      yaxis: { title: { text: "%" }, range: [Math.max(0, low - (100 - low) * 0.5), 100.02] } }), changes);

    const history = data.history;
    drawWithMarkers("chart-burndown", [{ name: "budget left", x: history.map((p) => plotTime(p.at)),
      y: history.map((p) => p.remaining_pct), type: "scatter", mode: "lines+markers", fill: "tozeroy",
      line: { color: "#1a7f43", width: 1.6 }, fillcolor: "rgba(26,127,67,.1)",
      marker: { color: "#1a7f43", size: 4 }, hovertemplate: "%{y:.2f} % left<extra></extra>" }],
    Monoenv.layout("% of budget left", {
      xaxis: { range }, yaxis: { title: { text: "% left" }, range: burndownRange(history) },
    }), changes);
  }

  function renderTables(data) {
    Monoenv.replaceRows(document.querySelector("#tiers tbody"), data.tiers, (row) => el("tr", {},
      el("td", {}, badge(row.severity, row.severity)),
      el("td", {}, row.windows),
      el("td", { class: "num " + (row.long_burn_rate > row.threshold ? "bad" : "") },
        `${times(row.long_burn_rate)} / ${times(row.short_burn_rate)}`),
      el("td", { class: "num" }, times(row.threshold)),
      el("td", {}, row.firing ? badge("firing", "firing") : el("span", { class: "muted" }, "quiet"))), "", 5);
    Monoenv.replaceRows(document.querySelector("#burn tbody"), data.burn_table, (row) => el("tr", {},
      el("td", {}, row.window), el("td", { class: "num" }, times(row.burn_rate))), "", 2);
    Monoenv.replaceRows(document.querySelector("#deploys tbody"), data.deploys, (row) => el("tr", {},
      el("td", { class: "hide-phone" }, timeEl(row.started_at)),
      el("td", { class: "name" }, link(row.url, row.version)),
      el("td", {}, badge(row.verdict)),
      el("td", { class: "num" }, fmt.pct(row.budget_consumed_pct, 1))), "No deploys in this window.", 4);
    Monoenv.replaceRows(document.querySelector("#alerts tbody"), data.alert_history, (row) => el("tr", {},
      el("td", {}, badge(row.severity, row.severity)),
      el("td", { class: "hide-phone" }, row.windows),
      el("td", { class: "num hide-phone" }, `${times(row.long_burn_rate)} / ${times(row.short_burn_rate)}`),
      el("td", { class: "num hide-phone" }, times(row.threshold)),
      el("td", { class: "num hide-phone" }, fmt.pct(row.budget_consumed_pct)),
      el("td", {}, timeEl(row.fired_at)),
      el("td", {}, row.resolved_at ? timeEl(row.resolved_at) : badge("firing", "firing"))),
    "No alerts have fired.", 7);
  }

  function renderTiles(data) {
    const budget = document.getElementById("tile-budget");
    budget.textContent = fmt.pct(data.budget_remaining_pct, 1);
    budget.className = "value num " + data.level;
    document.getElementById("tile-budget-note").textContent = data.learning
      ? "still learning: too young or too quiet to judge" : (data.budget_projected ? "budget projected for the whole window" : "");
    document.getElementById("tile-used").textContent = fmt.pct(data.budget_used_pct, 1);
    document.getElementById("tile-consumed").textContent =
      `${fmt.count(data.budget_consumed)} of ${fmt.count(Math.round(data.budget_total))} bad ${data.unit} allowed`;
    document.getElementById("tile-sli").textContent = fmt.pct(data.sli_pct, 3);
    document.getElementById("tile-events").textContent = `${fmt.count(data.good)} good of ${fmt.count(data.total)} ${data.unit}`;
    document.getElementById("tile-tte").textContent = data.budget_remaining_pct <= 0 ? "exhausted"
      : data.time_to_exhaustion_s === null ? "not burning" : fmt.duration(data.time_to_exhaustion_s);
    const alert = data.alert;
    document.getElementById("alert-banner").replaceChildren(...(alert ? [
      el("p", { class: "banner " + (alert.severity === "page" ? "bad" : "warn"), role: "alert" },
        alert.text + " since ", timeEl(alert.fired_at), ".",
        data.cause ? el("span", {}, " Likely cause: ", link(data.cause.url, `${data.cause.service} ${data.cause.version}`), ".") : null)] : []));
  }

  function render(data) {
    renderTiles(data);
    renderTables(data);
    renderCharts(data);
    chartNote(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(document.getElementById("tiles").dataset.url, render, 30000);
  });
})();
