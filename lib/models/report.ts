/**
 * `QuantizationReport`: what one `model.quantize()` call did — which layers were quantized (with their new
 * policy), which were skipped and why (Keras `keras.quantizers.QuantizationReport`, spec §1.7).
 * @packageDocumentation
 */

/** One quantized layer: its path, the mode it now runs in, and the scheme (its dtype-policy name). */
export interface QuantizedEntry {
  /** Layer path (`decoder/attention/query`). */
  path: string;
  /** The layer's quantization mode after the call (`'int8'`, `'int4'`, …). */
  mode: string | null;
  /** The resolved scheme, i.e. the layer's dtype-policy name (`'int4/128_from_float32'`). */
  scheme: string;
}

/** One skipped layer and the reason (one of the `QuantizationReport.SKIP_*` constants). */
export interface SkippedEntry {
  /** Layer path. */
  path: string;
  /** Why it was skipped. */
  reason: string;
}

/** One recorded, non-fatal error. */
export interface ErrorEntry {
  /** Layer path. */
  path: string;
  /** The error message. */
  message: string;
}

/** Per-layer GPTQ calibration details (`report.gptq`). */
export interface GptqLayerEntry {
  /** Layer path. */
  path: string;
  /** Bit width. */
  bits: number;
  /** Group size (`-1` = per output channel). */
  groupSize: number;
  /** Relative damping that succeeded (`λ = damping · mean(diag H)`). */
  damping: number;
  /** Factorization attempts (more than 1 = the damping was raised because H was not positive definite). */
  dampingTries: number;
  /** Inputs never activated by the calibration data (`diag H = 0`). */
  deadInputs: number;
  /** The proxy loss GPTQ minimizes, `Σ (w − q)² / d²`. */
  loss: number;
  /** `‖XW − XŴ‖² / ‖XW‖²` on (up to 512) calibration rows of this layer's real inputs. */
  relativeOutputError: number;
  /** Calibration rows (tokens) in the Hessian. */
  rows: number;
  /** Seconds for this layer (Hessian finalization + GPTQ + installation). */
  seconds: number;
}

function pyStr(s: string): string {
  return `'${s}'`;
}

/**
 * The structured result of `model.quantize()`; also kept on the model as `model.quantizationReport`.
 *
 * @example
 * ```ts
 * const report = await model.quantize('int8', { verbose: false });
 * report.numQuantized;                                              // 2
 * report.skippedByReason(QuantizationReport.SKIP_NO_SUPPORT);       // ['layer_norm']
 * console.log(report.render());
 * ```
 */
export class QuantizationReport {
  /** The layer does not implement quantization (or not for this mode). */
  static readonly SKIP_NO_SUPPORT = 'no quantize support';
  /** `filters` excluded the layer. */
  static readonly SKIP_FILTERED = 'filtered out';
  /** The layer was quantized before. */
  static readonly SKIP_ALREADY_QUANTIZED = 'already quantized';
  /** A GPTQ call whose layer structure does not cover the layer. */
  static readonly SKIP_OUTSIDE_STRUCTURE = 'outside quantization structure';
  /** GPTQ: the layer is inside a block but the block never called it during calibration. */
  static readonly SKIP_NOT_CALLED = 'not called during calibration';

  /** The resolved mode of the call. */
  mode: string | null;
  /** Quantized layers, in walk order. */
  readonly quantized: QuantizedEntry[] = [];
  /** Skipped layers, in walk order. */
  readonly skipped: SkippedEntry[] = [];
  /** Recorded non-fatal errors (normally empty: real errors propagate). */
  readonly errors: ErrorEntry[] = [];
  /** GPTQ only: calibration details per quantized layer, in calibration order. */
  readonly gptq: GptqLayerEntry[] = [];

  /**
   * @param mode - the resolved quantization mode (default null)
   * @example
   * ```ts
   * const r = new QuantizationReport('int8');
   * ```
   */
  constructor(mode: string | null = null) {
    this.mode = mode;
  }

  /**
   * Records a quantized layer.
   * @example
   * ```ts
   * report.addQuantized('dense', 'int8', 'int8_from_float32');
   * ```
   */
  addQuantized(path: string, mode: string | null, scheme: string): void {
    this.quantized.push({ path, mode, scheme });
  }

  /**
   * Records a skipped layer.
   * @example
   * ```ts
   * report.addSkipped('layer_norm', QuantizationReport.SKIP_NO_SUPPORT);
   * ```
   */
  addSkipped(path: string, reason: string): void {
    this.skipped.push({ path, reason });
  }

  /**
   * Records a non-fatal error (its message is kept).
   * @example
   * ```ts
   * report.addError('dense', new Error('odd shape'));
   * ```
   */
  addError(path: string, error: unknown): void {
    this.errors.push({ path, message: error instanceof Error ? error.message : String(error) });
  }

  /**
   * Number of quantized layers.
   * @example
   * ```ts
   * report.numQuantized; // 2
   * ```
   */
  get numQuantized(): number {
    return this.quantized.length;
  }

  /**
   * Number of skipped layers.
   * @example
   * ```ts
   * report.numSkipped; // 1
   * ```
   */
  get numSkipped(): number {
    return this.skipped.length;
  }

  /**
   * Number of recorded errors.
   * @example
   * ```ts
   * report.numErrors; // 0
   * ```
   */
  get numErrors(): number {
    return this.errors.length;
  }

  /**
   * Paths of the layers skipped for `reason`, in walk order.
   * @example
   * ```ts
   * report.skippedByReason(QuantizationReport.SKIP_FILTERED); // ['head']
   * ```
   */
  skippedByReason(reason: string): string[] {
    return this.skipped.filter((s) => s.reason === reason).map((s) => s.path);
  }

  /**
   * One warning text covering every layer skipped for lack of support (and recorded errors), with at most
   * `maxExamples` example paths each; `null` when there is nothing to warn about. Filtered, already quantized
   * and out-of-structure layers never warn. The text begins with "`model.quantize()`: ".
   * @example
   * ```ts
   * report.summaryWarning();
   * // "`model.quantize()`: 1 layer(s) were skipped because they do not support quantization (e.g. 'norm'). ..."
   * ```
   */
  summaryWarning(maxExamples = 5): string | null {
    const unsupported = this.skippedByReason(QuantizationReport.SKIP_NO_SUPPORT);
    if (unsupported.length === 0 && this.errors.length === 0) return null;
    const examples = (paths: string[]): string =>
      paths.slice(0, maxExamples).map(pyStr).join(', ') + (paths.length > maxExamples ? ', ...' : '');
    const parts: string[] = [];
    if (unsupported.length > 0) {
      parts.push(`${unsupported.length} layer(s) were skipped because they do not support quantization (e.g. ${examples(unsupported)}).`);
    }
    if (this.errors.length > 0) {
      parts.push(`${this.errors.length} layer(s) reported errors (e.g. ${examples(this.errors.map((e) => e.path))}).`);
    }
    parts.push(
      `Quantized ${this.numQuantized} layer(s) in mode '${this.mode}'. Call \`model.quantizationSummary()\` or inspect the returned \`QuantizationReport\` for details.`,
    );
    return '`model.quantize()`: ' + parts.join(' ');
  }

  /**
   * The full report as text: a header, a 65-character `=` rule, the quantized layers and the skipped layers
   * (`(none)` when a list is empty), then errors if any.
   * @example
   * ```ts
   * console.log(report.render());
   * // Quantization report (mode='int8')
   * // =================================================================
   * // Quantized 1 layer(s):
   * //   - dense (int8): int8_from_float32
   * // Skipped 0 layer(s):
   * //   (none)
   * ```
   */
  render(): string {
    const lines = [`Quantization report (mode=${this.mode === null ? 'None' : pyStr(this.mode)})`, '='.repeat(65)];
    lines.push(`Quantized ${this.numQuantized} layer(s):`);
    if (this.quantized.length === 0) lines.push('  (none)');
    for (const q of this.quantized) lines.push(`  - ${q.path} (${q.mode}): ${q.scheme}`);
    lines.push(`Skipped ${this.numSkipped} layer(s):`);
    if (this.skipped.length === 0) lines.push('  (none)');
    for (const s of this.skipped) lines.push(`  - ${s.path}: ${s.reason}`);
    if (this.gptq.length > 0) {
      lines.push('GPTQ calibration:');
      lines.push('  layer | bits | group | damping (tries) | dead | proxy loss | rel. output error | rows | seconds');
      for (const g of this.gptq) {
        lines.push(
          `  ${g.path} | ${g.bits} | ${g.groupSize} | ${g.damping.toPrecision(3)} (${g.dampingTries}) | ${g.deadInputs} | ${g.loss.toPrecision(4)} | ${g.relativeOutputError.toExponential(3)} | ${g.rows} | ${g.seconds.toFixed(3)}`,
        );
      }
    }
    if (this.errors.length > 0) {
      lines.push(`Errors on ${this.numErrors} layer(s):`);
      for (const e of this.errors) lines.push(`  - ${e.path}: ${e.message}`);
    }
    return lines.join('\n');
  }

  /**
   * A one-line description.
   * @example
   * ```ts
   * String(report); // "QuantizationReport(mode='int8', quantized=2, skipped=1, errors=0)"
   * ```
   */
  toString(): string {
    return `QuantizationReport(mode=${this.mode === null ? 'None' : pyStr(this.mode)}, quantized=${this.numQuantized}, skipped=${this.numSkipped}, errors=${this.numErrors})`;
  }
}
