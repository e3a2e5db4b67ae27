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

// A table row; each cell is labelled with its column's heading (data-label), which the
// narrow (phone) layout shows in front of the value instead of the table's head.
function row(table, cells) {
  const heads = [...document.querySelectorAll(`#${table} thead th`)].map((th) => th.textContent);
  const tr = document.createElement("tr");
  cells.forEach((cell, index) => {
    const td = cell instanceof Node ? cell : el("td", cell);
    if (heads[index]) td.dataset.label = heads[index];
    tr.appendChild(td);
  });
  return tr;
}

// Long decimals in event fields (duration_ms=28.729999999999997) cut to three places.
function tidy(text) {
  return String(text).replace(/(\d+\.\d{3})\d+/g, "$1");
}

// Buckets each host owns in each rule, from the rules' owner maps.
function bucketsByRule(status) {
  return (status.rules || []).map((rule) => {
    const owned = {};
    for (const o of rule.owners) if (o) owned[o] = (owned[o] || 0) + 1;
    return owned;
  });
}

// This host's checks that are down and acted on (not ignored by the panic rule).
function downChecks(status) {
  return (status.checks || []).filter((c) => c.health === "down" && !c.panic);
}

function replaceRows(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

function drawMembers(status) {
  const inView = new Set(status.view_members || []);
  const byRule = bucketsByRule(status);
  const rules = status.rules || [];
  // One count per rule ("128 · 0"), named in the heading, instead of the sum over rules.
  document.querySelector("#members thead th.buckets").textContent = rules.length > 1
    ? `buckets (${rules.map((r, i) => i === rules.length - 1 ? "fallback" : `rule ${i + 1}`).join(" · ")})`
    : "buckets";
  const down = downChecks(status);
  replaceRows("members", (status.members || []).map((m) => {
    const host = el("td", `${m.id}${m.id === status.host_id ? " (this host)" : ""}${inView.has(m.id) ? "" : " · not in view"}`);
    host.style.borderLeft = `0.5em solid ${colour(m.id)}`;
    host.style.paddingLeft = "0.4em";
    const state = el("td", m.state, `state-${m.state}`);
    if (m.id === status.host_id && down.length > 0) {
      state.appendChild(el("span", ` · check ${down.map((c) => c.name).join(", ")} down`, "health-down"));
    } else if ((m.check_down_rules || []).length > 0) {
      // A peer's heartbeat says which rules its checks keep it out of, not which check.
      const named = m.check_down_rules.map((slot) => `rule ${slot + 1}`).join(", ");
      state.appendChild(el("span", ` · check down (${named})`, "health-down"));
    }
    const buckets = byRule.length > 0 ? byRule.map((owned) => owned[m.id] || 0).join(" · ") : m.buckets;
    return row("members", [
      host,
      state,
      el("td", m.mac, "mac"),
      el("td", buckets),
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
    const hosts = Object.keys(owned);
    if (hosts.length === 1 && owned[hosts[0]] === rule.owners.length) {
      // One owner for every bucket (a single-host rule): a bar says as much as a grid.
      const bar = el("div", `all ${rule.owners.length} buckets: host ${hosts[0]}`, "whole");
      bar.style.setProperty("--c", colour(Number(hosts[0])));
      block.appendChild(bar);
      return block;
    }
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
  replaceRows("checks", checks.map((c) => row("checks", [
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
    const at = new Date(e.at * 1000);
    const ms = String(at.getMilliseconds()).padStart(3, "0");
    item.appendChild(el("time", `${at.toLocaleTimeString(undefined, { hour12: false })}.${ms}`));
    item.appendChild(el("strong", e.name));
    if (e.fields) item.appendChild(document.createTextNode(" " + tidy(e.fields)));
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
  const down = downChecks(status);
  const panic = (status.checks || []).filter((c) => c.panic);
  const health = document.getElementById("health");
  health.hidden = down.length === 0 && panic.length === 0;
  health.replaceChildren(...[
    ...down.map((c) => el("span", `check ${c.name} is down: host ${status.host_id} leaves the rules it guards to the others (${c.action}).`, "health-down")),
    ...panic.map((c) => el("span", `check ${c.name} is down on every host that serves its rules: ignored, the rules stay served.`, "state-draining")),
  ]);
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
