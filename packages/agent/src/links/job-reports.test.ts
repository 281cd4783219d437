import { describe, expect, it } from '@jest/globals';
import type { JobOutcome } from '@titancompute/protocol';
import { createJobReportLedger, MAX_UNACKED_OUTCOMES } from './job-reports.js';

const outcome = (jobId: string): JobOutcome => ({ jobId, tokensGenerated: 1, timeToFirstTokenMs: 1, tokensPerSecond: 1, error: '', promptTokens: 0 });

describe('job report ledger', () => {
  it('stamps strictly increasing timestamps, even within one millisecond', () => {
    const ledger = createJobReportLedger();
    const stamps = Array.from({ length: 50 }, () => ledger.stamp([]).timestamp);
    for (let i = 1; i < stamps.length; i++) expect(stamps[i]).toBeGreaterThan(stamps[i - 1]!);
    expect(ledger.lastSentTs).toBe(stamps.at(-1));
  });

  it('re-sends a finished job on every update until an ack covers the update that first carried it', () => {
    const ledger = createJobReportLedger();
    const first = ledger.stamp([outcome('a')]);
    const second = ledger.stamp([outcome('b')]);
    expect(second.completedJobs.map((o) => o.jobId)).toEqual(['a', 'b']);
    // A late ack of the first update covers job a only.
    ledger.ack(first.timestamp);
    expect(ledger.stamp([]).completedJobs.map((o) => o.jobId)).toEqual(['b']);
    ledger.ack(ledger.lastSentTs);
    expect(ledger.stamp([]).completedJobs).toEqual([]);
  });

  it('carries the job ids of refused tokens the same way, until an ack covers them (a new stream, or a new coordinator, gets them again)', () => {
    const ledger = createJobReportLedger();
    const first = ledger.stamp([], ['refused-a']);
    expect(first.rejectedJobIds).toEqual(['refused-a']);
    // The stream broke before any ack: the next update (on the next stream) still carries it.
    expect(ledger.stamp([outcome('done-b')], ['refused-c'])).toMatchObject({ rejectedJobIds: ['refused-a', 'refused-c'], completedJobs: [outcome('done-b')] });
    ledger.ack(ledger.lastSentTs);
    expect(ledger.stamp([]).rejectedJobIds).toEqual([]);
  });

  it('an ack also settles ackOf of earlier updates (one sent to a coordinator that died is never acked itself)', async () => {
    const ledger = createJobReportLedger();
    const lost = ledger.stamp([]).timestamp;
    let settled = false;
    const waiting = ledger.ackOf(lost).then(() => (settled = true));
    const later = ledger.stamp([]).timestamp;
    ledger.ack(later);
    await waiting;
    expect(settled).toBe(true);
  });

  it(`keeps at most ${MAX_UNACKED_OUTCOMES} unacknowledged jobs, dropping the oldest`, () => {
    const ledger = createJobReportLedger();
    const many = Array.from({ length: MAX_UNACKED_OUTCOMES + 5 }, (_, i) => outcome(`job-${i}`));
    const { completedJobs } = ledger.stamp(many);
    expect(completedJobs).toHaveLength(MAX_UNACKED_OUTCOMES);
    expect(completedJobs[0]!.jobId).toBe('job-5');
  });

  it('whenAllAcked resolves on the ack of the latest update; ackOf on the ack of that update', async () => {
    const ledger = createJobReportLedger();
    await expect(ledger.whenAllAcked(60_000)).resolves.toBeUndefined(); // nothing sent yet
    const { timestamp } = ledger.stamp([]);
    let all = false;
    let exact = false;
    const waiting = ledger.whenAllAcked(60_000).then(() => (all = true));
    const exactly = ledger.ackOf(timestamp).then(() => (exact = true));
    await Promise.resolve();
    expect([all, exact]).toEqual([false, false]);
    ledger.ack(timestamp);
    await Promise.all([waiting, exactly]);
    expect([all, exact]).toEqual([true, true]);
  });
});
