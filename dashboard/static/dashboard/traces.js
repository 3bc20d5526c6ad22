/* Trace search: results refresh while the range is relative to now. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl } = Monoenv;
  const table = document.getElementById("results");
  const tbody = table.querySelector("tbody");
  const form = document.getElementById("trace-search");

  function statusCell(row) {
    const label = row.http_status ? String(row.http_status) : (row.is_error ? "error" : "ok");
    return el("td", { class: "num" }, badge(label, row.is_error ? "bad" : "ok"));
  }

  function render(rows) {
    Monoenv.replaceRows(tbody, rows, (row) => {
      const href = `${table.dataset.traceUrl}${row.trace_id}/`;
      const tr = el("tr", { class: "clickable" },
        el("td", { class: "hide-phone" }, timeEl(row.start_time, true)),
        el("td", { class: "name hide-phone" }, row.service, row.demo ? Monoenv.demoBadge() : null),
        el("td", { class: "name" }, link(href, row.name),
          row.route && row.route !== row.name ? el("div", { class: "muted small" }, row.route) : null),
        statusCell(row),
        el("td", { class: "num" }, fmt.ms(row.duration_ms),
          row.trace_duration_ms !== undefined && row.trace_duration_ms !== row.duration_ms
            ? el("div", { class: "muted small" }, "trace " + fmt.ms(row.trace_duration_ms)) : null),
        el("td", { class: "num hide-phone" }, fmt.count(row.span_count),
          el("div", { class: "muted small" }, `${fmt.count(row.service_count)} svc`)),
        el("td", { class: "mono small hide-phone" }, row.trace_id.slice(0, 16) + "\u2026"));
      tr.addEventListener("click", (event) => {
        if (event.target.closest("a")) return;
        window.location.href = href;
      });
      return tr;
    }, "No traces match. Widen the time range or remove a filter.", 7);
  }

  /* datetime-local is the browser's wall time; send UTC instants instead. */
  function wireRangeInputs() {
    const from = document.getElementById("from-local");
    const to = document.getElementById("to-local");
    const pad = (n) => String(n).padStart(2, "0");
    const toLocal = (iso) => {
      const d = new Date(iso);
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
    };
    if (form.start.value) from.value = toLocal(form.start.value);
    if (form.end.value) to.value = toLocal(form.end.value);
    form.addEventListener("submit", () => {
      form.start.value = from.value ? new Date(from.value).toISOString() : "";
      form.end.value = to.value ? new Date(to.value).toISOString() : "";
      for (const input of form.querySelectorAll("input, select")) {
        if (input.name && !input.value) input.disabled = true;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    wireRangeInputs();
    if (table.dataset.live === "1") {
      Monoenv.poll(table.dataset.url, (data) => render(data.traces), 30000);
    }
  });
})();
