/**
 * An event-file reader for tests that shares no code with src/tensorboard: TFRecord
 * framing parsed here, CRC32C from the crc-32 package (SheetJS), and the protos from
 * TensorFlow's own event.proto/summary.proto (test/proto) through protobufjs reflection.
 */
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import CRC32C from 'crc-32/crc32c.js';
import { REPO_ROOT } from './fixtures.js';

export interface ReadHistogram {
  min: number;
  max: number;
  num: number;
  sum: number;
  sumSquares: number;
  bucketLimit: number[];
  bucket: number[];
}

export interface ReadValue {
  tag: string;
  simpleValue?: number;
  histo?: ReadHistogram;
}

export interface ReadEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  summary?: { value: ReadValue[] };
}

const root = protobuf.loadSync(path.join(REPO_ROOT, 'test', 'proto', 'event.proto'));
const EventType = root.lookupType('tensorflow.Event');

function masked(data: Uint8Array): number {
  const crc = CRC32C.buf(data) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

export class CrcError extends Error {}

/** Every event in the file; throws CrcError naming the record whose CRC is wrong. */
export function readEvents(file: string): ReadEvent[] {
  const buf = fs.readFileSync(file);
  const events: ReadEvent[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new CrcError(`record ${events.length}: truncated header`);
    const header = buf.subarray(off, off + 8);
    if (buf.readUInt32LE(off + 8) !== masked(header)) throw new CrcError(`record ${events.length}: bad length CRC`);
    const len = Number(buf.readBigUInt64LE(off));
    const data = buf.subarray(off + 12, off + 12 + len);
    if (data.length !== len || off + 16 + len > buf.length) throw new CrcError(`record ${events.length}: truncated data`);
    if (buf.readUInt32LE(off + 12 + len) !== masked(data)) throw new CrcError(`record ${events.length}: bad data CRC`);
    const msg = EventType.decode(data);
    events.push(EventType.toObject(msg, { longs: Number, defaults: true, oneofs: false }) as ReadEvent);
    off += 16 + len;
  }
  return events;
}
