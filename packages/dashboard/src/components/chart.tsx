/** A uPlot time-series chart that follows its container's width and takes new data in place. */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** One line of a chart. */
export interface ChartSeries {
  label: string;
  /** CSS colour. */
  color: string;
  /** Filled area under the line. */
  fill?: boolean;
}

/** Props of {@link Chart}: x is unix seconds; `ys[i]` belongs to `series[i]` (null: no value, a gap). */
export interface ChartProps {
  title: string;
  unit: string;
  series: ChartSeries[];
  xs: number[];
  ys: (number | null)[][];
  /** The x range shown (unix seconds). */
  range: [number, number];
  height?: number;
  testId?: string;
}

const axisColor = () => getComputedStyle(document.documentElement).getPropertyValue('--muted').trim() || '#888';
const gridColor = () => getComputedStyle(document.documentElement).getPropertyValue('--grid').trim() || 'rgba(128,128,128,0.15)';

export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef(props);
  latest.current = props;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 180,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: () => latest.current.range }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { show: false } },
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { show: false }, size: 56, label: props.unit, labelSize: 16 },
      ],
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          fill: s.fill ? `${s.color}22` : undefined,
          spanGaps: false,
          points: { show: false },
        })),
      ],
    };
    const u = new uPlot(opts, [props.xs, ...props.ys] as uPlot.AlignedData, el);
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: latest.current.height ?? 180 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData([props.xs, ...props.ys] as uPlot.AlignedData);
  }, [props.xs, props.ys, props.range[0], props.range[1]]);

  return (
    <section class="chart-card" data-testid={props.testId}>
      <h3>{props.title}</h3>
      <div class="chart" ref={box} />
    </section>
  );
}
