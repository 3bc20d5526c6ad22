/* Overview: every service's last hour, SLO budget and latest deploy. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl } = Monoenv;
  const tbody = document.querySelector("#services tbody");
  const banners = document.getElementById("banners");

  function levelOfErrors(pct) {
    if (pct === null) return "";
    return pct >= 5 ? "bad" : pct >= 1 ? "warn" : "";
  }

  function budgetCell(slo) {
    if (!slo) return el("td", { class: "num muted" }, "no SLO");
    const text = fmt.pct(slo.budget_remaining_pct, 1) + " left";
    const cell = el("td", { class: "num " + (slo.level || ""), title: slo.title || "" });
    cell.append(slo.url ? link(slo.url, text) : text);
    return cell;
  }

  function deployCell(deploy) {
    if (!deploy) return el("td", { class: "muted" }, "none");
    return el("td", {},
      link(deploy.url, deploy.version), " ", badge(deploy.verdict), " ",
      el("span", { class: "muted small" }, timeEl(deploy.started_at)));
  }

  function sparkCell(row) {
    const cell = el("td", { class: "spark hide-phone" });
    const chart = el("div", { class: "sparkline" });
    cell.append(chart);
    return [cell, chart];
  }

  function drawSpark(chart, row) {
    const start = new Date(row.spark_start).getTime();
    const x = row.spark.map((_, i) => Monoenv.plotTime(new Date(start + i * 60000).toISOString()));
    Plotly.react(chart, [{
      x: x, y: row.spark, type: "scatter", mode: "lines", fill: "tozeroy",
      line: { width: 1.4, color: "#2f5bd3" }, fillcolor: "rgba(47,91,211,.12)", hoverinfo: "skip",
    }], {
      margin: { l: 0, r: 0, t: 2, b: 2 }, height: 34, width: 140, showlegend: false,
      xaxis: { visible: false }, yaxis: { visible: false, rangemode: "tozero" },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    }, { staticPlot: true });
  }

  function render(data) {
    banners.replaceChildren(...data.banners.map((banner) => {
      const node = el("p", { class: "banner " + banner.level, role: "alert" }, banner.text + " ",
        el("span", { class: "small" }, `(${banner.at_label} `, timeEl(banner.at), ") "));
      if (banner.url) node.append(link(banner.url, banner.link_text || "Details"));
      return node;
    }));
    const charts = [];
    Monoenv.replaceRows(tbody, data.services, (row) => {
      const [spark, chart] = sparkCell(row);
      charts.push([chart, row]);
      return el("tr", {},
        el("td", { class: "name" }, link(row.url, row.service)),
        el("td", { class: "num" }, fmt.rate(row.rate)),
        el("td", { class: "num " + levelOfErrors(row.error_pct) }, fmt.pct(row.error_pct)),
        el("td", { class: "num" }, fmt.ms(row.p95_ms)),
        spark,
        budgetCell(row.slo),
        deployCell(row.deploy));
    }, "No services have sent spans yet. Point an OpenTelemetry exporter at /v1/traces.", 7);
    if (window.Plotly) charts.forEach(([chart, row]) => drawSpark(chart, row));
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(tbody.closest("table").dataset.url, render, 30000);
  });
})();
