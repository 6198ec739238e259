// profilesync web UI: small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Filter a list of choices as the user types (the "Select table" step).
  document.querySelectorAll("[data-filter]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("data-filter"));
    var count = document.getElementById(input.getAttribute("data-filter") + "-count");
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      var shown = 0;
      list.querySelectorAll("[data-name]").forEach(function (item) {
        var match = item.getAttribute("data-name").toLowerCase().indexOf(needle) !== -1;
        item.hidden = !match;
        if (match) shown += 1;
      });
      if (count) count.textContent = shown + " table" + (shown === 1 ? "" : "s") + " shown";
    });
  });

  // "+ Add field" adds a property row in place instead of a round trip.
  var addButton = document.getElementById("add-field");
  var rows = document.getElementById("prop-rows");
  var template = document.getElementById("prop-row-template");
  function renumber() {
    rows.querySelectorAll(".prop-row").forEach(function (row, i) {
      row.querySelectorAll("[data-label]").forEach(function (el) {
        el.textContent = el.getAttribute("data-label") + " " + (i + 1);
      });
      var remove = row.querySelector("button[name=action]");
      if (remove) remove.value = "remove_field:" + i;
    });
  }
  if (addButton && rows && template) {
    addButton.addEventListener("click", function (event) {
      event.preventDefault();
      var row = template.content.firstElementChild.cloneNode(true);
      var stamp = String(Date.now());
      row.querySelectorAll("[id]").forEach(function (el) { el.id = el.id + "-" + stamp; });
      row.querySelectorAll("label[for]").forEach(function (el) { el.htmlFor = el.htmlFor + "-" + stamp; });
      rows.appendChild(row);
      renumber();
      row.querySelector("select").focus();
    });
    rows.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-remove]");
      if (!button) return;
      event.preventDefault();
      button.closest(".prop-row").remove();
      renumber();
      addButton.focus();
    });
  }

  // The display name follows the chosen column until the user types one.
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!select.matches || !select.matches("select[name=prop_column]")) return;
    var name = select.closest(".prop-row").querySelector("input[name=prop_name]");
    if (name && (!name.value || name.getAttribute("data-auto") === "1")) {
      name.value = select.value;
      name.setAttribute("data-auto", "1");
    }
  });
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("input[name=prop_name]")) {
      event.target.removeAttribute("data-auto");
    }
  });

  // Copy the fix SQL of a failed check.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.getAttribute("data-copy")).textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      }
    });
  });

  // Ask before destructive actions.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // While a sync is queued or running, refresh the page until it is done.
  var live = document.querySelector("[data-refresh]");
  if (live) {
    window.setTimeout(function () { window.location.replace(window.location.pathname); }, Number(live.getAttribute("data-refresh")) || 1500);
  }
})();
