/** The pinned version of AWS's Node Runtime Interface Client in the Lambda image. */
export const RIC_VERSION: string;
/** A `dir:` image folder: a static Go HTTP server alone in its rootfs. */
export function goHttpImage(): string;
/** A folder holding an aws-lambda-go `bootstrap` for `runtime: provided`. */
export function goLambdaBootstrap(): string;
/** A `dir:` image folder: node, aws-lambda-ric and an unchanged Lambda handler (index.handler, stream.handler). */
export function nodeLambdaImage(): string;
/** The pinned version of AWS's Python Runtime Interface Client in the Python Lambda image. */
export const PYTHON_RIC_VERSION: string;
/** A `dir:` image folder: python3, awslambdaric and an unchanged Lambda handler (app.handler). */
export function pythonLambdaImage(): string;
