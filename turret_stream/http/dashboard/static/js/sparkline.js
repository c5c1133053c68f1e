// A trend sparkline as inline SVG. The API lists only the hours (days) that had events:
// the missing ones are zeros, filled in here so the line keeps its time scale.
const SVG = "http://www.w3.org/2000/svg";

export function series(counts, unit, buckets) {
  const size = unit === "hour" ? 3600e3 : 86400e3;
  const key = unit === "hour" ? "hour" : "day";
  const byBucket = new Map();
  for (const row of counts || []) {
    byBucket.set(Math.floor(Date.parse(row[key].length === 10 ? `${row[key]}T00:00:00Z` : row[key]) / size), row.count);
  }
  const last = Math.floor(Date.now() / size);
  const out = [];
  for (let b = last - buckets + 1; b <= last; b++) out.push(byBucket.get(b) || 0);
  return out;
}

export function sparkline(values, { width = 120, height = 28, label = "" } = {}) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const total = values.reduce((a, b) => a + b, 0);
  svg.setAttribute("aria-label", `${label}: ${total} events`);
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("points", `0,${height} ${points.join(" ")} ${width},${height}`);
  area.setAttribute("class", "spark-area");
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("class", "spark-line");
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${label}: ${total} events`;
  svg.append(title, area, line);
  return svg;
}
