/* One incident: impact tiles, the budget chart with change markers, the live
 * timeline and the suspects, refreshed in place. Forms are plain POSTs. */
"use strict";
(() => {
  const { el, link, timeEl, fmt, plotTime, plotText } = Monoenv;

  function tile(label, value) {
    return el("div", { class: "tile" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
  }

  function renderImpact(data) {
    const impact = data.impact || {};
    document.getElementById("impact").replaceChildren(
      tile("Failed requests", fmt.count(impact.failed_requests)),
      tile("Slow requests", fmt.count(impact.slow_requests)),
      tile("Affected users", fmt.count(impact.affected_users)),
      tile("Duration", fmt.duration(data.duration_seconds)),
      tile("Time to detect", fmt.duration(impact.time_to_detect_seconds)),
      tile("Time to mitigate", fmt.duration(impact.time_to_mitigate_seconds)),
      tile("Time to resolve", fmt.duration(impact.time_to_resolve_seconds)),
      tile("Budget burned", fmt.pct(data.budget_burned_pct)));
  }

  function renderChart(data) {
    const node = document.getElementById("chart-budget");
    const slos = (data.impact && data.impact.slos) || [];
    const traces = slos.map((slo) => ({
      name: plotText(slo.slo), type: "scatter", mode: "lines",
      x: slo.burn.map((p) => plotTime(p[0])), y: slo.burn.map((p) => p[1]),
      hovertemplate: "%{y:.1f} % of budget<extra>" + plotText(slo.slo) + "</extra>",
    }));
    traces.push({
      name: "changes", type: "scatter", mode: "markers",
      x: data.changes.map((c) => plotTime(c.at)), y: data.changes.map(() => 0),
      text: data.changes.map((c) => plotText(c.summary)), hovertemplate: "%{text}<extra></extra>",
      marker: { size: 12, symbol: "diamond", color: data.changes.map((c) => (c.kind === "rollback" ? "#1a7f43" : "#3157d5")) },
    });
    const shapes = [["started_at", "#b42318"], ["mitigated_at", "#d48a00"], ["resolved_at", "#1a7f43"]]
      .filter(([name]) => data.times[name])
      .map(([name, color]) => ({ type: "line", xref: "x", yref: "paper", y0: 0, y1: 1,
        x0: plotTime(data.times[name]), x1: plotTime(data.times[name]), line: { color, dash: "dot", width: 1 } }));
    Plotly.react(node, traces, Monoenv.layout("% of budget", { shapes }), Monoenv.plotConfig);
  }

  function renderTimeline(data) {
    document.getElementById("timeline-list").replaceChildren(...data.timeline.map((entry) => el("li", { class: "entry " + entry.kind },
      timeEl(entry.at, true), " ", el("span", { class: "badge" }, entry.kind.replace("_", " ")), " ",
      /^https?:\/\//.test(entry.link) ? link(entry.link, entry.summary) : entry.summary,
      entry.author ? el("span", { class: "muted small" }, " · " + entry.author) : null)));
  }

  function renderSuspects(data) {
    Monoenv.replaceRows(document.querySelector("#suspects tbody"), data.suspects, (s) => el("tr", {},
      el("td", {}, String(s.rank)),
      el("td", { class: "name" }, link(s.link, `${s.service} ${s.version}`)),
      el("td", { class: "num" }, s.score.toFixed(2)),
      el("td", { class: "hide-phone small" }, s.evidence)), "No suspects.", 4);
  }

  function render(data) {
    renderImpact(data);
    renderChart(data);
    renderTimeline(data);
    renderSuspects(data);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(document.getElementById("data-url").dataset.url, render, 15000);
  });
})();
