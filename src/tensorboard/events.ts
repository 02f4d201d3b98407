/**
 * TensorFlow event files, as TensorBoard reads them: TFRecord framing (length, masked
 * CRC32C of the length, payload, masked CRC32C of the payload) around `Event` protos
 * (tensorflow/core/util/event.proto), encoded with @bufbuild/protobuf's wire writer.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crc32c } from '@aws-crypto/crc32c';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { RetrainError, errorMessage } from '../errors.js';
import type { Histogram } from './histogram.js';
import { writeAllSync } from '../util/write.js';

export type SummaryValue = { tag: string; simpleValue: number } | { tag: string; histo: Histogram };

/** TFRecord's CRC mask, so that a CRC of data holding CRCs stays well spread. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

export function tfRecord(payload: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + payload.length + 4);
  out.writeBigUInt64LE(BigInt(payload.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(payload, 12);
  out.writeUInt32LE(maskedCrc32c(payload), 12 + payload.length);
  return out;
}

function writeHistogram(w: BinaryWriter, h: Histogram): void {
  // HistogramProto: min 1, max 2, num 3, sum 4, sum_squares 5, packed bucket_limit 6, bucket 7.
  w.tag(1, WireType.Bit64).double(h.min);
  w.tag(2, WireType.Bit64).double(h.max);
  w.tag(3, WireType.Bit64).double(h.num);
  w.tag(4, WireType.Bit64).double(h.sum);
  w.tag(5, WireType.Bit64).double(h.sumSquares);
  w.tag(6, WireType.LengthDelimited).fork();
  for (const v of h.bucketLimit) w.double(v);
  w.join();
  w.tag(7, WireType.LengthDelimited).fork();
  for (const v of h.bucket) w.double(v);
  w.join();
}

/** Event{wall_time 1, step 2, file_version 3 | summary 5 {repeated Value 1 {tag 1, simple_value 2 | histo 5}}}. */
export function encodeEvent(e: { wallTime: number; step?: number; fileVersion?: string; summary?: SummaryValue[] }): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.Bit64).double(e.wallTime);
  if (e.step) w.tag(2, WireType.Varint).int64(e.step);
  if (e.fileVersion !== undefined) w.tag(3, WireType.LengthDelimited).string(e.fileVersion);
  if (e.summary) {
    w.tag(5, WireType.LengthDelimited).fork();
    for (const v of e.summary) {
      w.tag(1, WireType.LengthDelimited).fork();
      w.tag(1, WireType.LengthDelimited).string(v.tag);
      if ('simpleValue' in v) {
        w.tag(2, WireType.Bit32).float(v.simpleValue);
      } else {
        w.tag(5, WireType.LengthDelimited).fork();
        writeHistogram(w, v.histo);
        w.join();
      }
      w.join();
    }
    w.join();
  }
  return w.finish();
}

/** TensorFlow's file name: events.out.tfevents.<10-digit seconds>.<hostname>. */
export function eventFileName(seconds: number, hostname = os.hostname()): string {
  return `events.out.tfevents.${String(Math.floor(seconds)).padStart(10, '0')}.${hostname}`;
}

/**
 * One event file, appended to as training goes so TensorBoard can follow it live.
 * Not written through writeAtomic: an event file is an append-only log whose records
 * carry their own CRCs, so a crash leaves a readable prefix, as with TensorFlow.
 */
export class EventFileWriter {
  readonly file: string;
  private fd: number;

  constructor(dir: string, now = Date.now() / 1000) {
    this.file = path.join(dir, eventFileName(now));
    try {
      fs.mkdirSync(dir, { recursive: true });
      this.fd = fs.openSync(this.file, 'w');
    } catch (err) {
      throw new RetrainError(`cannot write TensorBoard events in ${dir}: ${errorMessage(err)}; pass another --summaries_dir`, 1, { cause: err });
    }
    this.write({ wallTime: now, fileVersion: 'brain.Event:2' });
  }

  private write(e: Parameters<typeof encodeEvent>[0]): void {
    try {
      writeAllSync(this.fd, tfRecord(encodeEvent(e)));
    } catch (err) {
      throw new RetrainError(`cannot write ${this.file}: ${errorMessage(err)}`, 1, { cause: err });
    }
  }

  addSummary(step: number, values: SummaryValue[], wallTime = Date.now() / 1000): void {
    this.write({ wallTime, step, summary: values });
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
