// The dashboard: asks /api/state every 2 s and writes every value with textContent (never innerHTML),
// so a command or a name holding markup shows as text.
"use strict";

const STATES = ["waiting", "queued", "running", "held", "scheduled", "succeeded", "failed", "cancelled"];
const REFRESH_MS = 2000;

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : String(value);
  if (className) td.className = className;
  row.appendChild(td);
}

function fill(table, rows, render) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren();
  for (const item of rows) {
    const row = document.createElement("tr");
    render(row, item);
    body.appendChild(row);
  }
}

function showCounts(counts) {
  const head = document.querySelector("#counts thead tr");
  head.replaceChildren();
  cell(head, "queue");
  for (const s of STATES) cell(head, s);
  const queues = Object.keys(counts).sort();
  const total = {};
  fill("counts", queues.concat(queues.length > 1 ? ["all"] : []), (row, q) => {
    cell(row, q, q === "all" ? "total" : "");
    for (const s of STATES) {
      const n = q === "all" ? total[s] || 0 : (counts[q][s] || 0);
      if (q !== "all") total[s] = (total[s] || 0) + n;
      cell(row, n, n ? `state-${s}` : "zero");
    }
  });
}

function show(state) {
  showCounts(state.counts);
  fill("workers", state.workers, (row, w) => {
    cell(row, w.name);
    cell(row, w.host);
    cell(row, w.state, `state-${w.state}`);
    cell(row, w.slots);
    cell(row, w.running);
    cell(row, w.queues.join(", "));
  });
  fill("jobs", state.jobs, (row, j) => {
    cell(row, j.id);
    cell(row, j.state, `state-${j.state}`);
    cell(row, j.queue);
    cell(row, j.owner);
    cell(row, j.worker);
    cell(row, j.exit_code);
    cell(row, j.command, "command");
  });
}

function status(text, ok) {
  const el = document.getElementById("connection");
  el.textContent = text;
  el.className = ok ? "connection ok" : "connection down";
}

async function refresh() {
  try {
    const reply = await fetch("/api/state", { cache: "no-store", credentials: "same-origin" });
    if (reply.status === 401) {
      window.location.assign("/login");
      return;
    }
    const state = await reply.json();
    if (!reply.ok) {
      status(`broker unavailable: ${state.error}`, false);
      return;
    }
    status(`connected to ${state.broker}`, true);
    show(state);
  } catch (err) {
    status(`gridd web does not answer: ${err}`, false);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
