import "./fonts.css";  // the console's faces, each with its subset's unicode-range (fonts.css)
import "./styles.css";
import { getLang, setLang, t } from "./i18n";

setLang(getLang());
for (const el of document.querySelectorAll<HTMLElement>("[data-i18n]")) el.textContent = t(el.dataset.i18n!);
document.title = `${t("login.title")} · VoxPulse`;

const form = document.getElementById("login-form") as HTMLFormElement;
const errorBox = document.getElementById("login-error") as HTMLParagraphElement;
let csrf = "";

const requested = new URLSearchParams(location.search).get("next") || "/";

/** Where to go after the login: the console's answer (it resolves `next` as a browser does and
 * keeps only its own origin), checked once more with this browser's own URL parser. */
function go(next: unknown): void {
  const u = new URL(typeof next === "string" ? next : "/", location.href);
  location.replace(u.origin === location.origin && !u.pathname.startsWith("/login") ? u.href : "/");
}

async function session(): Promise<void> {
  const r = await fetch(`/api/session?next=${encodeURIComponent(requested)}`, { credentials: "same-origin" });
  const s = await r.json();
  if (s.authenticated) go(s.next);
  csrf = s.csrf;
}

function showError(msg: string): void {
  errorBox.textContent = msg;
  errorBox.hidden = false;
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  errorBox.hidden = true;
  const data = new FormData(form);
  const button = form.querySelector("button")!;
  button.disabled = true;
  try {
    const r = await fetch("/api/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ user: data.get("user"), password: data.get("password"), next: requested }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      go(body.next);
      return;
    }
    if (r.status === 429) showError(t("login.limited", { s: body.retry_after_s ?? "?" }));
    else if (r.status === 401) showError(t("login.wrong"));
    else showError(t("login.failed", { e: body.error || r.statusText }));
    if (r.status === 403) await session();
  } catch (err) {
    showError(t("login.failed", { e: String(err) }));
  } finally {
    button.disabled = false;
  }
});

void session();
