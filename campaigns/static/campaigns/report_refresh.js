// A running campaign's report refreshes in place: the page is fetched again and its live part (#report-live)
// swapped in, so the reader keeps their place on the page and in every wide table scrolled sideways, where a
// full reload would throw both away. It stops once the campaign no longer runs (the fetched page says so).
(function () {
  "use strict";
  var live = document.getElementById("report-live");
  if (!live) { return; }
  var seconds = parseInt(live.dataset.refreshSeconds, 10);
  if (!seconds) { return; }

  function scrolled() {
    return Array.prototype.map.call(live.querySelectorAll(".scroll"), function (box) { return box.scrollLeft; });
  }

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("the server answered " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("report-live");
        if (!next) { throw new Error("the answer holds no report (signed out?)"); }
        var lefts = scrolled(), x = window.scrollX, y = window.scrollY;
        live.replaceChildren.apply(live, Array.prototype.map.call(next.childNodes, function (node) {
          return document.importNode(node, true);
        }));
        live.querySelectorAll(".scroll").forEach(function (box, i) {
          if (i < lefts.length) { box.scrollLeft = lefts[i]; }
        });
        window.scrollTo(x, y);
        seconds = parseInt(next.dataset.refreshSeconds, 10);
        live.dataset.refreshSeconds = next.dataset.refreshSeconds || "";
        live.dataset.refreshedAt = String(Date.now());
        document.getElementById("refresh-error").textContent = "";
      })
      .catch(function (error) {
        document.getElementById("refresh-error").textContent = "Could not refresh: " + error.message;
      })
      .finally(function () {
        if (seconds) { window.setTimeout(refresh, seconds * 1000); }
      });
  }

  window.setTimeout(refresh, seconds * 1000);
})();
