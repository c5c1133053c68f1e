// Pieces shared by the views: the dimension picker.
import { h } from "../dom.js";

export function dimensionPicker(ctx, current, onChange) {
  if (ctx.textDimensions.length < 2) return null;
  const select = h(
    "select",
    { id: "dimension", "aria-label": "Dimension", onchange: (e) => onChange(e.target.value) },
    ctx.textDimensions.map((d) => h("option", { value: d, selected: d === current }, d)),
  );
  return h("label", { class: "inline" }, "Dimension ", select);
}

// The hash of a view with its parameters (empty ones left out).
export function viewHash(view, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const q = query.toString();
  return `#/${view}${q ? `?${q}` : ""}`;
}
