/* Deploys timeline: every service's deploys coloured by verdict; click opens one. */
"use strict";
(() => {
  const { el, link, badge, timeEl, plotTime, plotText } = Monoenv;
  const table = document.getElementById("deploys");

  function padBefore(startIso, endIso) {
    const start = new Date(startIso).getTime();
    const end = new Date(endIso).getTime();
    return new Date(start - Math.max((end - start) * 0.05, 60000)).toISOString();
  }

  function renderChart(data) {
    const node = document.getElementById("chart-timeline");
    const deploys = data.deploys;
    const services = [...new Set(deploys.map((d) => d.service))].sort();
    node.style.height = Math.max(180, 60 + services.length * 28) + "px";
    Plotly.react(node, [{
      name: "deploys", type: "scatter", mode: "markers",
      x: deploys.map((d) => plotTime(d.started_at)), y: deploys.map((d) => plotText(d.service)),
      customdata: deploys.map((d) => d.url),
      text: deploys.map((d) => plotText(`${d.service} ${d.version}: ${d.verdict}`)),
      hovertemplate: "%{text}<extra></extra>",
      marker: { size: 12, symbol: "diamond", color: deploys.map((d) => Monoenv.colorFor(d.verdict)),
        line: { width: 1, color: "#fff" } },
    }], Monoenv.layout("", {
      showlegend: false, hovermode: "closest", margin: { l: 120, r: 16, t: 8, b: 36 },
      /* From the first deploy shown (a little before it), not from the period's start. */
      xaxis: { type: "date", range: [plotTime(padBefore(data.data_start, data.generated_at)),
        plotTime(data.generated_at)] },
      yaxis: { type: "category", automargin: true, gridcolor: "#eef0f3" },
    }), Monoenv.plotConfig);
    if (!node.dataset.clicks) {
      node.dataset.clicks = "1";
      node.on("plotly_click", (event) => { window.location.href = event.points[0].customdata; });
    }
  }

  function render(data) {
    Monoenv.replaceRows(table.querySelector("tbody"), data.deploys, (row) => {
      const tr = el("tr", { class: "clickable", dataset: { href: row.url } },
        el("td", { class: "hide-phone" }, timeEl(row.started_at)),
        el("td", { class: "name" }, link(row.service_url, row.service), row.demo ? Monoenv.demoBadge() : null),
        el("td", { class: "name mono" }, link(row.url, row.version),
          row.previous_version ? el("div", { class: "muted small" }, "from " + row.previous_version) : null),
        el("td", {}, badge(row.verdict), row.rollback ? el("span", { class: "muted small" }, " rollback") : null),
        el("td", { class: "hide-phone small" }, row.verdict_reason),
        el("td", { class: "hide-phone muted small" }, [row.source, row.deployer].filter(Boolean).join(" · ")));
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("a")) window.location.href = row.url;
      });
      return tr;
    }, "No deploys match.", 6);
    renderChart(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(table.dataset.url, render, 30000);
  });
})();
