// fleetdb UI: keyboard navigation and live rows. No framework, no requests but to this server.
"use strict";

function rows() {
  return Array.from(document.querySelectorAll("#hosts tbody tr, table.kind tbody tr"));
}

function focusRow(delta) {
  const all = rows();
  if (all.length === 0) return;
  const at = all.indexOf(document.activeElement);
  const next = all[Math.min(all.length - 1, Math.max(0, at < 0 ? 0 : at + delta))];
  next.focus();
}

document.addEventListener("keydown", (event) => {
  const typing = event.target.matches("input, textarea, select");
  if (event.key === "Escape" && typing) {
    event.target.blur();
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const row = document.activeElement && document.activeElement.closest("tr[data-name]");
  if (event.key === "/") {
    const search = document.getElementById("q");
    if (search) {
      event.preventDefault();
      search.focus();
      search.select();
    }
  } else if (event.key === "j") {
    focusRow(1);
  } else if (event.key === "k") {
    focusRow(-1);
  } else if (event.key === "Enter" && row) {
    const link = row.querySelector("a");
    if (link) link.click();
  } else if (event.key === "x" && row) {
    const box = row.querySelector("input[type=checkbox]");
    if (box) box.checked = !box.checked;
  }
});

document.addEventListener("change", (event) => {
  if (event.target.id === "all") {
    for (const box of document.querySelectorAll("#hosts tbody input[type=checkbox]")) {
      box.checked = event.target.checked;
    }
  }
});

// Live rows: the server sends each changed host's row (or that it left the page's filter).
function follow(table) {
  const source = new EventSource(table.dataset.stream);
  const body = table.querySelector("tbody");
  const find = (name) => Array.from(body.rows).find((r) => r.dataset.name === name);
  source.addEventListener("row", (event) => {
    const { name, html } = JSON.parse(event.data);
    const old = find(name);
    if (!old) return; // not on this page
    const checked = old.querySelector("input[type=checkbox]")?.checked;
    const focused = document.activeElement === old;
    const template = document.createElement("template");
    template.innerHTML = "<table><tbody>" + html + "</tbody></table>";
    const fresh = template.content.querySelector("tr");
    if (!fresh) return;
    if (fresh.outerHTML === old.outerHTML) return; // what the page shows already
    const box = fresh.querySelector("input[type=checkbox]");
    if (box && checked) box.checked = true;
    old.replaceWith(fresh);
    if (focused) fresh.focus();
    fresh.classList.add("changed");
    setTimeout(() => fresh.classList.remove("changed"), 1500);
  });
  source.addEventListener("gone", (event) => {
    const { name } = JSON.parse(event.data);
    const old = find(name);
    if (old) old.classList.add("gone");
  });
  source.addEventListener("reload", () => window.location.reload());
  document.documentElement.dataset.live = "connecting";
  source.addEventListener("open", () => { document.documentElement.dataset.live = "on"; });
  source.addEventListener("error", () => { document.documentElement.dataset.live = "reconnecting"; });
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("#hosts[data-stream]");
  if (table) follow(table);
});
