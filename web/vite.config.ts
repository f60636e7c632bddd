// Builds the console's frontend into the Python package (voxpulse_console/ui/static), which the
// console serves as static files. No CDN, no inline scripts or styles (the console's CSP forbids
// them), no assets inlined as data: URIs, fonts bundled from npm.
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root: resolve(here),
  base: "/",
  publicDir: "public",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: resolve(here, "../voxpulse_console/ui/static"),
    emptyOutDir: true,
    assetsDir: "assets",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
    rollupOptions: {
      input: {
        index: resolve(here, "index.html"),
        login: resolve(here, "login.html"),
      },
    },
  },
});
