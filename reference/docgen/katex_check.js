// Render every formula given on stdin (a JSON array of {"tex": ..., "display": bool}) with KaTeX,
// throwing on any error; print a JSON array of {"index", "tex", "error"} for the ones that fail.
// Used by tests/test_docgen_render.py; needs the katex package on NODE_PATH.
"use strict";
const katex = require("katex");
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const items = JSON.parse(input);
  const failures = [];
  items.forEach((item, index) => {
    try {
      katex.renderToString(item.tex, { displayMode: item.display, throwOnError: true, strict: "error" });
    } catch (e) {
      failures.push({ index, tex: item.tex, error: String(e.message || e) });
    }
  });
  process.stdout.write(JSON.stringify(failures));
});
