/**
 * File formats, pure I/O with no knowledge of models: ZIP (the `.keras` container), HDF5 (`model.weights.h5`,
 * `.weights.h5`), safetensors, and atomic file replacement. Every reader validates sizes, offsets and counts
 * against the file and the memory budget (`setMaxLoadBytes`, `QK_MAX_LOAD_BYTES`, per-call `maxBytes`) before
 * allocating, and reports problems as {@link CorruptFileError} (or `QK_OUT_OF_MEMORY` for the budget).
 *
 * @example
 * ```ts
 * import { readZip, readHdf5, h5Get } from 'quantkit/io';
 * const files = readZip(await fs.promises.readFile('model.keras'), { source: 'model.keras' });
 * const weights = await readHdf5(files.get('model.weights.h5')!, { source: 'model.keras' });
 * h5Get(weights, 'layers/dense/vars/0');
 * ```
 * @packageDocumentation
 */
export { readZip, writeZip, crc32, ZIP_RATIO_FLOOR_BYTES } from './zip';
export type { ZipLimits } from './zip';
export { readHdf5, writeHdf5, h5Group, h5Dataset, h5Get, terminateHdf5Worker } from './hdf5';
export type { H5DType, H5Dataset, H5Group } from './hdf5';
export { readSafetensors, readSafetensorsFile, writeSafetensors, writeSafetensorsFile } from './safetensors';
export { writeFileAtomic, cleanStaleTempFiles } from './atomic';
export { setMaxLoadBytes, getMaxLoadBytes, defaultMaxLoadBytes, resolveMaxLoadBytes, checkLoadBudget, checkedByteSize } from './limits';
