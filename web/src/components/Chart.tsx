// uPlot in a Preact component: created on mount, rebuilt when the data or series change, resized
// with its container. Markers (exemplars) are real buttons laid over the canvas, so they can be
// reached by keyboard and clicked in tests. uPlot is loaded with the first chart (its own chunk,
// about half of the script): a call page, which has no chart, does not wait for it.
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../i18n";
import type uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

let loading: Promise<typeof uPlot> | null = null;

function loadUPlot(): Promise<typeof uPlot> {
  loading ??= import("uplot").then((m) => m.default, (e: unknown) => {
    loading = null;  // the next chart tries again
    throw e;
  });
  return loading;
}

export interface Marker {
  x: number; // epoch seconds
  y: number;
  label: string;
  color: string;
  onClick: () => void;
  testid?: string;
  data?: Record<string, string>;
}

export interface ChartProps {
  title: string;
  data: uPlot.AlignedData;
  series: uPlot.Series[];
  height?: number;
  yLabel?: string;
  markers?: Marker[];
  hlines?: { y: number; color: string; label: string }[];
  yMin?: number;
  xRange?: [number, number];
}

export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const layer = useRef<HTMLDivElement>(null);
  const [failed, setFailed] = useState<string | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const placeMarkers = (u: uPlot) => {
      const L = layer.current;
      if (!L) return;
      L.replaceChildren();
      const ro = u.over.getBoundingClientRect();
      const rl = L.getBoundingClientRect();
      const left = ro.left - rl.left;
      const top = ro.top - rl.top;
      for (const m of props.markers || []) {
        const px = u.valToPos(m.x, "x");
        const py = u.valToPos(m.y, "y");
        if (!isFinite(px) || !isFinite(py) || px < 0 || py < 0 || px > u.over.clientWidth || py > u.over.clientHeight) continue;
        const b = document.createElement("button");
        b.type = "button";
        b.className = "marker";
        b.title = m.label;
        b.setAttribute("aria-label", m.label);
        if (m.testid) b.dataset.testid = m.testid;
        for (const [k, v] of Object.entries(m.data || {})) b.dataset[k] = v;
        b.style.left = `${left + px}px`;
        b.style.top = `${top + py}px`;
        b.style.background = m.color;
        b.addEventListener("click", m.onClick);
        L.appendChild(b);
      }
    };
    const drawLines = (u: uPlot) => {
      const ctx = u.ctx;
      for (const h of props.hlines || []) {
        const y = u.valToPos(h.y, "y", true);
        if (!isFinite(y)) continue;
        ctx.save();
        ctx.strokeStyle = h.color;
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
        ctx.fillStyle = h.color;
        ctx.font = `${11 * devicePixelRatio}px "IBM Plex Sans", sans-serif`;
        ctx.textAlign = "right";
        ctx.fillText(h.label, u.bbox.left + u.bbox.width - 6 * devicePixelRatio, y - 5 * devicePixelRatio);
        ctx.restore();
      }
    };
    const maxY = Math.max(
      0,
      ...props.data.slice(1).flatMap((s) => (s as (number | null)[]).filter((v): v is number => v != null)),
      ...(props.markers || []).map((m) => m.y),
      ...(props.hlines || []).map((h) => h.y * 1.1),
    );
    const opts: uPlot.Options = {
      width: Math.max(300, el.clientWidth),
      height: props.height || 260,
      series: [{}, ...props.series],
      axes: [
        { stroke: "#475569", grid: { stroke: "#e2e8f0" }, space: 90 },
        { stroke: "#475569", grid: { stroke: "#e2e8f0" }, label: props.yLabel, size: 60 },
      ],
      scales: {
        x: props.xRange ? { time: true, range: () => props.xRange as [number, number] } : { time: true },
        y: { range: () => [props.yMin ?? 0, maxY > 0 ? maxY * 1.08 : 1] },
      },
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      hooks: { draw: [drawLines, placeMarkers] },
    };
    let u: uPlot | null = null;
    let ro: ResizeObserver | null = null;
    let gone = false;
    loadUPlot().then((UPlot) => {
      if (gone) return;
      const plot = new UPlot({ ...opts, width: Math.max(300, el.clientWidth) }, props.data, el);
      u = plot;
      ro = new ResizeObserver(() => plot.setSize({ width: Math.max(300, el.clientWidth), height: props.height || 260 }));
      ro.observe(el);
      setFailed(null);
    }, (e: unknown) => { if (!gone) setFailed(e instanceof Error ? e.message : String(e)); });
    return () => {
      gone = true;
      ro?.disconnect();
      u?.destroy();
      layer.current?.replaceChildren();
    };
  }, [props.data, props.series, props.markers, props.hlines]);
  return (
    <figure class="chart" aria-label={props.title}>
      <figcaption>{props.title}</figcaption>
      {failed && <p class="error" role="alert">{t("common.error", { e: failed })}</p>}
      <div class="chart-box">
        <div ref={box}></div>
        <div ref={layer} class="marker-layer"></div>
      </div>
    </figure>
  );
}
