import { ChorusError, ErrorCode } from '../protocol/index.js';

/**
 * The Standard Schema interface (https://standardschema.dev), which zod, valibot, arktype and
 * others implement. Inlined here: the spec is designed to be copied as types, not depended on.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardIssue> };

export interface StandardIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

export type InferOutput<S> = S extends StandardSchemaV1<unknown, infer O> ? O : unknown;

/** Validate with any Standard Schema; throws ChorusError(BAD_REQUEST) with `issues` on failure. */
export async function validate<O>(schema: StandardSchemaV1<unknown, O>, value: unknown): Promise<O> {
  const result = await schema['~standard'].validate(value);
  if (result.issues) {
    const issues = result.issues.slice(0, 20).map((issue) => ({
      message: issue.message,
      path: (issue.path ?? []).map((p) => String(typeof p === 'object' && p !== null ? p.key : p)),
    }));
    throw new ChorusError(ErrorCode.BAD_REQUEST, issues[0]?.message ?? 'invalid data', { issues });
  }
  return result.value;
}
