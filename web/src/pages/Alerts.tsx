import { useEffect, useState } from "preact/hooks";
import { getJson, type AlertRow } from "../api";
import { fmtTime } from "../format";
import { t } from "../i18n";
import * as live from "../live";

interface Page { items: AlertRow[]; next_before: number | null }

function callsLink(a: AlertRow): string {
  const from = new Date(((a.starts_at ?? a.received_at ?? 0) - 300) * 1000).toISOString();
  const to = new Date(((a.resolved_at ?? Date.now() / 1000) + 60) * 1000).toISOString();
  return `/calls?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
}

export function Alerts(props: { query: URLSearchParams }) {
  const status = props.query.get("status") || "";
  const [items, setItems] = useState<AlertRow[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const load = (before?: number) =>
    getJson<Page>("/api/alerts", { status: status || undefined, before: before ? String(before) : undefined }).then(
      (p) => { setItems((cur) => (before ? [...cur, ...p.items] : p.items)); setNext(p.next_before); setErr(null); setLoaded(true); },
      (e) => setErr(String(e.message)),
    );
  useEffect(() => { setLoaded(false); void load(); }, [status]);
  useEffect(() => live.on("alert", (a) => {
    if (status && a.status !== status) return;
    setItems((cur) => [a, ...cur.filter((x) => x.id !== a.id)].sort((x, y) => y.id - x.id));
  }), [status]);
  return (
    <div class="page alerts">
      <h1>{t("al.title")}</h1>
      <div class="segmented" role="group" aria-label={t("al.status")}>
        {[["", "al.all"], ["firing", "al.firing"], ["resolved", "al.resolved"]].map(([v, k]) => (
          <a class="button" href={v ? `/alerts?status=${v}` : "/alerts"} aria-current={status === v ? "true" : undefined}>{t(k)}</a>
        ))}
      </div>
      {err && <p class="error" role="alert">{t("common.error", { e: err })}</p>}
      <div class="table-wrap card">
        <table data-testid="alerts-table">
          <caption class="sr-only">{t("al.title")}</caption>
          <thead><tr>
            <th scope="col">{t("al.received")}</th><th scope="col">{t("al.status")}</th><th scope="col">{t("al.severity")}</th>
            <th scope="col">{t("al.alert")}</th><th scope="col">{t("al.window")}</th><th scope="col"></th>
          </tr></thead>
          <tbody>
            {items.map((a) => (
              <tr data-alert-id={a.id} data-status={a.status}>
                <td>{fmtTime(a.received_at)}</td>
                <td><span class={`badge st-${a.status}`}>{a.status === "firing" ? t("al.firing") : t("al.resolved")}</span></td>
                <td><span class={`badge sev-${a.severity || "info"}`}>{a.severity || "—"}</span></td>
                <td><strong>{a.alertname}</strong><div class="muted small">{a.summary || a.message}</div></td>
                <td class="small">{fmtTime(a.starts_at)} → {a.resolved_at ? fmtTime(a.resolved_at) : "…"}</td>
                <td><a href={callsLink(a)} data-testid="alert-calls">{t("al.calls")}</a></td>
              </tr>
            ))}
          </tbody>
        </table>
        {loaded && items.length === 0 && <p class="muted empty">{t("al.empty")}</p>}
      </div>
      {next && <button type="button" class="ghost" onClick={() => void load(next)}>{t("al.more")}</button>}
    </div>
  );
}
