import "./fonts.css";  // the console's faces, each with its subset's unicode-range (fonts.css)
import "./styles.css";
import { render } from "preact";
import { useEffect, useLayoutEffect, useState } from "preact/hooks";
import { getJson, setCsrf, type Meta } from "./api";
import { Shell } from "./components/Shell";
import { getLang, setLang, t } from "./i18n";
import * as live from "./live";
import { Alerts } from "./pages/Alerts";
import { CallViewPage } from "./pages/CallView";
import { Calls } from "./pages/Calls";
import { Latency } from "./pages/Latency";
import { Overview } from "./pages/Overview";
import { preloaded, prefetchPage } from "./prefetch";
import { useLocation } from "./router";

function App() {
  const [meta, setMeta] = useState<Meta | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [, setLangTick] = useState(0);
  const { path, query } = useLocation();
  // as the app first renders, not after its first paint (when Preact runs effects); once what the
  // server preloaded with the page is in, so that the page renders whole, in one pass
  useLayoutEffect(() => {
    setLang(getLang());
    preloaded().then(() => {
      // the CSRF token for posts; when it cannot be had now, the first post asks for it (postJson)
      getJson<{ csrf: string }>("/api/session").then((s) => setCsrf(s.csrf), () => undefined);
      getJson<Meta>("/api/meta").then(setMeta, (e) => setErr(String(e.message)));
    });
    live.connect();
  }, []);
  useEffect(() => {
    const titles: Record<string, string> = { "/": "nav.overview", "/calls": "nav.calls", "/latency": "nav.latency", "/alerts": "nav.alerts" };
    const key = titles[path] || (path.startsWith("/calls/") ? "nav.calls" : "nav.overview");
    document.title = `${t(key)} · VoxPulse`;
  }, [path]);
  if (err) return <p class="error">{t("common.error", { e: err })}</p>;
  if (!meta) return <p class="muted page">{t("common.loading")}</p>;
  let page;
  if (path === "/") page = <Overview meta={meta} />;
  else if (path === "/calls") page = <Calls meta={meta} query={query} />;
  else if (path.startsWith("/calls/")) page = <CallViewPage meta={meta} callId={decodeURIComponent(path.slice(7))} key={path} />;
  else if (path === "/latency") page = <Latency meta={meta} query={query} />;
  else if (path === "/alerts") page = <Alerts query={query} />;
  else page = <p class="error">404</p>;
  return <Shell meta={meta} path={path} onLang={() => setLangTick((n) => n + 1)}>{page}</Shell>;
}

prefetchPage(location.pathname);
render(<App />, document.getElementById("app")!);
