// Interface text in English, Ukrainian and Russian. The language comes from the user's choice
// (kept in localStorage) or the browser's; transcripts are shown as spoken, whatever the choice.
export type Lang = "en" | "uk" | "ru";
export const LANGS: { code: Lang; label: string }[] = [
  { code: "en", label: "English" },
  { code: "uk", label: "Українська" },
  { code: "ru", label: "Русский" },
];

type Entry = [en: string, uk: string, ru: string];
const T: Record<string, Entry> = {
  "nav.overview": ["Overview", "Огляд", "Обзор"],
  "nav.calls": ["Calls", "Дзвінки", "Звонки"],
  "nav.latency": ["Latency", "Затримки", "Задержки"],
  "nav.alerts": ["Alerts", "Сповіщення", "Алерты"],
  "nav.logout": ["Sign out", "Вийти", "Выйти"],
  "nav.language": ["Language", "Мова", "Язык"],
  "nav.main": ["Main navigation", "Головна навігація", "Основная навигация"],
  "live.on": ["Live", "Наживо", "Онлайн"],
  "live.off": ["Reconnecting…", "Перепідключення…", "Переподключение…"],
  "login.title": ["Sign in to the console", "Вхід до консолі", "Вход в консоль"],
  "login.user": ["User name", "Ім'я користувача", "Имя пользователя"],
  "login.password": ["Password", "Пароль", "Пароль"],
  "login.submit": ["Sign in", "Увійти", "Войти"],
  "login.hint": ["Credentials are set by the operator (VOXPULSE_UI_USERS).", "Облікові дані задає оператор (VOXPULSE_UI_USERS).", "Учётные данные задаёт оператор (VOXPULSE_UI_USERS)."],
  "login.wrong": ["Wrong user name or password.", "Неправильне ім'я або пароль.", "Неверное имя или пароль."],
  "login.limited": ["Too many failed attempts. Try again in {s} s.", "Забагато невдалих спроб. Спробуйте через {s} с.", "Слишком много неудачных попыток. Повторите через {s} с."],
  "login.failed": ["Sign-in failed: {e}", "Не вдалося увійти: {e}", "Не удалось войти: {e}"],
  "src.db": ["PostgreSQL (call history, alerts, live updates) is unavailable", "PostgreSQL (історія дзвінків, сповіщення, оновлення наживо) недоступний", "PostgreSQL (история звонков, алерты, обновления онлайн) недоступен"],
  "src.prometheus": ["Prometheus (latency metrics) is unavailable", "Prometheus (метрики затримок) недоступний", "Prometheus (метрики задержек) недоступен"],
  "src.traces": ["The trace store is unavailable: call views show the call history only", "Сховище трасувань недоступне: дзвінки показано лише з історії", "Хранилище трассировок недоступно: звонки показаны только из истории"],
  "src.stream": ["Lost the connection to the console; reconnecting", "Втрачено з'єднання з консоллю; перепідключення", "Потеряно соединение с консолью; переподключение"],
  "src.rest": ["The rest of the console keeps working.", "Решта консолі працює.", "Остальная консоль работает."],
  "ov.title": ["Overview", "Огляд", "Обзор"],
  "ov.active": ["Active calls", "Активні дзвінки", "Активные звонки"],
  "ov.today": ["Calls today", "Дзвінків сьогодні", "Звонков сегодня"],
  "ov.resolved": ["Resolved by the bot", "Вирішено ботом", "Решено ботом"],
  "ov.transferred": ["Transferred to an operator", "Передано оператору", "Передано оператору"],
  "ov.ttfw": ["Time to first word (15 min)", "Час до першого слова (15 хв)", "Время до первого слова (15 мин)"],
  "ov.cost": ["Cost today", "Вартість сьогодні", "Стоимость сегодня"],
  "ov.stages": ["p95 per stage (15 min)", "p95 за етапами (15 хв)", "p95 по этапам (15 мин)"],
  "ov.trend": ["Time to first word, last 6 hours", "Час до першого слова, останні 6 годин", "Время до первого слова, последние 6 часов"],
  "ov.alerts": ["Recent alerts", "Останні сповіщення", "Последние алерты"],
  "ov.no_alerts": ["No alerts recorded.", "Сповіщень немає.", "Алертов нет."],
  "ov.query": ["Query", "Запит", "Запрос"],
  "ov.of": ["of today's calls", "від дзвінків за сьогодні", "от звонков за сегодня"],
  "ov.objective": ["objective {v}", "ціль {v}", "цель {v}"],
  "ov.no_data": ["no data", "немає даних", "нет данных"],
  "calls.title": ["Calls", "Дзвінки", "Звонки"],
  "calls.filters": ["Filters", "Фільтри", "Фильтры"],
  "calls.from": ["From", "Від", "С"],
  "calls.to": ["To", "До", "По"],
  "calls.outcome": ["Outcome", "Результат", "Результат"],
  "calls.scenario": ["Scenario", "Сценарій", "Сценарий"],
  "calls.min_ttfw": ["Min. TTFW, ms", "Мін. TTFW, мс", "Мин. TTFW, мс"],
  "calls.errors": ["Only calls with errors", "Лише дзвінки з помилками", "Только звонки с ошибками"],
  "calls.search": ["Call ID or caller's number", "ID дзвінка або номер абонента", "ID звонка или номер абонента"],
  "calls.apply": ["Apply", "Застосувати", "Применить"],
  "calls.reset": ["Reset", "Скинути", "Сбросить"],
  "calls.any": ["Any", "Будь-який", "Любой"],
  "calls.started": ["Started", "Початок", "Начало"],
  "calls.call": ["Call", "Дзвінок", "Звонок"],
  "calls.caller": ["Caller", "Абонент", "Абонент"],
  "calls.duration": ["Duration", "Тривалість", "Длительность"],
  "calls.turns": ["Turns", "Репліки", "Реплики"],
  "calls.max_ttfw": ["Max TTFW", "Макс. TTFW", "Макс. TTFW"],
  "calls.cost": ["Cost", "Вартість", "Стоимость"],
  "calls.newer": ["← Newer", "← Новіші", "← Новее"],
  "calls.older": ["Older →", "Старіші →", "Старше →"],
  "calls.page": ["Page {n}", "Сторінка {n}", "Страница {n}"],
  "calls.empty": ["No calls match these filters.", "Немає дзвінків за цими фільтрами.", "Нет звонков по этим фильтрам."],
  "calls.live_hint": ["New and finished calls appear here live.", "Нові та завершені дзвінки з'являються тут наживо.", "Новые и завершённые звонки появляются здесь онлайн."],
  "calls.error_flag": ["errors", "помилки", "ошибки"],
  "calls.table": ["Calls, newest first", "Дзвінки, спочатку нові", "Звонки, сначала новые"],
  "status.active": ["in progress", "триває", "идёт"],
  "outcome.resolved_by_bot": ["resolved by bot", "вирішено ботом", "решено ботом"],
  "outcome.transferred": ["transferred", "передано", "передан"],
  "outcome.abandoned": ["abandoned", "покинуто", "брошен"],
  "outcome.failed": ["failed", "збій", "сбой"],
  "outcome.active": ["in progress", "триває", "идёт"],
  "outcome.completed": ["completed", "завершено", "завершён"],
  "cv.back": ["← All calls", "← Усі дзвінки", "← Все звонки"],
  "cv.title": ["Call {id}", "Дзвінок {id}", "Звонок {id}"],
  "cv.trace": ["Raw trace", "Трасування", "Трассировка"],
  "cv.logs": ["Logs", "Журнали", "Логи"],
  "cv.no_logs": ["no logs link (VOXPULSE_UI_LOGS_URL)", "немає посилання на журнали (VOXPULSE_UI_LOGS_URL)", "нет ссылки на логи (VOXPULSE_UI_LOGS_URL)"],
  "cv.only_history": ["Only the call history is available: {e}. Stage timings come from the history.", "Доступна лише історія дзвінка: {e}. Тривалості етапів — з історії.", "Доступна только история звонка: {e}. Длительности этапов — из истории."],
  "cv.only_trace": ["Only the trace is available: {e}. The transcript comes from the trace (redacted at export).", "Доступне лише трасування: {e}. Текст розмови — з трасування (замаскований).", "Доступна только трассировка: {e}. Текст разговора — из трассировки (замаскирован)."],
  "cv.started": ["Started", "Початок", "Начало"],
  "cv.ended": ["Ended", "Кінець", "Конец"],
  "cv.duration": ["Duration", "Тривалість", "Длительность"],
  "cv.outcome": ["Outcome", "Результат", "Результат"],
  "cv.scenario": ["Scenario", "Сценарій", "Сценарий"],
  "cv.caller": ["Caller", "Абонент", "Абонент"],
  "cv.masked": ["masked", "замасковано", "замаскирован"],
  "cv.cost": ["Cost", "Вартість", "Стоимость"],
  "cv.cost_split": ["by stage (usage share)", "за етапами (частка використання)", "по этапам (доля использования)"],
  "cv.turns": ["Turns", "Репліки", "Реплики"],
  "cv.turn": ["Turn {n}", "Репліка {n}", "Реплика {n}"],
  "cv.greeting": ["Greeting (from the caller's join to the agent's first word)", "Привітання (від входу абонента до першого слова агента)", "Приветствие (от входа абонента до первого слова агента)"],
  "cv.before": ["Before the first turn (greeting, session start)", "До першої репліки (привітання, початок сесії)", "До первой реплики (приветствие, начало сессии)"],
  "cv.after": ["After the last turn (hang-up)", "Після останньої репліки (завершення)", "После последней реплики (завершение)"],
  "cv.caller_said": ["Caller", "Абонент", "Абонент"],
  "cv.agent_said": ["Agent", "Агент", "Агент"],
  "cv.interrupted": ["interrupted", "перервано", "прервано"],
  "cv.anatomy": ["Where the {ms} went", "Куди пішли {ms}", "Куда ушли {ms}"],
  "cv.barge_in": ["caller barged in", "абонент перебив", "абонент перебил"],
  "cv.false_barge_in": ["false barge-in (resumed)", "хибне перебивання (продовжено)", "ложное перебивание (продолжено)"],
  "cv.agent_over_caller": ["agent talked over the caller", "агент перебив абонента", "агент перебил абонента"],
  "cv.yielded": ["agent yielded in {ms}", "агент замовк за {ms}", "агент замолчал за {ms}"],
  "cv.data_error": ["data error", "помилка даних", "ошибка данных"],
  "cv.tools": ["Tool calls", "Виклики інструментів", "Вызовы инструментов"],
  "cv.args": ["arguments", "аргументи", "аргументы"],
  "cv.result": ["result", "результат", "результат"],
  "cv.ok": ["ok", "ok", "ok"],
  "cv.error": ["error", "помилка", "ошибка"],
  "cv.speech_end": ["speech end", "кінець мовлення", "конец речи"],
  "cv.first_audio": ["first audio", "перший звук", "первый звук"],
  "cv.objective": ["objective", "ціль", "цель"],
  "cv.spans": ["{n} spans", "{n} спанів", "{n} спанов"],
  "cv.attributes": ["Attributes of {name}", "Атрибути {name}", "Атрибуты {name}"],
  "cv.not_found": ["No such call.", "Такого дзвінка немає.", "Такого звонка нет."],
  "cv.legend": ["Legend", "Легенда", "Легенда"],
  "cv.call_spans": ["Call-level spans", "Спани рівня дзвінка", "Спаны уровня звонка"],
  "cv.before_short": ["Before", "До", "До"],
  "cv.after_short": ["After", "Після", "После"],
  "ins.title": ["Agent insights: outcome, judges, tags", "Аналітика агента: результат, оцінки, теги", "Аналитика агента: результат, оценки, теги"],
  "ins.outcome": ["Outcome", "Результат", "Результат"],
  "ins.outcome.success": ["success", "успіх", "успех"],
  "ins.outcome.fail": ["fail", "невдача", "неудача"],
  "ins.verdict.pass": ["pass", "пройдено", "пройдено"],
  "ins.verdict.fail": ["fail", "не пройдено", "не пройдено"],
  "ins.verdict.maybe": ["uncertain", "невизначено", "неопределённо"],
  "ins.verdict.none": ["no verdict", "без оцінки", "без оценки"],
  "rec.title": ["Recording", "Запис", "Запись"],
  "rec.axis": ["on the call's time axis; click a turn, a span or the waveform to play from there", "на осі часу дзвінка; клацніть репліку, спан або хвилю, щоб грати звідти", "на оси времени звонка; кликните реплику, спан или волну, чтобы играть оттуда"],
  "rec.length": ["length {v}", "тривалість {v}", "длительность {v}"],
  "rec.broken": ["The recording is damaged ({e}); what is left may still play.", "Запис пошкоджено ({e}); решта може відтворитися.", "Запись повреждена ({e}); остаток может воспроизвестись."],
  "rec.missing": ["The recording is no longer on the disk (erased or past retention).", "Запису вже немає на диску (видалено або минув строк зберігання).", "Записи уже нет на диске (удалена или истёк срок хранения)."],
  "rec.dropped": ["The agent uploaded a recording, but this installation does not keep audio (VOXPULSE_INSIGHTS_AUDIO).", "Агент надіслав запис, але ця інсталяція не зберігає аудіо (VOXPULSE_INSIGHTS_AUDIO).", "Агент прислал запись, но эта установка не хранит аудио (VOXPULSE_INSIGHTS_AUDIO)."],
  "rec.none": ["No recording of this call.", "Запису цього дзвінка немає.", "Записи этого звонка нет."],
  "rec.forbidden": ["Playing the recording needs the audio permission (ask the operator).", "Для відтворення запису потрібен дозвіл audio (зверніться до оператора).", "Для воспроизведения записи нужно разрешение audio (обратитесь к оператору)."],
  "rec.undecodable": ["The browser could not decode the recording: {e}", "Браузер не зміг декодувати запис: {e}", "Браузер не смог декодировать запись: {e}"],
  "rec.seek": ["Play from here", "Грати звідси", "Играть отсюда"],
  "rec.play_from": ["play from here", "грати звідси", "играть отсюда"],
  "rec.waveform": ["Waveform", "Хвиля", "Волна"],
  "rec.channel.caller": ["caller", "абонент", "абонент"],
  "rec.channel.agent": ["agent", "агент", "агент"],
  "rec.channel.mixed": ["both", "обидва", "оба"],
  "rec.not_recorded": ["before the recording started", "до початку запису", "до начала записи"],
  "rec.no_player": ["This browser cannot play audio.", "Цей браузер не відтворює аудіо.", "Этот браузер не воспроизводит аудио."],
  "calls.insight_outcome": ["Agent's result", "Підсумок агента", "Итог агента"],
  "calls.failed_judge": ["Failed judge", "Непройдена оцінка", "Непройденная оценка"],
  "calls.any_failed_judge": ["any judge failed", "будь-яка не пройдена", "любая не пройдена"],
  "calls.tags": ["Tags", "Теги", "Теги"],
  "calls.failed_judges": ["failed: {j}", "не пройдено: {j}", "не пройдено: {j}"],
  "calls.recorded": ["recorded", "є запис", "есть запись"],
  "lat.title": ["Latency", "Затримки", "Задержки"],
  "lat.window": ["Window", "Період", "Период"],
  "lat.stage": ["Stage", "Етап", "Этап"],
  "lat.count": ["Spans", "Спанів", "Спанов"],
  "lat.chart": ["p95 per stage with exemplars (click a diamond to open its call)", "p95 за етапами з прикладами (клацніть ромб, щоб відкрити дзвінок)", "p95 по этапам с примерами (кликните ромб, чтобы открыть звонок)"],
  "lat.slowest": ["Slowest calls in this window (by time to first word)", "Найповільніші дзвінки за період (за часом до першого слова)", "Самые медленные звонки за период (по времени до первого слова)"],
  "lat.exemplar": ["Exemplar: {stage} {v} at {t}", "Приклад: {stage} {v} о {t}", "Пример: {stage} {v} в {t}"],
  "lat.no_exemplars": ["No exemplars in this window.", "Немає прикладів за цей період.", "Нет примеров за этот период."],
  "lat.background": ["This exemplar is background work, not a call: {what}", "Цей приклад — фонова робота, не дзвінок: {what}", "Этот пример — фоновая работа, не звонок: {what}"],
  "lat.exemplars": ["Slowest exemplars", "Найповільніші приклади", "Самые медленные примеры"],
  "lat.turn": ["slowest turn", "найповільніша репліка", "самая медленная реплика"],
  "stage.stt": ["STT", "STT", "STT"],
  "stage.llm": ["LLM", "LLM", "LLM"],
  "stage.tool": ["Tools", "Інструменти", "Инструменты"],
  "stage.tts": ["TTS", "TTS", "TTS"],
  "stage.turn": ["Whole turn", "Уся репліка", "Вся реплика"],
  "stage.ttfw": ["Time to first word", "Час до першого слова", "Время до первого слова"],
  "stage.first_chunk:llm": ["LLM time to first token", "LLM: час до першого токена", "LLM: время до первого токена"],
  "stage.first_chunk:tts": ["TTS time to first byte", "TTS: час до першого байта", "TTS: время до первого байта"],
  "stage.first_chunk:stt": ["STT time to transcript", "STT: час до транскрипту", "STT: время до транскрипта"],
  "stage.playout": ["Playout", "Відтворення", "Воспроизведение"],
  "stage.speech": ["Caller speech", "Мовлення абонента", "Речь абонента"],
  "stage.other": ["Other", "Інше", "Другое"],
  "al.title": ["Alerts", "Сповіщення", "Алерты"],
  "al.all": ["All", "Усі", "Все"],
  "al.firing": ["Firing", "Активні", "Активные"],
  "al.resolved": ["Resolved", "Вирішені", "Решённые"],
  "al.received": ["Received", "Отримано", "Получено"],
  "al.status": ["Status", "Статус", "Статус"],
  "al.severity": ["Severity", "Рівень", "Уровень"],
  "al.alert": ["Alert", "Сповіщення", "Алерт"],
  "al.window": ["Active", "Активне", "Активен"],
  "al.calls": ["Calls in this window", "Дзвінки за цей час", "Звонки за это время"],
  "al.more": ["Load older", "Завантажити старіші", "Загрузить старше"],
  "al.empty": ["No alerts.", "Сповіщень немає.", "Алертов нет."],
  "toast.firing": ["Alert firing: {name}", "Спрацювало сповіщення: {name}", "Сработал алерт: {name}"],
  "toast.resolved": ["Alert resolved: {name}", "Сповіщення вирішено: {name}", "Алерт решён: {name}"],
  "toast.close": ["Dismiss", "Закрити", "Закрыть"],
  "toast.open": ["Open alerts", "Відкрити сповіщення", "Открыть алерты"],
  "common.loading": ["Loading…", "Завантаження…", "Загрузка…"],
  "common.error": ["Could not load: {e}", "Не вдалося завантажити: {e}", "Не удалось загрузить: {e}"],
  "common.now": ["now", "зараз", "сейчас"],
};

let lang: Lang = detect();

function detect(): Lang {
  try {
    const saved = localStorage.getItem("voxpulse.lang");
    if (saved === "en" || saved === "uk" || saved === "ru") return saved;
  } catch {
    /* storage blocked */
  }
  const nav = (navigator.language || "en").slice(0, 2).toLowerCase();
  return nav === "uk" ? "uk" : nav === "ru" ? "ru" : "en";
}

export function getLang(): Lang {
  return lang;
}

export function setLang(l: Lang): void {
  lang = l;
  try {
    localStorage.setItem("voxpulse.lang", l);
  } catch {
    /* storage blocked */
  }
  document.documentElement.lang = l;
}

export function t(key: string, vars?: Record<string, string | number>): string {
  const e = T[key];
  let s = e ? e[lang === "en" ? 0 : lang === "uk" ? 1 : 2] : key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, String(v));
  return s;
}

export function locale(): string {
  return lang === "en" ? "en-GB" : lang === "uk" ? "uk-UA" : "ru-RU";
}
