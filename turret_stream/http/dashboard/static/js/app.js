// Sign-in, the project context and the hash router. Views live in views/*.js; each exports
// render(ctx, container, params) and may return a cleanup function (the live view closes
// its WebSocket with it).
import { Api } from "./api.js";
import { clear, failure, h, loading } from "./dom.js";
import * as topics from "./views/topics.js";
import * as journeys from "./views/journeys.js";
import * as live from "./views/live.js";
import * as sessions from "./views/sessions.js";
import * as reference from "./views/reference.js";

const KEY_STORAGE = "turret.apiKey"; // sessionStorage: this tab only, gone when it closes
const VIEWS = { topics, journeys, live, sessions, api: reference };

const $ = (id) => document.getElementById(id);
let ctx = null;
let cleanup = null;

function showSignIn(message = "") {
  ctx = null;
  runCleanup();
  $("shell").hidden = true;
  $("signin").hidden = false;
  const error = $("signin-error");
  error.textContent = message;
  error.hidden = !message;
  $("signin-key").focus();
}

function runCleanup() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a view failing to clean up must not block navigation */
    }
  }
  cleanup = null;
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORAGE);
  showSignIn(message);
}

function refused() {
  signOut("This API key was refused (invalid or revoked). Sign in with a valid key.");
}

// Validates the key against the API; the project's dimensions come back with it.
async function startSession(key) {
  const api = new Api(key, refused);
  const answer = await api.get("/v1/dimensions");
  const dims = answer.dimensions || [];
  return {
    api,
    key,
    project: answer.project,
    textDimensions: dims.filter((d) => d.type === "text" && d.events > 0).map((d) => d.key),
    enumKeys: dims.filter((d) => d.type === "enum").map((d) => d.key),
    async refreshDimensions() {
      const again = await api.get("/v1/dimensions");
      this.textDimensions = again.dimensions.filter((d) => d.type === "text" && d.events > 0).map((d) => d.key);
      this.enumKeys = again.dimensions.filter((d) => d.type === "enum").map((d) => d.key);
    },
  };
}

function signInMessage(error) {
  if (error.status === 401) return "Wrong API key: the server does not know this key (INVALID_API_KEY). Use the key printed by turret-stream up.";
  if (error.status === 0) return `Cannot reach the API at ${location.origin}. Is turret-stream running?`;
  return `Sign-in failed: ${error.message} (${error.code})`;
}

async function signIn(key) {
  const button = $("signin-submit");
  button.disabled = true;
  button.textContent = "Signing in...";
  try {
    ctx = await startSession(key.trim());
    sessionStorage.setItem(KEY_STORAGE, ctx.key);
    enterShell();
  } catch (error) {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignIn(signInMessage(error));
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

function enterShell() {
  $("signin").hidden = true;
  $("shell").hidden = false;
  $("signin-key").value = "";
  $("project-name").textContent = ctx.project;
  route();
}

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [view, ...rest] = path.split("/").filter(Boolean);
  return { view: view || "topics", rest: rest.map(decodeURIComponent), query: new URLSearchParams(query) };
}

// Each route renders into a page of its own: a render still awaiting data when the user
// moves on (a reload's first view, then a click) writes into its own page, which is no
// longer shown, instead of over the newer view.
let generation = 0;

async function route() {
  if (!ctx) return;
  runCleanup();
  const mine = ++generation;
  const { view, rest, query } = parseHash();
  const module = VIEWS[view] || topics;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === (VIEWS[view] ? view : "topics"));
    link.toggleAttribute("aria-current", link.classList.contains("active"));
  }
  const container = $("view");
  container.dataset.view = view;
  const page = h("div", { class: "page" });
  clear(container, page);
  clear(page, loading());
  try {
    const done = (await module.render(ctx, page, { rest, query })) || null;
    if (mine !== generation) {
      if (done) done(); // superseded while it rendered: close what it opened
      return;
    }
    cleanup = done;
  } catch (error) {
    if (mine !== generation || error.status === 401) return; // 401: refused() sent the user to sign in
    clear(page, failure(error, route));
  }
}

function init() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("signin-key").value;
    if (key.trim()) signIn(key);
  });
  $("signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    $("signin").hidden = true;
    document.body.append(h("p", { id: "boot", class: "state loading" }, "Connecting..."));
    startSession(saved)
      .then((session) => {
        ctx = session;
        enterShell();
      })
      .catch((error) => {
        if (error.status === 401) return; // refused() shows the message
        showSignIn(signInMessage(error));
      })
      .finally(() => $("boot")?.remove());
  } else {
    showSignIn();
  }
}

init();
