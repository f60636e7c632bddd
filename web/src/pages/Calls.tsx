import { useEffect, useRef, useState } from "preact/hooks";
import { getJson, type CallRow, type Meta } from "../api";
import { fmtDuration, fmtMs, fmtTime, fmtUsd, fromLocalInput, outcomeLabel, toLocalInput } from "../format";
import { t } from "../i18n";
import * as live from "../live";
import { navigate } from "../router";

interface Page { items: CallRow[]; next_cursor: string | null }
const KEYS = ["from", "to", "outcome", "scenario", "min_ttfw_ms", "errors", "q", "insight_outcome", "failed_judge"] as const;
type Filters = Partial<Record<(typeof KEYS)[number], string>>;

function readFilters(query: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of KEYS) {
    const v = query.get(k);
    if (v) f[k] = v;
  }
  return f;
}

// The same filter the server applies, for rows that arrive on the live feed.
function matches(row: CallRow, f: Filters): boolean {
  const started = row.started_at ?? 0;
  if (f.from && started < Date.parse(f.from) / 1000) return false;
  if (f.to && started >= Date.parse(f.to) / 1000) return false;
  if (f.outcome && !f.outcome.split(",").includes(row.outcome ?? row.status ?? "")) return false;
  if (f.scenario && row.scenario !== f.scenario) return false;
  if (f.min_ttfw_ms && !((row.max_ttfw_ms ?? -1) >= Number(f.min_ttfw_ms))) return false;
  if (f.errors === "1" && !row.has_errors) return false;
  if (f.insight_outcome && row.insight_outcome !== f.insight_outcome) return false;
  if (f.failed_judge && !(f.failed_judge === "*" ? row.failed_judges.length > 0 : row.failed_judges.includes(f.failed_judge))) return false;
  if (f.q) {
    const digits = f.q.replace(/\D/g, "");
    const isPhone = /^[\d\s+()\-.]+$/.test(f.q) && digits.length >= 9;
    if (isPhone) return false; // numbers are matched by the server against the raw number only
    if (!row.call_id.startsWith(f.q.trim())) return false;
  }
  return true;
}

export function Calls(props: { meta: Meta; query: URLSearchParams }) {
  const filters = readFilters(props.query);
  const fkey = JSON.stringify(filters);
  const [cursors, setCursors] = useState<(string | undefined)[]>([]); // cursors of the pages before this one
  const [cursor, setCursor] = useState<string | undefined>(undefined);
  const [page, setPage] = useState<Page | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const [reload, setReload] = useState(0);
  const fref = useRef(filters);
  fref.current = filters;
  const cref = useRef(cursor);
  cref.current = cursor;

  useEffect(() => { setCursors([]); setCursor(undefined); }, [fkey]);
  useEffect(() => {
    let stop = false;
    setErr(null);
    getJson<Page>("/api/calls", { ...filters, cursor }).then(
      (p) => { if (!stop) setPage(p); },
      (e) => { if (!stop) { setErr(String(e.message)); setPage(null); } },
    );
    return () => { stop = true; };
  }, [fkey, cursor, reload]);

  useEffect(() => {
    const offCall = live.on("call", (row) => {
      setPage((p) => {
        if (!p) return p;
        const i = p.items.findIndex((r) => r.call_id === row.call_id);
        if (i >= 0) {
          const items = p.items.slice();
          items[i] = row;
          return { ...p, items };
        }
        if (cref.current !== undefined || !matches(row, fref.current)) return p;
        const items = [row, ...p.items].sort((a, b) => (b.started_at ?? 0) - (a.started_at ?? 0) || (a.call_id < b.call_id ? 1 : -1));
        return { ...p, items: items.slice(0, Math.max(p.items.length, 50)) };
      });
      setFresh((s) => new Set(s).add(row.call_id));
      window.setTimeout(() => setFresh((s) => { const n = new Set(s); n.delete(row.call_id); return n; }), 2500);
    });
    const offSync = live.on("resync", () => setReload((n) => n + 1));
    return () => { offCall(); offSync(); };
  }, []);

  const submit = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.target as HTMLFormElement);
    const q = new URLSearchParams();
    const from = fromLocalInput(String(form.get("from") || ""));
    const to = fromLocalInput(String(form.get("to") || ""));
    if (from) q.set("from", from);
    if (to) q.set("to", to);
    for (const k of ["outcome", "scenario", "min_ttfw_ms", "q", "insight_outcome", "failed_judge"]) {
      const v = String(form.get(k) || "").trim();
      if (v) q.set(k, v);
    }
    if (form.get("errors")) q.set("errors", "1");
    const s = q.toString();
    navigate(`/calls${s ? `?${s}` : ""}`);
  };
  const outcomes = Array.from(new Set(["resolved_by_bot", "transferred", "abandoned", "failed", ...props.meta.filters.outcome]));
  const obj = props.meta.objective_ms;
  return (
    <div class="page calls">
      <h1>{t("calls.title")}</h1>
      <form class="filters card" onSubmit={submit} aria-label={t("calls.filters")} key={fkey}>
        <div class="field">
          <label for="f-q">{t("calls.search")}</label>
          <input id="f-q" name="q" type="search" defaultValue={filters.q || ""} maxLength={200} placeholder="sim-7-… / +380…" />
        </div>
        <div class="field">
          <label for="f-from">{t("calls.from")}</label>
          <input id="f-from" name="from" type="datetime-local" defaultValue={filters.from ? toLocalInput(Date.parse(filters.from) / 1000) : ""} />
        </div>
        <div class="field">
          <label for="f-to">{t("calls.to")}</label>
          <input id="f-to" name="to" type="datetime-local" defaultValue={filters.to ? toLocalInput(Date.parse(filters.to) / 1000) : ""} />
        </div>
        <div class="field">
          <label for="f-outcome">{t("calls.outcome")}</label>
          <select id="f-outcome" name="outcome">
            <option value="">{t("calls.any")}</option>
            {outcomes.map((o) => <option value={o} selected={o === filters.outcome}>{outcomeLabel(o)}</option>)}
          </select>
        </div>
        <div class="field">
          <label for="f-scenario">{t("calls.scenario")}</label>
          <select id="f-scenario" name="scenario">
            <option value="">{t("calls.any")}</option>
            {props.meta.filters.scenario.map((s) => <option value={s} selected={s === filters.scenario}>{s}</option>)}
          </select>
        </div>
        <div class="field">
          <label for="f-insight-outcome">{t("calls.insight_outcome")}</label>
          <select id="f-insight-outcome" name="insight_outcome">
            <option value="">{t("calls.any")}</option>
            {["success", "fail"].map((o) => <option value={o} selected={o === filters.insight_outcome}>{t(`ins.outcome.${o}`)}</option>)}
          </select>
        </div>
        <div class="field">
          <label for="f-failed-judge">{t("calls.failed_judge")}</label>
          <select id="f-failed-judge" name="failed_judge">
            <option value="">{t("calls.any")}</option>
            <option value="*" selected={filters.failed_judge === "*"}>{t("calls.any_failed_judge")}</option>
            {Array.from(new Set([...(props.meta.filters.judge || []), ...(filters.failed_judge && filters.failed_judge !== "*" ? [filters.failed_judge] : [])]))
              .map((j) => <option value={j} selected={j === filters.failed_judge}>{j}</option>)}
          </select>
        </div>
        <div class="field narrow">
          <label for="f-ttfw">{t("calls.min_ttfw")}</label>
          <input id="f-ttfw" name="min_ttfw_ms" type="number" min="0" step="100" defaultValue={filters.min_ttfw_ms || ""} />
        </div>
        <div class="field check">
          <input id="f-errors" name="errors" type="checkbox" defaultChecked={filters.errors === "1"} />
          <label for="f-errors">{t("calls.errors")}</label>
        </div>
        <div class="actions">
          <button type="submit" class="primary">{t("calls.apply")}</button>
          <a class="button ghost" href="/calls">{t("calls.reset")}</a>
        </div>
      </form>
      {err && <p class="error" role="alert">{t("common.error", { e: err })}</p>}
      <p class="muted small">{t("calls.live_hint")}</p>
      <div class="table-wrap card">
        <table class="calls-table" data-testid="calls-table">
          <caption class="sr-only">{t("calls.table")}</caption>
          <thead>
            <tr>
              <th scope="col">{t("calls.started")}</th>
              <th scope="col">{t("calls.call")}</th>
              <th scope="col">{t("calls.caller")}</th>
              <th scope="col">{t("calls.scenario")}</th>
              <th scope="col">{t("calls.outcome")}</th>
              <th scope="col" class="num">{t("calls.duration")}</th>
              <th scope="col" class="num">{t("calls.turns")}</th>
              <th scope="col" class="num">{t("calls.max_ttfw")}</th>
              <th scope="col" class="num">{t("calls.cost")}</th>
            </tr>
          </thead>
          <tbody>
            {page?.items.map((r) => (
              <tr data-call-id={r.call_id} data-status={r.status ?? ""} class={fresh.has(r.call_id) ? "fresh" : ""}>
                <td>{fmtTime(r.started_at)}</td>
                <td>
                  <a href={`/calls/${encodeURIComponent(r.call_id)}`} class="mono">{r.call_id}</a>
                  {(r.tags || []).length > 0 && (
                    <span class="row-tags" data-testid="row-tags" aria-label={t("calls.tags")}>
                      {r.tags.map((tag) => <span class="badge tag" data-tag={tag}>#{tag}</span>)}
                    </span>
                  )}
                </td>
                <td class="mono">{r.caller || "—"}</td>
                <td>{r.scenario || "—"}</td>
                <td>
                  {r.status === "active"
                    ? <span class="badge o-active">● {t("status.active")}</span>
                    : r.source === "insights"
                      ? <span class="badge tag" data-testid="row-source" title={t("calls.source_insights_hint")}>{t("calls.source_insights")}</span>
                      : <span class={`badge o-${r.outcome}`}>{outcomeLabel(r.outcome)}</span>}
                  {r.transfer_reason && <span class="muted small"> {r.transfer_reason}</span>}
                  {r.has_errors && <span class="badge err" title={t("calls.error_flag")}>!</span>}
                  {r.insight_outcome && (
                    <span class={`badge ${r.insight_outcome === "success" ? "ok" : "err"}`} data-testid="row-insight-outcome"
                      title={t("calls.insight_outcome")}>{t(`ins.outcome.${r.insight_outcome}`)}</span>
                  )}
                  {(r.failed_judges || []).length > 0 && (
                    <span class="badge err" data-testid="row-failed-judges">{t("calls.failed_judges", { j: r.failed_judges.join(", ") })}</span>
                  )}
                  {r.has_audio && <span class="badge" title={t("calls.recorded")} aria-label={t("calls.recorded")}>♪</span>}
                </td>
                <td class="num">{fmtDuration(r.duration_s)}</td>
                <td class="num">{r.turns ?? "—"}</td>
                <td class={`num ${r.max_ttfw_ms != null && r.max_ttfw_ms > obj ? "bad" : ""}`}>{fmtMs(r.max_ttfw_ms)}</td>
                <td class="num">{fmtUsd(r.cost_usd)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {page && page.items.length === 0 && <p class="muted empty">{t("calls.empty")}</p>}
      </div>
      <nav class="pager" aria-label="pages">
        <button type="button" class="ghost" disabled={cursors.length === 0} data-testid="newer"
          onClick={() => { const c = cursors.slice(); const prev = c.pop(); setCursors(c); setCursor(prev); }}>
          {t("calls.newer")}
        </button>
        <span class="muted" data-testid="page-number">{t("calls.page", { n: cursors.length + 1 })}</span>
        <button type="button" class="ghost" disabled={!page?.next_cursor} data-testid="older"
          onClick={() => { setCursors([...cursors, cursor]); setCursor(page!.next_cursor!); }}>
          {t("calls.older")}
        </button>
      </nav>
    </div>
  );
}
