// Byte-level mutations of a fuzz input (deterministic given the random source).
'use strict';

/** A small, fast, seedable PRNG (mulberry32). */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n), pick: (arr) => arr[Math.floor(next() * arr.length)] };
}

const BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, 0xfe, 0x22, 0x30, 0x39, 0x2d];
// little-endian 16/32/64-bit "interesting" values: zero, one, max, min, -1, powers of two near overflow
const WORDS = [0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x1fffffffffffffn, 0x20000000000000n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 0xfffffffffffffffen];
const TOKENS = ['-1', '0', '1e309', '-1e309', '4294967296', '9007199254740993', '1.5', 'null', 'true', '[]', '{}', '""', '"\\u0000"', 'NaN', '"float32"', '"int8"', '"uint8"', '"bfloat16"', '[0]', '[-1]', '[4294967296,4294967296]', '\u00ff', '\ud800', '\\'];

function setWord(buf, pos, width, v) {
  for (let i = 0; i < width && pos + i < buf.length; i++) buf[pos + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}
function getWord(buf, pos, width) {
  let v = 0n;
  for (let i = 0; i < width && pos + i < buf.length; i++) v |= BigInt(buf[pos + i]) << BigInt(8 * i);
  return v;
}

/**
 * One mutated copy of `input`. `other` is another corpus entry for splicing; `dict` extra tokens (e.g. key names).
 * `maxLen` bounds the output.
 */
function mutate(r, input, other, dict, maxLen) {
  let b = Uint8Array.from(input);
  const rounds = 1 + r.int(4);
  for (let k = 0; k < rounds; k++) {
    const n = b.length;
    const pos = n ? r.int(n) : 0;
    switch (r.int(14)) {
      case 0: // bit flip
        if (n) b[pos] ^= 1 << r.int(8);
        break;
      case 1: // interesting byte
        if (n) b[pos] = r.pick(BYTES);
        break;
      case 2: // random byte
        if (n) b[pos] = r.int(256);
        break;
      case 3: // interesting 16/32/64-bit little-endian word, aligned half of the time
      case 4: {
        if (!n) break;
        const width = r.pick([2, 4, 4, 8, 8]);
        const p = r.next() < 0.5 ? pos - (pos % width) : pos;
        let v = r.pick(WORDS);
        if (r.next() < 0.3) v = (1n << BigInt(8 * width)) - v; // negated
        setWord(b, p, width, v & ((1n << BigInt(8 * width)) - 1n));
        break;
      }
      case 5: { // add/subtract a small delta to a word (length fields off by a few)
        if (!n) break;
        const width = r.pick([1, 2, 4, 8]);
        const p = pos - (pos % width);
        const delta = BigInt(r.int(33) - 16);
        setWord(b, p, width, (getWord(b, p, width) + delta) & ((1n << BigInt(8 * width)) - 1n));
        break;
      }
      case 6: // truncate
        b = b.slice(0, r.int(n + 1));
        break;
      case 7: { // delete a chunk
        const len = 1 + r.int(Math.min(64, Math.max(1, n - pos)));
        b = Uint8Array.from([...b.subarray(0, pos), ...b.subarray(pos + len)]);
        break;
      }
      case 8: { // insert random or repeated bytes
        const len = 1 + r.int(16);
        const ins = new Uint8Array(len).map(() => (r.next() < 0.5 ? r.int(256) : b[pos] ?? 0));
        b = concat(b.subarray(0, pos), ins, b.subarray(pos));
        break;
      }
      case 9: { // duplicate / overwrite a chunk from elsewhere in the input
        if (n < 2) break;
        const src = r.int(n);
        const len = 1 + r.int(Math.min(64, n - src));
        const chunk = b.slice(src, src + len);
        if (r.next() < 0.5) b.set(chunk.subarray(0, Math.max(0, n - pos)), pos);
        else b = concat(b.subarray(0, pos), chunk, b.subarray(pos));
        break;
      }
      case 10: { // splice with another corpus entry
        if (!other || !other.length) break;
        const cut = r.int(other.length);
        b = concat(b.subarray(0, pos), other.subarray(cut, cut + 1 + r.int(Math.min(256, other.length - cut))), b.subarray(pos + r.int(32)));
        break;
      }
      case 11: // crossover: head of this, tail of the other
        if (other && other.length) b = concat(b.subarray(0, pos), other.subarray(r.int(other.length)));
        break;
      case 12: // text token (JSON-ish numbers, literals, key names) inserted or overwriting
      case 13: {
        const tok = Buffer.from(dict.length && r.next() < 0.5 ? r.pick(dict) : r.pick(TOKENS), 'utf8');
        if (r.next() < 0.5) b = concat(b.subarray(0, pos), tok, b.subarray(pos));
        else {
          // replace the run of digits/letters at pos (a number or a literal) with the token
          let end = pos;
          while (end < n && /[0-9A-Za-z.+\-_]/.test(String.fromCharCode(b[end]))) end++;
          b = concat(b.subarray(0, pos), tok, b.subarray(Math.max(end, pos + 1)));
        }
        break;
      }
    }
  }
  return b.length > maxLen ? b.slice(0, maxLen) : b;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

module.exports = { prng, mutate };
