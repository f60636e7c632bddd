// The call page's data, asked for as the script starts: without it the call's JSON waits for the
// console's metadata and the page's first render, and the waveform's peaks wait for the call's JSON
// and the call page's render (on a busy 2-core machine, about half a second of a call page's load).
// A response asked for early is taken once, by the first fetch of the same URL; later fetches (the
// page refreshed by a live update) go to the server.
const early = new Map<string, Promise<Response>>();

function ask(url: string): Promise<Response> {
  const p = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  early.set(url, p);
  p.catch(() => early.delete(url));
  return p;
}

/** the response asked for early for ``url``, once; undefined when none was */
export function takeEarly(url: string): Promise<Response> | undefined {
  const p = early.get(url);
  early.delete(url);
  return p;
}

/** on a call page (``/calls/{id}``): ask for the call, and for its kept waveform as soon as the call
 *  says it has one */
export function prefetchCallPage(path: string): void {
  const m = /^\/calls\/([^/]+)$/.exec(path);
  if (!m) return;
  let id: string;
  try {
    id = decodeURIComponent(m[1]);
  } catch {
    return;  // a malformed path: the page says so itself
  }
  const call = ask(`/api/calls/${encodeURIComponent(id)}`);
  // read from a copy, taken before the page reads the response itself
  call
    .then((r) => (r.ok ? (r.clone().json() as Promise<{ insights?: { audio?: { waveform_url?: string | null } } }>) : null))
    .then((body) => {
      const url = body?.insights?.audio?.waveform_url;
      if (url) ask(url);
    })
    .catch(() => undefined);
}
