/* Deploy page: verdict, findings, distributions, new errors, budget and suspects. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl, plotTime, plotText } = Monoenv;
  const box = document.getElementById("verdict");

  function value(unit, number) {
    if (number === null || number === undefined) return Monoenv.dash;
    if (unit === "ms") return fmt.ms(number);
    if (unit === "%") return fmt.pct(number);
    if (unit === "req/min") return fmt.count(Math.round(number)) + " req/min";
    return fmt.count(number);
  }

  function change(row) {
    if (row.change === null) return Monoenv.dash;
    const sign = row.change > 0 ? "+" : "";
    if (row.unit === "%") return `${sign}${row.change.toFixed(2)} pp`;
    const relative = row.change_pct === null ? "" : ` (${sign}${row.change_pct.toFixed(1)} %)`;
    if (row.unit === "ms") return sign + fmt.ms(row.change) + relative;
    return sign + fmt.count(Math.round(row.change)) + relative;
  }

  const metricNames = { error_rate: "error rate", rollout_error_rate: "errors during rollout",
    latency_p50: "p50 latency", latency_p95: "p95 latency", latency_p99: "p99 latency",
    rollout_throughput: "throughput during rollout" };

  function renderBanner(data) {
    const title = { pass: "Pass", fail: "Fail", inconclusive: "Inconclusive", pending: "Pending" }[data.verdict] || data.verdict;
    const checkpoint = data.checkpoint === null ? "" : ` at ${data.checkpoint} minutes`;
    const more = data.verdict === "inconclusive" && data.more_requests_needed
      ? ` Roughly ${fmt.count(data.more_requests_needed)} more requests are needed.` : "";
    const told = data.headline.length ? data.headline : [(data.verdict_reason || "No analysis has run yet.") + more];
    box.replaceChildren(el("div", { class: "banner " + data.level, role: "status" },
      el("div", { class: "title" }, `${title}${checkpoint}`),
      el("ul", { class: "headline" }, ...told.map((line) => el("li", {}, line))),
      data.headline.length && data.verdict_reason
        ? el("details", { class: "small" }, el("summary", {}, "the analysis's own words"), data.verdict_reason + more) : null));
    const meta = document.getElementById("deploy-meta");
    meta.replaceChildren("deployed ", timeEl(data.started_at, true),
      data.previous_version ? ` · from ${data.previous_version}` : "",
      ` · ${data.environment} · ${data.source}`, data.deployer ? ` by ${data.deployer}` : "",
      data.commit_sha ? ` · commit ${data.commit_sha.slice(0, 12)}` : "",
      data.rollback ? " · rollback" : "");
  }

  /* Statistics live on hover: p-value, confidence, interval and threshold. */
  function statistics(row) {
    const parts = [];
    if (row.p_value !== null) parts.push(`p = ${row.p_value.toPrecision(2)}`);
    if (row.confidence_pct !== null) parts.push(`confidence ${row.confidence_pct.toFixed(1)} %`);
    if (row.interval) parts.push(`interval ${row.interval.map((v) => v.toPrecision(3)).join(" to ")}`);
    if (row.threshold) parts.push(`threshold ${row.threshold}`);
    return parts.join(" · ");
  }

  function renderFindings(data) {
    document.getElementById("findings-note").textContent =
      data.findings.length ? `${data.findings.filter((f) => f.significant).length} significant` : "";
    Monoenv.replaceRows(document.querySelector("#findings tbody"), data.findings, (row) => el("tr", { title: statistics(row) },
      el("td", {}, metricNames[row.metric] || row.metric, row.significant ? " " : null,
        row.significant ? badge(row.direction === "up" ? "worse" : "changed", "bad") : null),
      el("td", { class: "name" }, row.route),
      el("td", { class: "num hide-phone" }, value(row.unit, row.baseline)),
      el("td", { class: "num hide-phone" }, value(row.unit, row.candidate)),
      el("td", { class: "num " + (row.significant ? "bad" : "") }, change(row)),
      el("td", { class: "num hide-phone" }, `${fmt.count(row.baseline_n)} / ${fmt.count(row.candidate_n)}`),
      el("td", { class: "num hide-phone" }, row.confidence_pct === null ? Monoenv.dash : fmt.pct(row.confidence_pct, 1)),
      el("td", {}, link(row.traces_url, "examples"))),
    "No findings yet: the first checkpoint is 5 minutes after the deploy.", 8);
  }

  function suspectRow(row) {
    return el("tr", {},
      el("td", { class: "num" }, String(row.rank)),
      el("td", { class: "name" }, link(row.url, `${row.service} ${row.version}`), " ",
        el("span", { class: "muted small" }, timeEl(row.started_at))),
      el("td", {}, badge(row.verdict)),
      el("td", { class: "small hide-phone" }, row.evidence));
  }

  function renderLists(data) {
    const tracesUrl = box.dataset.traces;
    document.getElementById("new-errors-card").hidden = !data.new_errors.length;
    Monoenv.replaceRows(document.querySelector("#new-errors tbody"), data.new_errors, (row) => el("tr", {},
      el("td", { class: "name mono" }, row.error_type),
      el("td", { class: "num" }, fmt.count(row.count)),
      el("td", { class: "mono small" }, ...row.traces.flatMap((id, i) =>
        [i ? " " : null, link(`${tracesUrl}${id}/`, id.slice(0, 12) + "\u2026")]),
        " ", link(row.traces_url, "all"))),
    "No error types new in this version.", 3);
    Monoenv.replaceRows(document.querySelector("#budget tbody"), data.budget_impact, (row) => el("tr", {},
      el("td", { class: "name" }, row.slo),
      el("td", { class: "num hide-phone" }, `${fmt.count(row.bad)} ${row.unit}`),
      el("td", { class: "num" }, fmt.pct(row.budget_consumed_pct, 1)),
      el("td", { class: "num" }, fmt.pct(row.budget_remaining_pct, 1))),
    "This service has no SLOs.", 4);
    const card = document.getElementById("suspects-card");
    const total = data.suspects.length + data.more_suspects.length;
    card.hidden = !total;
    card.open = data.verdict === "fail";
    document.getElementById("suspects-note").textContent = total ? `${total} in all` : "";
    Monoenv.replaceRows(document.querySelector("#suspects tbody"), data.suspects, suspectRow, "", 4);
    document.getElementById("more-suspects").hidden = !data.more_suspects.length;
    document.querySelector("#more-suspects summary").textContent = `show all ${total}`;
    document.querySelector("#suspects-rest tbody").replaceChildren(...data.more_suspects.map(suspectRow));
    Monoenv.replaceRows(document.querySelector("#history tbody"), data.history, (row) => el("tr", {},
      el("td", {}, `${row.checkpoint} min`),
      el("td", {}, badge(row.verdict)),
      el("td", { class: "small hide-phone" }, row.reason),
      el("td", { class: "num hide-phone" }, `${fmt.count(row.baseline_requests)} / ${fmt.count(row.candidate_requests)}`)),
    "Not analysed yet.", 4);
  }

  function renderCharts(data) {
    const latency = data.charts.latency;
    const labels = latency.buckets.map((b) => "\u2265 " + fmt.ms(b.lower_ms));
    const bars = [];
    if (latency.baseline.length) {
      bars.push({ name: plotText(`${data.previous_version} (baseline, ${fmt.count(latency.baseline_requests)} req)`),
        x: labels, y: latency.baseline, type: "bar", marker: { color: "#8a94a6" }, hovertemplate: "%{y:.2f} %" });
    }
    bars.push({ name: plotText(`${data.version} (new, ${fmt.count(latency.candidate_requests)} req)`),
      x: labels, y: latency.candidate, type: "bar", marker: { color: "#2f5bd3" }, hovertemplate: "%{y:.2f} %" });
    /* Horizontal labels, thinned to what fits: they never overprint each other or the legend. */
    const node = document.getElementById("chart-latency");
    const fits = Math.max(2, Math.floor((node.clientWidth || 320) / 90));
    const every = Math.max(1, Math.ceil(labels.length / fits));
    Plotly.react(node, bars, Monoenv.layout("% of requests", {
      barmode: "group", bargap: 0.15, margin: { l: 56, r: 16, t: 44, b: 36 },
      xaxis: { type: "category", tickangle: 0, tickmode: "array",
        tickvals: labels.filter((_, i) => i % every === 0), nticks: undefined },
      hovermode: "x unified" }), Monoenv.plotConfig);

    const palette = ["#8a94a6", "#d48a00", "#54a24b", "#b279a2"];
    const lines = data.charts.error_rate.map((series, i) => ({
      name: plotText(series.version + (series.is_new ? " (new)" : "")),
      x: series.points.map((p) => plotTime(p.t)), y: series.points.map((p) => p.error_pct),
      type: "scatter", mode: "lines", connectgaps: false, hovertemplate: "%{y:.2f} %",
      line: { width: series.is_new ? 2.2 : 1.4, color: series.is_new ? "#b42318" : palette[i % palette.length] },
    }));
    /* Flag changes of the service in the same minutes, next to the deploy's own line. */
    const flags = Monoenv.changeMarkers([], data.flag_changes || []);
    const errorsNode = document.getElementById("chart-errors");
    Plotly.react(errorsNode, lines.concat(flags.traces), Monoenv.layout("% errors", {
      margin: { l: 56, r: 16, t: 44, b: 36 },
      xaxis: { type: "date", range: [plotTime(data.charts.start), plotTime(data.charts.end)] },
      yaxis2: { overlaying: "y", range: [0, 1.05], visible: false, fixedrange: true },
      shapes: [{ type: "line", xref: "x", yref: "paper", y0: 0, y1: 1,
        x0: plotTime(data.started_at), x1: plotTime(data.started_at),
        line: { color: Monoenv.colorFor(data.verdict), dash: "dot", width: 1.5 } }].concat(flags.shapes),
    }), Monoenv.plotConfig);
    Monoenv.openMarkersOnClick(errorsNode);
  }

  let lastData = null;

  function render(data) {
    lastData = data;
    renderBanner(data);
    renderFindings(data);
    renderLists(data);
    renderCharts(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    /* On a phone the verdict, findings and budget come first; charts wait, folded. */
    const chartsCard = document.getElementById("charts-card");
    if (window.innerWidth < 700) chartsCard.open = false;
    chartsCard.addEventListener("toggle", () => {
      if (chartsCard.open && lastData) renderCharts(lastData);
    });
    render(Monoenv.initialData());
    Monoenv.poll(box.dataset.url, render, 30000);
  });
})();
