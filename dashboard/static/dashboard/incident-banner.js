/* The open incidents banner, refreshed in place, and the overview's line of DORA figures.
 * Incident titles carry span data: they reach the page only as text. */
"use strict";
(() => {
  const { el, fmt } = Monoenv;

  function incidentNode(incident) {
    const parts = [incident.status, incident.severity, incident.services.join(", ")];
    if (incident.proposal) parts.push(`Monoenv proposes ${incident.proposal}`);
    return el("div", { class: "banner bad" },
      el("span", { class: "title" }, Monoenv.link(incident.url, `Incident #${incident.id} ${incident.title}`)),
      " \u00b7 " + parts.join(" \u00b7 "));
  }

  function pollIncidents() {
    const box = document.getElementById("open-incident-rows");
    if (!box) return;
    Monoenv.poll(box.dataset.url, (data) => box.replaceChildren(...data.incidents.map(incidentNode)), 30000);
  }

  function pollDora() {
    const line = document.getElementById("dora-line");
    if (!line) return;
    Monoenv.poll(line.dataset.url, (data) => {
      const m = data.metrics;
      const rate = m.change_fail_rate.rate === null ? null : m.change_fail_rate.rate * 100;
      line.textContent = [
        `${m.deployment_frequency.deploys} deploys (${m.deployment_frequency.per_day.toFixed(2)} a day, ${m.deployment_frequency.level})`,
        `lead time ${fmt.duration(m.lead_time.median_seconds)}`,
        `change fail rate ${fmt.pct(rate)}`,
        `recovery ${fmt.duration(m.recovery_time.median_seconds)}`,
        `rework ${fmt.pct(m.rework_rate.rate === null ? null : m.rework_rate.rate * 100)}`,
      ].join(" · ");
    }, 60000)();
  }

  document.addEventListener("DOMContentLoaded", () => {
    pollIncidents();
    pollDora();
  });
})();
