/* The overview's line of DORA figures, fetched once the page has loaded. */
"use strict";
(() => {
  document.addEventListener("DOMContentLoaded", () => {
    const line = document.getElementById("dora-line");
    if (!line) return;
    const { fmt } = Monoenv;
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
  });
})();
