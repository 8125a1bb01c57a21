import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { classifyArrival, classifyBackfillPage, Sequencer, type ArrivalDecision, type BackfillStep } from '../src/engines/sequencer.js';
import type { HistoryReadResult, Publication } from '../src/engines/types.js';
import { ChorusError, ErrorCode, type StreamPosition } from '../src/protocol/index.js';

const E = 'e1';
const pub = (offset?: number, epoch: string | undefined = E, channel = 'c'): Publication =>
  offset === undefined ? { channel, data: null, time: 0, ephemeral: true } : { channel, data: offset, time: 0, offset, epoch: epoch! };
const at = (offset: number, epoch = E): StreamPosition => ({ offset, epoch });

describe('classifyArrival', () => {
  const table: Array<[string, Parameters<typeof classifyArrival>[0], Publication, ArrivalDecision]> = [
    ['untracked channel', undefined, pub(1), 'untracked'],
    ['ephemeral', { position: at(3), recoverable: true, holding: false }, pub(), 'ephemeral'],
    ['ephemeral while holding', { position: at(3), recoverable: true, holding: true }, pub(), 'ephemeral'],
    ['while a backfill runs', { position: at(3), recoverable: true, holding: true }, pub(4), 'hold'],
    ['first one seen', { position: undefined, recoverable: true, holding: false }, pub(7), 'restart'],
    ['another epoch', { position: at(3), recoverable: true, holding: false }, pub(1, 'e2'), 'restart'],
    ['the next offset', { position: at(3), recoverable: true, holding: false }, pub(4), 'next'],
    ['same offset again', { position: at(3), recoverable: true, holding: false }, pub(3), 'duplicate'],
    ['an older offset', { position: at(3), recoverable: true, holding: false }, pub(1), 'duplicate'],
    ['a gap, with history', { position: at(3), recoverable: true, holding: false }, pub(6), 'gap'],
    ['a gap, without history', { position: at(3), recoverable: false, holding: false }, pub(6), 'next'],
  ];
  for (const [name, sequence, publication, expected] of table) {
    test(name, () => assert.equal(classifyArrival(sequence, publication), expected));
  }
});

describe('classifyBackfillPage', () => {
  const page = (top: StreamPosition, offsets: number[], epoch = top.epoch): HistoryReadResult => ({
    publications: offsets.map((o) => pub(o, epoch)),
    position: top,
    firstOffset: offsets[0] ?? top.offset + 1,
  });
  const table: Array<[string, StreamPosition, HistoryReadResult, BackfillStep['type'], string?]> = [
    ['the stream has another epoch', at(3), page(at(5, 'e2'), [4, 5], 'e2'), 'lost', 'epoch changed'],
    ['the stream is not ahead', at(5), page(at(5), []), 'done'],
    ['the page starts right after the position', at(3), page(at(5), [4, 5]), 'deliver'],
    ['history no longer reaches the position', at(3), page(at(9), [6, 7, 8, 9]), 'lost', 'history no longer covers the gap'],
    ['history expired altogether', at(3), page(at(9), []), 'lost', 'history no longer covers the gap'],
  ];
  for (const [name, from, read, type, reason] of table) {
    test(name, () => {
      const step = classifyBackfillPage(from, read);
      assert.equal(step.type, type);
      if (step.type === 'lost') assert.deepEqual([step.reason, step.position], [reason, read.position]);
      if (step.type === 'deliver') assert.deepEqual([step.publications, step.top], [read.publications, read.position.offset]);
    });
  }
});

/** A Sequencer over an in-memory history (retaining the last `keep` publications), recording what it does. */
function harness(keep = 100, pageSize = 1000, maxHeldPublications = 10000) {
  const stream = { epoch: E, offset: 0, publications: [] as Publication[] };
  const delivered: Array<number | string> = [];
  const lost: string[] = [];
  const reads: StreamPosition[] = [];
  let failReads = false;
  const sequencer = new Sequencer(
    async (channel, since, limit) => {
      reads.push(since);
      if (failReads) throw new Error('history down');
      if (since.epoch !== stream.epoch) throw new ChorusError(ErrorCode.UNRECOVERABLE_POSITION, 'gone');
      const publications = stream.publications.filter((p) => p.channel === channel && p.offset! > since.offset).slice(0, limit);
      return { publications, position: at(stream.offset, stream.epoch), firstOffset: stream.publications[0]?.offset ?? stream.offset + 1 };
    },
    (publication) => delivered.push(publication.offset ?? 'ephemeral'),
    (_channel, reason) => lost.push(reason),
    { backfillPageSize: pageSize, maxHeldPublications },
  );
  /** Append to history (as the atomic publish does) and return the publication, not yet delivered. */
  const publish = (): Publication => {
    stream.offset++;
    const p = pub(stream.offset, stream.epoch);
    stream.publications.push(p);
    if (stream.publications.length > keep) stream.publications.shift();
    return p;
  };
  return {
    sequencer,
    stream,
    delivered,
    lost,
    reads,
    publish,
    failReads: (on: boolean) => (failReads = on),
    position: async () => at(stream.offset, stream.epoch),
  };
}

/** Let pending backfills (promises, no timers) run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('Sequencer', () => {
  test('in-order arrivals are delivered as they come; duplicates and untracked channels are dropped', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    const [p1, p2] = [h.publish(), h.publish()];
    h.sequencer.push(p1);
    h.sequencer.push(p2);
    h.sequencer.push(p1);
    h.sequencer.push(pub(1, E, 'other'));
    h.sequencer.push(pub());
    assert.deepEqual(h.delivered, [1, 2, 'ephemeral']);
    assert.deepEqual(h.reads, [], 'no history read needed');
  });

  test('a gap is backfilled from history; arrivals during the backfill follow, once each', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    const ps = [h.publish(), h.publish(), h.publish(), h.publish(), h.publish()];
    h.sequencer.push(ps[2]!); // 3: 1 and 2 are missing
    h.sequencer.push(ps[1]!); // arrives while backfilling: held
    h.sequencer.push(ps[4]!);
    await settle();
    assert.deepEqual(h.delivered, [1, 2, 3, 4, 5]);
    assert.deepEqual(h.lost, []);
  });

  test('a gap history cannot cover reports the channel lost and continues from the stream top', async () => {
    const h = harness(2);
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    const ps = [h.publish(), h.publish(), h.publish(), h.publish()];
    h.sequencer.push(ps[3]!); // only 3 and 4 are retained: 1 and 2 are gone
    await settle();
    assert.deepEqual(h.lost, ['history no longer covers the gap']);
    assert.deepEqual(h.delivered, [], 'nothing delivered across the hole');
    h.sequencer.push(h.publish());
    assert.deepEqual(h.delivered, [5], 'live again from the top');
  });

  test('history unavailable during a backfill keeps the position and the held arrivals; the next arrival retries', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.publish();
    const p2 = h.publish();
    h.failReads(true);
    h.sequencer.push(p2);
    await settle();
    assert.deepEqual([h.lost, h.delivered], [[], []], 'not lost, nothing delivered out of order');
    h.failReads(false);
    h.sequencer.push(h.publish()); // 3 arrives: held, and the backfill is retried
    await settle();
    assert.deepEqual(h.delivered, [1, 2, 3]);
    assert.deepEqual(h.lost, []);
  });

  test('a failed backfill is retried by the next gap check', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.publish();
    h.failReads(true);
    h.sequencer.push(h.publish());
    await settle();
    h.failReads(false);
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.delivered, [1, 2]);
    assert.deepEqual(h.lost, []);
  });

  test('held arrivals are bounded: one more than maxHeldPublications while history is unreadable marks the channel lost', async () => {
    const h = harness(100, 1000, 3);
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.publish();
    h.failReads(true);
    h.sequencer.push(h.publish()); // held: 1 (gap at 1)
    await settle();
    h.sequencer.push(h.publish()); // 2 held
    h.sequencer.push(h.publish()); // 3 held: at the limit
    await settle();
    assert.deepEqual(h.lost, [], 'at the limit: still waiting');
    h.sequencer.push(h.publish()); // 4 held: over
    await settle();
    assert.deepEqual(h.lost, ['more than 3 publications held while history was unavailable']);
    h.failReads(false);
    h.sequencer.push(h.publish());
    assert.deepEqual(h.delivered, [6], 'live again from the next publication seen');
  });

  test('resync that cannot read the stream keeps the position; the next gap check backfills', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.sequencer.push(h.publish());
    h.publish();
    await h.sequencer.resync(async () => {
      throw new Error('redis down');
    });
    assert.deepEqual(h.lost, []);
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.delivered, [1, 2]);
  });

  test('a channel without history delivers across a gap (no backfill possible)', async () => {
    const h = harness();
    h.sequencer.track('c', false);
    await h.sequencer.advanceTo('c', await h.position());
    h.publish();
    h.sequencer.push(h.publish());
    assert.deepEqual(h.delivered, [2]);
    assert.deepEqual(h.reads, []);
  });

  test('a new epoch on a publication restarts the sequence from it', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.sequencer.push(h.publish());
    h.sequencer.push(pub(1, 'e2'));
    assert.deepEqual(h.delivered, [1, 1]);
  });

  test('backfill reads page by page', async () => {
    const h = harness(100, 2);
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    const ps = Array.from({ length: 7 }, () => h.publish());
    h.sequencer.push(ps[6]!);
    await settle();
    assert.deepEqual(h.delivered, [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(h.reads.map((r) => r.offset), [0, 2, 4, 6]);
  });

  test('advanceTo after a subscribe backfills what was published between the two reads', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    h.sequencer.push(h.publish()); // first seen: 1
    h.publish();
    h.publish();
    await h.sequencer.advanceTo('c', await h.position());
    assert.deepEqual(h.delivered, [1, 2, 3]);
  });

  test('resync after a reconnect backfills recoverable channels and reports an epoch change', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.sequencer.push(h.publish());
    h.publish();
    h.publish(); // missed while "disconnected"
    await h.sequencer.resync(h.position);
    assert.deepEqual(h.delivered, [1, 2, 3]);
    h.stream.epoch = 'e2';
    await h.sequencer.resync(h.position);
    assert.deepEqual(h.lost, ['epoch changed while pub/sub was down']);
  });

  test('audit finds a dropped tail at the second round; untrack stops everything', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.sequencer.push(h.publish());
    h.publish(); // dropped, nothing after it
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.delivered, [1], 'the first round only notes the top: pub/sub may be about to deliver it');
    assert.deepEqual(h.reads, []);
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.delivered, [1, 2], 'still missing a round later: backfilled');
    h.sequencer.untrack('c');
    h.sequencer.push(h.publish());
    await h.sequencer.audit(h.position);
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.delivered, [1, 2]);
  });

  test('audit never declares a gap that a pub/sub backlog fills, even when history no longer covers it', async () => {
    const h = harness(2);
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    const backlog = Array.from({ length: 6 }, () => h.publish()); // history keeps only 5 and 6
    await h.sequencer.audit(h.position); // the backlog is not read yet
    for (const p of backlog) h.sequencer.push(p); // the link resumes
    await h.sequencer.audit(h.position);
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.lost, []);
    assert.deepEqual(h.delivered, [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(h.reads, [], 'no history read was needed');
  });

  test('audit reports a replaced stream only when it was replaced a whole round ago', async () => {
    const h = harness();
    h.sequencer.track('c', true);
    await h.sequencer.advanceTo('c', await h.position());
    h.sequencer.push(h.publish());
    h.stream.epoch = 'e2';
    h.stream.offset = 0;
    const first = h.publish();
    await h.sequencer.audit(h.position);
    h.sequencer.push(first); // arrives: the node follows the new epoch, no resync needed
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.lost, []);
    h.stream.epoch = 'e3';
    h.stream.offset = 0;
    h.publish(); // never arrives
    await h.sequencer.audit(h.position);
    await h.sequencer.audit(h.position);
    assert.deepEqual(h.lost, ['epoch changed']);
  });
});
