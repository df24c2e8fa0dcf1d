// A one-node ONNX model (opset 15) built with onnx-proto (the protobufjs-generated ONNX schema):
//   NCHW  X → BatchNormalization → Y
//   NHWC  X → Transpose(to channels-first) → BatchNormalization → Transpose(back) → Y
//         (ONNX BatchNormalization is channels-first only; this is what an ONNX user has to do)
// scale, B, input_mean, input_var are initializers (constants of the model, as in a real one).
// training_mode = 1 adds the running_mean / running_var outputs; ONNX momentum weights the old
// value (0.9 here = PyTorch's 0.1), and its running variance takes the biased batch variance.
import onnxProto from 'onnx-proto';
import { EPS, MOMENTUM } from '../data.mjs';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const A = onnx.AttributeProto.AttributeType;

const valueInfo = (name, dims) => ({
  name,
  type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
});
const initializer = (name, values) => ({
  name, dims: [values.length], dataType: FLOAT,
  rawData: new Uint8Array(Float32Array.from(values).buffer),
});

/** Serialized ModelProto for the case. */
export function batchNormModel(c, inputs, training) {
  const C = c.C, rank = c.shape.length;
  const last = c.layout === 'NHWC' && rank > 2;
  // perm to channels-first and back: [0, rank-1, 1, ..., rank-2] and [0, 2, ..., rank-1, 1].
  const toFirst = [0, rank - 1, ...Array.from({ length: rank - 2 }, (_, i) => i + 1)];
  const toLast = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1];
  const nodes = [];
  let bnIn = 'X', bnOut = 'Y';
  if (last) {
    nodes.push({ opType: 'Transpose', input: ['X'], output: ['Xt'], attribute: [{ name: 'perm', ints: toFirst, type: A.INTS }] });
    bnIn = 'Xt'; bnOut = 'Yt';
  }
  nodes.push({
    opType: 'BatchNormalization',
    input: [bnIn, 'scale', 'B', 'input_mean', 'input_var'],
    output: training ? [bnOut, 'running_mean', 'running_var'] : [bnOut],
    attribute: [
      { name: 'epsilon', f: EPS, type: A.FLOAT },
      { name: 'momentum', f: 1 - MOMENTUM, type: A.FLOAT },
      ...(training ? [{ name: 'training_mode', i: 1, type: A.INT }] : []),
    ],
  });
  if (last) nodes.push({ opType: 'Transpose', input: ['Yt'], output: ['Y'], attribute: [{ name: 'perm', ints: toLast, type: A.INTS }] });
  const graph = {
    name: 'batchnorm',
    node: nodes,
    initializer: [
      initializer('scale', inputs.weight), initializer('B', inputs.bias),
      initializer('input_mean', inputs.runningMean), initializer('input_var', inputs.runningVar),
    ],
    input: [valueInfo('X', c.shape)],
    output: [valueInfo('Y', c.shape), ...(training ? [valueInfo('running_mean', [C]), valueInfo('running_var', [C])] : [])],
  };
  const model = { irVersion: 8, opsetImport: [{ domain: '', version: 15 }], producerName: 'wasm-batchnorm bench', graph };
  const problem = onnx.ModelProto.verify(model);
  if (problem) throw new Error(`onnx model: ${problem}`);
  return onnx.ModelProto.encode(onnx.ModelProto.fromObject(model)).finish();
}

/**
 * The ORT contender for one runtime (onnxruntime-web or onnxruntime-node; same API).
 * Timed: session.run({ X }) with X an ort.Tensor over the plain input Float32Array, plus reading
 * Y's data: plain arrays in and out, like our copy path.
 */
export function ortContender(getOrt, sessionOptions) {
  return async function setup({ c, op, inputs }) {
    if (op === 'backward') {
      return { unsupported: 'no BatchNormalization gradient in ONNX Runtime inference builds (needs onnxruntime-training)' };
    }
    const ort = await getOrt();
    const training = op === 'training';
    const session = await ort.InferenceSession.create(batchNormModel(c, inputs, training), sessionOptions());
    const X = new ort.Tensor('float32', inputs.x, c.shape);
    let last = null;
    const run = async () => {
      const r = await session.run({ X });
      last = r.Y.data;
    };
    const notes = c.layout === 'NHWC' && c.shape.length > 2 ? ['NHWC: Transpose → BatchNormalization → Transpose'] : [];
    return {
      run,
      output: () => ({ main: last }),
      async teardown() { await session.release(); },
      notes,
    };
  };
}
