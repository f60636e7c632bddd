import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { postJson, type AlertRow, type Meta, type Sources } from "../api";
import { LANGS, getLang, setLang, t, type Lang } from "../i18n";
import * as live from "../live";
import { leave } from "../router";

const NAV = [
  { href: "/", key: "nav.overview" },
  { href: "/calls", key: "nav.calls" },
  { href: "/latency", key: "nav.latency" },
  { href: "/alerts", key: "nav.alerts" },
];

function active(href: string, path: string): boolean {
  return href === "/" ? path === "/" : path === href || path.startsWith(href + "/");
}

export function Shell(props: { meta: Meta; path: string; onLang: () => void; children: ComponentChildren }) {
  const [sources, setSources] = useState<Sources>(props.meta.sources);
  const [connected, setConnected] = useState(live.isLive());
  const [toasts, setToasts] = useState<(AlertRow & { key: number })[]>([]);

  useEffect(() => {
    const offs = [
      live.on("sources", setSources),
      live.on("connection", setConnected),
      live.on("alert", (a) => {
        if (a.op !== "INSERT") return;
        const key = Date.now() + Math.random();
        setToasts((ts) => [...ts.slice(-3), { ...a, key }]);
        window.setTimeout(() => setToasts((ts) => ts.filter((x) => x.key !== key)), 12000);
      }),
    ];
    // the stream may have opened (and said hello) before this component subscribed
    setConnected(live.isLive());
    const last = live.lastSources();
    if (last) setSources(last);
    return () => offs.forEach((f) => f());
  }, []);

  const down = (["db", "prometheus", "traces"] as const).filter((k) => sources[k] && !sources[k].ok);
  const logout = async () => {
    try {
      await postJson("/api/logout", {});
    } finally {
      leave("/login");
    }
  };
  return (
    <div class="shell">
      <a class="skip" href="#main">Skip to content</a>
      <header class="topbar">
        <a class="brand" href="/" aria-label="VoxPulse">
          <span class="brand-mark" aria-hidden="true"></span>VoxPulse
        </a>
        <nav aria-label={t("nav.main")}>
          <ul class="nav">
            {NAV.map((n) => (
              <li>
                <a href={n.href} aria-current={active(n.href, props.path) ? "page" : undefined}>{t(n.key)}</a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="topbar-right">
          <span class={`live-dot ${connected ? "on" : "off"}`} role="status" data-testid="live-status">
            {connected ? t("live.on") : t("live.off")}
          </span>
          <label class="lang">
            <span class="sr-only">{t("nav.language")}</span>
            <select
              value={getLang()}
              onChange={(e) => {
                setLang((e.target as HTMLSelectElement).value as Lang);
                props.onLang();
              }}
            >
              {LANGS.map((l) => <option value={l.code}>{l.label}</option>)}
            </select>
          </label>
          <span class="whoami" data-testid="user">{props.meta.user}{props.meta.can_view_pii ? " · PII" : ""}</span>
          <button type="button" class="ghost" onClick={logout} data-testid="logout">{t("nav.logout")}</button>
        </div>
      </header>
      {(down.length > 0 || !connected) && (
        <div class="banner" role="alert" data-testid="banner">
          <ul>
            {down.map((k) => (
              <li data-source={k}>{t(`src.${k}`)}{sources[k].error ? ` (${sources[k].error})` : ""}.</li>
            ))}
            {!connected && <li data-source="stream">{t("src.stream")}.</li>}
          </ul>
          <span class="muted">{t("src.rest")}</span>
        </div>
      )}
      <main id="main" tabIndex={-1}>{props.children}</main>
      <div class="toasts" aria-live="polite" aria-atomic="false">
        {toasts.map((a) => (
          <div class={`toast sev-${a.severity || "info"} st-${a.status}`} role="status" data-testid="toast">
            <strong>{t(a.status === "firing" ? "toast.firing" : "toast.resolved", { name: a.alertname })}</strong>
            <p>{a.summary || a.message}</p>
            <div class="toast-actions">
              <a href="/alerts">{t("toast.open")}</a>
              <button type="button" class="ghost" onClick={() => setToasts((ts) => ts.filter((x) => x.key !== a.key))}>
                {t("toast.close")}
              </button>
            </div>
          </div>
        ))}
      </div>
    </div>
  );
}
