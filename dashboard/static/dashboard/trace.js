/* Trace view: durations with units; tell the reader when late spans arrive. */
"use strict";
(() => {
  const { el, fmt } = Monoenv;

  function formatDurations() {
    for (const node of document.querySelectorAll("[data-ms]")) {
      const prefix = node.textContent.trim().startsWith("+") ? "+" : "";
      node.textContent = prefix + fmt.ms(parseFloat(node.dataset.ms));
    }
  }

  function checkForNewSpans(data) {
    const known = parseInt(document.getElementById("span-count").dataset.count, 10);
    const box = document.getElementById("new-spans");
    if (data.span_count > known) {
      const more = data.span_count - known;
      box.replaceChildren(el("p", { class: "banner info" },
        `${more} more span${more === 1 ? "" : "s"} arrived. `,
        el("a", { href: window.location.pathname }, "Reload the trace")));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    formatDurations();
    Monoenv.poll(document.getElementById("waterfall").dataset.url, checkForNewSpans, 30000);
  });
})();
