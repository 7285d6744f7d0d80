// The dashboard refreshes its figures in place: fetch the JSON, update the numbers and rebuild the small
// tables, so the page never reloads and the reader keeps their scroll position. Text only (textContent).
(function () {
  "use strict";
  var root = document.querySelector(".herald-dashboard");
  if (!root) return;
  var url = root.dataset.jsonUrl;
  var seconds = Math.max(2, parseInt(root.dataset.refreshSeconds, 10) || 5);

  function lookup(data, path) {
    return path.split(".").reduce(function (value, key) {
      if (value == null) return undefined;
      return key === "length" && Array.isArray(value) ? value.length : value[key];
    }, data);
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function link(td, href, text) {
    td.textContent = "";
    var a = document.createElement("a");
    a.href = href;
    a.textContent = String(text);
    td.appendChild(a);
  }

  function fill(tableId, items, columns, emptyText, build) {
    var body = document.querySelector("#" + tableId + " tbody");
    var rows = [];
    items.forEach(function (item) {
      var tr = document.createElement("tr");
      build(tr, item);
      rows.push(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      cell(tr, emptyText).colSpan = columns;
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
  }

  function render(data) {
    document.getElementById("as-of").textContent = data.as_of;
    root.querySelectorAll("[data-figure]").forEach(function (el) {
      var value = lookup(data, el.dataset.figure);
      el.textContent = value == null ? "0" : String(value);
    });
    fill("campaigns", data.campaigns, 5, root.dataset.textNone || "None.", function (tr, c) {
      tr.dataset.campaign = c.id;
      var name = cell(tr, "");
      link(name, c.url, c.name);
      name.appendChild(document.createTextNode(" · "));
      var report = document.createElement("a");
      report.href = c.report_url;
      report.textContent = root.dataset.textReport || "report";
      name.appendChild(report);
      cell(tr, c.status_label);
      cell(tr, c.finished + " / " + c.total, "num");
      var bar = document.createElement("progress");
      bar.max = c.total || 1;
      bar.value = c.finished;
      cell(tr, "").appendChild(bar);
      cell(tr, c.states_shown);
    });
    fill("actions", data.actions_shown, 2, root.dataset.textNoneYet || "None yet.", function (tr, row) {
      tr.dataset.action = row[0];  // [action, its label, attempts]
      cell(tr, row[1]);
      cell(tr, row[2], "num");
    });
    fill("recent", data.recent, 7, root.dataset.textNoneYet || "None yet.", function (tr, r) {
      link(cell(tr, ""), r.log_url, r.call);
      cell(tr, r.phone);
      cell(tr, r.campaign);
      cell(tr, r.attempt, "num");
      cell(tr, r.status_label);
      cell(tr, r.action_label || "-");
      cell(tr, r.ended_at);
    });
    fill("stalled", data.stalled_workers, 5, "", function (tr, w) {
      cell(tr, w.name);
      cell(tr, w.queues);
      cell(tr, w.pid, "num");
      cell(tr, w.seen_at);
      cell(tr, w.held, "num");
    });
    document.getElementById("stalled").hidden = !data.stalled_workers.length;
  }

  function refresh() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.json();
      })
      .then(function (data) {
        render(data);
        document.getElementById("refresh-error").textContent = "";
      })
      .catch(function (error) {
        document.getElementById("refresh-error").textContent =
          (root.dataset.textRefreshFailed || "Could not refresh:") + " " + error.message;
      })
      .finally(function () { window.setTimeout(refresh, seconds * 1000); });
  }

  window.setTimeout(refresh, seconds * 1000);
})();
