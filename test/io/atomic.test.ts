// writeFileAtomic: new files, replacement, and a write that fails midway leaving the old file intact.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeFileAtomic } from '../../lib/io/atomic';
import { InvalidArgumentError } from '../../lib/errors';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-atomic-'));
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('creates a file and replaces one, keeping its permission bits', async () => {
  const f = path.join(dir, 'model.keras');
  await writeFileAtomic(f, new Uint8Array([1, 2, 3]));
  expect([...fs.readFileSync(f)]).toEqual([1, 2, 3]);
  fs.chmodSync(f, 0o640);
  const big = Uint8Array.from({ length: 3 << 20 }, (_, i) => i & 0xff);
  await writeFileAtomic(f, big);
  expect(Buffer.from(fs.readFileSync(f)).equals(Buffer.from(big))).toBe(true);
  if (process.platform !== 'win32') expect(fs.statSync(f).mode & 0o777).toBe(0o640);
  expect(fs.readdirSync(dir)).toEqual(['model.keras']);
});

test('a write failing midway leaves the old file intact and no temporary file', async () => {
  const f = path.join(dir, 'weights.h5');
  fs.writeFileSync(f, 'OLD CONTENTS');
  const realOpen = fs.promises.open;
  jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof realOpen>) => {
    const h = await realOpen(...args);
    const realWrite = h.write.bind(h) as (...a: unknown[]) => Promise<{ bytesWritten: number }>;
    let calls = 0;
    (h as unknown as { write: unknown }).write = async (buf: Uint8Array, off: number, len: number, pos: number) => {
      if (++calls > 1) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      return realWrite(buf, off, Math.min(len, 10), pos); // a short write, then the disk is full
    };
    return h;
  });
  await expect(writeFileAtomic(f, new Uint8Array(1000).fill(7))).rejects.toMatchObject({ code: 'ENOSPC' });
  expect(fs.readFileSync(f, 'utf8')).toBe('OLD CONTENTS');
  expect(fs.readdirSync(dir)).toEqual(['weights.h5']);
});

test('a failing rename leaves the old file intact', async () => {
  const f = path.join(dir, 'x.bin');
  fs.writeFileSync(f, 'OLD');
  jest.spyOn(fs.promises, 'rename').mockRejectedValue(Object.assign(new Error('EXDEV'), { code: 'EXDEV' }));
  await expect(writeFileAtomic(f, new Uint8Array([9]))).rejects.toMatchObject({ code: 'EXDEV' });
  expect(fs.readFileSync(f, 'utf8')).toBe('OLD');
  expect(fs.readdirSync(dir)).toEqual(['x.bin']);
});

test('a missing directory rejects with the fs error; bad arguments', async () => {
  await expect(writeFileAtomic(path.join(dir, 'no', 'such', 'x'), new Uint8Array(1))).rejects.toMatchObject({ code: 'ENOENT' });
  await expect(writeFileAtomic('', new Uint8Array(1))).rejects.toThrow(InvalidArgumentError);
  await expect(writeFileAtomic(path.join(dir, 'y'), 'text' as never)).rejects.toThrow(InvalidArgumentError);
});
