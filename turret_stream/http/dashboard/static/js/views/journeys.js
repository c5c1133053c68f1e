// Journeys: a Sankey of topic flows from entry topics over N steps (plotly.js, served from
// the installed plotly package), top paths, back-and-forth loops and drop-offs.
import { clear, failure, fmt, h, loading, topicName, trackHint } from "../dom.js";
import { dimensionPicker, viewHash } from "./common.js";

let plotly = null;

// plotly.min.js is 4.8 MB: loaded on the first visit of this view, from this server.
function loadPlotly() {
  if (!plotly) {
    plotly = new Promise((resolve, reject) => {
      const script = h("script", { src: "/vendor/plotly.min.js" });
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        plotly = null;
        reject(new Error("plotly.min.js could not be loaded from this server"));
      };
      document.head.append(script);
    });
  }
  return plotly;
}

function toIso(local) {
  // <input type="datetime-local"> is the browser's local time: send it with its offset.
  return local ? new Date(local).toISOString() : "";
}

export async function render(ctx, container, { query }) {
  await ctx.refreshDimensions();
  if (!ctx.textDimensions.length) {
    clear(container, h("h1", {}, "Journeys"), trackHint());
    return;
  }
  const params = {
    dimension: ctx.textDimensions.includes(query.get("dimension")) ? query.get("dimension") : ctx.textDimensions[0],
    // Fewer columns fit a phone: 3 steps by default there, 4 elsewhere.
    steps: Math.min(10, Math.max(2, Number(query.get("steps")) || (innerWidth < 600 ? 3 : 4))),
    segment: query.get("segment") || "",
    since: query.get("since") || "",
    until: query.get("until") || "",
  };
  const go = (changes) => (location.hash = viewHash("journeys", { ...params, ...changes }));
  const field = (id, label, input) => h("label", { class: "field", for: id }, h("span", {}, label), input);
  const steps = h("input", { id: "steps", type: "number", min: 2, max: 10, value: params.steps });
  const segment = h("input", { id: "segment", list: "segment-keys", placeholder: "platform:mobile", value: params.segment });
  const since = h("input", { id: "since", type: "datetime-local", value: params.since });
  const until = h("input", { id: "until", type: "datetime-local", value: params.until });
  const filters = h(
    "form",
    {
      class: "filters card",
      onsubmit: (e) => {
        e.preventDefault();
        go({ steps: steps.value, segment: segment.value.trim(), since: since.value, until: until.value });
      },
    },
    dimensionPicker(ctx, params.dimension, (dimension) => go({ dimension })),
    field("steps", "Steps", steps),
    field("segment", "Segment", segment),
    h("datalist", { id: "segment-keys" }, ctx.enumKeys.map((k) => h("option", { value: `${k}:` }))),
    field("since", "From", since),
    field("until", "To", until),
    h("button", { type: "submit" }, "Apply"),
  );
  const chart = h("div", { id: "sankey", class: "sankey-box" }, loading("Loading journeys..."));
  const totals = h("p", { id: "journey-totals", class: "muted" });
  const paths = h("div", { class: "card" }, h("h2", {}, "Top paths"), loading());
  const loops = h("div", { class: "card" }, h("h2", {}, "Back and forth"), loading());
  const drops = h("div", { class: "card" }, h("h2", {}, "Drop-offs"), loading());
  clear(container, h("div", { class: "view-head" }, h("h1", {}, "Journeys")), filters, totals, chart,
    h("div", { class: "columns" }, paths, loops, drops));

  const common = {
    dimension: params.dimension,
    segment: params.segment || undefined,
    since: toIso(params.since),
    until: toIso(params.until),
  };
  let answers;
  try {
    answers = await Promise.all([
      ctx.api.get("/v1/journeys/flows", { ...common, steps: params.steps }),
      ctx.api.get("/v1/journeys/paths", { ...common, top: 10 }),
      ctx.api.get("/v1/journeys/transitions", common),
      ctx.api.get("/v1/journeys/dropoffs", common),
    ]);
  } catch (error) {
    clear(chart, failure(error, () => render(ctx, container, { query })));
    for (const box of [paths, loops, drops]) box.lastChild.remove();
    return;
  }
  const [flows, top, transitions, dropoffs] = answers;
  const t = flows.totals;
  totals.textContent = `${fmt.int(t.sessions)} sessions (${fmt.int(t.sessions_with_topic)} with a topic) · ${fmt.int(t.users)} users · ${fmt.int(t.transitions)} transitions · ${fmt.int(t.events)} events${flows.truncated ? " · partial: too many events, narrow the time range" : ""}`;
  renderPaths(paths, top);
  renderLoops(loops, transitions);
  renderDrops(drops, dropoffs);
  if (!flows.nodes.length) {
    clear(chart, trackHint("No journeys in this selection"));
    return;
  }
  try {
    await drawSankey(chart, flows);
  } catch (error) {
    clear(chart, failure(error));
  }
}

// Sessions that end before the last step flow into a grey "ended" node of the next column:
// plotly draws no node without a link, and where sessions stop is what a journey shows.
const ENDED = "ended";

// plotly reads a few HTML tags in labels (<a href>, <b>): labels are users' words, so
// they go in as entities and show as typed.
const plain = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

// On a phone, long names would run over the next column: shortened, whole on hover.
const shorten = (text, max) => (max && text.length > max ? `${text.slice(0, max - 1)}…` : text);

export function sankeyData(flows, maxChars = 0) {
  const name = (topic) => plain(topicName(topic, flows.labels));
  const nodes = flows.nodes.map((n) => ({
    label: shorten(name(n.topic), maxChars),
    hover: `${name(n.topic)}<br>step ${n.step}: ${fmt.count(n.sessions, "session")}, ${n.ended} ended here`,
    color: "#2f6fdb",
  }));
  const index = new Map(flows.nodes.map((n, i) => [`${n.step}|${n.topic}`, i]));
  const links = flows.links.map((l) => ({
    source: index.get(`${l.step}|${l.from}`),
    target: index.get(`${l.step + 1}|${l.to}`),
    value: l.count,
    hover: `${fmt.count(l.count, "session")} · P(next | current) = ${fmt.pct(l.probability)}`,
    color: "rgba(47, 111, 219, 0.28)",
  }));
  const endOf = new Map();
  for (const [i, n] of flows.nodes.entries()) {
    if (!n.ended || n.step >= flows.steps) continue;
    if (!endOf.has(n.step)) {
      endOf.set(n.step, nodes.length);
      nodes.push({ label: ENDED, hover: `ended<br>sessions that ended after step ${n.step}`, color: "#9aa5b5" });
    }
    links.push({
      source: i,
      target: endOf.get(n.step),
      value: n.ended,
      hover: `${fmt.count(n.ended, "session")} ended here · ${fmt.pct(n.ended / n.sessions)} of this topic at step ${n.step}`,
      color: "rgba(154, 165, 181, 0.3)",
    });
  }
  return { nodes, links };
}

async function drawSankey(box, flows) {
  const Plotly = await loadPlotly();
  const narrow = box.clientWidth < 600;
  const { nodes, links } = sankeyData(flows, narrow ? Math.max(8, Math.floor(box.clientWidth / flows.steps / 9)) : 0);
  const node = {
    label: nodes.map((n) => n.label),
    customdata: nodes.map((n) => n.hover),
    color: nodes.map((n) => n.color),
    hovertemplate: "%{customdata}<extra></extra>",
    pad: 14,
    align: "left", // by step: an "ended" sink stays beside its step, not in the last column
    thickness: 16,
  };
  const link = {
    source: links.map((l) => l.source),
    target: links.map((l) => l.target),
    value: links.map((l) => l.value),
    color: links.map((l) => l.color),
    customdata: links.map((l) => l.hover),
    hovertemplate: "%{source.label} → %{target.label}<br>%{customdata}<extra></extra>",
  };
  clear(box);
  // Columns are steps: a topic's column is its step (plotly places nodes by link depth).
  box.append(h("div", { class: "step-heads" }, Array.from({ length: flows.steps }, (_, i) => h("span", {}, `step ${i + 1}`))));
  const plot = h("div", { class: "sankey-plot" });
  box.append(plot);
  const dark = matchMedia("(prefers-color-scheme: dark)").matches;
  await Plotly.newPlot(
    plot,
    [{ type: "sankey", arrangement: "snap", node, link, textfont: { size: narrow ? 10 : 12, color: dark ? "#e5e9f0" : "#1c2330" } }],
    {
      margin: { l: 8, r: 8, t: 8, b: 8 },
      height: narrow ? 380 : 460,
      font: { family: "system-ui, sans-serif" },
      paper_bgcolor: "rgba(0,0,0,0)",
    },
    { displayModeBar: false, responsive: true },
  );
  if (flows.beyond) box.append(h("p", { class: "muted" }, `${fmt.count(flows.beyond, "session")} go on beyond step ${flows.steps}.`));
}

function pathChain(path, labels) {
  return h("span", { class: "chain" }, path.flatMap((t, i) => [i ? h("span", { class: "arrow" }, " → ") : null, h("span", { class: "chip" }, topicName(t, labels))]));
}

function renderPaths(box, answer) {
  box.lastChild.remove();
  if (!answer.paths.length) return box.append(h("p", { class: "muted" }, "No paths yet."));
  box.append(h("ol", { class: "ranked", id: "top-paths" }, answer.paths.map((p) =>
    h("li", {}, pathChain(p.path, answer.labels), h("span", { class: "muted" }, ` ${fmt.count(p.sessions, "session")} · ${fmt.pct(p.share)}`)))));
}

function renderLoops(box, answer) {
  box.lastChild.remove();
  const bf = answer.back_and_forth;
  box.append(h("p", {}, h("b", {}, fmt.pct(bf.rate)), ` of sessions go A → B → A (${fmt.count(bf.sessions, "session")})`));
  if (bf.pairs.length) {
    box.append(h("ol", { class: "ranked", id: "loops" }, bf.pairs.slice(0, 10).map((p) =>
      h("li", {}, pathChain([p.topic, p.via, p.topic], answer.labels), h("span", { class: "muted" }, ` ${fmt.count(p.sessions, "session")}`)))));
  }
  if (answer.median_seconds_between_steps !== null) {
    box.append(h("p", { class: "muted" }, `Median time between steps: ${answer.median_seconds_between_steps.toFixed(1)} s`));
  }
}

function renderDrops(box, answer) {
  box.lastChild.remove();
  box.append(h("p", { class: "muted" }, `${answer.dropped_sessions} sessions idle for over ${Math.round(answer.dropoff_timeout_s / 60)} min, by their last topic:`));
  const rows = answer.dropoffs.filter((r) => r.visited).slice(0, 10);
  if (!rows.length) return;
  box.append(h("div", { class: "table-wrap" }, h("table", { id: "dropoffs" },
    h("thead", {}, h("tr", {}, h("th", {}, "topic"), h("th", {}, "dropped"), h("th", {}, "exit rate"))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("td", {}, topicName(r.topic, answer.labels)), h("td", {}, r.dropped), h("td", {}, fmt.pct(r.share_of_visited))))))));
}
