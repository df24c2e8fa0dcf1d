// SVG -> PNG without a browser: resvg (a Rust SVG renderer) through @resvg/resvg-js, a root
// devDependency with prebuilt binaries. Any failure throws: the demo never skips the PNG quietly.
import { crc32 } from 'node:zlib';
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';
import { FONT_FAMILY } from './plot.js';

/** Sans-serif fonts resvg may find on the system, in order; the SVG's own list comes first. */
const FALLBACK_FONT = 'DejaVu Sans';

function options(zoom: number): ResvgRenderOptions {
  return {
    fitTo: { mode: 'zoom', value: zoom },
    font: { loadSystemFonts: true, defaultFontFamily: FALLBACK_FONT, sansSerifFamily: FALLBACK_FONT },
    shapeRendering: 2, textRendering: 1, background: '#ffffff',
  };
}

/**
 * Throws unless resvg draws text with the figure's fonts (without a usable system font resvg
 * leaves text out of the image without an error; a PNG without labels is worse than none).
 */
function checkFonts(): void {
  const probe = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#fff"/>` +
    `<text x="4" y="30" font-size="28" font-family="${FONT_FAMILY.replace(/"/g, "'")}">Acc 0.9</text></svg>`;
  const { pixels } = new Resvg(probe, options(1)).render();
  let ink = 0;
  for (let i = 0; i < pixels.length; i += 4) if (pixels[i] < 128) ink++;
  if (ink < 50) {
    throw new Error(`PNG: resvg found no font for the figure's text (${FONT_FAMILY}); install one of them ` +
      '(e.g. apt-get install fonts-dejavu-core) and run again');
  }
}

/** A PNG tEXt chunk (keyword, Latin-1 text), inserted right after IHDR. */
function withText(png: Buffer, keyword: string, text: string): Buffer {
  const data = Buffer.from(`${keyword}\0${text.replace(/[^\x20-\x7e]/g, '?')}`, 'latin1');
  const type = Buffer.from('tEXt', 'latin1');
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  type.copy(chunk, 4);
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(Buffer.concat([type, data])) >>> 0, 8 + data.length);
  const ihdrEnd = 8 + 8 + png.readUInt32BE(8) + 4; // signature, IHDR length + type, data, CRC
  return Buffer.concat([png.subarray(0, ihdrEnd), chunk, png.subarray(ihdrEnd)]);
}

let fontsChecked = false;

/** The SVG rendered at `zoom` times its size, with `comment` as the PNG's Comment text. */
export function svgToPng(svg: string, zoom: number, comment: string): { png: Buffer; width: number; height: number } {
  if (!fontsChecked) { checkFonts(); fontsChecked = true; }
  const image = new Resvg(svg, options(zoom)).render();
  return { png: withText(image.asPng(), 'Comment', comment), width: image.width, height: image.height };
}
