/* Flag page: the chosen change's verdict, findings per variant, budget, new errors,
 * variant shares and each cohort's traffic with change markers, and the flag's changes. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl, plotTime, plotText } = Monoenv;
  const box = document.getElementById("verdict");
  const palette = ["#2f5bd3", "#d48a00", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#e45756", "#8a94a6"];
  const metricNames = { error_rate: "error rate", latency_p50: "p50 latency", latency_p95: "p95 latency",
    latency_p99: "p99 latency" };

  /* One colour per cohort, the same on every chart; the control is grey. */
  function colours(data) {
    const control = data.change ? data.change.control : "";
    const map = {};
    data.shares.cohorts.concat(data.cohorts.map((c) => c.cohort)).forEach((cohort) => {
      if (cohort in map) return;
      map[cohort] = cohort === control ? "#667085" : palette[Object.keys(map).length % palette.length];
    });
    return map;
  }

  function sharesText(shares) {
    const parts = Object.entries(shares || {}).map(([cohort, pct]) => `${cohort} ${fmt.pct(pct, 1)}`);
    return parts.length ? parts.join(" \u00b7 ") : Monoenv.dash;
  }

  function renderBanner(data) {
    const change = data.change;
    if (!change) {
      box.replaceChildren(el("p", { class: "banner info" }, "No change of this flag is recorded yet. "
        + "Post one to /api/v1/flags/changes, or Monoenv records one when the variant shares move."));
      return;
    }
    const title = { pass: "Pass", fail: "Fail", inconclusive: "Inconclusive", pending: "Pending",
      recovered: "Recovered" }[change.verdict] || change.verdict;
    const at = change.minute === null ? "" : ` at ${change.minute} minutes`;
    box.replaceChildren(el("div", { class: "banner " + change.level, role: "status" },
      el("div", { class: "title" }, `${title}${at}`),
      el("p", {}, change.verdict_reason),
      el("p", { class: "small" }, "changed ", timeEl(change.at, true), ` \u00b7 ${change.source}`,
        change.actor ? ` by ${change.actor}` : "",
        change.services.length ? ` \u00b7 ${change.services.join(", ")}` : "",
        change.control ? ` \u00b7 control: ${change.control}` : "",
        change.control_reason ? ` (${change.control_reason})` : ""),
      el("p", { class: "small" }, "shares before: ", sharesText(change.shares_before),
        " \u2192 after: ", sharesText(change.shares_after)),
      change.description ? el("p", { class: "small" }, change.description) : null));
  }

  function value(unit, number) {
    if (number === null || number === undefined) return Monoenv.dash;
    if (unit === "ms") return fmt.ms(number);
    if (unit === "%") return fmt.pct(number);
    return fmt.count(number);
  }

  function difference(row) {
    if (row.change === null) return Monoenv.dash;
    const sign = row.change > 0 ? "+" : "";
    if (row.unit === "%") return `${sign}${row.change.toFixed(2)} pp`;
    const relative = row.change_pct === null ? "" : ` (${sign}${row.change_pct.toFixed(1)} %)`;
    return (row.unit === "ms" ? sign + fmt.ms(row.change) : sign + fmt.count(Math.round(row.change))) + relative;
  }

  function renderTables(data) {
    const change = data.change || { findings: [], budget_impact: [], new_errors: [], history: [] };
    const tracesUrl = box.dataset.traces;
    const significant = change.findings.filter((f) => f.significant).length;
    document.getElementById("findings-note").textContent = change.control
      ? `each variant against the control, ${change.control}` + (significant ? ` \u00b7 ${significant} significant` : "")
      : "each variant against the control";
    Monoenv.replaceRows(document.querySelector("#findings tbody"), change.findings, (row) => el("tr", {},
      el("td", { class: "name mono" }, row.variant),
      el("td", {}, metricNames[row.metric] || row.metric, row.significant ? " " : null,
        row.significant ? badge(row.direction === "up" ? "worse" : "changed", "bad") : null),
      el("td", { class: "name hide-phone" }, `${row.service} \u00b7 ${row.route}`),
      el("td", { class: "num hide-phone" }, value(row.unit, row.baseline)),
      el("td", { class: "num hide-phone" }, value(row.unit, row.candidate)),
      el("td", { class: "num " + (row.significant ? "bad" : "") }, difference(row)),
      el("td", { class: "num hide-phone" }, `${fmt.count(row.baseline_n)} / ${fmt.count(row.candidate_n)}`),
      el("td", { class: "num hide-phone" }, row.confidence_pct === null ? Monoenv.dash : fmt.pct(row.confidence_pct, 1))),
    "No findings yet: the first look comes a minute after the change.", 8);
    Monoenv.replaceRows(document.querySelector("#budget tbody"), change.budget_impact, (row) => el("tr", {},
      el("td", { class: "name mono" }, row.variant),
      el("td", { class: "name" }, link(row.slo_url, row.slo), el("div", { class: "muted small" }, row.service)),
      el("td", { class: "num hide-phone" }, `${fmt.count(row.bad)} ${row.unit}`),
      el("td", { class: "num" }, fmt.pct(row.budget_consumed_pct, 1)),
      el("td", { class: "num hide-phone" }, fmt.pct(row.budget_remaining_pct, 1))),
    "No SLO of these services counts the flag's requests.", 5);
    document.getElementById("new-errors-card").hidden = !change.new_errors.length;
    Monoenv.replaceRows(document.querySelector("#new-errors tbody"), change.new_errors, (row) => el("tr", {},
      el("td", { class: "name mono" }, row.variant),
      el("td", { class: "name mono" }, row.error_type, el("div", { class: "muted small" }, row.service)),
      el("td", { class: "num" }, fmt.count(row.count)),
      el("td", { class: "mono small hide-phone" }, ...row.traces.flatMap((id, i) =>
        [i ? " " : null, link(`${tracesUrl}${id}/`, id.slice(0, 12) + "\u2026")]))),
    "No error type new in a variant.", 4);
    Monoenv.replaceRows(document.querySelector("#changes tbody"), data.changes, (row) => {
      const tr = el("tr", { class: "clickable" + (data.change && row.id === data.change.id ? " current" : "") },
        el("td", {}, link(row.url, timeEl(row.at))),
        el("td", { class: "hide-phone small" }, [row.source, row.actor].filter(Boolean).join(" \u00b7 ")),
        el("td", { class: "hide-phone small" }, `${sharesText(row.shares_before)} \u2192 ${sharesText(row.shares_after)}`),
        el("td", {}, badge(row.verdict)),
        el("td", { class: "hide-phone small" }, row.verdict_reason));
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("a")) window.location.href = row.url;
      });
      return tr;
    }, "No change recorded.", 5);
    Monoenv.replaceRows(document.querySelector("#history tbody"), change.history, (row) => el("tr", {},
      el("td", {}, `${row.minute} min`),
      el("td", {}, badge(row.verdict)),
      el("td", { class: "small hide-phone" }, row.reason)),
    "Not judged yet.", 3);
  }

  function draw(id, traces, unit, data, extra) {
    const markers = Monoenv.changeMarkers(data.deploys, data.markers);
    const node = document.getElementById(id);
    Plotly.react(node, traces.concat(markers.traces), Monoenv.layout(unit, Object.assign({
      shapes: markers.shapes,
      xaxis: { type: "date", range: [plotTime(data.shares.data_start), plotTime(data.end)] },
      yaxis2: { overlaying: "y", range: [0, 1.05], visible: false, fixedrange: true },
    }, extra || {})), Monoenv.plotConfig);
    Monoenv.openMarkersOnClick(node);
  }

  function renderCharts(data) {
    const colour = colours(data);
    /* Shares exist only where the flag was evaluated: a quiet step is left out, not drawn as 0 %. */
    const evaluated = data.shares.points.filter((p) => p.evaluations > 0);
    const x = evaluated.map((p) => plotTime(p.t));
    draw("chart-shares", data.shares.cohorts.map((cohort) => ({
      name: plotText(cohort), x, y: evaluated.map((p) => p.shares[cohort]),
      type: "scatter", mode: "lines", stackgroup: "shares", connectgaps: false,
      line: { width: 1, color: colour[cohort] }, hovertemplate: "%{y:.1f} %",
    })), "% of evaluations", data, { yaxis: { range: [0, 100], rangemode: "tozero" } });
    document.getElementById("service-note").textContent = data.service ? `of ${data.service}` : "";
    const perCohort = (field, template) => data.cohorts.map((series) => ({
      name: plotText(series.cohort), x: series.points.map((p) => plotTime(p.t)),
      y: series.points.map((p) => p[field]), type: "scatter", mode: "lines", connectgaps: false,
      line: { width: series.cohort === (data.change || {}).control ? 1.4 : 2, color: colour[series.cohort] },
      hovertemplate: template,
    }));
    draw("chart-rate", perCohort("rate", "%{y:.2f} req/s"), "req/s", data);
    draw("chart-errors", perCohort("error_pct", "%{y:.2f} %"), "%", data);
    draw("chart-latency", perCohort("p95_ms", "%{y:.1f} ms"), "ms", data);
  }

  function render(data) {
    renderBanner(data);
    renderTables(data);
    renderCharts(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    const slow = box.dataset.range === "24h";
    Monoenv.poll(box.dataset.url, render, slow ? 120000 : 30000);
  });
})();
