// What a page needs first, asked for as the script starts. The server preloads it with the page
// (`<link rel=preload as=fetch>` in the head, voxpulse_console/ui/app.py: the console's metadata and
// session everywhere; on a call page the call's JSON and, where kept, its waveform's peaks), so by the
// time the script runs the responses are usually in: asking here takes them and parses them at once,
// and the page's first render starts from them (takeReady) instead of rendering "loading" and fetching.
// On a call page without a preloaded waveform (the peaks in a bucket) the chain still starts here,
// before the page renders: the call's JSON, then its waveform as soon as the JSON names one.
// A response asked for early is taken once, by the first fetch of the same URL; later fetches (the
// page refreshed by a live update) go to the server.
const early = new Map<string, Promise<Response>>();
const ready = new Map<string, unknown>();
const asked = new Set<string>();
let preloads: Promise<unknown> = Promise.resolve();

/** a GET of the console's JSON, as every page asks for it (early here, or later by api.getJson) */
export function fetchJson(url: string): Promise<Response> {
  return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
}

function ask(url: string): Promise<unknown> {
  asked.add(url);
  const p = fetchJson(url);
  early.set(url, p);
  p.catch(() => early.delete(url));
  // parsed from a copy, so that a fetch that takes the response early can still read it itself
  return p
    .then((r) => (r.ok ? r.clone().json() : null))
    .then((body: unknown) => {
      if (body != null && early.get(url) === p) ready.set(url, body);
      return body;
    })
    .catch(() => null);
}

/** the response asked for early for ``url``, once; undefined when none was */
export function takeEarly(url: string): Promise<Response> | undefined {
  const p = early.get(url);
  early.delete(url);
  ready.delete(url);
  return p;
}

/** the parsed body of the response asked for early for ``url`` when it is already in, once (the
 *  caller renders from it at once); undefined when it is not (the caller fetches: see takeEarly) */
export function takeReady<T>(url: string): T | undefined {
  if (!ready.has(url)) return undefined;
  const body = ready.get(url) as T;
  ready.delete(url);
  early.delete(url);
  return body;
}

/** settles when what the server preloaded with the page is in and parsed (or failed): the app renders
 *  the page then, whole, from takeReady */
export function preloaded(): Promise<unknown> {
  return preloads;
}

/** the call's URL, as the call page and prefetchPage both write it */
export function callUrl(callId: string): string {
  return `/api/calls/${encodeURIComponent(callId)}`;
}

/** what the server preloaded with the page at ``path``, asked for now; on a call page (``/calls/{id}``)
 *  the call too, and its kept waveform as soon as the call says it has one */
export function prefetchPage(path: string, doc: Document = document): void {
  const pending = new Map<string, Promise<unknown>>();
  doc.querySelectorAll<HTMLLinkElement>('link[rel="preload"][as="fetch"]').forEach((link) => {
    const u = new URL(link.href, location.href);
    if (u.origin === location.origin) pending.set(u.pathname + u.search, ask(u.pathname + u.search));
  });
  preloads = Promise.all(pending.values());
  const m = /^\/calls\/([^/]+)$/.exec(path);
  if (!m) return;
  let id: string;
  try {
    id = decodeURIComponent(m[1]);
  } catch {
    return;  // a malformed path: the page says so itself
  }
  const url = callUrl(id);
  (pending.get(url) ?? ask(url)).then((body) => {
    const wave = (body as { insights?: { audio?: { waveform_url?: string | null } } } | null)?.insights?.audio?.waveform_url;
    if (wave && !asked.has(wave)) ask(wave);
  });
}
