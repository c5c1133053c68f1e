// Small DOM helpers: elements are built with textContent, never innerHTML, so text
// that users typed (event texts, labels) can never run as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const fmt = {
  int: (n) => (n ?? 0).toLocaleString("en-US"),
  // "1 session", "2 sessions"
  count: (n, noun) => `${(n ?? 0).toLocaleString("en-US")} ${noun}${n === 1 ? "" : "s"}`,
  pct: (x, digits = 1) => `${((x ?? 0) * 100).toFixed(digits)}%`,
  time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  },
  clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString() : "";
  },
};

export function loading(text = "Loading...") {
  return h("p", { class: "state loading", role: "status" }, h("span", { class: "spinner" }), text);
}

export function failure(error, retry) {
  return h(
    "div",
    { class: "state failed", role: "alert" },
    h("p", {}, h("b", {}, error.status === 0 ? "The API is not reachable. " : "The request failed. "), error.message),
    error.code ? h("p", { class: "muted" }, `code: ${error.code}`) : null,
    retry ? h("button", { type: "button", onclick: retry }, "Try again") : null,
  );
}

// The first thing a new project needs: one tracked event. Shown with this server's URL.
export function trackHint(title = "No events yet") {
  const line =
    `curl -s -X POST ${location.origin}/track \\\n` +
    `  -H "X-API-Key: $TURRET_KEY" -H "Content-Type: application/json" \\\n` +
    `  -d '{"name": "user_prompt", "metadata": {"prompt": "How do I reset my password?"}, "session_id": "conv-1"}'`;
  return h(
    "div",
    { class: "state empty" },
    h("h2", {}, title),
    h("p", {}, "Send what your users type to ", h("code", {}, "/track"),
      " with this project's key; topics appear after a few similar texts, journeys once sessions move between topics."),
    h("pre", { class: "curl" }, line),
    h("p", { class: "muted" }, "Or replay a file: ", h("code", {}, "turret-stream replay prompts.csv --text-column question --session-column conversation")),
  );
}

// A topic's display name: its label, or a short form of its id while it has none.
export function topicName(id, labels) {
  if (id === null || id === undefined) return "(none)";
  const label = labels?.[id];
  return label || `Unnamed ${id.slice(0, 10)}`;
}
