// graphile-worker admin: live refresh of <main>, and a live check of the add form's JSON.
// Loaded from the admin itself (the Content Security Policy allows no inline script).
"use strict";

(function () {
  var LIVE_KEY = "graphile-worker-admin-live";

  function liveWanted() {
    try {
      return window.localStorage.getItem(LIVE_KEY) !== "off";
    } catch (error) {
      return true;
    }
  }

  function rememberLive(on) {
    try {
      window.localStorage.setItem(LIVE_KEY, on ? "on" : "off");
    } catch (error) {
      // Storage may be disabled; the checkbox still works for this page.
    }
  }

  // Someone typing in a filter, choosing from a list or selecting text to copy must not
  // have the page replaced under them.
  function busy(toggle) {
    var active = document.activeElement;
    if (active && active !== toggle && active.matches("input, textarea, select")) {
      return true;
    }
    var selection = window.getSelection ? window.getSelection() : null;
    return Boolean(selection && selection.toString());
  }

  function startLiveRefresh() {
    var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
    var toggle = document.querySelector('[data-testid="live-toggle"]');
    var main = document.getElementById("content");
    if (!(seconds > 0) || !toggle || !main) {
      return;
    }
    toggle.checked = liveWanted();
    toggle.addEventListener("change", function () {
      rememberLive(toggle.checked);
    });
    var label = toggle.closest("label");
    // Text typed into a filter and left there (focus moved on) must survive too: once a
    // field inside <main> changed, the page waits until it is submitted or left.
    var edited = false;
    main.addEventListener("input", function () {
      edited = true;
    });

    function schedule() {
      window.setTimeout(refresh, seconds * 1000);
    }

    function refresh() {
      if (!toggle.checked || edited || document.hidden || busy(toggle)) {
        schedule();
        return;
      }
      window
        .fetch(window.location.href, {
          headers: { "X-Admin-Fragment": "1" },
          credentials: "same-origin",
          cache: "no-store",
        })
        .then(function (response) {
          var type = response.headers.get("Content-Type") || "";
          if (type.indexOf("text/html") !== 0) {
            throw new Error("not a page");
          }
          return response.text();
        })
        .then(function (html) {
          // Checked again: focus may have moved while the request was out.
          if (toggle.checked && !edited && !busy(toggle)) {
            main.innerHTML = html;
          }
          if (label) {
            label.classList.remove("offline");
          }
        })
        .catch(function () {
          if (label) {
            label.classList.add("offline");
          }
        })
        .then(schedule);
    }

    schedule();
  }

  function checkJsonFields() {
    var fields = document.querySelectorAll("textarea[data-json]");
    Array.prototype.forEach.call(fields, function (field) {
      var form = field.closest("form");
      var message = form ? form.querySelector('[data-testid="payload-error"]') : null;
      function check() {
        var problem = "";
        if (field.value.trim() !== "") {
          try {
            JSON.parse(field.value);
          } catch (error) {
            problem = "The payload is not valid JSON: " + error.message;
          }
        }
        field.setAttribute("aria-invalid", problem ? "true" : "false");
        // A field with a custom validity message keeps the browser from submitting.
        field.setCustomValidity(problem);
        if (message) {
          message.textContent = problem;
          message.hidden = !problem;
        }
      }
      field.addEventListener("input", check);
      check();
    });
  }

  function start() {
    startLiveRefresh();
    checkJsonFields();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
