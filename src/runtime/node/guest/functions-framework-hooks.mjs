// A module resolution hook (module.register) for ES modules that import `@google-cloud/functions-framework`
// without installing it: they get the guest's stand-in (functions-framework.cjs) instead.
let shim = '';
export function initialize(data) {
  shim = data.shim;
}
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (specifier === '@google-cloud/functions-framework')
      return { url: shim, format: 'commonjs', shortCircuit: true };
    throw error;
  }
}
