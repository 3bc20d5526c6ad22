/* Service page: rate, errors and latency over the chosen range, with deploy and flag change markers. */
"use strict";
(() => {
  const { el, fmt, link, timeEl, plotTime } = Monoenv;
  const charts = document.getElementById("charts");

  function draw(id, traces, unit, data, range) {
    const markers = Monoenv.changeMarkers(data.deploys, data.flag_changes);
    const layout = Monoenv.layout(unit, {
      shapes: markers.shapes,
      xaxis: { type: "date", gridcolor: "#eef0f3", range: range },
      yaxis2: { overlaying: "y", range: [0, 1.05], visible: false, fixedrange: true },
    });
    const node = document.getElementById(id);
    Plotly.react(node, traces.concat(markers.traces), layout, Monoenv.plotConfig);
    Monoenv.openMarkersOnClick(node);
  }

  function renderCharts(data) {
    const points = data.series.points;
    const x = points.map((p) => plotTime(p.t));
    const range = [plotTime(data.series.start), plotTime(data.series.end)];
    const line = (name, y, color) => ({ name, x, y, type: "scatter", mode: "lines", connectgaps: false,
      line: { width: 1.6, color } });
    draw("chart-rate", [Object.assign(line("requests/s", points.map((p) => p.rate), "#2f5bd3"),
      { fill: "tozeroy", fillcolor: "rgba(47,91,211,.1)", hovertemplate: "%{y:.2f} req/s" })],
      "req/s", data, range);
    draw("chart-errors", [Object.assign(line("errors", points.map((p) => p.error_pct), "#b42318"),
      { hovertemplate: "%{y:.2f} %" })], "%", data, range);
    draw("chart-latency", [
      Object.assign(line("p50", points.map((p) => p.p50_ms), "#1a7f43"), { hovertemplate: "%{y:.1f} ms" }),
      Object.assign(line("p95", points.map((p) => p.p95_ms), "#d48a00"), { hovertemplate: "%{y:.1f} ms" }),
      Object.assign(line("p99", points.map((p) => p.p99_ms), "#b42318"), { hovertemplate: "%{y:.1f} ms" }),
    ], "ms", data, range);
  }

  function renderTiles(data) {
    document.getElementById("tile-rate").textContent = fmt.rate(data.summary.rate);
    document.getElementById("tile-rate-note").replaceChildren(...(data.serving_since
      ? ["young: first span ", timeEl(data.serving_since)] : ["over the time it served"]));
    document.getElementById("tile-errors").textContent = fmt.pct(data.summary.error_pct);
    document.getElementById("tile-p95").textContent = fmt.ms(data.summary.p95_ms);
    /* Deploys and flag changes alike: both are changes to what users get. */
    document.getElementById("tile-deploys").textContent =
      fmt.count(data.deploys.length + (data.flag_changes || []).length);
  }

  function renderSlos(data) {
    const box = document.getElementById("slo-summary");
    box.replaceChildren(...(data.slos || []).map((slo) =>
      el("p", { class: "banner " + slo.level },
        link(slo.url, slo.name), ": ",
        slo.learning ? "still learning its budget, " : "",
        fmt.pct(slo.budget_remaining_pct, 1), " of the error budget left",
        slo.alert ? ` \u00b7 ${slo.alert.text}` : "")));
  }

  function renderTables(data) {
    const tracesUrl = charts.dataset.traces;
    Monoenv.replaceRows(document.querySelector("#routes tbody"), data.routes, (row) => el("tr", {},
      el("td", { class: "name" }, link(`${tracesUrl}&route=${encodeURIComponent(row.route)}`, row.route)),
      el("td", { class: "num" }, fmt.count(row.requests)),
      el("td", { class: "num hide-phone" }, fmt.rate(row.rate)),
      el("td", { class: "num" }, fmt.pct(row.error_pct)),
      el("td", { class: "num hide-phone" }, fmt.ms(row.p50_ms)),
      el("td", { class: "num" }, fmt.ms(row.p95_ms)),
      el("td", { class: "num hide-phone" }, fmt.ms(row.p99_ms))), "No requests in this range.", 7);
    Monoenv.replaceRows(document.querySelector("#versions tbody"), data.versions, (row) => el("tr", {},
      el("td", { class: "name mono" }, row.version || "(none)"),
      el("td", { class: "hide-phone" }, timeEl(row.first_seen)),
      el("td", { class: "hide-phone" }, timeEl(row.last_seen)),
      el("td", { class: "num" }, fmt.rate(row.rate)),
      el("td", { class: "num" }, fmt.pct(row.error_pct)),
      el("td", { class: "num hide-phone" }, fmt.ms(row.p95_ms)),
      el("td", {}, row.deploy ? link(row.deploy.url, row.deploy.verdict) : "")),
    "No versions seen in this range.", 7);
  }

  function render(data) {
    renderTiles(data);
    renderSlos(data);
    renderTables(data);
    renderCharts(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    const slow = ["7d", "30d"].includes(charts.dataset.range);
    Monoenv.poll(charts.dataset.url, render, slow ? 120000 : 30000);
  });
})();
