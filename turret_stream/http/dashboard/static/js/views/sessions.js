// Sessions: look up a session id (or a user id: their sessions) and read its messages in
// order, each with its topic and the step of the journey it belongs to.
import { clear, failure, fmt, h, loading, topicName } from "../dom.js";
import { dimensionPicker, viewHash } from "./common.js";

export async function render(ctx, container, { query }) {
  const id = (query.get("id") || "").trim();
  const dimension = ctx.textDimensions.includes(query.get("dimension")) ? query.get("dimension") : ctx.textDimensions[0];
  const input = h("input", { id: "lookup", type: "search", value: id, placeholder: "session id or user id", "aria-label": "Session or user id", required: true });
  const form = h(
    "form",
    { class: "search", onsubmit: (e) => {
      e.preventDefault();
      location.hash = viewHash("sessions", { id: input.value.trim(), dimension });
    } },
    input,
    h("button", { type: "submit" }, "Look up"),
  );
  const result = h("div", { id: "session-result" });
  clear(container,
    h("div", { class: "view-head" }, h("h1", {}, "Sessions"),
      dimensionPicker(ctx, dimension, (d) => (location.hash = viewHash("sessions", { id, dimension: d })))),
    form, result);
  if (!id) {
    result.append(h("p", { class: "muted" }, "Type a session_id or a user_id as sent to /track. Session ids are also links in the Live view and on a topic's events."));
    return;
  }
  if (!dimension) {
    result.append(h("p", { class: "muted" }, "No events yet."));
    return;
  }
  clear(result, loading());
  try {
    const session = await ctx.api.get(`/v1/sessions/${encodeURIComponent(id)}/journey`, { dimension });
    clear(result, sessionView(session));
    return;
  } catch (error) {
    if (error.status !== 404) {
      clear(result, failure(error));
      return;
    }
  }
  try {
    const user = await ctx.api.get(`/v1/users/${encodeURIComponent(id)}/sessions`, { dimension });
    clear(result, userView(user, dimension));
  } catch (error) {
    if (error.status === 404) clear(result, h("p", { class: "state empty" }, `No session or user "${id}" in this project${ctx.textDimensions.length > 1 ? ` (dimension "${dimension}")` : ""}.`));
    else clear(result, failure(error));
  }
}

function sessionView(s) {
  const labels = s.labels || {};
  const chips = (s.path || []).flatMap((t, i) => [i ? h("span", { class: "arrow" }, " → ") : null, h("span", { class: "chip" }, topicName(t, labels))]);
  const byStep = new Map((s.steps || []).map((step) => [step.step, step]));
  let previous = null;
  const rows = (s.messages || []).map((m) => {
    const step = byStep.get(m.step);
    const starts = previous !== null && m.step !== previous;
    previous = m.step;
    // Steps alternate in colour and are spaced apart, so a switch of topic stands out.
    const classes = ["message", m.step ? "" : "off-step", starts ? "new-step" : ""].filter(Boolean).join(" ");
    return h("li", { class: classes, dataset: { step: m.step || "", parity: m.step ? m.step % 2 : "" } },
      h("div", { class: "msg-meta" },
        h("span", { class: "step-no" }, m.step ? `step ${m.step}` : "no step"),
        h("span", { class: "chip" }, m.topic ? topicName(m.topic, labels) : "no topic"),
        step && m.topic && m.topic !== step.topic ? h("span", { class: "muted", title: "a short excursion that did not switch the journey" }, ` (in ${topicName(step.topic, labels)})`) : null,
        h("time", { class: "muted" }, fmt.time(m.timestamp))),
      h("p", { class: "msg-text" }, m.text));
  });
  return h("div", { class: "card" },
    h("h2", {}, `Session ${s.session_id}`),
    h("p", { class: "muted" }, `user ${s.user_id ?? "-"} · ${s.events} events · ${fmt.time(s.first_at)} → ${fmt.time(s.last_at)}`),
    h("p", { class: "chain", id: "session-path" }, chips.length ? chips : h("span", { class: "muted" }, "no topic yet")),
    h("ol", { class: "messages", id: "session-messages" }, rows));
}

function userView(u, dimension) {
  return h("div", { class: "card" },
    h("h2", {}, `User ${u.user_id}`),
    h("p", { class: "muted" }, `${u.total_sessions} sessions${u.returning ? " · returning user" : ""}`),
    h("ol", { class: "ranked" }, u.sessions.map((s) =>
      h("li", {},
        h("a", { href: viewHash("sessions", { id: s.session_id, dimension }) }, s.session_id),
        h("span", { class: "muted" }, ` ${fmt.time(s.first_at)} · ${s.events} events · `),
        h("span", { class: "chain" }, s.path.flatMap((t, i) => [i ? " → " : null, h("span", { class: "chip" }, topicName(t, u.labels))]))))));
}
