/* Overview: every service's recent traffic, what serves now, SLO budget and latest deploy. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl } = Monoenv;
  const tbody = document.querySelector("#services tbody");

  function levelOfErrors(pct) {
    if (pct === null) return "";
    return pct >= 5 ? "bad" : pct >= 1 ? "warn" : "";
  }

  function budgetCell(slo) {
    if (!slo) return el("td", { class: "num muted" }, "no SLO");
    // A learning SLO still shows what is left: a page can fire while it learns.
    const left = fmt.pct(slo.budget_remaining_pct, 1) + " left";
    const text = slo.learning ? left + " · learning" : left;
    const cell = el("td", { class: "num " + (slo.level || ""), title: slo.title || "" });
    cell.append(slo.url ? link(slo.url, text) : text);
    return cell;
  }

  /* What serves now, with the verdict of the deploy that brought it when known. */
  function servingCell(row) {
    if (!row.serving.length) return el("td", { class: "muted" }, "nothing seen");
    const deploy = row.serving_deploy;
    const cell = el("td", { class: "mono" }, ...row.serving.flatMap((version, i) => {
      const parts = [i ? ", " : null, version];
      if (deploy && deploy.version === version) {
        parts.push(" ", el("a", { href: deploy.url, title: "the deploy of this version" }, badge(deploy.verdict)));
      }
      return parts;
    }));
    if (row.silent_since) cell.append(el("div", { class: "muted small" }, "silent since ", timeEl(row.silent_since)));
    return cell;
  }

  function deployCell(deploy) {
    if (!deploy) return el("td", { class: "muted hide-phone" }, "none");
    return el("td", { class: "hide-phone" },
      link(deploy.url, deploy.version), " ", badge(deploy.verdict), " ",
      el("span", { class: "muted small" }, timeEl(deploy.started_at)));
  }

  function drawSpark(chart, row) {
    const start = new Date(row.spark_start).getTime();
    const x = row.spark.map((_, i) => Monoenv.plotTime(new Date(start + i * 60000).toISOString()));
    Plotly.react(chart, [{
      x: x, y: row.spark, type: "scatter", mode: "lines", fill: "tozeroy", connectgaps: false,
      line: { width: 1.4, color: "#2f5bd3" }, fillcolor: "rgba(47,91,211,.12)", hoverinfo: "skip",
    }], {
      margin: { l: 0, r: 0, t: 2, b: 2 }, height: 34, width: 140, showlegend: false,
      xaxis: { visible: false, range: [x[0], x[x.length - 1]] },
      yaxis: { visible: false, rangemode: "tozero" },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    }, { staticPlot: true });
  }

  function render(data) {
    Monoenv.renderBanners(document.getElementById("banners"), data.banners, data.more_banners);
    const charts = [];
    Monoenv.replaceRows(tbody, data.services, (row) => {
      const chart = el("div", { class: "sparkline", dataset: { points: String(row.spark.length) } });
      if (row.spark.length) charts.push([chart, row]);
      return el("tr", {},
        el("td", { class: "name" }, link(row.url, row.service), row.demo ? Monoenv.demoBadge() : null),
        el("td", { class: "num" }, fmt.rate(row.rate)),
        el("td", { class: "num " + levelOfErrors(row.error_pct) }, fmt.pct(row.error_pct)),
        el("td", { class: "num hide-phone" }, fmt.ms(row.p95_ms)),
        el("td", { class: "spark hide-phone" }, chart),
        budgetCell(row.slo),
        servingCell(row),
        deployCell(row.deploy));
    }, "No services have sent spans yet. Point an OpenTelemetry exporter at /v1/traces.", 8);
    if (window.Plotly) charts.forEach(([chart, row]) => drawSpark(chart, row));
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(tbody.closest("table").dataset.url, render, 30000);
  });
})();
