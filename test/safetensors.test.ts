// readSafetensors: files written from the format's specification (by hand, byte by byte, or by
// test/helpers/safetensors-writer.ts, which shares no code with src/safetensors.ts), every dtype
// and its conversion (all 65536 F16 and BF16 patterns against arithmetic references), loading a
// multi-layer checkpoint into BatchNorm layers by prefix, and every class of malformed file:
// each a SafetensorsError naming the tensor (when there is one) and the file byte offset.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BatchNorm, InvalidArgumentError, SafetensorsError, createEngine, readSafetensors, MAX_HEADER_BYTES, type Engine,
} from '../src/index.js';
import { encode, fileOf, writeSafetensors, type TensorSpec } from './helpers/safetensors-writer.js';
import { MODEL_METADATA, modelSafetensors, modelTensors } from './fixtures/make-model-safetensors.js';

const ascii = (text: string) => Array.from(text, (c) => {
  const code = c.charCodeAt(0);
  if (code > 0x7e) throw new Error('ascii only');
  return code;
});

/** The error readSafetensors throws for `bytes` (fails the test if none). */
function errorOf(bytes: Uint8Array): SafetensorsError {
  try {
    readSafetensors(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(SafetensorsError);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return error as SafetensorsError;
  }
  throw new Error('expected readSafetensors to throw');
}

/** A file whose header is `header` (padded to 8 bytes) and whose data is `data`. */
const withHeader = (header: unknown, data: Uint8Array = new Uint8Array(0)) => {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  text += ' '.repeat((8 - (new TextEncoder().encode(text).length % 8)) % 8);
  return fileOf(text, data);
};
/** Byte offset of the first occurrence of `needle` (ASCII) in `bytes`. */
function indexOf(bytes: Uint8Array, needle: string): number {
  const n = ascii(needle);
  outer: for (let i = 0; i + n.length <= bytes.length; i++) {
    for (let j = 0; j < n.length; j++) if (bytes[i + j] !== n[j]) continue outer;
    return i;
  }
  throw new Error(`${needle} not found`);
}

describe('readSafetensors: a file written byte by byte from the specification', () => {
  // header: 138 bytes of JSON + 6 spaces = 144 = 0x90; data: x = F32 [1, -2.5], n = I64 7.
  const header = '{"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
    + '"n":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}      ';
  const bytes = Uint8Array.from([
    0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // N = 144, u64 little-endian
    ...ascii(header),
    0x00, 0x00, 0x80, 0x3f, // 1.0f  = 0x3f800000
    0x00, 0x00, 0x20, 0xc0, // -2.5f = 0xc0200000
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 7n
  ]);

  it('is the file the comments describe', () => {
    expect(header.length).toBe(144);
    expect(bytes.length).toBe(8 + 144 + 16);
  });

  it('reads tensors, shapes, dtypes and metadata', () => {
    const st = readSafetensors(bytes);
    expect(Object.keys(st.tensors)).toEqual(['x', 'n']);
    expect(st.tensors.x).toBeInstanceOf(Float32Array);
    expect(Array.from(st.tensors.x as Float32Array)).toEqual([1, -2.5]);
    expect(st.tensors.n).toBeInstanceOf(BigInt64Array);
    expect(Array.from(st.tensors.n as BigInt64Array)).toEqual([7n]);
    expect(st.shapes).toEqual({ x: [2], n: [] });
    expect(st.dtypes).toEqual({ x: 'F32', n: 'I64' });
    expect(st.metadata).toEqual({ format: 'pt' });
  });

  it('reads the same from an ArrayBuffer, from a view at an odd offset of a larger buffer, and from a Buffer', () => {
    const big = new Uint8Array(bytes.length + 3);
    big.set(bytes, 1);
    for (const input of [bytes.slice().buffer, big.subarray(1, 1 + bytes.length), Buffer.from(bytes)]) {
      const st = readSafetensors(input);
      expect(Array.from(st.tensors.x as Float32Array)).toEqual([1, -2.5]);
      expect(Array.from(st.tensors.n as BigInt64Array)).toEqual([7n]);
    }
  });

  it('copies the data: the result does not alias the file', () => {
    const file = bytes.slice();
    const st = readSafetensors(file);
    file.fill(0xff, 8 + 144);
    expect(Array.from(st.tensors.x as Float32Array)).toEqual([1, -2.5]);
    expect((st.tensors.x as Float32Array).buffer).not.toBe(file.buffer);
  });
});

describe('readSafetensors: dtypes', () => {
  const specs: TensorSpec[] = [
    { name: 'u8', dtype: 'U8', shape: [3], values: [0, 128, 255] }, // 3 bytes: every later tensor is unaligned
    { name: 'f64', dtype: 'F64', shape: [2], values: [Math.PI, -1e-300] },
    { name: 'f32', dtype: 'F32', shape: [1, 3], values: [0.1, -0, 3.4e38] },
    { name: 'f16', dtype: 'F16', shape: [2], values: [0x3c00, 0xc000] }, // 1, -2
    { name: 'bf16', dtype: 'BF16', shape: [2], values: [0x3f80, 0x4049] }, // 1, 3.140625
    { name: 'i64', dtype: 'I64', shape: [2], values: [-(2n ** 63n), 2n ** 63n - 1n] },
    { name: 'u64', dtype: 'U64', shape: [1], values: [2n ** 64n - 1n] },
    { name: 'i32', dtype: 'I32', shape: [2], values: [-(2 ** 31), 2 ** 31 - 1] },
    { name: 'u32', dtype: 'U32', shape: [1], values: [2 ** 32 - 1] },
    { name: 'i16', dtype: 'I16', shape: [2], values: [-32768, 32767] },
    { name: 'u16', dtype: 'U16', shape: [1], values: [65535] },
    { name: 'i8', dtype: 'I8', shape: [2], values: [-128, 127] },
    { name: 'bool', dtype: 'BOOL', shape: [3], values: [1, 0, 1] },
    { name: 'empty', dtype: 'F32', shape: [0, 5], values: [] },
    { name: 'scalar', dtype: 'F32', shape: [], values: [42] },
  ];
  const file = writeSafetensors(specs);

  it('every dtype as its typed array (F16/BF16 widened to Float32Array), unaligned offsets copied', () => {
    const st = readSafetensors(file);
    const expected: Record<string, [string, unknown[]]> = {
      u8: ['Uint8Array', [0, 128, 255]],
      f64: ['Float64Array', [Math.PI, -1e-300]],
      f32: ['Float32Array', [Math.fround(0.1), -0, Math.fround(3.4e38)]],
      f16: ['Float32Array', [1, -2]],
      bf16: ['Float32Array', [1, 3.140625]],
      i64: ['BigInt64Array', [-(2n ** 63n), 2n ** 63n - 1n]],
      u64: ['BigUint64Array', [2n ** 64n - 1n]],
      i32: ['Int32Array', [-(2 ** 31), 2 ** 31 - 1]],
      u32: ['Uint32Array', [2 ** 32 - 1]],
      i16: ['Int16Array', [-32768, 32767]],
      u16: ['Uint16Array', [65535]],
      i8: ['Int8Array', [-128, 127]],
      bool: ['Uint8Array', [1, 0, 1]],
      empty: ['Float32Array', []],
      scalar: ['Float32Array', [42]],
    };
    expect(Object.keys(st.tensors)).toEqual(specs.map((s) => s.name));
    for (const [name, [tag, values]] of Object.entries(expected)) {
      const t = st.tensors[name]!;
      expect(Object.prototype.toString.call(t), name).toBe(`[object ${tag}]`);
      expect(Array.from(t as ArrayLike<unknown>), name).toEqual(values);
      expect(t.byteOffset, name).toBe(0);
    }
    expect(Object.is((st.tensors.f32 as Float32Array)[1], -0)).toBe(true);
    expect(st.shapes).toEqual(Object.fromEntries(specs.map((s) => [s.name, s.shape])));
    expect(st.dtypes).toEqual(Object.fromEntries(specs.map((s) => [s.name, s.dtype])));
    expect(st.metadata).toEqual({});
  });

  /** float16 by arithmetic: (-1)^s · 2^(e−15) · (1 + m/1024); subnormals 2^−14 · m/1024; e = 31: Inf / NaN. */
  function f16Reference(h: number): number {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    if (e === 31) return m === 0 ? s * Infinity : NaN;
    if (e === 0) return s * (m / 1024) * 2 ** -14;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  }
  /** bfloat16 by arithmetic: (-1)^s · 2^(e−127) · (1 + m/128); subnormals 2^−126 · m/128; e = 255: Inf / NaN. */
  function bf16Reference(h: number): number {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 7) & 255, m = h & 127;
    if (e === 255) return m === 0 ? s * Infinity : NaN;
    if (e === 0) return s * (m / 128) * 2 ** -126;
    return s * (1 + m / 128) * 2 ** (e - 127);
  }

  it.each([
    ['F16', f16Reference, (h: number) => ((h & 0x8000) << 16 | 0x7f800000 | (h & 0x3ff) << 13) >>> 0],
    ['BF16', bf16Reference, (h: number) => (h << 16) >>> 0],
  ] as const)('%s: all 65536 patterns widen exactly (zeros signed, subnormals, Inf; NaN sign and payload kept)', (dtype, reference, nanBits) => {
    const patterns = Array.from({ length: 65536 }, (_, h) => h);
    const st = readSafetensors(writeSafetensors([{ name: 'w', dtype, shape: [256, 256], values: patterns }]));
    const got = st.tensors.w as Float32Array;
    expect(got).toBeInstanceOf(Float32Array);
    expect(got.length).toBe(65536);
    const bits = new Uint32Array(got.buffer, got.byteOffset, got.length);
    const wrong: string[] = [];
    for (let h = 0; h < 65536; h++) {
      const want = reference(h);
      const ok = Number.isNaN(want) ? Number.isNaN(got[h]) && bits[h] === nanBits(h) : Object.is(got[h], want);
      if (!ok && wrong.length < 5) wrong.push(`0x${h.toString(16)}: got ${got[h]} (bits 0x${bits[h]!.toString(16)}), want ${want}`);
    }
    expect(wrong).toEqual([]);
    // A few by value: the smallest subnormal, the largest finite, -0.
    if (dtype === 'F16') expect([got[0x0001], got[0x7bff], got[0x8000]]).toEqual([2 ** -24, 65504, -0]);
  });
});

describe('readSafetensors → loadStateDict: a multi-layer checkpoint', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine();
  });

  it('the committed fixture is what its generator writes', () => {
    const committed = new Uint8Array(readFileSync(new URL('./fixtures/model.safetensors', import.meta.url)));
    expect(Buffer.from(committed).equals(Buffer.from(modelSafetensors()))).toBe(true);
  });

  it('features.1 and features.3 load into two BatchNorm layers by prefix (strict), the conv tensors between them untouched', () => {
    const st = readSafetensors(modelSafetensors());
    expect(st.metadata).toEqual(MODEL_METADATA);
    expect(st.shapes['features.0.weight']).toEqual([4, 3, 3, 3]);
    expect(st.shapes['features.1.num_batches_tracked']).toEqual([]);
    const specs = new Map(modelTensors().map((t) => [t.name, t]));
    for (const [prefix, C] of [['features.1.', 4], ['features.3.', 8]] as const) {
      const bn = new BatchNorm(engine, C);
      const result = bn.loadStateDict(st.tensors, { prefix });
      expect(result).toEqual({ format: 'pytorch', missingKeys: [], unexpectedKeys: [] });
      expect(Array.from(bn.weight!)).toEqual(Array.from(specs.get(`${prefix}weight`)!.values));
      expect(Array.from(bn.bias!)).toEqual(Array.from(specs.get(`${prefix}bias`)!.values));
      expect(Array.from(bn.runningMean!)).toEqual(Array.from(specs.get(`${prefix}running_mean`)!.values));
      expect(Array.from(bn.runningVar!)).toEqual(Array.from(specs.get(`${prefix}running_var`)!.values));
      expect(bn.numBatchesTracked).toBe(1200);
      // and round-trips: the layer's own state dict has the file's values
      const own = bn.stateDict({ prefix });
      expect(own[`${prefix}running_var`]).toEqual(Array.from(st.tensors[`${prefix}running_var`] as Float32Array));
    }
  });

  it('every BN layer found by its running_mean (the README\'s loop)', () => {
    const { tensors, shapes } = readSafetensors(modelSafetensors());
    const layers = new Map<string, BatchNorm>();
    for (const name of Object.keys(tensors)) {
      if (!name.endsWith('.running_mean')) continue;
      const prefix = name.slice(0, -'running_mean'.length);
      const bn = new BatchNorm(engine, shapes[name]![0]!);
      bn.loadStateDict(tensors, { prefix });
      layers.set(prefix, bn);
    }
    expect([...layers.keys()]).toEqual(['features.1.', 'features.3.']);
    expect([...layers.values()].map((l) => l.numFeatures)).toEqual([4, 8]);
  });

  it('F16 and F64 checkpoints load too (widened / rounded to the layer\'s float32)', () => {
    const half = [0x3c00, 0x3800, 0x4000]; // 1, 0.5, 2
    const st = readSafetensors(writeSafetensors([
      { name: 'bn.weight', dtype: 'F16', shape: [3], values: half },
      { name: 'bn.bias', dtype: 'F64', shape: [3], values: [0.1, 0.2, 0.3] },
      { name: 'bn.running_mean', dtype: 'BF16', shape: [3], values: [0x3f80, 0, 0xbf80] }, // 1, 0, -1
      { name: 'bn.running_var', dtype: 'F32', shape: [3], values: [1, 2, 3] },
      { name: 'bn.num_batches_tracked', dtype: 'I64', shape: [], values: [5n] },
    ]));
    const bn = new BatchNorm(engine, 3);
    bn.loadStateDict(st.tensors, { prefix: 'bn.' });
    expect(Array.from(bn.weight!)).toEqual([1, 0.5, 2]);
    expect(Array.from(bn.bias!)).toEqual([0.1, 0.2, 0.3].map(Math.fround));
    expect(Array.from(bn.runningMean!)).toEqual([1, 0, -1]);
    expect(bn.numBatchesTracked).toBe(5);
  });

  it('a wrong channel count is loadStateDict\'s ShapeError naming the key', () => {
    const st = readSafetensors(modelSafetensors());
    expect(() => new BatchNorm(engine, 5).loadStateDict(st.tensors, { prefix: 'features.1.' }))
      .toThrow(/stateDict\["features\.1\.weight"\]: expected length 5/);
  });
});

describe('readSafetensors: malformed files', () => {
  const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const data8 = encode('F32', [1, 2]);

  it('not bytes: InvalidArgumentError naming `bytes`', () => {
    for (const v of [undefined, 42, 'file', [1, 2], new Float32Array(4), new DataView(new ArrayBuffer(8))]) {
      expect(() => readSafetensors(v as never)).toThrow(InvalidArgumentError);
      expect(() => readSafetensors(v as never)).toThrow(/^bytes: expected a Uint8Array or ArrayBuffer/);
    }
  });

  it('fewer than 8 bytes', () => {
    const e = errorOf(new Uint8Array(5));
    expect([e.tensor, e.offset]).toEqual([null, 0]);
    expect(e.message).toMatch(/at least 8 bytes.*got 5 bytes/);
  });

  it(`a header length over ${MAX_HEADER_BYTES} bytes (the reference's limit), and one with the high word set`, () => {
    for (const n of [BigInt(MAX_HEADER_BYTES) + 1n, 2n ** 63n]) {
      const e = errorOf(fileOf('{}', new Uint8Array(0), n));
      expect([e.tensor, e.offset, e.argument]).toEqual([null, 0, 'bytes[0..8)']);
      expect(e.message).toMatch(/at most 100000000 bytes/);
    }
  });

  it('truncated inside the header', () => {
    const full = withHeader(good, data8);
    const cut = full.subarray(0, 20);
    const e = errorOf(cut);
    expect([e.tensor, e.offset]).toEqual([null, 20]);
    expect(e.message).toMatch(/truncated inside its header/);
  });

  it('truncated inside the data: names the tensor whose data runs past the end', () => {
    const full = withHeader({ a: good.a, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, encode('F32', [1, 2, 3]));
    const e = errorOf(full.subarray(0, full.length - 2));
    expect(e.tensor).toBe('b');
    expect(e.argument).toBe('bytes.header["b"].data_offsets');
    expect(e.offset).toBe(indexOf(full, '[8,12]'));
    expect(e.message).toMatch(/within the 10-byte data buffer.*got \[8, 12\].*truncated/);
  });

  it('a header that does not start with "{" or is not one JSON object', () => {
    for (const text of ['[1,2]   ', ' {}     ', '"abc"   ', 'null    ']) {
      const e = errorOf(fileOf(text));
      expect([e.tensor, e.offset], text).toEqual([null, 8]);
      expect(e.message).toMatch(/starting with '\{'/);
    }
    expect(errorOf(fileOf('{} {}   ')).message).toMatch(/only whitespace after/);
    expect(errorOf(fileOf('{} {}   ')).offset).toBe(8 + 3);
    expect(errorOf(fileOf('{}\0\0\0\0\0\0')).offset).toBe(8 + 2);
  });

  it('invalid JSON: offset of the first bad byte', () => {
    const cases: Array<[string, number, RegExp]> = [
      ['{"a":1,}', 7, /a JSON object key/],
      ['{"a" 1}', 5, /':' after an object key/],
      ['{"a":[1 2]}', 8, /',' or '\]'/],
      ['{"a":tru}', 5, /a JSON value/],
      ['{"a":01}', 5, /leading zero/],
      ['{"a":"x\\q"}', 7, /a JSON escape/],
      ['{"a":"x\ty"}', 7, /unescaped control character/],
      ['{"a":"\\ud800"}', 6, /lone high surrogate/],
      ['{"abc', 1, /not closed/],
    ];
    for (const [text, at, message] of cases) {
      const e = errorOf(fileOf(text));
      expect([e.offset, e.message], text).toEqual([8 + at, expect.stringMatching(message)]);
    }
    const deep = `{"a":${'['.repeat(100)}${']'.repeat(100)}}`;
    expect(errorOf(fileOf(deep)).message).toMatch(/nested at most 64 levels/);
  });

  it('a header that is not valid UTF-8: offset of the bad sequence', () => {
    const header = (bytes: number[]) => Uint8Array.from([...ascii('{"a'), ...bytes, ...ascii('":{}}')]);
    for (const bad of [[0xff], [0xc0, 0x80], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80]]) {
      const e = errorOf(fileOf(header(bad)));
      expect([e.offset, e.message], bad.join(',')).toEqual([8 + 3, expect.stringMatching(/valid UTF-8/)]);
    }
    // Valid multi-byte names read back: "é" (c3 a9), "€" (e2 82 ac), U+1F600 (f0 9f 98 80).
    const name = Uint8Array.from([...ascii('{"'), 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80,
      ...ascii('":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}')]);
    expect(Object.keys(readSafetensors(fileOf(name)).tensors)).toEqual(['é€😀']);
  });

  it('duplicate keys: a tensor twice, a field twice', () => {
    const text = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const e = errorOf(withHeader(text, data8));
    expect([e.tensor, e.offset]).toEqual(['a', 8 + text.lastIndexOf('"a"')]);
    expect(e.message).toMatch(/each key once.*a second "a"/);
    const field = '{"a":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}}';
    expect(errorOf(withHeader(field, data8)).offset).toBe(8 + field.lastIndexOf('"dtype"'));
  });

  /** A one-tensor header with `shape` and `offsets` as literal JSON text. */
  const entryText = (shape: string, offsets: string) => `{"a":{"dtype":"F32","shape":${shape},"data_offsets":${offsets}}}`;

  it('shapes: negative, non-integer, too large, not an array', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['[-2]', '-2', /\["a"\]\.shape\[0\]: expected a non-negative integer.*got -2/],
      ['[1.5]', '1.5', /shape\[0\]: expected a non-negative integer.*got 1\.5/],
      ['[2e0]', '2e0', /shape\[0\]: expected a non-negative integer.*got 2e0/],
      ['[-0]', '-0', /shape\[0\].*got -0/],
      ['["2"]', '"2"', /shape\[0\]: expected a non-negative integer.*got string/],
      ['"2"', '"2"', /shape: expected an array of non-negative integers, got string/],
      ['[9007199254740992]', '9007199254740992', /at most 2\^53/],
    ];
    for (const [shape, token, message] of cases) {
      const text = entryText(shape, '[0,8]');
      const e = errorOf(withHeader(text, data8));
      expect([e.tensor, e.message], text).toEqual(['a', expect.stringMatching(message)]);
      expect(e.offset, text).toBe(8 + text.indexOf(token, text.indexOf('"shape"') + 7));
    }
    // 2^20 · 2^20 · 2^20 elements: more bytes than 2^53.
    expect(errorOf(withHeader(entryText('[1048576,1048576,1048576,64]', '[0,8]'), data8)).message).toMatch(/at most 2\^53 − 1 bytes/);
  });

  it('data_offsets: out of order, wrong count, not matching dtype × shape', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['[8,0]', '[8,0]', /\["a"\]\.data_offsets: expected begin <= end, got \[8, 0\]/],
      ['[0]', '[0]', /data_offsets: expected \[begin, end\], got 1 numbers/],
      ['[0,4]', '[0,4]', /data_offsets: expected 8 bytes \(F32, 4 B × 2 elements of shape \[2\]\), got \[0, 4\]: 4 bytes/],
      ['[0,-8]', '-8', /data_offsets\[1\]: expected a non-negative integer/],
      ['{"0":0}', '{"0":0}', /data_offsets: expected an array/],
    ];
    for (const [offsets, token, message] of cases) {
      const text = entryText('[2]', offsets);
      const e = errorOf(withHeader(text, data8));
      expect([e.tensor, e.message], text).toEqual(['a', expect.stringMatching(message)]);
      expect(e.offset, text).toBe(8 + text.indexOf(token, text.indexOf('"data_offsets"') + 14));
    }
  });

  it('overlapping tensors, a hole between tensors, bytes after the last tensor', () => {
    const overlap = withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data8);
    const e1 = errorOf(overlap);
    expect([e1.tensor, e1.offset]).toEqual(['b', overlap.length - 8 + 4]);
    expect(e1.message).toMatch(/overlaps "a" \[0, 8\]/);

    const hole = withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12));
    const e2 = errorOf(hole);
    expect([e2.tensor, e2.offset]).toEqual(['b', hole.length - 12 + 4]);
    expect(e2.message).toMatch(/data bytes \[4, 8\) belong to no tensor/);

    const first = withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data8);
    expect(errorOf(first).message).toMatch(/begin = 0 \(the start of the data\)/);

    const trailing = withHeader(good, new Uint8Array(10));
    const e3 = errorOf(trailing);
    expect([e3.tensor, e3.offset]).toEqual(['a', trailing.length - 2]);
    expect(e3.message).toMatch(/data bytes \[8, 10\) belong to no tensor/);
  });

  it('dtypes: unknown, unsupported (F8, complex), not a string; fields missing; entries not objects', () => {
    const entry = (a: unknown) => withHeader({ a }, data8);
    expect(errorOf(entry({ dtype: 'Q4', shape: [2], data_offsets: [0, 8] })).message)
      .toMatch(/\["a"\]\.dtype: expected one of F64, F32, F16, BF16, I64, .*BOOL, got "Q4"/);
    const f8 = errorOf(entry({ dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] }));
    expect([f8.tensor, f8.message]).toEqual(['a', expect.stringMatching(/got "F8_E4M3" \(.*does not convert/)]);
    expect(errorOf(entry({ dtype: 4, shape: [2], data_offsets: [0, 8] })).message).toMatch(/dtype: .*got number/);
    const missing = errorOf(entry({ dtype: 'F32', data_offsets: [0, 8] }));
    expect([missing.tensor, missing.offset, missing.message]).toEqual(['a', 8 + 1, expect.stringMatching(/the field "shape"/)]);
    expect(errorOf(entry([1, 2])).message).toMatch(/\["a"\]: expected an object \{ dtype, shape, data_offsets \}, got array/);
  });

  it('metadata: values must be strings', () => {
    const text = JSON.stringify({ __metadata__: { format: 'pt', epoch: 3 }, ...good });
    const e = errorOf(withHeader(text, data8));
    expect([e.tensor, e.argument, e.offset]).toEqual([null, 'bytes.header.__metadata__["epoch"]', 8 + text.indexOf('3')]);
    expect(errorOf(withHeader({ __metadata__: [1], ...good }, data8)).message).toMatch(/__metadata__: expected an object of strings/);
    expect(readSafetensors(withHeader({ __metadata__: null, ...good }, data8)).metadata).toEqual({});
  });

  it('BOOL bytes other than 0 and 1: the data offset of the bad element', () => {
    const file = withHeader({ b: { dtype: 'BOOL', shape: [3], data_offsets: [0, 3] } }, Uint8Array.from([1, 0, 2]));
    const e = errorOf(file);
    expect([e.tensor, e.offset]).toEqual(['b', file.length - 1]);
  });

  it('a tensor named "__proto__" is an own entry, not a prototype', () => {
    const st = readSafetensors(withHeader('{"__proto__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data8));
    expect(Object.keys(st.tensors)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(st.tensors)).toBe(Object.prototype);
    expect(Array.from(st.tensors['__proto__'] as Float32Array)).toEqual([1, 2]);
  });

  it('an empty header object and zero-size tensors are valid', () => {
    expect(readSafetensors(fileOf('{}      ')).tensors).toEqual({});
    const st = readSafetensors(withHeader({ z: { dtype: 'F32', shape: [0], data_offsets: [0, 0] }, ...good }, data8));
    expect(st.shapes).toEqual({ z: [0], a: [2] });
  });
});
