// A .safetensors writer for the tests, written from the format's specification and independent
// of src/safetensors.ts: 8-byte little-endian header length, the JSON header padded with spaces
// to a multiple of 8 (as the reference writer pads it), then each tensor's little-endian bytes
// in order. `fileOf` assembles a file from a header text and data as given, for malformed files.

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export interface TensorSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** The elements (F16/BF16: their 16-bit patterns; I64/U64: bigints or numbers). */
  values: ArrayLike<number | bigint>;
}

const SIZE: Record<Dtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1 };

/** The little-endian bytes of `values` as `dtype`. */
export function encode(dtype: Dtype, values: ArrayLike<number | bigint>): Uint8Array {
  const out = new Uint8Array(values.length * SIZE[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const at = i * SIZE[dtype];
    switch (dtype) {
      case 'F64': view.setFloat64(at, Number(v), true); break;
      case 'F32': view.setFloat32(at, Number(v), true); break;
      case 'F16': case 'BF16': case 'U16': view.setUint16(at, Number(v), true); break;
      case 'I16': view.setInt16(at, Number(v), true); break;
      case 'I64': view.setBigInt64(at, BigInt(v), true); break;
      case 'U64': view.setBigUint64(at, BigInt(v), true); break;
      case 'I32': view.setInt32(at, Number(v), true); break;
      case 'U32': view.setUint32(at, Number(v), true); break;
      case 'I8': view.setInt8(at, Number(v)); break;
      case 'U8': case 'BOOL': view.setUint8(at, Number(v)); break;
    }
  }
  return out;
}

/** header length (u64 LE) + header bytes + data. `headerLength` overrides the length written. */
export function fileOf(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** A well-formed file holding `tensors` in order, with `metadata` as __metadata__ when given. */
export function writeSafetensors(tensors: TensorSpec[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const bytes = encode(t.dtype, t.values);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (new TextEncoder().encode(text).length % 8)) % 8);
  const data = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) { data.set(c, at); at += c.length; }
  return fileOf(text, data);
}
