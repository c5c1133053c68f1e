// Live: transitions as they happen over /v1/live. The key goes in as the WebSocket
// subprotocol ["turret.v1", key] (browsers cannot set headers on a WebSocket; a key in the
// URL would land in logs). Reconnects with exponential backoff and jitter.
import { clear, h } from "../dom.js";
import { dimensionPicker, viewHash } from "./common.js";

const MAX_ROWS = 200;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

export async function render(ctx, container, { query }) {
  const dimension = ctx.textDimensions.includes(query.get("dimension")) ? query.get("dimension") : "";
  const state = h("span", { id: "live-state", class: "conn", dataset: { state: "connecting" } }, "connecting");
  const pauseButton = h("button", { id: "live-pause", type: "button" }, "Pause");
  const held = h("span", { id: "live-held", class: "muted" });
  const rows = h("ol", { id: "live-feed", class: "feed" });
  const empty = h("div", { class: "state empty", id: "live-empty" },
    h("p", {}, "Waiting for transitions: a session entering its first topic or moving to another shows here as it happens."),
    h("p", { class: "muted" }, "Nothing is replayed on connect; the Journeys view has the history."));
  const picker = ctx.textDimensions.length > 1
    ? dimensionPicker({ ...ctx, textDimensions: ["", ...ctx.textDimensions] }, dimension, (d) => (location.hash = viewHash("live", { dimension: d })))
    : null;
  if (picker) picker.querySelector('option[value=""]').textContent = "all";
  clear(container, h("div", { class: "view-head" }, h("h1", {}, "Live"), state, picker, pauseButton, held), empty, rows);

  let ws = null;
  let stopped = false;
  let paused = false;
  let attempt = 0;
  let timer = null;
  let buffer = [];

  const setState = (name, text) => {
    state.dataset.state = name;
    state.textContent = text;
  };

  const show = (m) => {
    empty.remove();
    const entering = !m.from_topic;
    const from = m.from_label || m.from_topic;
    const to = m.to_label || m.to_topic;
    const row = h(
      "li",
      { class: "transition", dataset: { session: m.session_id, event: m.event_id } },
      h("time", { datetime: m.at ? new Date(m.at * 1000).toISOString() : "" }, m.at ? new Date(m.at * 1000).toLocaleTimeString() : ""),
      h("span", { class: "move" },
        entering ? h("span", { class: "muted" }, "enters ") : [h("span", { class: "chip" }, from), h("span", { class: "arrow" }, " → ")],
        h("span", { class: "chip to" }, to)),
      h("span", { class: "meta" },
        h("a", { href: viewHash("sessions", { id: m.session_id, dimension: m.dimension }) }, m.session_id),
        ` · step ${m.step} · ${m.dimension}`),
    );
    rows.prepend(row);
    while (rows.children.length > MAX_ROWS) rows.lastChild.remove();
  };

  const connect = () => {
    if (stopped) return;
    setState("connecting", attempt ? `reconnecting (try ${attempt + 1})` : "connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/v1/live${dimension ? `?dimension=${encodeURIComponent(dimension)}` : ""}`;
    ws = new WebSocket(url, ["turret.v1", ctx.key]);
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "subscribed") {
        attempt = 0;
        setState("live", "live");
      } else if (m.type === "transition") {
        if (paused) {
          buffer.push(m);
          held.textContent = `${buffer.length} held while paused`;
        } else show(m);
      }
    };
    ws.onclose = (event) => {
      ws = null;
      if (stopped) return;
      if (event.code === 4001) {
        setState("refused", "key refused");
        return;
      }
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      setState("down", `disconnected (${event.code || "no answer"}), retrying in ${Math.ceil(delay / 1000)} s`);
      timer = setTimeout(connect, delay);
    };
  };

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    container.classList.toggle("paused", paused);
    if (!paused) {
      for (const m of buffer) show(m);
      buffer = [];
      held.textContent = "";
    } else held.textContent = "paused";
  });

  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (ws) ws.close(1000, "left the view");
  };
}

