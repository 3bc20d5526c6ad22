/* SLO page: one banner for the worst firing tier, budget tiles, SLI and burndown with deploys. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl, plotTime, plotText } = Monoenv;
  /* One decimal, as the banner and the alerts print them (13.4×, not 13×). */
  const times = (value) => (value === null || value === undefined ? "—" : `${value.toFixed(1)}×`);

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
    let value = history.length ? history[0].remaining_pct : 100;
    for (const point of history) {
      if (point.at > iso) break;
      value = point.remaining_pct;
    }
    return value;
  }

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

  function renderCharts(data) {
    const range = xRange(data);
    const series = data.sli_series;
    const sliValues = series.map((p) => p.sli_pct);
    const low = Math.min(data.objective, ...sliValues.filter((v) => v !== null));
    Plotly.react("chart-sli", [
      { name: "SLI", x: series.map((p) => plotTime(p.t)), y: sliValues, type: "scatter",
        mode: "lines+markers", line: { color: "#2f5bd3", width: 1.6 }, marker: { color: "#2f5bd3", size: 4 },
        customdata: series.map((p) => `${fmt.count(p.good)} good of ${fmt.count(p.total)}`),
        hovertemplate: "%{y:.3f} % (%{customdata})<extra></extra>" },
      { name: "objective", x: range, y: [data.objective, data.objective], type: "scatter", mode: "lines",
        line: { color: "#b42318", dash: "dash", width: 1.2 }, hovertemplate: "%{y:.3f} %" },
    ], Monoenv.layout("%", { xaxis: { range },
      yaxis: { title: { text: "%" }, range: [Math.max(0, low - (100 - low) * 0.5), 100.02] } }),
    Monoenv.plotConfig);

    const burndown = document.getElementById("chart-burndown");
    const history = data.history;
    const traces = [{ name: "budget left", x: history.map((p) => plotTime(p.at)),
      y: history.map((p) => p.remaining_pct), type: "scatter", mode: "lines+markers", fill: "tozeroy",
      line: { color: "#1a7f43", width: 1.6 }, fillcolor: "rgba(26,127,67,.1)",
      marker: { color: "#1a7f43", size: 4 }, hovertemplate: "%{y:.2f} % left<extra></extra>" }];
    const shown = data.deploys.filter((d) => d.started_at >= data.chart_start && d.started_at <= data.chart_end);
    if (shown.length) {
      traces.push(deployMarks(shown, (d) => remainingAt(history, d.started_at)));
    }
    Plotly.react(burndown, traces, Monoenv.layout("% of budget left", {
      xaxis: { range }, yaxis: { title: { text: "% left" }, range: burndownRange(history) },
    }), Monoenv.plotConfig);
    onDeployClick(burndown);
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
