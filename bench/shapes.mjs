// The benchmark's cases: real batch-norm layer shapes, each 4-D one in both layouts.
// `dims` is always written N, C, spatial... (PyTorch order); the NHWC case uses the same tensor
// with the channel axis moved last: [N, H, W, C] (3-D: [N, L, C]). A 2-D [N, C] tensor is the
// same memory in both layouts, so it runs once (layout 'NCHW', i.e. channel axis 1).

/** @typedef {{ id: string, group: string, name: string, dims: number[], layout: 'NCHW'|'NHWC', shape: number[], size: number, C: number, quick: boolean }} Case */

const SHAPES = [
  // ResNet-50, batch 32: the BN after conv1 and the widest BN of each stage.
  { group: 'resnet50', name: 'conv1', dims: [32, 64, 112, 112] },
  { group: 'resnet50', name: 'layer1', dims: [32, 256, 56, 56] },
  { group: 'resnet50', name: 'layer2', dims: [32, 512, 28, 28] },
  { group: 'resnet50', name: 'layer3', dims: [32, 1024, 14, 14] },
  { group: 'resnet50', name: 'layer4', dims: [32, 2048, 7, 7], quick: true },
  // MobileNetV2, batch 1 (on-device inference).
  { group: 'mobilenetv2', name: 'first', dims: [1, 32, 112, 112], quick: true },
  { group: 'mobilenetv2', name: 'expand', dims: [1, 96, 56, 56] },
  { group: 'mobilenetv2', name: 'last', dims: [1, 960, 7, 7] },
  // BatchNorm1d: (N, C) after a linear layer, (N, C, L) over a sequence.
  { group: 'bn1d', name: 'N,C', dims: [256, 1024], quick: true },
  { group: 'bn1d', name: 'N,C,L', dims: [64, 512, 100] },
  // Edges: C = 3 (odd, input normalisation), spatial 1x1 (after global pooling), N = 1.
  { group: 'edge', name: 'C=3', dims: [8, 3, 224, 224], quick: true },
  { group: 'edge', name: '1x1', dims: [32, 2048, 1, 1] },
  { group: 'edge', name: 'N=1', dims: [1, 256, 56, 56] },
];

const prod = (a) => a.reduce((p, d) => p * d, 1);

/** Channels-last shape of an N, C, spatial... shape. */
export function channelsLastShape(dims) {
  return [dims[0], ...dims.slice(2), dims[1]];
}

/** @returns {Case[]} */
export function allCases() {
  const cases = [];
  for (const s of SHAPES) {
    const layouts = s.dims.length === 2 ? ['NCHW'] : ['NCHW', 'NHWC'];
    for (const layout of layouts) {
      const shape = layout === 'NCHW' ? s.dims : channelsLastShape(s.dims);
      cases.push({
        id: `${s.dims.join('x')} ${layout}`,
        group: s.group,
        name: s.name,
        dims: s.dims,
        layout,
        shape,
        size: prod(s.dims),
        C: s.dims[1],
        quick: Boolean(s.quick),
      });
    }
  }
  return cases;
}

/**
 * Cases selected by the CLI. `filter` is a comma-separated list of terms; a case is kept when any
 * term occurs (case-insensitively) in its id ("32x64x112x112 NCHW"), group ("resnet50") or name.
 */
export function selectCases({ quick = false, filter = null, layout = null } = {}) {
  let cases = allCases();
  if (quick) cases = cases.filter((c) => c.quick);
  if (layout) cases = cases.filter((c) => c.layout === layout.toUpperCase());
  if (filter) {
    const terms = filter.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
    cases = cases.filter((c) => {
      const hay = `${c.id} ${c.group} ${c.name}`.toLowerCase();
      return terms.some((t) => hay.includes(t));
    });
  }
  return cases;
}

/** Pretty shape for tables: "32x64x112x112". */
export const dimsText = (c) => c.dims.join('×');
