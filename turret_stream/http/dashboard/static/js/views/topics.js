// Topics: a dimension's topics, largest first, with trend, theme, examples and search
// (a theme filter narrows the list to one theme's topics); one topic's page with its
// events and a rename form.
import { ApiError } from "../api.js";
import { clear, failure, fmt, h, loading, trackHint } from "../dom.js";
import { series, sparkline } from "../sparkline.js";
import { dimensionPicker, viewHash } from "./common.js";

const REFRESH_MS = 10000;

export async function render(ctx, container, { rest, query }) {
  if (rest[0]) return renderTopic(ctx, container, rest[0], query.get("dimension"));
  await ctx.refreshDimensions();
  if (!ctx.textDimensions.length) {
    clear(container, h("h1", {}, "Topics"), trackHint());
    const timer = setInterval(async () => {
      try {
        await ctx.refreshDimensions();
        if (ctx.textDimensions.length) {
          clearInterval(timer);
          render(ctx, container, { rest, query });
        }
      } catch {
        /* shown on the next navigation */
      }
    }, REFRESH_MS / 2);
    return () => clearInterval(timer);
  }
  const dimension = ctx.textDimensions.includes(query.get("dimension")) ? query.get("dimension") : ctx.textDimensions[0];
  const trend = query.get("trend") === "daily" ? "daily" : "hourly";
  const theme = query.get("theme") || "";
  const themePicker = h(
    "select",
    { id: "theme-filter", onchange: (e) => (location.hash = viewHash("topics", { dimension, trend, theme: e.target.value || null })) },
    h("option", { value: "" }, "All themes"),
  );
  const list = h("div", { id: "topic-list", class: "topic-grid" }, loading("Loading topics..."));
  const summary = h("p", { id: "topic-summary", class: "muted" });
  const results = h("div", { id: "search-results" });
  const input = h("input", { id: "search", type: "search", placeholder: "Search events by meaning...", "aria-label": "Search" });
  const searchForm = h(
    "form",
    {
      class: "search",
      onsubmit: (e) => {
        e.preventDefault();
        search(ctx, dimension, input.value.trim(), results);
      },
    },
    input,
    h("button", { type: "submit" }, "Search"),
  );
  const trendToggle = h(
    "label",
    { class: "inline" },
    "Trend ",
    h(
      "select",
      { id: "trend", onchange: (e) => (location.hash = viewHash("topics", { dimension, trend: e.target.value, theme: theme || null })) },
      h("option", { value: "hourly", selected: trend === "hourly" }, "48 hours"),
      h("option", { value: "daily", selected: trend === "daily" }, "30 days"),
    ),
  );
  clear(
    container,
    h("div", { class: "view-head" }, h("h1", {}, "Topics"),
      dimensionPicker(ctx, dimension, (d) => (location.hash = viewHash("topics", { dimension: d, trend }))), trendToggle,
      h("label", { class: "inline" }, "Theme ", themePicker)),
    searchForm,
    results,
    summary,
    list,
  );
  let stopped = false;
  const load = async (first) => {
    try {
      const [answer, themes] = await Promise.all([
        ctx.api.get("/v1/clusters", { dimension, limit: 100, examples: 3, ...(theme ? { theme } : {}) }),
        ctx.api.get("/v1/themes", { dimension, limit: 100 }),
      ]);
      if (stopped) return;
      const themeLabels = new Map(themes.themes.map((t) => [t.id, t.label || `Unnamed theme ${t.id}`]));
      // Rebuilt only when the themes changed: a refresh must not close an open menu.
      const options = themes.themes.map((t) => [t.id, `${themeLabels.get(t.id)} (${t.total_topics})`]);
      if (JSON.stringify(options) !== themePicker.dataset.options) {
        themePicker.dataset.options = JSON.stringify(options);
        clear(
          themePicker,
          h("option", { value: "" }, "All themes"),
          options.map(([id, text]) => h("option", { value: id, selected: id === answer.theme }, text)),
        );
      }
      summary.textContent = `${fmt.int(answer.total_events)} events in "${answer.dimension}" · ${answer.total_clusters} topics · ${fmt.int(answer.unassigned_events)} not in a topic yet`;
      if (!answer.clusters.length) clear(list, trackHint("No topics yet: a topic forms once a few similar texts arrive"));
      else clear(list, answer.clusters.map((t) => topicCard(t, dimension, trend, themeLabels)));
    } catch (error) {
      // A theme merged away or gone: show every topic again.
      if (!stopped && theme && error.status === 404) return void (location.hash = viewHash("topics", { dimension, trend }));
      if (!stopped && (first || error.status !== 0)) clear(list, failure(error, () => load(true)));
      else if (!stopped) summary.textContent = `${error.message} (retrying)`;
    }
  };
  await load(true);
  // Each refresh searches the examples of every topic: only while the tab is seen.
  const timer = setInterval(() => document.hidden || load(false), REFRESH_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

// The server's trend tag (turret_stream/trends.py); "steady" needs no badge.
function trendBadge(topic) {
  if (!topic.trend || topic.trend === "steady") return null;
  const growth = topic.growth === null || topic.growth === undefined ? "" : ` (${topic.growth >= 0 ? "+" : ""}${Math.round(topic.growth * 100)}% vs previous 24 h)`;
  return h("span", { class: `badge trend ${topic.trend}`, title: `Trend: ${topic.trend}${growth}` }, topic.trend);
}

function topicCard(topic, dimension, trend, themeLabels) {
  const values = trend === "daily" ? series(topic.counts.daily, "day", 30) : series(topic.counts.hourly, "hour", 48);
  const href = viewHash(`topics/${encodeURIComponent(topic.id)}`, { dimension });
  return h(
    "article",
    { class: "card topic", dataset: { topicId: topic.id } },
    h(
      "header",
      {},
      h("a", { class: "topic-label", href }, topic.label || `Unnamed topic ${topic.id}`),
      topic.neutral ? h("span", { class: "badge", title: "Appears beside every kind of topic: journeys do not switch on it" }, "neutral") : null,
      topic.label_source === "manual" ? h("span", { class: "badge manual" }, "renamed") : null,
      trendBadge(topic),
    ),
    h(
      "div",
      { class: "topic-stats" },
      h("span", { class: "size" }, h("b", {}, fmt.int(topic.size)), " events"),
      h("span", { class: "share" }, fmt.pct(topic.share)),
      h("span", { class: "share-bar", "aria-hidden": "true" }, h("span", { style: `width:${Math.max(2, topic.share * 100)}%` })),
      sparkline(values, { label: trend === "daily" ? "last 30 days" : "last 48 hours" }),
    ),
    topic.theme ? h("p", { class: "muted theme" }, "Theme: ", h("a", { href: viewHash("topics", { dimension, trend, theme: topic.theme }) }, themeLabels.get(topic.theme) || topic.theme)) : null,
    topic.description ? h("p", { class: "muted description" }, topic.description) : null,
    h("ul", { class: "examples" }, (topic.examples || []).map((e) => h("li", {}, e.text))),
    h("a", { class: "open", href }, "Open topic →"),
  );
}

async function search(ctx, dimension, q, results) {
  if (!q) {
    clear(results);
    return;
  }
  clear(results, loading("Searching..."));
  try {
    const answer = await ctx.api.get("/v1/search", { q, dimension, limit: 10 });
    const ids = [...new Set(answer.results.map((r) => r.cluster_id).filter(Boolean))];
    const labels = await topicLabels(ctx, dimension, ids);
    clear(
      results,
      h("div", { class: "card" },
        h("div", { class: "view-head" }, h("h2", {}, `Nearest events to "${q}"`),
          h("button", { type: "button", class: "ghost", onclick: () => clear(results) }, "Close")),
        answer.results.length
          ? h("ol", { class: "search-hits" }, answer.results.map((r) =>
              h("li", {},
                h("span", { class: "hit-text" }, r.text),
                h("span", { class: "muted" }, ` ${fmt.pct(r.similarity, 0)} · `),
                r.cluster_id
                  ? h("a", { href: viewHash(`topics/${encodeURIComponent(r.cluster_id)}`, { dimension }) }, labels[r.cluster_id] || r.cluster_id)
                  : h("span", { class: "muted" }, "no topic yet"))))
          : h("p", { class: "muted" }, "Nothing found.")),
    );
  } catch (error) {
    clear(results, failure(error));
  }
}

// Labels of a few topics, for search hits (the topics list has them all already).
async function topicLabels(ctx, dimension, ids) {
  const answer = await ctx.api.get("/v1/clusters", { dimension, limit: 500, examples: 0 });
  const labels = {};
  for (const t of answer.clusters) if (ids.includes(t.id)) labels[t.id] = t.label;
  return labels;
}

async function renderTopic(ctx, container, id, dimension) {
  const answer = await ctx.api.get(`/v1/clusters/${encodeURIComponent(id)}`, { dimension, examples: 5 });
  const topic = answer.cluster;
  dimension = answer.dimension;
  const title = h("h1", { id: "topic-title" }, topic.label || `Unnamed topic ${topic.id}`);
  const source = h("span", { id: "topic-source" }, topic.label_source ? ` · named by ${topic.label_source}` : "");
  const description = h("p", { id: "topic-description" }, topic.description || "");
  const nameInput = h("input", { id: "rename-input", value: topic.label || "", maxlength: 80, required: true, "aria-label": "Topic name" });
  const status = h("span", { id: "rename-status", class: "muted", role: "status" });
  const form = h(
    "form",
    {
      class: "rename",
      onsubmit: async (e) => {
        e.preventDefault();
        status.textContent = "Saving...";
        try {
          await ctx.api.put(`/v1/clusters/${encodeURIComponent(id)}/label?dimension=${encodeURIComponent(dimension)}`, { name: nameInput.value.trim() });
          // Read it back: what is shown is what the server kept.
          const again = await ctx.api.get(`/v1/clusters/${encodeURIComponent(id)}`, { dimension, examples: 0 });
          title.textContent = again.cluster.label;
          source.textContent = ` · named by ${again.cluster.label_source}`;
          description.textContent = again.cluster.description || "";
          status.textContent = `Saved: "${again.cluster.label}" (a person's name is never overwritten by the labeller)`;
        } catch (error) {
          status.textContent = error instanceof ApiError ? `${error.message} (${error.code})` : String(error);
        }
      },
    },
    h("label", { for: "rename-input" }, "Rename"),
    nameInput,
    h("button", { type: "submit" }, "Save"),
    status,
  );
  const events = h("tbody", { id: "topic-events" });
  const more = h("button", { type: "button", class: "ghost", hidden: true }, "Load more");
  let cursor = null;
  const page = async () => {
    more.disabled = true;
    try {
      const got = await ctx.api.get(`/v1/clusters/${encodeURIComponent(id)}/events`, { dimension, limit: 50, cursor });
      events.append(...got.events.map((e) =>
        h("tr", {},
          h("td", { class: "nowrap muted" }, fmt.time(e.timestamp)),
          h("td", {}, e.text),
          h("td", { class: "nowrap" }, h("a", { href: viewHash("sessions", { id: e.session_id, dimension }) }, e.session_id)))));
      cursor = got.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      events.append(h("tr", {}, h("td", { colspan: 3 }, failure(error))));
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", page);
  clear(
    container,
    h("p", {}, h("a", { href: viewHash("topics", { dimension }) }, "← All topics")),
    h("div", { class: "view-head" }, title, topic.neutral ? h("span", { class: "badge" }, "neutral") : null),
    h("p", { class: "muted" },
      `${fmt.int(topic.size)} events · ${fmt.pct(topic.share)} of "${dimension}" · first seen ${fmt.time(topic.first_seen)} · last seen ${fmt.time(topic.last_seen)} · `,
      h("code", {}, topic.id),
      source),
    description,
    h("div", { class: "card" }, form),
    topic.status !== "active" ? h("p", { class: "banner" }, `This topic was ${topic.status}${topic.current_id ? ` into ${topic.current_id}` : ""}.`) : null,
    h("h2", {}, "Events"),
    h("div", { class: "table-wrap" },
      h("table", { class: "events" }, h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "text"), h("th", {}, "session"))), events)),
    more,
  );
  await page();
}
