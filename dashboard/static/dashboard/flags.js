/* Flags: every flag with its services, current shares, last change and verdict; failing first. */
"use strict";
(() => {
  const { el, fmt, link, badge, timeEl } = Monoenv;
  const table = document.getElementById("flags");

  /* "on 10 % · off 90 %": each cohort's share of the recent evaluations. */
  function sharesText(shares) {
    const parts = Object.entries(shares).map(([cohort, pct]) => `${cohort} ${fmt.pct(pct, 1)}`);
    return parts.length ? parts.join(" \u00b7 ") : "not evaluated lately";
  }

  function servicesCell(row) {
    const cell = el("td", { class: "name hide-phone" });
    row.services.forEach((service, i) => {
      if (i) cell.append(", ");
      cell.append(link(service.url, service.name));
      if (service.demo) cell.append(Monoenv.demoBadge());
    });
    return cell;
  }

  function changeCell(change) {
    if (!change) return el("td", { class: "hide-phone muted" }, "none recorded");
    return el("td", { class: "hide-phone" }, link(change.url, timeEl(change.at)),
      el("div", { class: "muted small" }, [change.source, change.actor].filter(Boolean).join(" \u00b7 ")));
  }

  function render(data) {
    Monoenv.replaceRows(table.querySelector("tbody"), data.flags, (row) => {
      const change = row.last_change;
      const tr = el("tr", { class: "clickable" },
        el("td", { class: "name mono" }, link(row.url, row.flag)),
        servicesCell(row),
        el("td", { class: "small" }, sharesText(row.shares)),
        el("td", { class: "num hide-phone" }, fmt.count(row.evaluations)),
        changeCell(change),
        el("td", {}, row.verdict ? badge(row.verdict) : el("span", { class: "muted" }, "no change")),
        el("td", { class: "hide-phone small" }, change ? change.verdict_reason : ""));
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("a")) window.location.href = row.url;
      });
      return tr;
    }, "No flag evaluated yet. Flags appear once services send feature_flag.evaluation events.", 7);
  }

  document.addEventListener("DOMContentLoaded", () => {
    render(Monoenv.initialData());
    Monoenv.poll(table.dataset.url, render, 30000);
  });
})();
