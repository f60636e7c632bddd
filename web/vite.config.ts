// Builds the console's frontend into the Python package (voxpulse_console/ui/static), which the
// console serves as static files. No CDN, no inline scripts or styles (the console's CSP forbids
// them), no assets inlined as data: URIs, fonts bundled from npm.
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

// The console's Latin faces preloaded with its page: the first layout draws in them instead of laying
// the page out in a fallback font and again when they arrive.
function preloadFonts(): Plugin {
  return {
    name: "voxpulse-preload-fonts",
    transformIndexHtml: {
      order: "post",
      handler(_html, ctx) {
        if (!ctx.bundle || !ctx.filename.endsWith("index.html")) return [];
        return Object.keys(ctx.bundle)
          .filter((f) => /ibm-plex-(sans|mono)-latin-\d+-normal-[\w-]+\.woff2$/.test(f))
          .sort()
          .map((f) => ({ tag: "link", attrs: { rel: "preload", as: "font", type: "font/woff2", href: `/${f}`, crossorigin: "" }, injectTo: "head" as const }));
      },
    },
  };
}

const here = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root: resolve(here),
  base: "/",
  plugins: [preloadFonts()],
  publicDir: "public",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: resolve(here, "../voxpulse_console/ui/static"),
    emptyOutDir: true,
    assetsDir: "assets",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    // one stylesheet for both pages (the app and the login form share nearly all of it): one request fewer
    // that blocks the first paint, of the six the browser sends the console at a time
    cssCodeSplit: false,
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
