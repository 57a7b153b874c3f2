// A two-layer GPTQ test model shared by test/unit/gptq-layers.test.ts and test/cuda/gptq.test.ts: an Embedding
// (the layer before the blocks) feeding one Dense (the only block), with seeded initializers.
import { applySymbolic, Dense, Embedding, Input, Model } from '../lib';

export class EmbedDense extends Model {
  embed!: Embedding;
  proj!: Dense;
  override getQuantizationLayerStructure() {
    return { preBlockLayers: [this.embed], sequentialBlocks: [this.proj] };
  }
}

/** Embedding(50 -> 24) then Dense(10), input [16] int32 tokens. */
export async function embedDense(): Promise<EmbedDense> {
  const inp = Input({ shape: [16], dtype: 'int32' });
  const embed = new Embedding({ inputDim: 50, outputDim: 24, seed: 3, embeddingsInitializer: 'glorot_uniform' });
  const proj = new Dense({ units: 10, seed: 4 });
  const out = await applySymbolic(proj, await applySymbolic(embed, inp));
  const m = new EmbedDense({ inputs: inp, outputs: out });
  m.embed = embed;
  m.proj = proj;
  return m;
}
