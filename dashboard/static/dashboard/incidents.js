/* Incidents: open first, then recent; action items across incidents. Polls in place. */
"use strict";
(() => {
  const { el, link, badge, timeEl, fmt } = Monoenv;
  const table = document.getElementById("incidents");

  function render(data) {
    Monoenv.replaceRows(table.querySelector("tbody"), data.incidents, (row) => el("tr", {},
      el("td", { class: "name" }, link(row.url, `#${row.id} ${row.title}`),
        row.proposal ? el("div", { class: "muted small" }, `Monoenv proposes ${row.proposal}`) : null),
      el("td", {}, badge(row.status, row.status === "resolved" ? "ok" : row.status === "open" ? "bad" : "warn")),
      el("td", {}, badge(row.severity, row.severity === "sev3" ? "warn" : "bad")),
      el("td", { class: "small" }, row.services.join(", ")),
      el("td", { class: "hide-phone" }, timeEl(row.started_at)),
      el("td", { class: "num" }, fmt.duration(row.duration_seconds)),
      el("td", { class: "num" }, fmt.pct(row.budget_burned_pct))), "No incidents yet.", 7);
    Monoenv.replaceRows(document.querySelector("#action-items tbody"), data.action_items, (item) => el("tr", {},
      el("td", {}, item.link && /^https?:\/\//.test(item.link) ? link(item.link, item.title) : item.title),
      el("td", {}, item.kind), el("td", {}, item.owner || Monoenv.dash),
      el("td", {}, badge(item.status, item.status === "done" ? "ok" : "pending")),
      el("td", { class: "hide-phone" }, link(item.incident_url, item.incident_title))),
    "No action items yet.", 5);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(table.dataset.url, render, 15000);
  });
})();
