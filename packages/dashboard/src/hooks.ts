/** Preact hooks over the store and the clock. */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Store } from './live.js';
import type { DashboardState } from './state.js';

/** A slice of the state; the component renders again only when the slice changes (Object.is). */
export function useSelect<T>(store: Store, select: (state: DashboardState) => T): T {
  const [, setTick] = useState(0);
  const selected = useRef<T>(select(store.get()));
  const selector = useRef(select);
  selector.current = select;
  useEffect(
    () =>
      store.subscribe(() => {
        const next = selector.current(store.get());
        if (Object.is(next, selected.current)) return;
        selected.current = next;
        setTick((n) => n + 1);
      }),
    [store],
  );
  selected.current = select(store.get());
  return selected.current;
}

/** The time now (ms), refreshed every `intervalMs`. */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

/** The location hash's page (`#/traffic` → `traffic`), following changes. */
export function useHashRoute(pages: readonly string[], fallback: string): string {
  const read = () => {
    const name = window.location.hash.replace(/^#\/?/, '').split(/[/?]/)[0] ?? '';
    return pages.includes(name) ? name : fallback;
  };
  const [page, setPage] = useState(read);
  useEffect(() => {
    const onChange = () => setPage(read());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return page;
}
