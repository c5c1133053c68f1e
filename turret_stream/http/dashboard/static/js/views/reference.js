// API reference: Swagger UI (from the installed swagger-ui-py package) rendering this
// server's /openapi.json, with the signed-in key pre-filled for "Try it out".
import { clear, h } from "../dom.js";

let swagger = null;

function loadSwagger() {
  if (!swagger) {
    swagger = new Promise((resolve, reject) => {
      document.head.append(h("link", { rel: "stylesheet", href: "/vendor/swagger-ui.css" }));
      const script = h("script", { src: "/vendor/swagger-ui-bundle.js" });
      script.onload = () => resolve(window.SwaggerUIBundle);
      script.onerror = () => {
        swagger = null;
        reject(new Error("Swagger UI could not be loaded from this server"));
      };
      document.head.append(script);
    });
  }
  return swagger;
}

export async function render(ctx, container) {
  const SwaggerUIBundle = await loadSwagger();
  const target = h("div", { id: "swagger" });
  clear(container, h("div", { class: "view-head" }, h("h1", {}, "API reference"),
    h("a", { href: "/openapi.json", class: "muted" }, "openapi.json")), h("div", { class: "card swagger-card" }, target));
  const ui = SwaggerUIBundle({
    url: "/openapi.json",
    domNode: target,
    deepLinking: false, // the dashboard owns the URL's hash
    validatorUrl: null, // the default would call a validator on another host
    tryItOutEnabled: false,
    defaultModelsExpandDepth: 0,
    onComplete: () => ui.preauthorizeApiKey("apiKey", ctx.key),
  });
}
