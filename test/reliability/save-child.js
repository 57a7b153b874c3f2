// Child process of atomic-save.test.ts: builds a deterministic model (seed from argv) and saves it to a path, so
// that the parent can SIGKILL it at any point of the save. With `--slow`, writes of temporary files are split
// into 256 KiB pieces, each followed by a progress message and a short pause (the parent kills on a given
// message); without it the save runs at full speed (the parent kills after a delay).
'use strict';
const fs = require('fs');
const [, , dist, target, seedArg, mode] = process.argv;
const q = require(dist);

// Both modes report when the temporary file is opened and renamed (the phases of the save).
const realRename = fs.promises.rename;
fs.promises.rename = async (from, to) => {
  process.send({ event: 'rename' });
  return realRename(from, to);
};
if (mode !== '--slow') {
  const realOpen = fs.promises.open;
  fs.promises.open = async (...args) => {
    if (String(args[0]).endsWith('.tmp')) process.send({ event: 'open' });
    return realOpen(...args);
  };
} else {
  const realOpen = fs.promises.open;
  fs.promises.open = async (...args) => {
    const h = await realOpen(...args);
    if (!String(args[0]).endsWith('.tmp')) return h;
    process.send({ event: 'open' });
    let written = 0;
    return new Proxy(h, {
      get(t, prop) {
        if (prop === 'write') {
          return async (buf, off, len, pos) => {
            const n = Math.min(len, 256 * 1024);
            const r = await t.write(buf, off, n, pos);
            written += r.bytesWritten;
            process.send({ event: 'write', written });
            await new Promise((res) => setTimeout(res, 5));
            return r;
          };
        }
        if (prop === 'sync') {
          return async () => {
            process.send({ event: 'sync' });
            await new Promise((res) => setTimeout(res, 5));
            return t.sync();
          };
        }
        const v = Reflect.get(t, prop);
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
  };
}

(async () => {
  const seed = Number(seedArg);
  const layers = [q.Input({ shape: [256] })];
  for (let i = 0; i < 4; i++) layers.push(new q.Dense({ units: 512, seed: seed * 10 + i, activation: 'relu' }));
  layers.push(new q.Dense({ units: 8, seed: seed * 10 + 9 }));
  const m = new q.Sequential({ layers });
  await m.build();
  process.send({ event: 'saving' });
  await m.save(target);
  process.send({ event: 'saved' });
  // stay alive until killed or disconnected: the parent decides when the process ends
  process.on('disconnect', () => process.exit(0));
})().catch((e) => {
  process.send({ event: 'error', message: String((e && e.stack) || e) });
  process.exit(1);
});
