// Re-fetches the server-rendered overview every few seconds, so the page follows the instances without a reload.
// Paused while the tab is hidden; a 401 (the session ended) reloads the page, which then shows the sign-in form.
(() => {
  "use strict";
  const PERIOD_MS = 3000;
  const overview = document.getElementById("overview");
  const problem = document.getElementById("refresh-problem");
  let timer = null;

  function schedule() {
    clearTimeout(timer);
    timer = document.hidden ? null : setTimeout(refresh, PERIOD_MS);
  }

  async function refresh() {
    try {
      const response = await fetch(overview.dataset.refreshUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      }
      overview.innerHTML = await response.text();
      problem.hidden = true;
    } catch (error) {
      problem.textContent = `Not refreshed (${error.message}); trying again.`;
      problem.hidden = false;
    }
    schedule();
  }

  document.addEventListener("visibilitychange", () => (document.hidden ? clearTimeout(timer) : refresh()));
  schedule();
})();
