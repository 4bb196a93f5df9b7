// chancy_lite dashboard: confirmations, and live updates over server-sent events (paused while the tab is hidden).
"use strict";
(function () {
  const body = document.body;
  const status = document.getElementById("live-status");
  const live = document.getElementById("live");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  let source = null;
  let version = null;
  let lastRefresh = 0;
  let refreshTimer = null;

  // Forms that ask first (purge, cancel, bulk actions).
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // Scripts calling the API with the session cookie send the CSRF token as a header.
  window.chancyLite = {
    post: function (path, data) {
      return fetch(body.dataset.root + path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(data || {}),
      });
    },
  };

  function formatCount(entry) {
    return entry.count.toLocaleString("en-US") + (entry.exact ? "" : "+");
  }

  function showStatus(text, on) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("off", !on);
  }

  // Fetch the page's live part again (the server renders only that block) and swap it in, keeping any open
  // <details> open. At most once a second.
  function refresh() {
    if (!live || live.dataset.refresh !== "yes") return;
    const wait = 1000 - (Date.now() - lastRefresh);
    if (wait > 0) {
      if (!refreshTimer) refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, wait);
      return;
    }
    lastRefresh = Date.now();
    fetch(window.location.href, { headers: { "X-Chancy-Partial": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) return null;
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        const open = Array.from(live.querySelectorAll("details[open] > summary")).map(function (s) { return s.textContent; });
        live.innerHTML = html;
        live.querySelectorAll("details > summary").forEach(function (s) {
          if (open.indexOf(s.textContent) >= 0) s.parentElement.open = true;
        });
        body.dispatchEvent(new CustomEvent("chancy:refreshed"));
      })
      .catch(function () {});
  }

  function connect() {
    if (source || !body.dataset.events || !window.EventSource) return;
    source = new EventSource(body.dataset.events);
    source.addEventListener("summary", function (event) {
      const summary = JSON.parse(event.data);
      if (summary.error) { showStatus("database busy", false); return; }
      showStatus("live", true);
      Object.keys(summary.counts || {}).forEach(function (state) {
        document.querySelectorAll('[data-count="' + state + '"]').forEach(function (el) {
          el.textContent = formatCount(summary.counts[state]);
        });
      });
      if (version !== null && summary.version !== version) refresh();
      version = summary.version;
    });
    source.onerror = function () { showStatus("reconnecting", false); };
  }

  function disconnect() {
    if (source) { source.close(); source = null; }
    showStatus("paused", false);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      disconnect();
    } else {
      connect();
      refresh();
    }
  });
  if (!document.hidden) connect();
})();
