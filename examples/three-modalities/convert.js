// examples/three-modalities/convert.js IDX_DIR OUT_DIR [N_PICTURE]: splits
// Fashion-MNIST's images (gzip IDX, as Debian's dataset-fashion-mnist ships
// them) into their top halves (rows 0-13) and bottom halves (rows 14-27),
// written as uint8 NPY files the trainers read (scaled to [0,1] when
// loaded): train_top.npy, train_bottom.npy, test_top.npy, test_bottom.npy.
// The labels stay the IDX files. For the pictures, the first N_PICTURE
// (default 20) test halves also go to test_top_first.csv and
// test_bottom_first.csv as grey levels in [0,1].
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [idxDir, outDir, nPictureText] = process.argv.slice(2);
if (!idxDir || !outDir) {
    console.error('usage: node convert.js IDX_DIR OUT_DIR [N_PICTURE]');
    process.exit(2);
}
const nPicture = nPictureText ? Number(nPictureText) : 20;
function fail(message) {
    console.error(`convert.js: ${message}`);
    process.exit(1);
}
function readImages(name) {
    const file = path.join(idxDir, name);
    let bytes;
    try {
        bytes = zlib.gunzipSync(fs.readFileSync(file));
    } catch (e) {
        fail(`${file}: ${e.message}`);
    }
    if (bytes.length < 16 || bytes.readUInt32BE(0) !== 0x803)
        fail(`${file}: not an IDX file of uint8 images`);
    const n = bytes.readUInt32BE(4), rows = bytes.readUInt32BE(8), cols = bytes.readUInt32BE(12);
    if (rows !== 28 || cols !== 28 || bytes.length !== 16 + n * 784)
        fail(`${file}: expected ${n} images of 28 x 28`);
    return { n, pixels: bytes.subarray(16) };
}
function npy(file, shape, body) {
    let header = `{'descr': '|u1', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
    header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
    const head = Buffer.alloc(10);
    head.write('\x93NUMPY', 0, 'latin1');
    head[6] = 1;
    head.writeUInt16LE(header.length, 8);
    fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}
function split(set, prefix) {
    const { n, pixels } = readImages(`${set}-images-idx3-ubyte.gz`);
    const top = Buffer.alloc(n * 392), bottom = Buffer.alloc(n * 392);
    for (let i = 0; i < n; i++) {
        pixels.copy(top, i * 392, i * 784, i * 784 + 392);
        pixels.copy(bottom, i * 392, i * 784 + 392, (i + 1) * 784);
    }
    npy(path.join(outDir, `${prefix}_top.npy`), [n, 14, 28], top);
    npy(path.join(outDir, `${prefix}_bottom.npy`), [n, 14, 28], bottom);
    return { n, top, bottom };
}
fs.mkdirSync(outDir, { recursive: true });
const train = split('train', 'train'), test = split('t10k', 'test');
for (const half of ['top', 'bottom']) {
    const lines = [];
    for (let i = 0; i < Math.min(nPicture, test.n); i++)
        lines.push(Array.from(test[half].subarray(i * 392, (i + 1) * 392), (v) => +(v / 255).toFixed(4)).join(','));
    fs.writeFileSync(path.join(outDir, `test_${half}_first.csv`), lines.join('\n') + '\n');
}
console.log(`convert.js: ${train.n} training and ${test.n} test images split into halves in ${outDir}`);
