// The live feed: one EventSource per tab (/api/events), fanned out to whoever subscribes.
import type { AlertRow, CallRow, Sources } from "./api";
import { leave } from "./router";

type Handlers = {
  call: (row: CallRow) => void;
  alert: (row: AlertRow) => void;
  sources: (s: Sources) => void;
  resync: () => void;
  connection: (up: boolean) => void;
};
type Kind = keyof Handlers;

const subs: { [K in Kind]: Set<Handlers[K]> } = {
  call: new Set(),
  alert: new Set(),
  sources: new Set(),
  resync: new Set(),
  connection: new Set(),
};
let es: EventSource | null = null;
let up = false;
let sources: Sources | null = null;
let hellos = 0;

export function isLive(): boolean {
  return up;
}

export function lastSources(): Sources | null {
  return sources;
}

export function on<K extends Kind>(kind: K, fn: Handlers[K]): () => void {
  (subs[kind] as Set<Handlers[K]>).add(fn);
  return () => (subs[kind] as Set<Handlers[K]>).delete(fn);
}

function emit<K extends Kind>(kind: K, ...args: Parameters<Handlers[K]>): void {
  for (const fn of subs[kind] as Set<(...a: Parameters<Handlers[K]>) => void>) {
    try {
      fn(...args);
    } catch (e) {
      console.error(e);
    }
  }
}

function setUp(v: boolean): void {
  if (v !== up) {
    up = v;
    emit("connection", v);
  }
}

export function connect(): void {
  if (es) return;
  es = new EventSource("/api/events");
  es.addEventListener("open", () => setUp(true));
  es.addEventListener("error", () => setUp(false));
  es.addEventListener("hello", (e) => {
    setUp(true);
    const d = JSON.parse((e as MessageEvent).data);
    sources = d.sources;
    emit("sources", d.sources);
    // a reconnection: what changed meanwhile was not pushed, so the pages reload (the first hello
    // follows the pages' own first load)
    if (++hellos > 1) emit("resync");
  });
  es.addEventListener("call", (e) => emit("call", JSON.parse((e as MessageEvent).data)));
  es.addEventListener("alert", (e) => emit("alert", JSON.parse((e as MessageEvent).data)));
  es.addEventListener("sources", (e) => {
    sources = JSON.parse((e as MessageEvent).data);
    emit("sources", sources!);
  });
  es.addEventListener("resync", () => emit("resync"));
  es.addEventListener("bye", () => {
    es?.close();
    es = null;
    setUp(false);
    leave("/login");
  });
}
