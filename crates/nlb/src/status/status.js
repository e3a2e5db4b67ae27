// The nlb status page: polls /status.json every second and redraws. Every value from the
// daemon is set as text, never as HTML: member MACs, check errors and event fields come
// from the network or from the checked service.
"use strict";

const REFRESH_MS = 1000;

function colour(host) {
  if (!host) return "";
  return `hsl(${(host * 137.508) % 360}, 62%, 52%)`;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function replaceRows(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

function drawMembers(status) {
  const inView = new Set(status.view_members || []);
  replaceRows("members", (status.members || []).map((m) => {
    const host = el("td", `${m.id}${m.id === status.host_id ? " (this host)" : ""}${inView.has(m.id) ? "" : " · not in view"}`);
    host.style.borderLeft = `0.5em solid ${colour(m.id)}`;
    host.style.paddingLeft = "0.4em";
    return row([
      host,
      el("td", m.state, `state-${m.state}`),
      el("td", m.mac, "mac"),
      el("td", m.buckets),
      el("td", m.id === status.host_id ? "—" : `${Math.round(m.last_heard_ms)} ms ago`),
      el("td", m.config_matches ? "same" : "differs", m.config_matches ? "" : "health-down"),
    ]);
  }));
}

function drawRules(status) {
  const owners = new Set();
  const blocks = (status.rules || []).map((rule) => {
    const block = el("div", null, "rule");
    const owned = {};
    for (const o of rule.owners) if (o) { owners.add(o); owned[o] = (owned[o] || 0) + 1; }
    const shares = Object.entries(owned).map(([h, n]) => `host ${h}: ${n}`).join(", ") || "nobody";
    block.appendChild(el("h3", `${rule.label} — ${rule.mode}, affinity ${rule.affinity} — ${shares}`));
    const grid = el("div", null, "grid");
    rule.owners.forEach((owner, bucket) => {
      const cell = el("i");
      if (owner) cell.style.setProperty("--c", colour(owner));
      cell.title = `bucket ${bucket}: ${owner ? "host " + owner : "nobody"}`;
      grid.appendChild(cell);
    });
    block.appendChild(grid);
    return block;
  });
  document.getElementById("rules").replaceChildren(...blocks);
  document.getElementById("legend").replaceChildren(...[...owners].sort((a, b) => a - b).map((h) => {
    const item = el("span", `host ${h}`);
    item.style.setProperty("--c", colour(h));
    return item;
  }));
}

function drawChecks(status) {
  const checks = status.checks || [];
  document.getElementById("nochecks").hidden = checks.length > 0;
  replaceRows("checks", checks.map((c) => row([
    el("td", c.name),
    el("td", c.type),
    el("td", c.panic ? `${c.health} (ignored: down on every host)` : c.health, `health-${c.health}`),
    el("td", c.last_passed === null ? "not yet" : c.last_passed ? "passed" : "failed"),
    el("td", c.last_error || "", "error"),
    el("td", c.transitions),
  ])));
}

function drawEvents(status) {
  const events = (status.events || []).slice().reverse();
  document.getElementById("events").replaceChildren(...events.map((e) => {
    const item = el("li", null, `level-${e.level}`);
    item.appendChild(el("time", new Date(e.at * 1000).toLocaleTimeString()));
    item.appendChild(el("strong", e.name));
    if (e.fields) item.appendChild(document.createTextNode(" " + e.fields));
    return item;
  }));
}

function draw(status) {
  document.getElementById("cluster").textContent =
    `${(status.vips || []).join(", ")} · ${status.mode} · ${status.cluster_mac}`;
  const summary = document.getElementById("summary");
  summary.replaceChildren(
    document.createTextNode(`host ${status.host_id} is `),
    el("strong", status.state, `state-${status.state}`),
    document.createTextNode(` · view ${status.view_epoch} of hosts ${(status.view_members || []).join(", ")} · ${status.connections} connections`),
  );
  const banner = document.getElementById("banner");
  const trouble = status.misconfigured || (status.daemon && !status.daemon.dataplane_healthy
    ? "the data plane is failing closed: this host serves nothing until nft works again (see the log)" : "");
  banner.hidden = !trouble;
  banner.textContent = trouble || "";
  drawMembers(status);
  drawRules(status);
  drawChecks(status);
  drawEvents(status);
}

async function refresh() {
  try {
    const response = await fetch("/status.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`status ${response.status}`);
    draw(await response.json());
    document.body.dataset.loaded = "yes";
  } catch (err) {
    const banner = document.getElementById("banner");
    banner.hidden = false;
    banner.textContent = `cannot reach the daemon (${err.message}); retrying`;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
