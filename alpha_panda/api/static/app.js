// Alpha Panda dashboard: polls the read API and renders it. No framework, nothing downloaded.
// Amounts arrive as exact rupee strings ("1234.50"); they are formatted as strings so the
// figures shown are exactly the ledger's, never float-rounded. Only the chart uses numbers.
"use strict";

const REFRESH_MS = 1500;
const BROKERS = ["paper", "zerodha"];
const IST = new Intl.DateTimeFormat("en-IN", {
  timeZone: "Asia/Kolkata", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const IST_DAY = new Intl.DateTimeFormat("en-IN", {
  timeZone: "Asia/Kolkata", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit",
  second: "2-digit", hour12: false,
});

let broker = initialBroker();
let generation = 0; // drops answers that arrive after the broker was switched

function initialBroker() {
  const fromHash = location.hash.replace("#", "");
  if (BROKERS.includes(fromHash)) return fromHash;
  const saved = localStorage.getItem("alpha-panda.broker");
  return BROKERS.includes(saved) ? saved : "paper";
}

/** "-1234567.50" -> "-₹12,34,567.50" (Indian grouping: lakh, crore), from the string. */
function inr(amount) {
  if (amount === null || amount === undefined) return "–";
  const negative = amount.startsWith("-");
  const [whole, frac = "00"] = (negative ? amount.slice(1) : amount).split(".");
  let grouped = whole;
  if (whole.length > 3) {
    const head = whole.slice(0, -3);
    grouped = head.replace(/\B(?=(\d{2})+(?!\d))/g, ",") + "," + whole.slice(-3);
  }
  return (negative ? "-" : "") + "₹" + grouped + "." + frac;
}

/** An amount in text that wraps: it wraps around the amount, never after its sign. */
function amount(text) {
  return el("span", { class: "amount" }, text);
}

function signClass(amount) {
  if (!amount || /^-?0+(\.0+)?$/.test(amount)) return "";
  return amount.startsWith("-") ? "loss" : "gain";
}

function signed(amount) {
  const text = inr(amount);
  return signClass(amount) === "gain" ? "+" + text : text;
}

/** Exact paise as a BigInt, from a rupee string: "-12.30" -> -1230n. */
function paise(amount) {
  const negative = amount.startsWith("-");
  const [whole, frac = "00"] = (negative ? amount.slice(1) : amount).split(".");
  const value = BigInt(whole) * 100n + BigInt(frac.padEnd(2, "0").slice(0, 2));
  return negative ? -value : value;
}

/** Rupee string of exact paise: 123450n -> "1234.50". */
function fromPaise(value) {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  return (negative ? "-" : "") + (abs / 100n).toString() + "." + (abs % 100n).toString().padStart(2, "0");
}

function istTime(iso) {
  return iso ? IST.format(new Date(iso)) : "–";
}

const IST_DATE = new Intl.DateTimeFormat("en-IN", { timeZone: "Asia/Kolkata", dateStyle: "short" });

// Times of a span: with the day when the span covers more than one IST day (the simulator
// goes through sessions; a long run or a replay covers days).
function spanFormatter(firstIso, lastIso) {
  const sameDay = IST_DATE.format(new Date(firstIso)) === IST_DATE.format(new Date(lastIso));
  return sameDay ? istTime : (iso) => (iso ? IST_DAY.format(new Date(iso)) : "–");
}

/** How the rows' times are written: with the day when they are of more than one IST day (a
 * replay over days, a run into the next session), else the time alone. Without it,
 * yesterday's 15:19:40 sell sat under today's 09:16:39 buy as if of the same day. */
function rowsTime(items) {
  const days = new Set(items.filter((x) => x.time).map((x) => IST_DATE.format(new Date(x.time))));
  return days.size > 1 ? (iso) => (iso ? IST_DAY.format(new Date(iso)) : "–") : istTime;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === "") continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function badge(text, cls) {
  return el("span", { class: "badge " + (cls ?? text) }, text);
}

/** Puts the rows in the table, keeping every row and cell that is already there as it is:
 * a row is matched by its data-key (an order's, a strategy's id), else by its content, and
 * only its cells that changed are replaced. So a poll in the middle of trading (every poll
 * changes some figure) leaves a focused button focused, and a press on it a click. */
function fillTable(id, rows, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  const columns = document.querySelectorAll(`#${id} thead th`).length;
  const wanted = rows.length ? rows
    : [el("tr", {}, el("td", { class: "empty", colspan: columns }, emptyText))];
  const keyOf = (row) => row.dataset.key ?? row.outerHTML;
  const old = new Map();
  for (const row of body.rows) {
    const k = keyOf(row);
    old.set(k, [...(old.get(k) ?? []), row]);
  }
  let cursor = body.firstElementChild;
  for (const row of wanted) {
    const kept = old.get(keyOf(row))?.shift();
    if (kept === undefined || kept.cells.length !== row.cells.length) {
      body.insertBefore(row, cursor);
      continue;
    }
    if (kept.className !== row.className) kept.className = row.className;
    const cells = [...row.cells];
    cells.forEach((cell, i) => {
      if (kept.cells[i].outerHTML !== cell.outerHTML) kept.cells[i].replaceWith(cell);
    });
    if (kept === cursor) cursor = cursor.nextElementSibling;
    else body.insertBefore(kept, cursor); // moved up (rows reordered): only then
  }
  while (cursor) {
    const next = cursor.nextElementSibling;
    cursor.remove();
    cursor = next;
  }
}

function setFigure(id, amount, { coloured = false } = {}) {
  const node = document.getElementById(id);
  node.textContent = coloured ? signed(amount) : inr(amount);
  node.className = "figure " + (coloured ? signClass(amount) : "");
}

/** An error answer (the API is up): told apart from no answer at all. */
async function apiError(path, response) {
  const body = await response.json().catch(() => ({}));
  const err = new Error(`${path}: ${response.status} ${detailText(body.detail) ?? response.statusText}`);
  err.fromApi = true;
  return err;
}

async function getJson(path, signal) {
  const response = await fetch(path, { cache: "no-store", signal });
  if (!response.ok && !(response.status === 503 && path === "/ready")) {
    throw await apiError(path, response);
  }
  return response.json();
}

/** A list route's rows, its X-Total-Count (rows before the limit) and X-Kept-Latest (the
 * read model keeps only the latest so many: a total that reaches it is "of the latest"). */
async function getList(path, signal) {
  const response = await fetch(path, { cache: "no-store", signal });
  if (!response.ok) throw await apiError(path, response);
  const items = await response.json();
  const kept = response.headers.get("X-Kept-Latest");
  return { items, total: Number(response.headers.get("X-Total-Count") ?? items.length),
           kept: kept === null ? null : Number(kept) };
}

/** "(15 of 120)", or "(15 of the latest 500)" when older rows are no longer kept. */
function countLabel(data) {
  const of = data.kept !== null && data.total >= data.kept ? `the latest ${data.kept}` : data.total;
  return `(${data.items.length} of ${of})`;
}

// An ISO date ("2026-04-07") as the dashboard writes days: "07 Apr 2026".
const DAY_OF_ISO = new Intl.DateTimeFormat("en-IN", {
  timeZone: "UTC", day: "2-digit", month: "short", year: "numeric",
});

/** A figure that may be absent (null: not written by this version of the projector). */
function signedOrDash(amount) { return amount === null || amount === undefined ? "–" : signed(amount); }

function renderSummary(p) {
  const day = document.getElementById("day-pnl");
  day.textContent = signedOrDash(p.day_pnl);
  day.className = "figure " + signClass(p.day_pnl);
  // the market's day (event time): a replay of April shows April's last day
  document.getElementById("day").textContent =
    p.day ? "IST day " + DAY_OF_ISO.format(new Date(p.day + "T00:00:00Z")) : "no trading day yet";
  // null on the live tab until Kite's funds are read: a dash, never a made-up figure
  setFigure("equity", p.equity);
  setFigure("cash", p.cash);
  document.getElementById("funds").textContent = p.funds ?? "";
  setFigure("realized", p.realized, { coloured: true });
  setFigure("unrealized", p.unrealized, { coloured: true });
  setFigure("charges", p.charges);
  document.getElementById("as-of").textContent =
    p.as_of_time ? "as of " + IST_DAY.format(new Date(p.as_of_time)) : "no events yet";
  document.getElementById("exposure").replaceChildren(
    "holdings ", amount(inr(p.market_value)), " · gross exposure ", amount(inr(p.gross_exposure)));
  const net = document.getElementById("net-pnl");
  net.textContent = signed(p.net_pnl);
  net.className = signClass(p.net_pnl);
  document.getElementById("fills").textContent = `${p.fills} fill${p.fills === 1 ? "" : "s"}`;
  document.getElementById("open-positions").textContent =
    `${p.open_positions} open position${p.open_positions === 1 ? "" : "s"}`;
}

const DAYS_SHOWN = 10;

/** The latest days first; each strategy's figure beside the account's. */
function renderDays(days) {
  const shown = days.slice(-DAYS_SHOWN).reverse();
  document.getElementById("days-count").textContent =
    days.length > DAYS_SHOWN ? `(latest ${DAYS_SHOWN} of ${days.length})` : "";
  fillTable("days", shown.map((d) => el("tr", {},
    el("td", {}, DAY_OF_ISO.format(new Date(d.day + "T00:00:00Z"))),
    el("td", { class: "num " + signClass(d.pnl) }, signed(d.pnl)),
    el("td", { class: "wrap muted" }, ...Object.entries(d.strategies)
      .flatMap(([sid, pnl], i) => [i ? " · " : "", `${sid} `, amount(signed(pnl))])),
  )), "No trading day yet.");
}

let openShown = null; // { broker, count }: the positions shown open, for the kill switch

function renderPositions(data) {
  openShown = { broker, count: data.items.filter((p) => p.quantity !== 0).length };
  document.getElementById("positions-count").textContent = `(${data.total})`;
  fillTable("positions", data.items.map((p) => el("tr", { class: p.quantity === 0 ? "closed" : "" },
    el("td", {}, el("strong", {}, p.symbol ?? String(p.instrument_token))),
    el("td", {}, p.strategy_id),
    el("td", {}, p.product),
    el("td", { class: "num" }, p.quantity.toLocaleString("en-IN")),
    el("td", { class: "num" }, inr(p.average_price)),
    el("td", { class: "num" }, inr(p.last_price)),
    el("td", { class: "num" }, inr(p.market_value)),
    el("td", { class: "num " + signClass(p.unrealized) }, signed(p.unrealized)),
    el("td", { class: "num " + signClass(p.realized) }, signed(p.realized)),
    el("td", { class: "num" }, inr(p.charges)),
    el("td", { class: "num " + signClass(p.day_pnl) }, signedOrDash(p.day_pnl)),
  )), "No positions yet: they appear with the first fill.");
}

// A trader's cancels, by "broker/order_id": "sending" while the request is out, then when it
// was accepted ({ since: the page's clock, requestedAt: the API's requested_at }). The table
// is redrawn by every poll, so a row's cancel state lives here and not in its button. It ends
// when the order shows closed, when the engine refuses that very request (the row says why),
// or CANCEL_WAIT_MS after it was accepted with the order still open (say, the engine is
// down): the trader may ask again.
const OPEN_ORDER = ["SUBMITTED", "PARTIALLY_FILLED"];
const CANCEL_WAIT_MS = 30000;
const cancels = new Map();
let shownOrders = null; // { broker, data } as last drawn, to redraw a row as soon as it changes
let ordersDrawn = "";

function cancelState(ofBroker, o) {
  const id = `${ofBroker}/${o.order_id}`;
  const asked = cancels.get(id);
  if (asked === undefined) return OPEN_ORDER.includes(o.status) ? "open" : "closed";
  const refused = asked !== "sending" && o.cancel_refused != null
    && o.cancel_requested_at === asked.requestedAt;
  if (asked !== "sending"
      && (refused || !OPEN_ORDER.includes(o.status) || Date.now() - asked.since > CANCEL_WAIT_MS)) {
    cancels.delete(id);
    return cancelState(ofBroker, o);
  }
  return "asked";
}

function cancelButton(ofBroker, o, state) {
  if (state === "asked") {
    return el("button", { type: "button", class: "cancel", disabled: "disabled",
      "aria-label": `Cancelling order ${o.order_id}` }, "Cancelling…");
  }
  const button = el("button", { type: "button", class: "cancel",
    "aria-label": `Cancel order ${o.order_id}`, title: "Cancel what is left of this order" },
  "Cancel");
  // a button kept across polls acts on its order as last shown (its fills so far)
  button.addEventListener("click", () => cancelOrder(ofBroker, shownOrders?.broker === ofBroker
    && shownOrders.data.items.find((x) => x.order_id === o.order_id) || o));
  return button;
}

async function cancelOrder(ofBroker, o) {
  const id = `${ofBroker}/${o.order_id}`;
  if (cancels.has(id)) return;
  const left = o.quantity - (o.filled_quantity ?? 0);
  const what = `${o.side} ${left} ${o.symbol ?? o.instrument_token}`;
  if (!confirm(`Cancel order ${o.order_id} on ${ofBroker} (${what} unfilled)?`)) return;
  cancels.set(id, "sending");
  redrawOrders();
  let problem = null;
  let requestedAt = null;
  try {
    const response = await fetch(
      `/api/v1/orders/${encodeURIComponent(ofBroker)}/${encodeURIComponent(o.order_id)}/cancel`,
      { method: "POST" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) problem = detailText(body.detail) ?? `${response.status} ${response.statusText}`;
    else requestedAt = body.requested_at ?? null;
  } catch (err) {
    problem = `cannot reach the API (${err.message})`;
  }
  if (problem === null) cancels.set(id, { since: Date.now(), requestedAt });
  else cancels.delete(id);
  redrawOrders();
  if (problem !== null) alert(`Order ${o.order_id} was not cancelled: ${problem}`);
}

/** An error response's detail: FastAPI's is a string, or a list of field errors. */
function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg ?? JSON.stringify(d)).join("; ");
  return null;
}

function redrawOrders() {
  if (shownOrders) renderOrders(shownOrders.data, shownOrders.broker);
}

// Whose order: the strategy's own, or one the system placed for it.
const PLACED_BY = { bracket: "bracket exit", squareoff: "15:20 square-off", flatten: "flatten" };

function whoPlaced(o) {
  const by = PLACED_BY[o.origin];
  return by ? `${o.strategy_id} (${by})` : o.strategy_id;
}

/** What it filled at, else the prices it waits for: a stop (SL, SL-M: a bracket's stop-loss)
 * its trigger, and a limit its limit. The SL's limit alone read as a limit order that should
 * have filled: a SELL "@ ₹1,689.00" with the market at ₹1,724.90, waiting for ₹1,690.00. */
function orderPrice(o) {
  if (o.filled_quantity) return inr(o.average_price);
  const limit = o.limit_price ? "@ " + inr(o.limit_price) : "";
  if (o.trigger_price) return `trigger ${inr(o.trigger_price)}` + (limit ? " " + limit : "");
  return limit || o.order_type;
}

function renderOrders(data, ofBroker = broker) {
  shownOrders = { broker: ofBroker, data };
  const states = data.items.map((o) => cancelState(ofBroker, o));
  // unchanged rows are not replaced: a poll must not swap a button out between press and release
  const drawn = JSON.stringify([ofBroker, data, states]);
  if (drawn === ordersDrawn) return;
  ordersDrawn = drawn;
  document.getElementById("orders-count").textContent = countLabel(data);
  const when = rowsTime(data.items);
  fillTable("orders", data.items.map((o, i) => el("tr", { "data-key": `${ofBroker}/${o.order_id}` },
    el("td", {}, when(o.time)),
    el("td", {}, o.symbol ?? String(o.instrument_token)),
    el("td", { class: "side-" + o.side }, o.side),
    el("td", { class: "num" }, o.filled_quantity && o.filled_quantity !== o.quantity
      ? `${o.filled_quantity}/${o.quantity}` : String(o.quantity)),
    el("td", { class: "status-cell" }, states[i] === "closed" ? badge(o.status)
      : el("span", { class: "order-status" }, badge(o.status), cancelButton(ofBroker, o, states[i]))),
    el("td", { class: "num" }, orderPrice(o)),
    el("td", { class: "wrap" }, el("span", { class: "who" }, whoPlaced(o)),
      o.reason ? " · " + o.reason : "", o.cancel_refused == null ? ""
      : el("span", { class: "error", title: `asked by ${o.cancel_requested_by ?? "?"}` },
        ` · cancel refused: ${o.cancel_refused}`)),
  )), "No orders yet: a strategy's validated signals become orders here.");
}

function renderSignals(data) {
  document.getElementById("signals-count").textContent = countLabel(data);
  const when = rowsTime(data.items);
  fillTable("signals", data.items.map((s) => el("tr", {},
    el("td", {}, when(s.time)),
    el("td", {}, s.strategy_id),
    el("td", {}, s.symbol ?? String(s.instrument_token)),
    el("td", { class: "side-" + s.side }, s.side),
    el("td", { class: "num" }, String(s.quantity)),
    el("td", {}, badge(s.status)),
    el("td", { class: "wrap" }, s.status === "REJECTED"
      ? el("span", { class: "error" }, `${s.reason_code}: ${s.message ?? ""}`)
      : s.message ? `${s.reason} (risk: ${s.message})` : s.reason),
  )), "No signals yet: what the strategies signal appears here, validated or rejected by risk.");
}

function renderStrategies(list, pnl) {
  // unchanged rows are not replaced: a poll must not swap a button out between press and release
  const drawn = JSON.stringify([broker, list, pnl, [...haltsSending]]);
  if (drawn === strategiesDrawn) return;
  strategiesDrawn = drawn;
  shownStrategies = list;
  shownPnl = pnl;
  // P&L of each strategy on the selected broker (absent: it has not traded there)
  const byId = Object.fromEntries(pnl.map((p) => [p.strategy_id, p]));
  // the strategies routed to this broker, and configurations that did not load (no broker)
  const routed = list.filter((s) => s.brokers.includes(broker) || s.status === "INVALID");
  fillTable("strategies", routed.map((s) => el("tr", { "data-key": s.id },
    el("td", {}, el("strong", {}, s.id)),
    el("td", {}, s.strategy),
    el("td", { class: "wrap" }, s.symbols.map((sym, i) => sym ?? s.instruments[i]).join(", ")),
    el("td", {}, s.brokers.join(", ")),
    el("td", { class: "wrap" }, badge(s.status), s.error ? el("div", { class: "error" }, s.error) : ""),
    el("td", { class: "num" }, String(s.signals)),
    el("td", { class: "num" }, byId[s.id] ? String(byId[s.id].fills) : "–"),
    el("td", { class: "num " + signClass(byId[s.id]?.day_pnl) }, signedOrDash(byId[s.id]?.day_pnl)),
    el("td", { class: "num " + (byId[s.id] ? signClass(byId[s.id].net_pnl) : "") },
      byId[s.id] ? signed(byId[s.id].net_pnl) : "–"),
    el("td", {}, haltButtons(s)),
  )), list.length ? `No strategy routes to ${broker} (its YAML's brokers: list).`
    : "No strategies configured: put strategy YAML files in the run's strategies folder "
      + "(alpha-panda strategy new NAME writes one) and restart.");
}

let strategiesDrawn = null;
let shownStrategies = [];
let shownPnl = [];
// Halts (and resumes) pressed: strategy id -> what its button says until the API has answered
// and a poll begun after that answer has drawn the strategy's new state. Before, the row
// showed "Halt" until the next poll, and a second press sent a second halt (and flatten).
const haltsSending = new Map();

/** A running strategy can be halted (its positions kept, or closed at market), a halted one
 * put back in service; a failed one stays out (its code raised: fix it and restart). What a
 * halted or failed one holds stays open until closed: Flatten closes it at market. */
function haltButtons(s) {
  const sending = haltsSending.get(s.id);
  if (sending !== undefined) {
    return el("button", { type: "button", class: "cancel", disabled: "disabled",
      "aria-label": `${sending.label} strategy ${s.id}` }, sending.label);
  }
  if (s.status === "ACTIVE") {
    return el("span", { class: "order-status" },
      haltButton(s, true, false, "Halt", "Stop its orders; its positions stay open"),
      haltButton(s, true, true, "Halt & flatten", "Stop its orders and close its positions at market"));
  }
  const flatten = () => haltButton(s, true, true, "Flatten",
    "Close its positions at market; it stays out of service");
  if (s.status === "HALTED") {
    return el("span", { class: "order-status" },
      haltButton(s, false, false, "Resume", "Put it back in service"), flatten());
  }
  if (s.status === "FAILED") return flatten();
  return "";
}

function haltButton(s, active, flatten, label, title) {
  const button = el("button", { type: "button", class: "cancel",
    "aria-label": `${label} strategy ${s.id}`, title }, label);
  // a button kept across polls acts on the strategy as last shown (its brokers)
  button.addEventListener("click", () => haltStrategy(
    shownStrategies.find((x) => x.id === s.id) ?? s, active, flatten));
  return button;
}

async function haltStrategy(s, active, flatten) {
  const on = s.brokers.join(", ");
  const question = !active ? `Put strategy ${s.id} back in service?`
    : flatten && s.status !== "ACTIVE"
      ? `Close the positions of strategy ${s.id} at market (on ${on})? It stays out of service; `
        + "after a restart, Resume puts it back."
      : flatten ? `Halt strategy ${s.id} and close its positions at market (on ${on})?`
        : `Halt strategy ${s.id}? Its open orders are cancelled; its positions stay open.`;
  if (!confirm(question)) return;
  if (haltsSending.has(s.id)) return; // (pressed again while the first asked for confirmation)
  const sending = { label: !active ? "Resuming…" : flatten && s.status !== "ACTIVE" ? "Flattening…"
    : "Halting…", answeredAt: null };
  haltsSending.set(s.id, sending);
  renderStrategies(shownStrategies, shownPnl);
  let problem = null;
  try {
    const response = await fetch(`/api/v1/strategies/${encodeURIComponent(s.id)}/halt`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ active, flatten }) });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      problem = detailText(body.detail) ?? `${response.status} ${response.statusText}`;
    }
  } catch (err) {
    problem = `cannot reach the API (${err.message})`;
  }
  if (problem === null) {
    sending.answeredAt = Date.now(); // a poll begun after this draws its new state
    return;
  }
  haltsSending.delete(s.id);
  renderStrategies(shownStrategies, shownPnl);
  alert(`Strategy ${s.id}: not done: ${problem}`);
}

function renderHealth(h) {
  const ready = document.getElementById("ready");
  ready.textContent = h.status === "ready" ? "ready" : h.status.replace("_", " ");
  ready.className = "badge " + (h.status === "ready" ? "ok" : "bad");
  fillTable("health", h.components.map((c) => el("tr", {},
    el("td", {}, c.name),
    el("td", {}, badge(c.state), c.detail ? el("div", { class: "sub" }, c.detail) : ""),
    el("td", {}, c.ready ? "yes" : "no"),
    el("td", { class: "num" }, c.processed.toLocaleString("en-IN")),
    el("td", { class: "num" + (c.errors ? " loss" : "") }, String(c.errors)),
    el("td", { class: "num" }, c.lag === null ? "–" : c.lag.toLocaleString("en-IN")),
  )), "No components registered.");
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// NSE's session, in IST seconds of the day. A curve whose points all fall within sessions
// is drawn on session time, one trading day after the other: nights, weekends and holidays
// take no width, and a dashed line marks where each new day starts. Other curves (a replay
// with ticks around the clock) keep a linear time axis.
const OPEN_S = 9 * 3600 + 15 * 60, CLOSE_S = 15 * 3600 + 30 * 60;
const IST_OFFSET_MS = 5.5 * 3600 * 1000, DAY_MS = 86400 * 1000;
const IST_SHORT_DAY = new Intl.DateTimeFormat("en-IN", {
  timeZone: "Asia/Kolkata", day: "2-digit", month: "short",
});

function sessionAxis(points) {
  const xs = [], breaks = [];
  let lastDay = null;
  for (let i = 0; i < points.length; i++) {
    const ist = points[i].ts / 1e6 + IST_OFFSET_MS;
    const day = Math.floor(ist / DAY_MS);
    const s = (ist - day * DAY_MS) / 1000;
    if (s < OPEN_S || s > CLOSE_S) return null;
    if (lastDay !== null && day !== lastDay) breaks.push(i);
    lastDay = day;
    xs.push(breaks.length * (CLOSE_S - OPEN_S) + (s - OPEN_S));
  }
  return breaks.length ? { xs, breaks } : null;
}

/** The curve's points, ended at the summary's equity at its time. The projector adds a point
 * on each fill and each second of event time with positions open, so its last one can be
 * ticks behind the equity shown: on a run of the sample strategies the curve said "-₹2,687.25
 * since 09:15:01" beside an equity and net P&L of -₹2,690.50. */
function curveToNow(p) {
  const points = p.equity_curve, last = points[points.length - 1];
  if (!last || p.equity == null || p.as_of <= last.ts || p.equity === last.equity) return points;
  // capital changes between runs only, and a run's first point states it
  return [...points, { ts: p.as_of, time: p.as_of_time, equity: p.equity, capital: last.capital }];
}

function renderCurve(points) {
  const box = document.getElementById("curve");
  // the viewBox follows the box's pixel size, so text and lines are never stretched
  const W = Math.max(box.clientWidth, 300), H = Math.max(box.clientHeight, 160);
  const L = 110, R = 16, T = 14, B = 26;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}` });
  const change = document.getElementById("curve-change");
  change.textContent = "";
  change.className = "count";
  const when = points.length ? spanFormatter(points[0].time, points[points.length - 1].time)
    : istTime;
  change.title = "";
  // Capital added or withdrawn (a strategy added or removed between runs: ₹10 lakh each on
  // paper) steps the curve but is not a gain or a loss: the change is net of it, the P&L's.
  const first = points[0], last = points[points.length - 1];
  const added = points.length >= 2 && first.capital != null && last.capital != null
    ? paise(last.capital) - paise(first.capital) : 0n;
  const delta = points.length >= 2
    ? fromPaise(paise(last.equity) - paise(first.equity) - added) : "0.00";
  if (points.length >= 2) {
    change.textContent = `${signed(delta)} since ${when(first.time)}`;
    change.className = "count " + signClass(delta);
    if (added !== 0n) {
      change.textContent += ` · capital ${signed(fromPaise(added))}`;
      change.title = "The change is net of capital added (+) or withdrawn (−): strategies "
        + "added or removed between runs. Equity steps with it; P&L does not.";
    }
  }
  if (points.length < 2) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "placeholder" },
      "The equity curve starts with the first fill."));
    box.replaceChildren(root);
    return;
  }
  const sessions = sessionAxis(points);
  const xs = sessions ? sessions.xs : points.map((p) => p.ts);
  const ys = points.map((p) => Number(p.equity));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const px = (x) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  for (const [value, label] of [[y1, points[ys.indexOf(Math.max(...ys))].equity],
                                [y0, points[ys.indexOf(Math.min(...ys))].equity]]) {
    root.append(svg("line", { x1: L, x2: W - R, y1: py(value), y2: py(value), class: "grid" }));
    root.append(svg("text", { x: L - 6, y: py(value) + 4, "text-anchor": "end", class: "axis" },
      inr(label)));
  }
  let labelled = -Infinity;
  for (const i of sessions ? sessions.breaks : []) {
    const x = px(xs[i]);
    root.append(svg("line", { x1: x, x2: x, y1: T, y2: H - B, class: "day-break" }));
    if (x - labelled >= 48) { // a day too close to the last labelled one goes unlabelled
      root.append(svg("text", { x: x + 3, y: T + 9, class: "day-label" },
        IST_SHORT_DAY.format(new Date(points[i].time))));
      labelled = x;
    }
  }
  for (let i = 1; i < points.length; i++) { // where capital came in or went out
    const before = points[i - 1].capital, after = points[i].capital;
    if (before == null || after == null || before === after) continue;
    const x = px(xs[i]);
    const mark = svg("line", { x1: x, x2: x, y1: T, y2: H - B, class: "capital-change" });
    mark.append(svg("title", {}, `capital ${signed(fromPaise(paise(after) - paise(before)))}`));
    root.append(mark);
  }
  const line = points.map((p, i) => `${i ? "L" : "M"}${px(xs[i]).toFixed(1)},${py(ys[i]).toFixed(1)}`).join("");
  const up = !delta.startsWith("-");
  const colour = up ? "#0f8a4a" : "#c62f2f";
  root.append(svg("path", { d: `${line}L${px(x1)},${H - B}L${px(x0)},${H - B}Z`, fill: colour,
    "fill-opacity": "0.08", stroke: "none" }));
  root.append(svg("path", { d: line, fill: "none", stroke: colour, "stroke-width": "2",
    "vector-effect": "non-scaling-stroke" }));
  root.append(svg("text", { x: L, y: H - 6, class: "axis" }, when(points[0].time)));
  root.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "axis" },
    when(points[points.length - 1].time)));
  box.replaceChildren(root);
}

let killSwitches = {};
const KILL_TIMEOUT_MS = 20000; // a Stop not answered by then is reported as not confirmed
// Switches the trader set from this page: a poll that began before one was set may have read
// the state from before it, and drawn after it, it put "Stop" back over a switch that was on.
let killSwitchesSet = 0;
let kiteCheckedAt = 0;

/** The Kite session, shown while the live broker is selected (when the login routes exist). */
async function refreshKite(signal) {
  const box = document.getElementById("kite");
  if (broker !== "zerodha") { box.hidden = true; return; }
  if (Date.now() - kiteCheckedAt < 10000) return;
  kiteCheckedAt = Date.now();
  const response = await fetch("/auth/zerodha/status", { cache: "no-store", signal })
    .catch(() => null);
  if (!response || !response.ok) { box.hidden = true; return; }
  const s = await response.json().catch(() => null);
  if (s === null) { box.hidden = true; return; }
  box.hidden = false;
  box.className = "kite" + (s.logged_in ? "" : " bad");
  if (s.logged_in) {
    const until = s.expires_at ? IST.format(new Date(s.expires_at)) : "?";
    box.textContent = `Kite: ${s.user_id} · session until ${until} IST`;
  } else {
    // the reason (e.g. a missing setting) can be long: on hover, not in the bar
    box.title = s.error ?? "";
    box.replaceChildren(s.error ? "Kite: not ready · " : "Kite: not logged in · ",
      el("a", { href: "/auth/zerodha/login" }, "log in"));
  }
}

let killSending = null; // the broker whose Stop / Resume is on its way to the API

function renderKillSwitch() {
  const state = killSwitches[broker];
  const on = Boolean(state && state.active);
  const button = document.getElementById("kill");
  // pressed and not answered yet: it says so, and a second press sends nothing (a trader
  // saw no change for as long as the API took, and pressed again: Stop, then Resume)
  const sending = killSending === broker;
  button.disabled = sending;
  button.textContent = sending ? (on ? `Resuming ${broker}…` : `Stopping ${broker}…`)
    : on ? `Resume ${broker}` : `Stop ${broker}`;
  button.classList.toggle("on", on);
  const banner = document.getElementById("killed");
  banner.hidden = !on;
  if (!on) return;
  // a flatten is orders like any other: one the venue rejects is not sent again, and "were
  // closed" stood over the position it left open. What the positions table shows open, then.
  const open = openShown?.broker === broker ? openShown.count : null;
  const text = `Kill switch ON for ${broker}: no new orders are sent` + (!state.flatten ? "."
    : open === null ? "; positions closing at market."
      : open ? `; positions closing at market: ${open} still open (see Positions).`
        : "; every position closed.");
  if (banner.textContent !== text) banner.textContent = text;
}

async function toggleKillSwitch() {
  const on = Boolean(killSwitches[broker] && killSwitches[broker].active);
  let flatten = false;
  if (on) {
    if (!confirm(`Resume trading on ${broker}? New orders will be sent again.`)) return;
  } else {
    if (!confirm(`Stop all new orders on ${broker}?`)) return;
    flatten = confirm(`Also close every open ${broker} position at market?\n` +
      "OK: close them now. Cancel: keep them open.");
  }
  const ofBroker = broker;
  let body = {};
  let problem = null;
  killSending = ofBroker;
  renderKillSwitch();
  try {
    const response = await fetch("/api/v1/kill-switch", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ broker: ofBroker, active: !on, flatten }),
      signal: AbortSignal.timeout(KILL_TIMEOUT_MS),
    });
    body = await response.json().catch(() => ({}));
    if (!response.ok) problem = detailText(body.detail) ?? `${response.status} ${response.statusText}`;
  } catch (err) {
    if (err.name === "TimeoutError") {
      killSending = null;
      renderKillSwitch();
      // it may have been written all the same: the page shows what the API says next
      alert(`The kill switch is NOT confirmed: the API did not answer in ${KILL_TIMEOUT_MS / 1000} s. `
        + `${ofBroker} may still be ${on ? "stopped" : "trading"}: check the banner, or use `
        + "`alpha-panda kill` on the command line.");
      return;
    }
    problem = `Cannot reach the API (${err.message})`;
  } finally {
    killSending = null;
  }
  if (problem !== null) {
    renderKillSwitch();
    // never silent: a trader who pressed Stop must know trading goes on
    alert(`The kill switch was NOT changed: ${ofBroker} is still ${on ? "stopped" : "trading"}. `
      + problem);
    return;
  }
  killSwitches[ofBroker] = body;
  killSwitchesSet += 1;
  renderKillSwitch();
}

let updatedAt = null; // IST time of the last figures drawn

function setConnection(ok, message) {
  document.getElementById("conn").className = "dot " + (ok ? "ok" : "bad");
  const banner = document.getElementById("banner");
  banner.hidden = ok;
  // the figures stay on the page while the API is away: greyed, and the banner says from when
  document.querySelector("main").classList.toggle("stale", !ok);
  if (!ok) {
    // whose: after a switch of tab while the API is away, they are still the other broker's
    const loaded = document.body.dataset.loadedBroker;
    const whose = loaded && loaded !== broker ? `${loaded} figures (not ${broker}'s)` : `${loaded ?? broker} figures`;
    const text = `${message}. ` + (updatedAt
      ? `The ${whose} below are from ${updatedAt}, not live.` : "No figures yet.") + " Retrying…";
    if (banner.textContent !== text) banner.textContent = text; // an alert: said once, not each poll
  }
  if (ok) {
    updatedAt = IST.format(new Date()) + " IST";
    document.getElementById("updated").textContent = "updated " + updatedAt;
  }
}

// An API that takes the connection and does not answer (its event loop held by a strategy's
// on_tick, a stopped process) is not live either: a poll waits ANSWER_WAIT_MS at most, and the
// next one goes out only when it is over. With no limit, 12 s into such a stall the page still
// said "updated" in green over figures 12 s old, and a new poll of seven routes went out every
// 1.5 s beside those still waiting, holding all of Chromium's six connections to the API.
const ANSWER_WAIT_MS = 5000;
let polling = null; // the AbortController of the poll in flight

function poll() {
  if (polling === null) refresh();
}

async function refresh() {
  const mine = generation;
  polling?.abort(); // a switch of broker: the answer for the other one is not wanted
  const asked = new AbortController();
  polling = asked;
  const late = new Error(`no answer within ${ANSWER_WAIT_MS / 1000} s`);
  late.late = true;
  const timer = setTimeout(() => asked.abort(late), ANSWER_WAIT_MS);
  const signal = asked.signal;
  const setBefore = killSwitchesSet;
  const begun = Date.now();
  try {
    const [portfolio, positions, orders, signals, strategies, health, kills] = await Promise.all([
      getJson(`/api/v1/portfolios/${broker}`, signal),
      getList(`/api/v1/positions/${broker}`, signal),
      getList(`/api/v1/orders/${broker}?limit=15`, signal),
      getList(`/api/v1/signals/${broker}?limit=15`, signal),
      getJson("/api/v1/strategies", signal),
      getJson("/ready", signal),
      getJson("/api/v1/kill-switch", signal),
    ]);
    if (mine !== generation) return;
    renderSummary(portfolio);
    renderCurve(curveToNow(portfolio));
    renderDays(portfolio.days ?? []);
    renderPositions(positions);
    renderOrders(orders);
    renderSignals(signals);
    for (const [id, sent] of haltsSending) {
      if (sent.answeredAt !== null && sent.answeredAt <= begun) haltsSending.delete(id);
    }
    renderStrategies(strategies, portfolio.strategies);
    renderHealth(health);
    if (setBefore === killSwitchesSet) {
      killSwitches = Object.fromEntries(kills.map((k) => [k.broker, k]));
    }
    renderKillSwitch();
    await refreshKite(signal);
    document.body.dataset.loadedBroker = broker;
    setConnection(true);
  } catch (err) {
    if (mine === generation) {
      setConnection(false, err.fromApi ? `The API answered with an error (${err.message})`
        : err.late ? `The API did not answer within ${ANSWER_WAIT_MS / 1000} s`
          : `Cannot reach the API (${err.message})`);
    }
  } finally {
    clearTimeout(timer);
    if (polling === asked) polling = null;
  }
}

function selectBroker(name) {
  broker = name;
  generation += 1;
  localStorage.setItem("alpha-panda.broker", name);
  history.replaceState(null, "", "#" + name);
  document.title = `Alpha Panda · ${name}`;
  for (const button of document.querySelectorAll(".broker-switch button")) {
    button.setAttribute("aria-pressed", String(button.dataset.broker === name));
  }
  renderKillSwitch();
  kiteCheckedAt = 0;
  if (document.body.dataset.loadedBroker && document.body.dataset.loadedBroker !== name) {
    // the figures on the page are the other broker's until this one's answer: greyed, and
    // said so (drawn as they were, paper's equity read as the live account's)
    document.querySelector("main").classList.add("stale");
    document.getElementById("updated").textContent = `loading ${name}…`;
  }
  refresh();
}

for (const button of document.querySelectorAll(".broker-switch button")) {
  button.addEventListener("click", () => selectBroker(button.dataset.broker));
}
document.getElementById("kill").addEventListener("click", toggleKillSwitch);
selectBroker(broker);
setInterval(poll, REFRESH_MS);
