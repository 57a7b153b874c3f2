// Writes (to argv[2]) a small HDF5 file with a chunked, resizable float32 dataset 'big' of 2^26 elements
// (256 MiB declared) of which only the first chunk is stored: the rest would read as the fill value. Used by
// limits.test.ts to check that such a dataset is refused before the reader allocates it.
import h5mod from 'h5wasm/node';

await h5mod.ready;
const f = new h5mod.File(process.argv[2], 'w');
const ds = f.create_dataset({ name: 'big', data: new Float32Array(16), shape: [16], maxshape: [null], chunks: [1024] });
ds.resize([1 << 26]);
f.close();
