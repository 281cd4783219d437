import { describe, expect, it } from '@jest/globals';
import { createStopMatcher, type StopMatchStep } from './stop-sequences.js';

/** Feeds `pieces` (then flushes unless stopped) and returns each step and the text let out. */
function feed(stops: readonly string[], pieces: readonly string[]): { steps: StopMatchStep[]; text: string; stopped: boolean } {
  const m = createStopMatcher(stops);
  const steps: StopMatchStep[] = [];
  for (const piece of pieces) {
    steps.push(m.push(piece));
    if (m.stopped) break;
  }
  if (!m.stopped) steps.push(m.flush());
  return { steps, text: steps.map((s) => s.emit).join(''), stopped: m.stopped };
}

/** The text OpenAI's stop semantics give: cut before the earliest first occurrence of any stop string. */
function expected(full: string, stops: readonly string[]): { text: string; stopped: boolean } {
  const at = Math.min(...stops.map((s) => full.indexOf(s)).filter((i) => i >= 0));
  return Number.isFinite(at) ? { text: full.slice(0, at), stopped: true } : { text: full, stopped: false };
}

describe('createStopMatcher', () => {
  it('lets everything out at once without a stop string in sight, and flush ends with stopped false', () => {
    const m = createStopMatcher(['xyz']);
    expect(m.push('hello ')).toEqual({ emit: 'hello ', stopped: false });
    expect(m.push('world')).toEqual({ emit: 'world', stopped: false });
    expect(m.held).toBe('');
    expect(m.flush()).toEqual({ emit: '', stopped: false });
    expect(m.stopped).toBe(false);
    // Without any stop string (empty ones are ignored) nothing is ever held back.
    const none = createStopMatcher(['']);
    expect(none.push('abc')).toEqual({ emit: 'abc', stopped: false });
    expect(none.flush()).toEqual({ emit: '', stopped: false });
  });

  it('cuts before a stop string inside one piece, keeping the text before it exactly (its leading space too)', () => {
    const m = createStopMatcher(['ess']);
    expect(m.push('Gar(),')).toEqual({ emit: 'Gar(),', stopped: false });
    expect(m.push(' successo')).toEqual({ emit: ' succ', stopped: true });
    expect(m.stopped).toBe(true);
    // Nothing comes out after the stop: neither later pieces nor a flush.
    expect(m.push(' more')).toEqual({ emit: '', stopped: true });
    expect(m.flush()).toEqual({ emit: '', stopped: true });
  });

  it('holds back only the tail that could start a stop string, across piece boundaries', () => {
    const m = createStopMatcher(['END']);
    expect(m.push('the E')).toEqual({ emit: 'the ', stopped: false });
    expect(m.held).toBe('E');
    expect(m.push('N')).toEqual({ emit: '', stopped: false });
    expect(m.held).toBe('EN');
    expect(m.push('D and more')).toEqual({ emit: '', stopped: true });
    // A false start is let out as soon as it cannot be a stop string any more.
    const f = createStopMatcher(['END']);
    expect(f.push('E')).toEqual({ emit: '', stopped: false });
    expect(f.push('NO')).toEqual({ emit: 'ENO', stopped: false });
    // A stop string spread over one-character pieces.
    expect(feed(['\n\n'], ['a', '\n', 'b', '\n', '\n', 'c'])).toMatchObject({ text: 'a\nb', stopped: true });
  });

  it('flush lets out the held-back tail when the text ends before the stop string completes', () => {
    const m = createStopMatcher(['END']);
    expect(m.push('almost EN')).toEqual({ emit: 'almost ', stopped: false });
    expect(m.flush()).toEqual({ emit: 'EN', stopped: false });
    expect(m.held).toBe('');
    expect(m.push('D')).toEqual({ emit: '', stopped: false });
  });

  it('with several stop strings, the one occurring first in the text wins, even if another completes first', () => {
    expect(feed(['world', 'lo'], ['hello world'])).toMatchObject({ text: 'hel', stopped: true });
    expect(feed(['lo', 'hello'], ['hello'])).toMatchObject({ text: '', stopped: true });
    // 'c' completes while 'abcd' (starting earlier) may still come: the matcher waits for it.
    const m = createStopMatcher(['abcd', 'c']);
    expect(m.push('xab')).toEqual({ emit: 'x', stopped: false });
    expect(m.push('c')).toEqual({ emit: '', stopped: false });
    expect(m.held).toBe('abc');
    expect(m.push('d')).toEqual({ emit: '', stopped: true });
    // …and when it does not come, the later one cuts the text.
    expect(feed(['abcd', 'c'], ['xab', 'c', 'e'])).toMatchObject({ text: 'xab', stopped: true });
    // …also when the text ends there: flush finds the complete one.
    const ended = createStopMatcher(['abcd', 'c']);
    ended.push('xabc');
    expect(ended.flush()).toEqual({ emit: 'ab', stopped: true });
  });

  it('handles overlapping prefixes and a stop string repeating its own start', () => {
    // 'aab' in 'aaab': the first 'a' is let out only once it cannot start the match.
    expect(feed(['aab'], ['a', 'a', 'a', 'b'])).toMatchObject({ text: 'a', stopped: true });
    expect(feed(['abab'], ['ab', 'a', 'bab'])).toMatchObject({ text: '', stopped: true });
    expect(feed(['abab'], ['aba', 'c', 'abab'])).toMatchObject({ text: 'abac', stopped: true });
    expect(feed(['abab'], ['xaba', 'cabab'])).toMatchObject({ text: 'xabac', stopped: true });
    // One stop string a prefix of another: both cut at the same place.
    expect(feed(['ab', 'abc'], ['x', 'a', 'b'])).toMatchObject({ text: 'x', stopped: true });
  });

  it('matches multi-byte characters (Cyrillic, Thai, emoji surrogate pairs), also inside a piece and split across pieces', () => {
    // " по" starts inside the piece " попу": the text before it is kept exactly.
    expect(feed([' по'], ['rightarrow', ' попу', 'development'])).toMatchObject({ text: 'rightarrow', stopped: true });
    expect(feed(['โ z'], [' heutigen', 'โ', ' zes'])).toMatchObject({ text: ' heutigen', stopped: true });
    expect(feed(['ни'], ['fahrt', 'ники'])).toMatchObject({ text: 'fahrt', stopped: true });
    // An emoji (two UTF-16 code units) split between pieces.
    const smile = '😀';
    expect(feed([`${smile}!`], ['hi ', smile[0]!, `${smile[1]!}!`])).toMatchObject({ text: 'hi ', stopped: true });
    expect(feed([smile], ['a😁b', 'c😀d'])).toMatchObject({ text: 'a😁bc', stopped: true });
  });

  it('gives the text cut before the earliest stop string whatever the pieces (pseudo-random texts, stops and splits)', () => {
    let state = 42;
    const rand = (n: number) => {
      // mulberry32: a small seeded generator, the same sequence on every run.
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
    };
    // A small alphabet, so that stop strings overlap and share prefixes often.
    const alphabet = ['a', 'b', 'п', '😀'];
    for (let round = 0; round < 2000; round++) {
      const full = Array.from({ length: rand(16) }, () => alphabet[rand(alphabet.length)]!).join('');
      const stops = Array.from({ length: 1 + rand(3) }, () => {
        // Often a piece of the text itself, sometimes a random string.
        if (full.length > 0 && rand(3) > 0) {
          const start = rand(full.length);
          return full.slice(start, start + 1 + rand(6));
        }
        return Array.from({ length: 1 + rand(3) }, () => alphabet[rand(alphabet.length)]!).join('');
      });
      // Often also a part of one of them after its start: it completes first, but the longer one starts earlier.
      const long = stops[0]!;
      if (long.length > 1 && rand(2) === 0) {
        const start = 1 + rand(long.length - 1);
        stops.push(long.slice(start, start + 1 + rand(long.length - start)));
      }
      const pieces: string[] = [];
      for (let i = 0; i < full.length; ) {
        const size = rand(5);
        pieces.push(full.slice(i, i + size));
        i += size;
      }
      const got = feed(stops, pieces);
      expect({ full, stops, pieces, text: got.text, stopped: got.stopped }).toEqual({ full, stops, pieces, ...expected(full, stops) });
    }
  });
});
