/* Timeline of changes: every service's deploys and flag changes coloured by verdict; click opens one. */
"use strict";
(() => {
  const { el, link, badge, timeEl, plotTime, plotText } = Monoenv;
  const table = document.getElementById("deploys");

  function padBefore(startIso, endIso) {
    const start = new Date(startIso).getTime();
    const end = new Date(endIso).getTime();
    return new Date(start - Math.max((end - start) * 0.05, 60000)).toISOString();
  }

  /* One point per service a change touched; a flag change naming none sits on its flag's row. */
  function points(changes, kind) {
    const found = [];
    for (const change of changes.filter((c) => c.kind === kind)) {
      const rows = kind === "deploy" ? [change.service]
        : change.services.length ? change.services : [`flag ${change.flag}`];
      for (const row of rows) found.push({ row, change });
    }
    return found;
  }

  function markers(name, found, symbol, label) {
    return {
      name, type: "scatter", mode: "markers",
      x: found.map((p) => plotTime(p.change.at)), y: found.map((p) => plotText(p.row)),
      customdata: found.map((p) => p.change.url),
      text: found.map((p) => plotText(label(p.change))),
      hovertemplate: "%{text}<extra></extra>",
      marker: { size: 12, symbol, color: found.map((p) => Monoenv.colorFor(p.change.verdict)),
        line: { width: 1, color: "#fff" } },
    };
  }

  function renderChart(data) {
    const node = document.getElementById("chart-timeline");
    const deploys = points(data.changes, "deploy");
    const flags = points(data.changes, "flag");
    const rows = [...new Set(deploys.concat(flags).map((p) => p.row))].sort();
    node.style.height = Math.max(180, 60 + rows.length * 28) + "px";
    Plotly.react(node, [
      markers("deploys", deploys, "triangle-down", (d) => `deploy ${d.service} ${d.version}: ${d.verdict}`),
      markers("flag changes", flags, "diamond", (c) => `flag ${c.flag}: ${c.verdict}`),
    ], Monoenv.layout("", {
      showlegend: false, hovermode: "closest", margin: { l: 120, r: 16, t: 8, b: 36 },
      /* From the first change shown (a little before it), not from the period's start. */
      xaxis: { type: "date", range: [plotTime(padBefore(data.data_start, data.generated_at)),
        plotTime(data.generated_at)] },
      yaxis: { type: "category", automargin: true, gridcolor: "#eef0f3",
        categoryorder: "array", categoryarray: rows.map(plotText) },
    }), Monoenv.plotConfig);
    if (!node.dataset.clicks) {
      node.dataset.clicks = "1";
      node.on("plotly_click", (event) => { window.location.href = event.points[0].customdata; });
    }
  }

  function deployCells(row) {
    return [
      el("td", { class: "name" }, link(row.service_url, row.service), row.demo ? Monoenv.demoBadge() : null),
      el("td", { class: "name mono" }, link(row.url, row.version),
        row.previous_version ? el("div", { class: "muted small" }, "from " + row.previous_version) : null),
      el("td", {}, badge(row.verdict), row.rollback ? el("span", { class: "muted small" }, " rollback") : null),
      el("td", { class: "hide-phone small" }, row.verdict_reason),
      el("td", { class: "hide-phone muted small" }, [row.source, row.deployer].filter(Boolean).join(" \u00b7 ")),
    ];
  }

  function flagCells(row) {
    return [
      el("td", { class: "name" }, row.services.length ? row.services.join(", ") : Monoenv.dash,
        row.demo ? Monoenv.demoBadge() : null),
      el("td", { class: "name mono" }, el("span", { class: "muted small" }, "flag "), link(row.url, row.flag)),
      el("td", {}, badge(row.verdict)),
      el("td", { class: "hide-phone small" }, row.verdict_reason),
      el("td", { class: "hide-phone muted small" }, [row.source, row.actor].filter(Boolean).join(" \u00b7 ")),
    ];
  }

  function render(data) {
    Monoenv.replaceRows(table.querySelector("tbody"), data.changes, (row) => {
      const tr = el("tr", { class: "clickable", dataset: { href: row.url, kind: row.kind } },
        el("td", { class: "hide-phone" }, timeEl(row.at)),
        ...(row.kind === "deploy" ? deployCells(row) : flagCells(row)));
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("a")) window.location.href = row.url;
      });
      return tr;
    }, "No changes match.", 6);
    renderChart(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(table.dataset.url, render, 30000);
  });
})();
