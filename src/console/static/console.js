// meterflow console: the two things HTML cannot do alone. Copy buttons, and the Usage tab's
// live totals from the server-sent events stream (no polling from the page).
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent;
  navigator.clipboard.writeText(text).then(() => { button.textContent = "Copied"; });
});
document.addEventListener("DOMContentLoaded", () => {
  const usage = document.querySelector("[data-usage-stream]");
  if (!usage || !window.EventSource) return;
  const state = document.getElementById("usage-state");
  const stream = new EventSource(usage.dataset.usageStream);
  stream.addEventListener("usage", (event) => {
    usage.innerHTML = event.data;
    if (state) { state.textContent = "Live: updated " + new Date().toLocaleTimeString(); state.classList.remove("stale"); }
  });
  stream.addEventListener("error", () => {
    if (state) { state.textContent = "Reconnecting…"; state.classList.add("stale"); }
  });
});
