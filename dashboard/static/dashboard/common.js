/* Helpers shared by every page: formatting with units, local times, safe DOM
 * building and polling. Telemetry text only ever reaches the page through
 * textContent or attributes set by the DOM API, never through innerHTML. */
"use strict";

const Monoenv = (() => {
  const dash = "\u2014";

  function number(value, digits) {
    return value.toLocaleString(undefined, {
      minimumFractionDigits: digits, maximumFractionDigits: digits,
    });
  }

  const fmt = {
    rate(value) {
      if (value === null || value === undefined) return dash;
      const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
      return number(value, digits) + " req/s";
    },
    pct(value, digits) {
      if (value === null || value === undefined) return dash;
      if (digits === undefined) digits = Math.abs(value) >= 10 ? 1 : 2;
      return number(value, digits) + " %";
    },
    ms(value) {
      if (value === null || value === undefined) return dash;
      if (value >= 10000) return number(value / 1000, 1) + " s";
      if (value >= 1000) return number(value / 1000, 2) + " s";
      if (value >= 10) return number(value, 0) + " ms";
      if (value >= 1) return number(value, 1) + " ms";
      return number(value * 1000, 0) + " \u00b5s";
    },
    count(value) {
      if (value === null || value === undefined) return dash;
      return number(value, 0);
    },
    requests(value) {
      if (value === null || value === undefined) return dash;
      return number(value, 0) + (value === 1 ? " request" : " requests");
    },
    multiple(value) {
      if (value === null || value === undefined) return dash;
      return number(value, value >= 10 ? 0 : 2) + "\u00d7";
    },
    duration(seconds) {
      if (seconds === null || seconds === undefined) return dash;
      if (seconds < 90) return Math.round(seconds) + " s";
      if (seconds < 5400) return Math.round(seconds / 60) + " min";
      if (seconds < 172800) return number(seconds / 3600, 1) + " h";
      return number(seconds / 86400, 1) + " d";
    },
    localTime(iso, withSeconds) {
      const date = new Date(iso);
      const options = { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
      if (withSeconds) options.second = "2-digit";
      return date.toLocaleString(undefined, options);
    },
    utcTitle(iso) {
      return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace("Z", "") + " UTC";
    },
  };

  /* Build an element; children may be strings (set as text) or nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function timeEl(iso, withSeconds) {
    if (!iso) return document.createTextNode(dash);
    const node = el("time", { datetime: iso, title: fmt.utcTitle(iso) });
    node.textContent = fmt.localTime(iso, withSeconds);
    return node;
  }

  /* Server-rendered <time> elements carry UTC; show them in local time. */
  function localizeTimes(root) {
    for (const node of (root || document).querySelectorAll("time[datetime]")) {
      const iso = node.getAttribute("datetime");
      node.title = fmt.utcTitle(iso);
      node.textContent = fmt.localTime(iso, node.dataset.seconds === "1");
    }
  }

  function replaceRows(tbody, rows, makeRow, emptyText, columns) {
    const fresh = rows.map(makeRow);
    if (!fresh.length) {
      /* The text sticks to the visible part of a wide table, so a phone reads all of it. */
      fresh.push(el("tr", {}, el("td", { class: "empty", colspan: String(columns) },
        el("div", { class: "empty-text" }, emptyText))));
    }
    labelCells(tbody.closest("table"), fresh);
    tbody.replaceChildren(...fresh);
  }

  /* Each cell carries its column's name: on a phone, rows stack as cards and show it. */
  function labelCells(table, rows) {
    const heads = table && table.tHead ? [...table.tHead.rows[0].cells] : [];
    if (heads.length) table.classList.add("stack");
    for (const row of rows) {
      [...row.cells].forEach((cell, i) => {
        if (heads[i] && !cell.classList.contains("empty")) {
          cell.dataset.label = heads[i].textContent.trim();
          if (heads[i].classList.contains("key")) cell.classList.add("key");
        }
      });
    }
  }

  function demoBadge() {
    return el("span", { class: "badge demo", title: "made up by the built-in demo (MONOENV_DEMO)" }, "demo");
  }

  function bannerNode(banner) {
    const node = el("p", { class: "banner " + banner.level, role: "alert" }, banner.text + " ",
      el("span", { class: "small" }, `(${banner.at_label} `, timeEl(banner.at), ") "));
    if (banner.url) node.append(link(banner.url, banner.link_text || "Details"));
    return node;
  }

  /* A few banners, then the rest folded away, so the table stays above the fold. */
  function renderBanners(box, shown, more) {
    const nodes = shown.map(bannerNode);
    if (more && more.length) {
      nodes.push(el("details", { class: "more-banners" },
        el("summary", {}, `${more.length} more alert${more.length === 1 ? "" : "s"}`),
        ...more.map(bannerNode)));
    }
    box.replaceChildren(...nodes);
  }

  function link(href, text) {
    return el("a", { href: href }, text);
  }

  function badge(text, kind) {
    return el("span", { class: "badge " + (kind || text || "") }, text);
  }

  /* Plotly renders a subset of HTML in labels; entity-escape ours. */
  function plotText(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  /* Plotly draws date strings as given; give it the browser's local wall time. */
  function plotTime(iso) {
    const d = new Date(iso);
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function layout(unit, extra) {
    const base = {
      margin: { l: 56, r: 16, t: 28, b: 36 },
      height: undefined,
      autosize: true,
      showlegend: true,
      /* Above the plot, so it never meets the tick labels below it. */
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      hovermode: "x unified",
      /* Invisible outside ticks push the labels off the axes, so the first date
       * label (under the y axis when the data starts at the left edge) never
       * meets the lowest y label. */
      xaxis: { type: "date", gridcolor: "#eef0f3", automargin: true, tickangle: 0,
        nticks: window.innerWidth < 700 ? 3 : 4,
        ticks: "outside", ticklen: 10, tickcolor: "rgba(0,0,0,0)" },
      yaxis: { title: { text: unit }, rangemode: "tozero", gridcolor: "#eef0f3", zeroline: false,
        automargin: true, ticks: "outside", ticklen: 6, tickcolor: "rgba(0,0,0,0)" },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, sans-serif", size: 12, color: "#1c2330" },
    };
    const merged = Object.assign({}, base, extra || {});
    for (const axis of ["xaxis", "yaxis"]) {
      if (extra && extra[axis]) merged[axis] = Object.assign({}, base[axis], extra[axis]);
    }
    return merged;
  }

  const plotConfig = { displayModeBar: false, responsive: true };

  /* Poll a JSON endpoint; pause while the tab is hidden; a 401 means log in again. */
  function poll(url, onData, intervalMs) {
    let timer = null;
    let inFlight = false;
    async function tick() {
      if (inFlight || document.hidden) return;
      inFlight = true;
      try {
        const response = await fetch(typeof url === "function" ? url() : url, {
          credentials: "same-origin", headers: { Accept: "application/json" },
        });
        if (response.status === 401) {
          window.location.reload();
          return;
        }
        if (response.ok) {
          onData(await response.json());
          setStale(false);
        } else {
          setStale(true);
        }
      } catch (error) {
        setStale(true);
      } finally {
        inFlight = false;
      }
    }
    function start() {
      if (!timer) timer = setInterval(tick, intervalMs || 30000);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) tick();
    });
    start();
    return tick;
  }

  function setStale(stale) {
    const marker = document.getElementById("updated");
    if (!marker) return;
    marker.classList.toggle("bad", stale);
    if (stale) {
      marker.textContent = "update failed, retrying";
      marker.removeAttribute("title");
    } else {
      const now = new Date();
      marker.textContent = "updated " + now.toLocaleTimeString();
      marker.title = fmt.utcTitle(now.toISOString());
    }
  }

  function initialData() {
    const node = document.getElementById("initial-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function colorFor(level) {
    return { ok: "#1a7f43", pass: "#1a7f43", warn: "#d48a00", inconclusive: "#d48a00",
      pending: "#8a94a6", fail: "#b42318", bad: "#b42318" }[level] || "#8a94a6";
  }

  /* The changes on a time chart: a line at each and a marker on top that opens it.
   * Flag changes are dashed diamonds, deploys dotted triangles (last, so a deploy
   * drawn at the same minute stays on top); both coloured by their verdict. */
  function changeMarkers(deploys, flagChanges) {
    const when = (change) => plotTime(change.at || change.started_at);
    const groups = [
      ["flag changes", flagChanges || [], "dash", "diamond", (c) => `flag ${c.flag}: ${c.verdict}`],
      ["deploys", deploys || [], "dot", "triangle-down", (d) => `${d.version}: ${d.verdict}`],
    ];
    const shapes = [];
    const traces = [];
    for (const [name, items, dash, symbol, label] of groups) {
      if (!items.length) continue;
      for (const item of items) {
        shapes.push({ type: "line", xref: "x", yref: "paper", y0: 0, y1: 1, x0: when(item), x1: when(item),
          line: { color: colorFor(item.verdict), width: 1.5, dash } });
      }
      traces.push({
        name, type: "scatter", mode: "markers", yaxis: "y2", showlegend: false,
        x: items.map(when), y: items.map(() => 1), customdata: items.map((item) => item.url),
        text: items.map((item) => plotText(label(item))),
        hovertemplate: (name === "deploys" ? "deploy " : "") + "%{text}<extra></extra>",
        marker: { symbol, size: 13, color: items.map((item) => colorFor(item.verdict)),
          line: { width: 1, color: "#fff" } },
      });
    }
    return { shapes, traces };
  }

  /* A click on a change marker opens that change (once per chart node). */
  function openMarkersOnClick(node) {
    if (node.dataset.clicks) return;
    node.dataset.clicks = "1";
    node.on("plotly_click", (event) => {
      const point = event.points.find((p) => p.data.name === "deploys" || p.data.name === "flag changes");
      if (point) window.location.href = point.customdata;
    });
  }

  document.addEventListener("DOMContentLoaded", () => localizeTimes(document));

  return { fmt, el, timeEl, localizeTimes, replaceRows, link, badge, plotText, plotTime,
    layout, plotConfig, poll, initialData, colorFor, dash, demoBadge, renderBanners,
    changeMarkers, openMarkersOnClick };
})();
