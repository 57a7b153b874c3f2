// Types of ./index.js for the TypeScript tests.
export interface FuzzFinding {
  kind: 'exception' | 'hang' | 'memory' | 'uncaught';
  error?: { name: string; code?: string; message: string; stack: string };
  input: Buffer;
  sha1: string;
  from: string;
}
export interface FuzzResult {
  execs: number;
  ms: number;
  seeds: number;
  corpus: number;
  covered: number;
  outcomes?: Record<string, number>;
  aborted?: string;
  findings: FuzzFinding[];
}
export function runFuzz(o: {
  target: string;
  seconds?: number;
  maxExecs?: number;
  seed?: number;
  hangSeconds?: number;
  memBudgetMb?: number;
  maxLen?: number;
  extraCorpus?: string;
  saveDir?: string;
  stopOnFinding?: boolean;
  onProgress?: (m: object) => void;
}): Promise<FuzzResult>;
export const ROOT: string;
