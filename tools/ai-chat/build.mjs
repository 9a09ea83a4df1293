// Builds durable_sessions/static/durable_sessions/vendor/ai-chat.js: the browser-side
// `Chat` of the `ai` package at the version pinned in tests/package.json ("ai-7"), as one
// ES module (no CDN, no build step for the demo). Run from the repository root:
//     npm ci --prefix tests && node tools/ai-chat/build.mjs
// tests/test_aisdk_bundle.py checks that the committed file is this build.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const require = createRequire(join(root, "tests", "package.json"));
const esbuild = require("esbuild");
const pkg = JSON.parse(readFileSync(join(root, "tests", "node_modules", "ai-7", "package.json"), "utf8"));

export async function build() {
  const result = await esbuild.build({
    entryPoints: [join(here, "entry.mjs")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    write: false,
    metafile: true,
    alias: { ai: join(root, "tests", "node_modules", "ai-7") },
    nodePaths: [join(root, "tests", "node_modules")],
    banner: { js: `// ai ${pkg.version} (Apache-2.0, see ai-chat.LICENSE): Chat, built by tools/ai-chat/build.mjs` },
  });
  return { code: result.outputFiles[0].text, packages: bundledPackages(result.metafile) };
}

/** The npm packages the bundle holds code of: their directories under node_modules. */
function bundledPackages(metafile) {
  const found = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) found.add(match[1]);
  }
  return [...found].sort();
}

/** The licences of every bundled package, the `ai` package's first. */
function licences(packages) {
  const texts = [];
  for (const dir of packages) {
    const path = join(root, dir);
    const meta = JSON.parse(readFileSync(join(path, "package.json"), "utf8"));
    let body = `(${meta.license})`;
    for (const name of ["LICENSE", "LICENSE.md", "license", "LICENSE.txt"]) {
      try {
        body = readFileSync(join(path, name), "utf8");
        break;
      } catch {
        // no licence file under this name
      }
    }
    texts.push(`== ${meta.name} ${meta.version} (${meta.license})\n\n${body.trim()}\n`);
  }
  return texts.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = join(root, "durable_sessions", "static", "durable_sessions", "vendor", "ai-chat.js");
  const { code, packages } = await build();
  writeFileSync(out, code);
  writeFileSync(out.replace(/\.js$/, ".LICENSE"), licences(packages));
  console.log(`wrote ${out} (ai ${pkg.version})`);
}
