import { locale, t } from "./i18n";

// one formatter per locale and form, made once: toLocaleString with options builds a new one on every
// call (ICU's set-up, a few ms each: the call page's first render formats two times, the calls list many)
const timeFormats = new Map<string, Intl.DateTimeFormat>();

export function fmtTime(epoch: number | null | undefined, withDate = true): string {
  if (epoch == null) return "—";
  const key = `${locale()} ${withDate}`;
  let f = timeFormats.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(locale(), withDate
      ? { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }
      : { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    timeFormats.set(key, f);
  }
  return f.format(new Date(epoch * 1000));
}

export function fmtMs(ms: number | null | undefined): string {
  if (ms == null || !isFinite(ms)) return "—";
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms)} ms`;
}

export function fmtDuration(s: number | null | undefined): string {
  if (s == null || !isFinite(s)) return "—";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function fmtUsd(v: number | null | undefined, digits = 4): string {
  if (v == null || !isFinite(v)) return "—";
  return `$${v.toFixed(digits)}`;
}

export function fmtNum(v: number | null | undefined): string {
  if (v == null || !isFinite(v)) return "—";
  return new Intl.NumberFormat(locale()).format(v);
}

export function outcomeLabel(o: string | null | undefined): string {
  if (!o) return "—";
  const key = `outcome.${o}`;
  const s = t(key);
  return s === key ? o : s;
}

export function stageLabel(s: string): string {
  const key = `stage.${s}`;
  const v = t(key);
  return v === key ? s : v;
}

// epoch seconds <-> the value of an <input type="datetime-local"> (the browser's local time)
export function toLocalInput(epoch: number | null): string {
  if (epoch == null) return "";
  const d = new Date(epoch * 1000);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fromLocalInput(v: string): string | undefined {
  if (!v) return undefined;
  const d = new Date(v);
  return isNaN(d.getTime()) ? undefined : d.toISOString();
}
