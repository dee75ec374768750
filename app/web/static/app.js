// mmdx pages: the little behaviour the server-rendered pages need (no framework, no CDN).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // worklist: swap in fresh rows every data-refresh-s seconds
  const rows = document.getElementById("worklist-rows");
  if (rows) {
    const every = Number(rows.dataset.refreshS || 30) * 1000;
    setInterval(async () => {
      try {
        const r = await fetch(rows.dataset.refreshUrl, { credentials: "same-origin" });
        if (r.ok) rows.innerHTML = await r.text();
      } catch (e) { /* offline for a moment: keep the rows shown */ }
    }, every);
  }
  // sign / amend / withdraw ask for confirmation; withdraw needs a reason
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      const needs = button.dataset.needs && document.getElementById(button.dataset.needs);
      if (needs && !needs.value.trim()) { event.preventDefault(); needs.focus(); return; }
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
  // key images: window presets re-render the picture on the server
  for (const button of document.querySelectorAll("button.preset")) {
    button.addEventListener("click", () => {
      const img = button.closest("figure").querySelector("img");
      img.src = img.dataset.base + "?preset=" + encodeURIComponent(button.dataset.preset);
    });
  }
});
