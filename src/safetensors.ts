// Reading .safetensors files (PyTorch's `safetensors.torch.save_file`, Hugging Face checkpoints).
//
// The format:
//   bytes [0, 8)        N, the header's length: an unsigned 64-bit little-endian integer
//   bytes [8, 8 + N)    the header: UTF-8 JSON, one object
//                         { "<name>": { "dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end] },
//                           ..., "__metadata__": { "<key>": "<string>", ... } }   (metadata optional)
//                       writers pad it with trailing spaces to a multiple of 8
//   bytes [8 + N, end)  the data buffer: each tensor's elements, row-major, little-endian, at
//                       [begin, end) relative to the buffer's start
// Checked as the reference implementation checks it: N at most 100 MB and within the file; the
// header starts with '{' and is one JSON object (strict JSON: no duplicate keys at any level,
// valid UTF-8, nothing after it but whitespace); every entry has a known dtype, a shape of
// non-negative integers and data_offsets [begin, end] with begin <= end, end - begin equal to the
// dtype's size times the number of elements; the tensors tile the buffer exactly (sorted by
// offset, each starts where the previous ends, the last ends at the end of the file: no overlap,
// no hole, no trailing bytes). Every error is a SafetensorsError naming the tensor (when there is
// one) and the file byte offset of the problem.
//
// Data is copied out of the file per tensor into a fresh, aligned buffer (offsets in a file
// need not be aligned to the element size; a view at an odd offset would throw or misread), so
// the result does not keep the file alive. F16 and BF16 are widened to Float32Array exactly
// (every value, infinities, NaN payloads and subnormals included); the other dtypes come back as
// the typed array of the same type. F8 and the complex types are rejected.
import { InvalidArgumentError, describe } from './errors.js';
import { isArrayBufferLike, snapshotTyped } from './typed.js';

/** The dtypes read; F16 and BF16 are returned widened to Float32Array. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/** A tensor's values as read: F64 Float64Array; F32, F16, BF16 Float32Array; I64 BigInt64Array; BOOL Uint8Array of 0 and 1. */
export type SafetensorsArray =
  | Float64Array | Float32Array | BigInt64Array | BigUint64Array
  | Int32Array | Uint32Array | Int16Array | Uint16Array | Int8Array | Uint8Array;

export interface SafetensorsFile {
  /** name -> values, in header order: pass it to `loadStateDict` as the state dict. */
  tensors: Record<string, SafetensorsArray>;
  /** name -> shape ([] for a scalar such as PyTorch's num_batches_tracked). */
  shapes: Record<string, number[]>;
  /** name -> dtype as stored in the file (before widening). */
  dtypes: Record<string, SafetensorsDtype>;
  /** The header's `__metadata__` (string -> string); {} when absent. */
  metadata: Record<string, string>;
}

/**
 * A malformed or truncated .safetensors file. `tensor` is the entry at fault (null for the file
 * as a whole: header length, JSON syntax); `offset` the file byte offset of the problem (in the
 * header for header errors, in the data buffer for data errors).
 */
export class SafetensorsError extends InvalidArgumentError {
  readonly tensor: string | null;
  readonly offset: number;
  constructor(argument: string, expected: string, received: string, tensor: string | null, offset: number, detail?: string) {
    super(argument, expected, received, `${tensor === null ? '' : `tensor ${JSON.stringify(tensor)}, `}file byte ${offset}${detail ? `; ${detail}` : ''}`);
    this.tensor = tensor;
    this.offset = offset;
  }
}

/** The reference implementation's limit on N. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Nesting deeper than this in the header is rejected (a checkpoint's header nests three levels). */
const MAX_DEPTH = 64;

interface DtypeInfo { readonly bytes: number }
const DTYPES: Readonly<Record<SafetensorsDtype, DtypeInfo>> = Object.freeze({
  __proto__: null,
  F64: { bytes: 8 }, F32: { bytes: 4 }, F16: { bytes: 2 }, BF16: { bytes: 2 },
  I64: { bytes: 8 }, I32: { bytes: 4 }, I16: { bytes: 2 }, I8: { bytes: 1 },
  U64: { bytes: 8 }, U32: { bytes: 4 }, U16: { bytes: 2 }, U8: { bytes: 1 }, BOOL: { bytes: 1 },
} as unknown as Record<SafetensorsDtype, DtypeInfo>);
/** Dtypes the format defines that are not read. */
const REJECTED = ['F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64', 'C128'];
const DTYPE_LIST = Object.keys(DTYPES).join(', ');

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// The header: strict JSON read from its bytes, so that every error has a byte offset.

type Node =
  | { kind: 'object'; at: number; entries: Array<{ key: string; at: number; value: Node }> }
  | { kind: 'array'; at: number; items: Node[] }
  | { kind: 'string'; at: number; value: string }
  | { kind: 'number'; at: number; value: number; integer: boolean; text: string }
  | { kind: 'literal'; at: number; value: boolean | null };

const HEADER = 'bytes.header';

class HeaderParser {
  private pos = 0;
  constructor(private readonly h: Uint8Array, private readonly base: number) {}

  fail(expected: string, received: string, at = this.pos, detail?: string): never {
    throw new SafetensorsError(HEADER, expected, received, null, this.base + at, detail);
  }

  private byteHere(): string {
    if (this.pos >= this.h.length) return 'the end of the header';
    const b = this.h[this.pos]!;
    return b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}'` : `byte 0x${b.toString(16).padStart(2, '0')}`;
  }

  private ws(): void {
    const h = this.h;
    while (this.pos < h.length) {
      const b = h[this.pos]!;
      if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) break;
      this.pos++;
    }
  }

  parse(): Node {
    if (this.h[0] !== 0x7b) this.fail("a JSON object starting with '{' as its first byte", this.byteHere(), 0);
    const root = this.value(0);
    this.ws();
    if (this.pos !== this.h.length) this.fail('only whitespace after the header\'s JSON object', this.byteHere());
    return root;
  }

  private value(depth: number): Node {
    if (depth > MAX_DEPTH) this.fail(`JSON nested at most ${MAX_DEPTH} levels deep`, 'deeper nesting');
    this.ws();
    const b = this.h[this.pos];
    if (b === 0x7b) return this.object(depth);
    if (b === 0x5b) return this.array(depth);
    if (b === 0x22) return { kind: 'string', at: this.pos, value: this.string() };
    if (b === 0x2d || (b !== undefined && b >= 0x30 && b <= 0x39)) return this.number();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.matches(word)) {
        const at = this.pos;
        this.pos += word.length;
        return { kind: 'literal', at, value };
      }
    }
    return this.fail('a JSON value', this.byteHere());
  }

  private matches(word: string): boolean {
    for (let i = 0; i < word.length; i++) if (this.h[this.pos + i] !== word.charCodeAt(i)) return false;
    return true;
  }

  private expect(byte: number, what: string): void {
    this.ws();
    if (this.h[this.pos] !== byte) this.fail(what, this.byteHere());
    this.pos++;
  }

  private object(depth: number): Node {
    const at = this.pos++;
    const entries: Array<{ key: string; at: number; value: Node }> = [];
    const seen = new Set<string>();
    this.ws();
    if (this.h[this.pos] === 0x7d) { this.pos++; return { kind: 'object', at, entries }; }
    for (;;) {
      this.ws();
      if (this.h[this.pos] !== 0x22) this.fail('a JSON object key (a string)', this.byteHere());
      const keyAt = this.pos;
      const key = this.string();
      if (seen.has(key)) {
        throw new SafetensorsError(HEADER, 'each key once in a JSON object', `a second ${JSON.stringify(key)}`, depth === 0 ? key : null, this.base + keyAt);
      }
      seen.add(key);
      this.expect(0x3a, "':' after an object key");
      entries.push({ key, at: keyAt, value: this.value(depth + 1) });
      this.ws();
      const b = this.h[this.pos];
      if (b === 0x2c) { this.pos++; continue; }
      if (b === 0x7d) { this.pos++; return { kind: 'object', at, entries }; }
      this.fail("',' or '}' in a JSON object", this.byteHere());
    }
  }

  private array(depth: number): Node {
    const at = this.pos++;
    const items: Node[] = [];
    this.ws();
    if (this.h[this.pos] === 0x5d) { this.pos++; return { kind: 'array', at, items }; }
    for (;;) {
      items.push(this.value(depth + 1));
      this.ws();
      const b = this.h[this.pos];
      if (b === 0x2c) { this.pos++; continue; }
      if (b === 0x5d) { this.pos++; return { kind: 'array', at, items }; }
      this.fail("',' or ']' in a JSON array", this.byteHere());
    }
  }

  /** A JSON string at pos (on its opening quote): escapes decoded, UTF-8 validated. */
  private string(): string {
    const h = this.h;
    const start = this.pos++;
    let out = '';
    const units: number[] = [];
    const flush = () => { out += String.fromCharCode(...units); units.length = 0; };
    for (;;) {
      if (units.length >= 4096) flush();
      if (this.pos >= h.length) this.fail('a closing \'"\'', 'the end of the header', start, 'the string starting here is not closed');
      const b = h[this.pos]!;
      if (b === 0x22) { this.pos++; flush(); return out; }
      if (b < 0x20) this.fail('no unescaped control character in a JSON string', this.byteHere());
      if (b === 0x5c) { this.escape(units); continue; }
      if (b < 0x80) { units.push(b); this.pos++; continue; }
      const cp = this.utf8();
      if (cp > 0xffff) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
      else units.push(cp);
    }
  }

  private escape(units: number[]): void {
    const h = this.h;
    const at = this.pos;
    const c = h[this.pos + 1];
    const simple: Record<number, number> = { 0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9 };
    if (c !== undefined && simple[c] !== undefined) { units.push(simple[c]!); this.pos += 2; return; }
    if (c !== 0x75) this.fail('a JSON escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)', `'\\${c === undefined ? '' : String.fromCharCode(c)}'`, at);
    const hex = (p: number): number => {
      let v = 0;
      for (let i = 0; i < 4; i++) {
        const d = h[p + i];
        const n = d === undefined ? -1 : d >= 0x30 && d <= 0x39 ? d - 0x30 : d >= 0x61 && d <= 0x66 ? d - 0x57 : d >= 0x41 && d <= 0x46 ? d - 0x37 : -1;
        if (n < 0) this.fail('four hex digits after \\u', 'something else', p + i);
        v = v * 16 + n;
      }
      return v;
    };
    const u = hex(at + 2);
    this.pos = at + 6;
    if (u >= 0xdc00 && u <= 0xdfff) this.fail('valid Unicode in a JSON string', `a lone low surrogate \\u${u.toString(16)}`, at);
    if (u >= 0xd800 && u <= 0xdbff) {
      if (h[this.pos] !== 0x5c || h[this.pos + 1] !== 0x75) this.fail('valid Unicode in a JSON string', `a lone high surrogate \\u${u.toString(16)}`, at);
      const low = hex(this.pos + 2);
      if (low < 0xdc00 || low > 0xdfff) this.fail('valid Unicode in a JSON string', `a lone high surrogate \\u${u.toString(16)}`, at);
      this.pos += 6;
      units.push(u, low);
      return;
    }
    units.push(u);
  }

  /** One UTF-8 sequence at pos (its lead byte >= 0x80): the code point; invalid UTF-8 is an error. */
  private utf8(): number {
    const h = this.h;
    const at = this.pos;
    const b0 = h[at]!;
    let n: number, cp: number, min: number;
    if (b0 >= 0xc2 && b0 <= 0xdf) { n = 1; cp = b0 & 0x1f; min = 0x80; }
    else if (b0 >= 0xe0 && b0 <= 0xef) { n = 2; cp = b0 & 0x0f; min = 0x800; }
    else if (b0 >= 0xf0 && b0 <= 0xf4) { n = 3; cp = b0 & 0x07; min = 0x10000; }
    else return this.fail('valid UTF-8', `byte 0x${b0.toString(16)} (not a UTF-8 lead byte)`, at);
    for (let i = 1; i <= n; i++) {
      const b = h[at + i];
      if (b === undefined || (b & 0xc0) !== 0x80) return this.fail('valid UTF-8', `a sequence cut short after ${i} byte${i > 1 ? 's' : ''}`, at);
      cp = (cp << 6) | (b & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      this.fail('valid UTF-8', cp < min ? 'an overlong encoding' : 'an encoded surrogate or a code point beyond U+10FFFF', at);
    }
    this.pos = at + n + 1;
    return cp;
  }

  private number(): Node {
    const h = this.h;
    const at = this.pos;
    const digits = () => {
      const s = this.pos;
      while (this.pos < h.length && h[this.pos]! >= 0x30 && h[this.pos]! <= 0x39) this.pos++;
      return this.pos - s;
    };
    if (h[this.pos] === 0x2d) this.pos++;
    const intStart = this.pos;
    const n = digits();
    if (n === 0) this.fail('a digit in a JSON number', this.byteHere());
    if (n > 1 && h[intStart] === 0x30) this.fail('no leading zero in a JSON number', 'a leading zero', intStart);
    let integer = true;
    if (h[this.pos] === 0x2e) {
      this.pos++;
      integer = false;
      if (digits() === 0) this.fail('a digit after the decimal point', this.byteHere());
    }
    if (h[this.pos] === 0x65 || h[this.pos] === 0x45) {
      this.pos++;
      integer = false;
      if (h[this.pos] === 0x2b || h[this.pos] === 0x2d) this.pos++;
      if (digits() === 0) this.fail('a digit in the exponent', this.byteHere());
    }
    let text = '';
    for (let i = at; i < this.pos; i++) text += String.fromCharCode(h[i]!);
    return { kind: 'number', at, value: Number(text), integer, text };
  }
}

// ---------------------------------------------------------------------------------------------
// Conversions.

let f16Table: Uint32Array | null = null;

/** The float32 bit pattern of the float16 `h`: exact (every float16 is a float32), NaN payloads kept. */
function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // Inf, NaN
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // 2^(exp-15) -> biased exp + 127 - 15
  if (mant === 0) return sign >>> 0; // ±0
  // Subnormal: mant · 2^-24. Normalise: shift until the implicit bit (0x400) is set.
  let e = 113; // float32 biased exponent of 2^-14
  while ((mant & 0x400) === 0) { mant <<= 1; e--; }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

function f16Bits(): Uint32Array {
  if (f16Table === null) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32Bits(h);
  }
  return f16Table;
}

/** The elements of `raw` (a fresh, aligned copy of a tensor's bytes) as the dtype's typed array. */
function decode(dtype: SafetensorsDtype, raw: Uint8Array, count: number): SafetensorsArray {
  const buffer = raw.buffer as ArrayBuffer;
  switch (dtype) {
    case 'F16': case 'BF16': {
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      if (dtype === 'F16') {
        const table = f16Bits();
        for (let i = 0; i < count; i++) bits[i] = table[raw[2 * i]! | (raw[2 * i + 1]! << 8)]!;
      } else {
        for (let i = 0; i < count; i++) bits[i] = ((raw[2 * i]! | (raw[2 * i + 1]! << 8)) << 16) >>> 0;
      }
      return out;
    }
    case 'U8': case 'BOOL': return raw;
    case 'I8': return new Int8Array(buffer, 0, count);
    default: break;
  }
  const Ctor = {
    F64: Float64Array, F32: Float32Array, I64: BigInt64Array, U64: BigUint64Array, I32: Int32Array, U32: Uint32Array, I16: Int16Array, U16: Uint16Array,
  }[dtype];
  if (LITTLE_ENDIAN) return new Ctor(buffer, 0, count);
  // A big-endian host: byte-swap each element in place, then view.
  const size = DTYPES[dtype].bytes;
  for (let i = 0; i < raw.length; i += size) raw.subarray(i, i + size).reverse();
  return new Ctor(buffer, 0, count);
}

// ---------------------------------------------------------------------------------------------
// The file.

function define<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true }); // also for "__proto__"
}

interface Entry {
  name: string;
  at: number;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
  count: number;
}

/**
 * Reads a .safetensors file: `{ tensors, shapes, dtypes, metadata }`. `tensors` is a state dict
 * (`bn.loadStateDict(tensors, { prefix: 'features.1.' })`). Accepts a Uint8Array (a Node Buffer
 * too) or an ArrayBuffer; the file is read, not kept. Malformed or truncated files throw a
 * SafetensorsError naming the tensor and the file byte offset.
 */
export function readSafetensors(bytes: Uint8Array | ArrayBuffer): SafetensorsFile {
  // Reading: the caller's bytes through the intrinsic getters, then only engine-made views.
  const typed = snapshotTyped(bytes);
  let file: Uint8Array;
  if (typed !== null && typed.tag === 'Uint8Array' && !typed.detached) file = new Uint8Array(typed.buffer, typed.byteOffset, typed.length);
  else if (typed === null && isArrayBufferLike(bytes)) file = new Uint8Array(bytes);
  else throw new InvalidArgumentError('bytes', 'a Uint8Array or ArrayBuffer holding a .safetensors file', describe(bytes));

  const size = file.length;
  if (size < 8) throw new SafetensorsError('bytes', 'at least 8 bytes (the header length)', `${size} bytes`, null, 0);
  const lo = file[0]! | (file[1]! << 8) | (file[2]! << 16) | (file[3]! << 24);
  const hi = file[4]! | (file[5]! << 8) | (file[6]! << 16) | (file[7]! << 24);
  const headerBytes = (lo >>> 0) + (hi >>> 0) * 2 ** 32;
  if (headerBytes > MAX_HEADER_BYTES) {
    throw new SafetensorsError('bytes[0..8)', `a header length of at most ${MAX_HEADER_BYTES} bytes`, `${headerBytes}`, null, 0,
      headerBytes > size ? `the file has ${size} bytes: not a safetensors file, or a truncated one` : undefined);
  }
  if (headerBytes > size - 8) {
    throw new SafetensorsError('bytes', `at least ${8 + headerBytes} bytes (8 + the header length ${headerBytes})`, `${size} bytes`, null, size,
      'the file is truncated inside its header');
  }
  const dataStart = 8 + headerBytes;
  const dataBytes = size - dataStart;
  const root = new HeaderParser(file.slice(8, dataStart), 8).parse();
  if (root.kind !== 'object') throw new SafetensorsError(HEADER, 'a JSON object', root.kind, null, 8 + root.at);

  // Checking the header.
  const at = (node: { at: number }) => 8 + node.at;
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const { key: name, at: keyAt, value } of root.entries) {
    if (name === '__metadata__') {
      if (value.kind === 'literal' && value.value === null) continue;
      if (value.kind !== 'object') throw new SafetensorsError(`${HEADER}.__metadata__`, 'an object of strings (or null)', value.kind, null, at(value));
      for (const m of value.entries) {
        if (m.value.kind !== 'string') {
          throw new SafetensorsError(`${HEADER}.__metadata__[${JSON.stringify(m.key)}]`, 'a string', m.value.kind, null, at(m.value));
        }
        define(metadata, m.key, m.value.value);
      }
      continue;
    }
    const arg = `${HEADER}[${JSON.stringify(name)}]`;
    const fail = (field: string, expected: string, received: string, offset: number, detail?: string): never => {
      throw new SafetensorsError(`${arg}${field}`, expected, received, name, offset, detail);
    };
    if (value.kind !== 'object') fail('', 'an object { dtype, shape, data_offsets }', value.kind, at(value));
    const fields = new Map((value as Extract<Node, { kind: 'object' }>).entries.map((e) => [e.key, e.value]));
    const field = (key: string): Node => fields.get(key) ?? fail('', `the field "${key}"`, 'no such field', 8 + keyAt);

    const dtypeNode = field('dtype');
    if (dtypeNode.kind !== 'string') return fail('.dtype', `one of ${DTYPE_LIST}`, dtypeNode.kind, at(dtypeNode));
    const dtypeName = dtypeNode.value;
    if (!Object.prototype.hasOwnProperty.call(DTYPES, dtypeName)) {
      fail('.dtype', `one of ${DTYPE_LIST}`, JSON.stringify(dtypeName), at(dtypeNode),
        REJECTED.includes(dtypeName) ? 'a dtype of the format that this reader does not convert' : undefined);
    }
    const dtype = dtypeName as SafetensorsDtype;

    const integers = (key: string, node: Node): number[] => {
      if (node.kind !== 'array') return fail(`.${key}`, 'an array of non-negative integers', node.kind, at(node));
      return node.items.map((item, i) => {
        if (item.kind !== 'number' || !item.integer || item.value < 0 || !Number.isSafeInteger(item.value) || item.text.startsWith('-')) {
          return fail(`.${key}[${i}]`, 'a non-negative integer at most 2^53 − 1', item.kind === 'number' ? item.text : item.kind, at(item));
        }
        return item.value;
      });
    };
    const shapeNode = field('shape');
    const shape = integers('shape', shapeNode);
    const offsetsNode = field('data_offsets');
    const offsets = integers('data_offsets', offsetsNode);
    if (offsets.length !== 2) fail('.data_offsets', '[begin, end]', `${offsets.length} numbers`, at(offsetsNode));
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail('.data_offsets', 'begin <= end', `[${begin}, ${end}]`, at(offsetsNode));
    let count = 1;
    for (const d of shape) count *= d;
    const need = count * DTYPES[dtype].bytes;
    if (!Number.isSafeInteger(need)) fail('.shape', 'at most 2^53 − 1 bytes of data', `[${shape.join(', ')}]`, at(shapeNode));
    if (end - begin !== need) {
      fail('.data_offsets', `${need} bytes (${dtype}, ${DTYPES[dtype].bytes} B × ${count} elements of shape [${shape.join(', ')}])`,
        `[${begin}, ${end}]: ${end - begin} bytes`, at(offsetsNode));
    }
    if (end > dataBytes) {
      fail('.data_offsets', `[begin, end] within the ${dataBytes}-byte data buffer (file bytes [${dataStart}, ${size}))`, `[${begin}, ${end}]`,
        at(offsetsNode), `the data would end at file byte ${dataStart + end}: the file is truncated, or the offsets are wrong`);
    }
    entries.push({ name, at: 8 + keyAt, dtype, shape, begin, end, count });
  }

  // The tensors tile the buffer: no overlap, no hole, nothing after the last.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: Entry | null = null;
  for (const e of byOffset) {
    if (e.begin < covered) {
      throw new SafetensorsError(`${HEADER}[${JSON.stringify(e.name)}].data_offsets`, `begin >= ${covered} (where ${JSON.stringify(previous!.name)} ends)`,
        `[${e.begin}, ${e.end}]`, e.name, dataStart + e.begin, `it overlaps ${JSON.stringify(previous!.name)} [${previous!.begin}, ${previous!.end}]`);
    }
    if (e.begin > covered) {
      throw new SafetensorsError(`${HEADER}[${JSON.stringify(e.name)}].data_offsets`, `begin = ${covered} (${previous ? `where ${JSON.stringify(previous.name)} ends` : 'the start of the data'})`,
        `[${e.begin}, ${e.end}]`, e.name, dataStart + covered, `data bytes [${covered}, ${e.begin}) belong to no tensor`);
    }
    covered = e.end;
    previous = e;
  }
  if (covered !== dataBytes) {
    throw new SafetensorsError('bytes', `${dataStart + covered} bytes (the header and its tensors' data)`, `${size} bytes`,
      previous?.name ?? null, dataStart + covered, `data bytes [${covered}, ${dataBytes}) belong to no tensor`);
  }

  // The data, copied per tensor.
  const tensors: Record<string, SafetensorsArray> = {};
  const shapes: Record<string, number[]> = {};
  const dtypes: Record<string, SafetensorsDtype> = {};
  for (const e of entries) {
    const raw = file.slice(dataStart + e.begin, dataStart + e.end);
    if (e.dtype === 'BOOL') {
      const bad = raw.findIndex((b) => b > 1);
      if (bad >= 0) {
        throw new SafetensorsError(`bytes (tensor data)`, 'BOOL elements 0 or 1', `${raw[bad]} at element ${bad}`, e.name, dataStart + e.begin + bad);
      }
    }
    define(tensors, e.name, decode(e.dtype, raw, e.count));
    define(shapes, e.name, e.shape);
    define(dtypes, e.name, e.dtype);
  }
  return { tensors, shapes, dtypes, metadata };
}
