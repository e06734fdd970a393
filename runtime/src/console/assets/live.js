// journeyd console: keeps the parts of a page marked `data-live` up to
// date while journeys run. Every few seconds it fetches the page again
// and swaps in those parts; it waits while someone types in or has the
// focus inside one, and while the tab is hidden. Pages read the same
// without it.
(() => {
  const parts = document.querySelectorAll("[data-live]");
  if (parts.length === 0) return;
  const every = 2000;
  let typed = false;
  document.addEventListener("input", (event) => {
    if (event.target.closest("[data-live]")) typed = true;
  });
  const busy = () => {
    const focused = document.activeElement;
    return typed || document.hidden || (focused && focused !== document.body && focused.closest("[data-live]"));
  };
  async function refresh() {
    if (!busy()) {
      try {
        const response = await fetch(location.href, { credentials: "same-origin", redirect: "error" });
        if (response.ok) {
          const next = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = next.querySelectorAll("[data-live]");
          if (fresh.length === parts.length) {
            fresh.forEach((part, index) => {
              if (parts[index].innerHTML !== part.innerHTML) parts[index].innerHTML = part.innerHTML;
            });
          }
          document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
        }
      } catch (_) {
        // Signed out or the server is away: try again next time.
      }
    }
    setTimeout(refresh, every);
  }
  setTimeout(refresh, every);
})();
