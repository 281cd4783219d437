/** A horizontal usage bar: fraction 0–1, coloured by how full it is; the label (or the title) says the numbers. */
export function Bar(props: { value: number; label?: string; title?: string; kind?: 'memory' | 'util' | 'slots' | 'quota' }) {
  const v = Math.min(1, Math.max(0, Number.isFinite(props.value) ? props.value : 0));
  const level = v >= 0.9 ? 'high' : v >= 0.7 ? 'mid' : 'low';
  return (
    <div class={`bar bar-${props.kind ?? 'memory'} bar-${level}`} title={props.title ?? `${Math.round(v * 100)} %`}>
      <div class="bar-fill" style={{ width: `${(v * 100).toFixed(1)}%` }} />
      {props.label !== undefined && <span class="bar-label">{props.label}</span>}
    </div>
  );
}
