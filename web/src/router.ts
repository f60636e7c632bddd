// A tiny history-API router: paths are the console's pages, links are ordinary <a href>s.
import { useEffect, useState } from "preact/hooks";

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
  window.scrollTo(0, 0);
}

let leaving = false;

/** Leave the app for ``to`` (the login page), once: logging out, the server's "bye" on the live feed
 *  and a 401 can all ask at the same moment, and a second navigation would abort the first. */
export function leave(to: string): void {
  if (leaving) return;
  leaving = true;
  location.assign(to);
}

window.addEventListener("popstate", () => listeners.forEach((l) => l()));

// Same-origin link clicks go through the router (modifier keys and new tabs keep their meaning).
document.addEventListener("click", (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element).closest?.("a");
  if (!a || a.target || a.hasAttribute("download") || a.dataset.external !== undefined) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname === "/login") return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});

export function useLocation(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((n) => n + 1);
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}
